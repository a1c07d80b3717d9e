// Baseline servers for the bench, each a plain hapi server in its own process, on the same route as tsserve's.
// Usage: node build/bench/baselines.js echo --port N
//        node build/bench/baselines.js sink --port N   (POST /resnet/predict: takes the body, answers its size)
//        node build/bench/baselines.js ort <model.onnx> --port N   (one session, intraOpNumThreads 1, one run per request)
process.env.ORT_DISABLE_TELEMETRY = '1'; // before onnxruntime-node loads: its telemetry stalls processes here
import { parseArgs } from 'node:util';
import Hapi from '@hapi/hapi';
import type * as Ort from 'onnxruntime-node';

type Nested = number | Nested[];

async function main(): Promise<void> {
    const { values, positionals: [mode, model] } = parseArgs({ allowPositionals: true, options: { port: { type: 'string', default: '0' } } });
    const server = Hapi.server({ host: '127.0.0.1', port: Number(values.port) });
    const payload = { parse: true, output: 'data', maxBytes: 64 * 1024 * 1024 } as const;
    if (mode === 'echo') {
        server.route({ method: 'POST', path: '/mlp/predict', options: { payload }, handler: (request) => request.payload as object });
    }
    else if (mode === 'sink') {
        // Receives a body and answers its size: what any hapi front door pays for an upload (figure 3a's ceiling).
        server.route({ method: 'POST', path: '/resnet/predict', options: { payload }, handler: (request) => ({ bytes: (request.payload as Buffer).length }) });
    }
    else if (mode === 'ort') {
        const ort: typeof Ort = require('onnxruntime-node');
        const session = await ort.InferenceSession.create(model, {
            intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all', executionProviders: ['cpu']
        });
        const [input] = session.inputNames;
        const [output] = session.outputNames;
        server.route({
            method: 'POST', path: '/mlp/predict', options: { payload },
            handler: async (request) => {
                const x = (request.payload as { inputs: Record<string, Nested[]> }).inputs[input];
                const dims: number[] = [];
                for (let v: Nested = x; Array.isArray(v); v = v[0]) {
                    dims.push(v.length);
                }
                const flat = new Float32Array(dims.reduce((a, b) => a * b, 1));
                let at = 0;
                const walk = (v: Nested): void => {
                    if (Array.isArray(v)) {
                        v.forEach(walk);
                    }
                    else {
                        flat[at++] = v;
                    }
                };
                walk(x);
                const feeds = { [input]: new ort.Tensor('float32', flat, dims) };
                const y = (await session.run(feeds))[output];
                const data = y.data as Float32Array;
                const width = y.dims[1] ?? 1;
                const rows = Array.from({ length: y.dims[0] }, (_, r) => Array.from(data.subarray(r * width, (r + 1) * width)));
                return { outputs: { [output]: rows } };
            }
        });
    }
    else {
        throw new Error(`unknown mode "${mode}" (echo | sink | ort)`);
    }
    await server.start();
    process.stdout.write(`baseline ${mode} listening on ${server.info.uri}\n`);
    process.once('SIGTERM', () => server.stop({ timeout: 2000 }).then(() => process.exit(0)));
}

main().catch((err: Error) => {
    process.stderr.write(`${err.stack}\n`);
    process.exit(1);
});
