// ONNX Runtime adapter (onnxruntime-node). resources.cpus -> intra-op threads; gpus -> CUDA provider.
import * as ort from 'onnxruntime-node';
import type { Feeds } from '../tensor';
import type { TensorInfo } from '../signature';
import type { Loader, Session } from './runtime';

function info(m: ort.InferenceSession.ValueMetadata): TensorInfo {
    /* c8 ignore start - sequences and maps cannot be written by the fixture builder; they fail the load clearly */
    if (!m.isTensor) {
        throw new Error(`"${m.name}" is not a tensor: tsserve serves models whose inputs and outputs are tensors`);
    }
    /* c8 ignore stop */
    return { name: m.name, type: m.type, dims: [...m.shape] };
}

export const load: Loader = async (model, resources) => {
    const options: ort.InferenceSession.SessionOptions = {
        intraOpNumThreads: resources.cpus,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all'
    };
    let notice: string | undefined;
    if (resources.gpus > 0) {
        try {
            return await cuda(model.path, options);
        }
        catch (err) {
            notice = `resources.gpus=${resources.gpus} asked for CUDA, which is unavailable (${(err as Error).message.split('\n')[0]}); running on CPU`;
        }
    }
    return wrap(await ort.InferenceSession.create(model.path, { ...options, executionProviders: ['cpu'] }), 'onnxruntime cpu', notice);
};

/* c8 ignore start - needs a CUDA device and onnxruntime's CUDA binaries, which CI machines lack */
async function cuda(path: string, options: ort.InferenceSession.SessionOptions): Promise<Session> {
    return wrap(await ort.InferenceSession.create(path, { ...options, executionProviders: ['cuda'] }), 'onnxruntime cuda');
}
/* c8 ignore stop */

function wrap(s: ort.InferenceSession, backend: string, notice?: string): Session {
    return {
        signature: { inputs: s.inputMetadata.map(info), outputs: s.outputMetadata.map(info) },
        backend,
        notice,
        async run(feeds: Feeds) {
            const inputs = Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.type as never, t.data as never, t.dims)]));
            const outputs = await s.run(inputs);
            return Object.fromEntries(Object.entries(outputs).map(([k, v]) => {
                const t = v as ort.Tensor;
                return [k, { type: t.type, data: t.data as never, dims: [...t.dims] }];
            }));
        },
        release() {
            void s.release();
        }
    };
};
