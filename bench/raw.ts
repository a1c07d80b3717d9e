// The ceiling for figure 3: onnxruntime-node in this process, no HTTP, no copies, one batch size at a time.
import type * as Ort from 'onnxruntime-node';

export interface RawPoint {
    batch: number;
    runs: number;
    itemsPerSec: number;
}

export interface RawSession {
    /** `batch` copies of `item` back to back for `seconds`, after one warm-up run */
    measure(batch: number, seconds: number): Promise<RawPoint>;
    /** the model's first output for `item` alone, to check tsserve's answers against */
    first(): Promise<Float32Array>;
    release(): Promise<void>;
}

/** One session with the same options as lib/runtimes/onnx.ts. */
export async function openRaw(modelPath: string, item: Float32Array, itemDims: number[], threads: number): Promise<RawSession> {
    const ort: typeof Ort = require('onnxruntime-node');
    const session = await ort.InferenceSession.create(modelPath, {
        intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', executionProviders: ['cpu']
    });
    const [input] = session.inputNames;
    const [output] = session.outputNames;
    const feeds = (batch: number) => {
        const data = new Float32Array(batch * item.length);
        for (let i = 0; i < batch; i++) {
            data.set(item, i * item.length);
        }
        return { [input]: new ort.Tensor('float32', data, [batch, ...itemDims]) };
    };
    return {
        async measure(batch, seconds) {
            const f = feeds(batch);
            await session.run(f);
            const start = performance.now();
            let runs = 0;
            while (performance.now() - start < seconds * 1000) {
                await session.run(f);
                runs++;
            }
            return { batch, runs, itemsPerSec: batch * runs / ((performance.now() - start) / 1000) };
        },
        async first() {
            const y = (await session.run(feeds(1)))[output];
            return (y.data as Float32Array).slice();
        },
        release: () => session.release()
    };
}
