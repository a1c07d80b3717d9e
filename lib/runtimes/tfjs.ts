// TensorFlow.js adapter: loads a layers or graph model.json (and its weight files) from disk, no fetch involved.
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { activate, chooseBackend } from './tfjs-backend';
import type { Feeds, TypedArray } from '../tensor';
import type { TensorInfo } from '../signature';
import type { Loader } from './runtime';

interface ModelJson {
    format?: string;
    modelTopology: Record<string, unknown>;
    weightsManifest: Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }>;
    signature?: Record<string, unknown>;
    userDefinedMetadata?: Record<string, unknown>;
    modelInitializer?: Record<string, unknown>;
}

/** model.json with its weight shards joined, as tfjs's own loaders would hand it over. */
export function readArtifacts(file: string): tf.io.ModelArtifacts {
    let json: ModelJson;
    try {
        json = JSON.parse(fs.readFileSync(file, 'utf8')) as ModelJson;
    }
    catch (err) {
        throw new Error(`${file} is not a TensorFlow.js model.json: ${(err as Error).message}`);
    }
    if (!json.modelTopology || !Array.isArray(json.weightsManifest)) {
        throw new Error(`${file} is not a TensorFlow.js model.json: it needs "modelTopology" and "weightsManifest"`);
    }
    const shards = json.weightsManifest.flatMap((g) => g.paths.map((p) => fs.readFileSync(path.join(path.dirname(file), p))));
    const joined = Buffer.concat(shards);
    return {
        format: json.format,
        modelTopology: json.modelTopology,
        weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
        weightData: joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength),
        signature: json.signature as never,
        userDefinedMetadata: json.userDefinedMetadata as never,
        modelInitializer: json.modelInitializer as never
    };
}

const isGraph = (a: tf.io.ModelArtifacts): boolean => a.format === 'graph-model' || 'node' in (a.modelTopology as object);

/** A symbolic tensor's shape: unknown dims become names, the first one "batch". */
function info(name: string, shape: Array<number | null> | undefined, dtype: string): TensorInfo {
    return { name, type: dtype, dims: (shape ?? []).map((d, i) => d === null || d < 0 ? (i === 0 ? 'batch' : `d${i}`) : d) };
}

export const load: Loader = async (model, resources) => {
    const choice = chooseBackend(resources.gpus);
    await activate(choice);
    const artifacts = readArtifacts(model.path);
    let inputs: TensorInfo[];
    let outputs: TensorInfo[];
    let run: (feeds: tf.NamedTensorMap) => tf.Tensor[];
    /** the loaded model, whose weights release() disposes of */
    let loaded: { dispose(): unknown };
    if (isGraph(artifacts)) {
        const g = loaded = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
        inputs = g.inputs.map((i) => info(i.name, i.shape, i.dtype));
        outputs = g.outputs.map((o) => info(o.name, o.shape, o.dtype));
        run = (feeds) => [g.execute(feeds, outputs.map((o) => o.name))].flat();
    }
    else {
        const m = loaded = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
        inputs = m.inputs.map((i, k) => info(m.inputNames[k], i.shape, i.dtype));
        outputs = m.outputs.map((o, k) => info(m.outputNames[k], o.shape, o.dtype));
        run = (feeds) => [m.predict(inputs.map((i) => feeds[i.name]))].flat();
    }
    return {
        signature: { inputs, outputs },
        backend: `tfjs ${tf.getBackend()} (${choice.pkg})`,
        notice: choice.notice,
        async run(feeds: Feeds) {
            const results = tf.tidy(() => run(Object.fromEntries(inputs.map((i) => {
                const t = feeds[i.name];
                return [i.name, tf.tensor(t.data as never, t.dims, i.type as tf.DataType)];
            }))));
            try {
                const data = await Promise.all(results.map((r) => r.data()));
                return Object.fromEntries(outputs.map((o, k) => [o.name, { type: results[k].dtype, data: data[k] as TypedArray, dims: results[k].shape }]));
            }
            finally {
                tf.dispose(results);
            }
        },
        release() {
            loaded.dispose();
        }
    };
};
