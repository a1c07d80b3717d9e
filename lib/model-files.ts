// A model is a file, or a Hugging Face-style folder: the model file plus tokenizer.json, config.json and
// preprocessor_config.json. This module finds the model file and reads what the folder says.
import fs from 'node:fs';
import path from 'node:path';
import type { ModelConfig } from '../schemas/serve';

/** What a model folder (or a model file's own folder) provides, read once per handler. */
export interface ModelFiles {
    /** the model file the runtime loads (model.onnx, onnx/model.onnx or model.json) */
    file: string;
    /** the folder holding tokenizer.json, config.json and preprocessor_config.json, when there is one */
    dir?: string;
    /** tokenizer.json, when present */
    tokenizer?: string;
    /** config.json (id2label, ...), parsed */
    config?: Record<string, unknown>;
    /** preprocessor_config.json (image size, mean, std, rescale factor; audio sampling_rate), parsed */
    preprocessor?: Record<string, unknown>;
}

/** Where each runtime looks for its model file inside a folder, in order. */
export const candidates: Record<ModelConfig['runtime'], string[]> = {
    onnx: ['model.onnx', 'onnx/model.onnx'],
    tfjs: ['model.json', 'tfjs/model.json']
};

const isFile = (p: string): boolean => fs.statSync(p, { throwIfNoEntry: false })?.isFile() ?? false;
const isDir = (p: string): boolean => fs.statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;

/** The model file a path names: the path itself, or the first candidate inside the folder. Throws why not. */
export function modelFile(model: ModelConfig): string {
    if (isFile(model.path)) {
        return model.path;
    }
    if (!isDir(model.path)) {
        throw new Error(`model file or folder not found: ${model.path}`);
    }
    const found = candidates[model.runtime].map((c) => path.join(model.path, c)).find(isFile);
    if (!found) {
        throw new Error(`model folder ${model.path} holds no ${candidates[model.runtime].join(' or ')} (runtime: ${model.runtime})`);
    }
    return found;
}

function readJson(file: string): Record<string, unknown> | undefined {
    if (!isFile(file)) {
        return undefined;
    }
    try {
        return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    }
    catch (err) {
        throw new Error(`${file} is not valid JSON: ${(err as Error).message}`);
    }
}

/** The model file and what its folder provides. A lone model file's own folder is not read: it may hold anything. */
export function modelFiles(model: ModelConfig): ModelFiles {
    const file = modelFile(model);
    if (file === model.path) {
        return { file };
    }
    const dir = model.path;
    const tokenizer = path.join(dir, 'tokenizer.json');
    return {
        file,
        dir,
        tokenizer: isFile(tokenizer) ? tokenizer : undefined,
        config: readJson(path.join(dir, 'config.json')),
        preprocessor: readJson(path.join(dir, 'preprocessor_config.json'))
    };
}

/** Every file a model is made of (the model file, or all files of its folder), for content hashing and watching. */
export function modelContent(model: ModelConfig): string[] {
    if (isFile(model.path)) {
        return [model.path];
    }
    const out: string[] = [];
    const walk = (dir: string, depth: number): void => {
        for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
            const p = path.join(dir, e.name);
            if (e.isDirectory() && depth < 2) {
                walk(p, depth + 1);
            }
            else if (isFile(p)) {
                out.push(p);
            }
        }
    };
    walk(model.path, 0);
    return out;
}
