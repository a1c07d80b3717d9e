// The TensorFlow.js runtime: backend selection, and real layers and graph models on the wasm backend.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { activate, chooseBackend, installed } from '../lib/runtimes/tfjs-backend';
import { load } from '../lib/runtimes';
import { info, near } from './helpers';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-tfjs-'));
const resources = { cpus: 1, gpus: 0 };

t.test('backend choice: tfjs-node-gpu for a GPU, then tfjs-node, then wasm; a GPU asked for and missing is said', async (t) => {
    const has = (...pkgs: string[]) => (p: string) => pkgs.includes(p);
    t.same(chooseBackend(1, has('@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node')), { pkg: '@tensorflow/tfjs-node-gpu', backend: 'tensorflow' });
    t.same(chooseBackend(0, has('@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node')), { pkg: '@tensorflow/tfjs-node', backend: 'tensorflow', notice: undefined },
        'no GPU asked for: the CPU build even when the GPU one is there');
    t.same(chooseBackend(0, has('@tensorflow/tfjs-node-gpu')), { pkg: '@tensorflow/tfjs-backend-wasm', backend: 'wasm', notice: undefined });
    t.match(chooseBackend(2, has('@tensorflow/tfjs-node')), { pkg: '@tensorflow/tfjs-node', notice: /resources.gpus=2 asked for a GPU, but @tensorflow\/tfjs-node-gpu is not installed; running @tensorflow\/tfjs-node on CPU/ });
    t.match(chooseBackend(1, has()), { pkg: '@tensorflow/tfjs-backend-wasm', backend: 'wasm', notice: /running @tensorflow\/tfjs with the wasm backend on CPU/ });
    t.equal(installed('@tensorflow/tfjs-backend-wasm'), true);
    t.equal(installed('@tensorflow/tfjs-not-a-package'), false);
    // CI cannot install tfjs-node (it downloads libtensorflow), so there it is wasm; a machine with it gets it.
    t.equal(chooseBackend(0).pkg, installed('@tensorflow/tfjs-node') ? '@tensorflow/tfjs-node' : '@tensorflow/tfjs-backend-wasm');
});

t.test('a layers model.json saved by tfjs loads from disk and answers like tfjs itself', async (t) => {
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 4, activation: 'relu' }), tf.layers.dense({ units: 2 })] });
    const folder = path.join(dir, 'layers');
    fs.mkdirSync(folder);
    await model.save(tf.io.withSaveHandler(async (a) => {
        fs.writeFileSync(path.join(folder, 'weights.bin'), Buffer.from(a.weightData as ArrayBuffer));
        fs.writeFileSync(path.join(folder, 'model.json'), JSON.stringify({
            format: 'layers-model', modelTopology: a.modelTopology, weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }]
        }));
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }));
    const session = await load({ runtime: 'tfjs', path: path.join(folder, 'model.json') }, resources);
    const chosen = chooseBackend(0);
    t.equal(session.backend, `tfjs ${chosen.backend} (${chosen.pkg})`);
    t.equal(session.notice, undefined);
    const [input] = session.signature.inputs;
    t.match(input, { type: 'float32', dims: ['batch', 3] });
    t.match(session.signature.outputs, [{ type: 'float32', dims: ['batch', 2] }]);
    const x = Float32Array.of(1, 2, 3, -1, 0.5, 2);
    const before = tf.memory().numTensors;
    const out = await session.run({ [input.name]: { type: 'float32', data: x, dims: [2, 3] } });
    t.equal(tf.memory().numTensors, before, 'run() leaves no tensors behind');
    const expected = await (model.predict(tf.tensor(x, [2, 3])) as tf.Tensor).data();
    const y = out[session.signature.outputs[0].name];
    t.same(y.dims, [2, 2]);
    t.ok(near(y.data as Float32Array, expected), 'the outputs tfjs gives', { found: Array.from(y.data as Float32Array), wanted: Array.from(expected) });
});

t.test('a graph model.json runs too, and a GPU asked for is refused clearly', async (t) => {
    const folder = path.join(dir, 'graph');
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 'w.bin'), Buffer.from(Float32Array.of(2, -1).buffer));
    const f32 = { type: 'DT_FLOAT' };
    fs.writeFileSync(path.join(folder, 'model.json'), JSON.stringify({
        format: 'graph-model',
        modelTopology: {
            node: [
                { name: 'x', op: 'Placeholder', attr: { dtype: f32, shape: { shape: { dim: [{ size: '-1' }, { size: '-1' }] } } } },
                { name: 'w', op: 'Const', attr: { dtype: f32, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: { dim: [{ size: '2' }, { size: '1' }] } } } } },
                { name: 'y', op: 'MatMul', input: ['x', 'w'], attr: { T: f32, transpose_a: { b: false }, transpose_b: { b: false } } }
            ],
            library: {}, versions: { producer: 1 }
        },
        weightsManifest: [{ paths: ['w.bin'], weights: [{ name: 'w', shape: [2, 1], dtype: 'float32' }] }]
    }));
    const session = await load({ runtime: 'tfjs', path: path.join(folder, 'model.json') }, { cpus: 1, gpus: 1 });
    t.match(session.notice, /asked for a GPU, but @tensorflow\/tfjs-node-gpu is not installed/);
    t.same(session.signature.inputs, [info('x', 'float32', ['batch', 'd1'])], 'unknown dims get names');
    t.same(session.signature.outputs, [info('y', 'float32', [])], 'a graph output of unknown shape and type');
    const out = await session.run({ x: { type: 'float32', data: Float32Array.of(1, 1, 3, 4), dims: [2, 2] } });
    t.same(Array.from(out.y.data as Float32Array), [1, 2]);
    t.same(out.y.dims, [2, 1]);
});

t.test('a model.json that is not one fails with the reason', async (t) => {
    const notJson = path.join(dir, 'bad.json');
    fs.writeFileSync(notJson, '{ nope');
    await t.rejects(load({ runtime: 'tfjs', path: notJson }, resources), /bad.json is not a TensorFlow.js model.json: .*JSON/);
    const noWeights = path.join(dir, 'bare.json');
    fs.writeFileSync(noWeights, JSON.stringify({ modelTopology: {} }));
    await t.rejects(load({ runtime: 'tfjs', path: noWeights }, resources), /it needs "modelTopology" and "weightsManifest"/);
});

t.test('a backend that fails to initialise is refused with its name (last: it leaves tfjs without a backend)', async (t) => {
    tf.registerBackend('broken', () => {
        throw new Error('no such device');
    });
    await t.rejects(activate({ pkg: '@tensorflow/tfjs-backend-wasm', backend: 'broken' as never }), /TensorFlow.js backend "broken" from @tensorflow\/tfjs-backend-wasm failed to initialise/);
});
