// Writes the repo's generated example models.
// Usage: node dist/modelgen/make.js [outDir]   (default: <repo root>/examples/models)
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { adder, mlp } from './zoo';

const MODELS: Record<string, () => Uint8Array> = {
    'mlp.onnx': () => mlp(), // served by serve.yaml
    // a multiplexed deployment's folder of models, served by examples/multiplex.yaml
    'adders/plus1.onnx': () => adder(1, 3),
    'adders/plus10.onnx': () => adder(10, 3),
    'adders/plus100.onnx': () => adder(100, 3),
};

/** Nearest ancestor of `from` (inclusive) that holds a package.json. */
export function repoRoot(from: string = __dirname): string {
    let dir = resolve(from);
    while (!existsSync(join(dir, 'package.json'))) {
        if (dirname(dir) === dir) {
            throw new Error(`no package.json above ${from}`);
        }
        dir = dirname(dir);
    }
    return dir;
}

/** Writes every model into `dir` (atomically, so concurrent readers never see half a file); returns the paths. */
export function writeModels(dir: string): string[] {
    mkdirSync(dir, { recursive: true });
    return Object.entries(MODELS).map(([file, make]) => {
        const path = join(dir, file);
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(`${path}.${process.pid}.tmp`, make());
        renameSync(`${path}.${process.pid}.tmp`, path);
        return path;
    });
}

if (require.main === module) {
    for (const path of writeModels(process.argv[2] ?? join(repoRoot(), 'examples', 'models'))) console.log(`wrote ${path}`);
}
