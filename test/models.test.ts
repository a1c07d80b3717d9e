import t from 'tap';
import * as ort from 'onnxruntime-node';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Graph, IR_VERSION, OPSET } from '../modelgen/onnx-builder';
import { adder, fixedBatch, intInput, mlp, mlpWeights, mulberry32, pairSeq, resnet18, slow } from '../modelgen/zoo';
import { repoRoot, writeModels } from '../modelgen/make';
import { near } from './helpers';

const ROOT = join(__dirname, '..');

function load(bytes: Uint8Array): Promise<ort.InferenceSession> {
    return ort.InferenceSession.create(Buffer.from(bytes), { intraOpNumThreads: 1, interOpNumThreads: 1 });
}

const f32 = (data: number[] | Float32Array, dims: number[]) => new ort.Tensor('float32', Float32Array.from(data), dims);
const values = (v: ort.OnnxValue): number[] => Array.from(v.data as Float32Array);
const meta = (list: readonly ort.InferenceSession.ValueMetadata[]) =>
    list.map((m) => (m.isTensor ? { name: m.name, type: m.type, shape: [...m.shape] } : m));

/** Asserts that actual is near expected (see near() in ./helpers); a failure shows the two. */
function close(tap: Pick<typeof t, 'ok'>, actual: number[], expected: number[], tol: number, msg: string): void {
    tap.ok(near(actual, expected, tol), `${msg} (rel tol ${tol})`, { found: actual, wanted: expected });
}

t.test('builder encodes every attribute kind, dtype and dim kind', async (t) => {
    const g = new Graph('kinds')
        .input('z', 'int32', ['n'])
        .output('z_out', 'int32', ['n'])
        .output('cf', 'float32', [])
        .output('cfs', 'float32', [2])
        .output('cis', 'int64', [3])
        .output('ct', 'int32', [3])
        .output('d2s', 'float32', [1, 1, 2, 2]);
    t.equal(g.node('Identity', ['z'], ['z_out']), 'z_out', 'node() returns its first output');
    g.node('Constant', [], ['cf'], { value_float: { f: 1.5 } });
    g.node('Constant', [], ['cfs'], { value_floats: { floats: [0.25, -2] } });
    g.node('Constant', [], ['cis'], { value_ints: { ints: [-1, 300, 2 ** 40] } });
    g.node('Constant', [], ['ct'], { value: { t: { data: Int32Array.of(7, -8, 9), dims: [3] } } });
    const src = g.initializer('src', Float32Array.of(1, 2, 3, 4), [1, 4, 1, 1]);
    g.node('DepthToSpace', [src], ['d2s'], { blocksize: { i: 2 }, mode: { s: 'CRD' } });
    const bytes = g.toBytes();
    t.same([...bytes.subarray(0, 2)], [0x08, IR_VERSION], 'ir_version is the first field');
    t.equal(OPSET, 17);

    const s = await load(bytes);
    t.same(meta(s.inputMetadata), [{ name: 'z', type: 'int32', shape: ['n'] }]);
    t.same(s.outputNames, ['z_out', 'cf', 'cfs', 'cis', 'ct', 'd2s']);
    const out = await s.run({ z: new ort.Tensor('int32', Int32Array.of(5, -6), [2]) });
    t.same([...(out.z_out.data as Int32Array)], [5, -6]);
    t.same(out.cf.dims, []);
    t.same(values(out.cf), [1.5]);
    t.same(values(out.cfs), [0.25, -2]);
    t.same([...(out.cis.data as BigInt64Array)], [-1n, 300n, 2n ** 40n]);
    t.same([...(out.ct.data as Int32Array)], [7, -8, 9]);
    t.same(out.d2s.dims, [1, 1, 2, 2]);
    t.same(values(out.d2s), [1, 2, 3, 4]);
});

t.test('mulberry32 is deterministic and in [0, 1)', async (t) => {
    const a = mulberry32(7);
    const b = mulberry32(7);
    const xs = Array.from({ length: 1000 }, () => a());
    t.same(xs, Array.from({ length: 1000 }, () => b()));
    t.same(xs.filter((x) => !(x >= 0 && x < 1)), [], 'none outside [0, 1)');
    t.not(xs[0], mulberry32(8)());
});

function mlpReference(x: number[], batch: number, w = mlpWeights()): number[] {
    const y: number[] = [];
    for (let r = 0; r < batch; r++) {
        const h = Array.from(w.b1, (b, j) => {
            let acc = b;
            for (let i = 0; i < w.inputs; i++) acc += x[r * w.inputs + i] * w.w1[i * w.hidden + j];
            return Math.max(0, acc);
        });
        for (let o = 0; o < w.outputs; o++) {
            let acc = w.b2[o];
            for (let j = 0; j < w.hidden; j++) acc += h[j] * w.w2[j * w.outputs + o];
            y.push(acc);
        }
    }
    return y;
}

t.test('mlp', async (t) => {
    t.same(mlp(), mlp({ seed: 42 }), 'deterministic, default seed 42');
    t.not(Buffer.compare(Buffer.from(mlp()), Buffer.from(mlp({ seed: 1 }))), 0, 'seed changes weights');

    const s = await load(mlp());
    t.same(meta(s.inputMetadata), [{ name: 'x', type: 'float32', shape: ['batch', 4] }]);
    t.same(meta(s.outputMetadata), [{ name: 'y', type: 'float32', shape: ['batch', 3] }]);
    const rand = mulberry32(3);
    const x = Array.from({ length: 5 * 4 }, () => rand() * 4 - 2);
    const { y } = await s.run({ x: f32(x, [5, 4]) });
    t.same(y.dims, [5, 3]);
    close(t, values(y), mlpReference(x, 5), 1e-5, 'y');

    const opts = { inputs: 3, hidden: 5, outputs: 2, seed: 9 };
    const s2 = await load(mlp(opts));
    t.same(meta(s2.outputMetadata), [{ name: 'y', type: 'float32', shape: ['batch', 2] }]);
    const x2 = [0.5, -1, 2];
    close(t, values((await s2.run({ x: f32(x2, [1, 3]) })).y), mlpReference(x2, 1, mlpWeights(opts)), 1e-5, 'y2');
});

t.test('pairSeq', async (t) => {
    const s = await load(pairSeq());
    t.same(meta(s.inputMetadata), [
        { name: 'a', type: 'float32', shape: ['batch', 'seq'] },
        { name: 'b', type: 'float32', shape: ['batch', 'seq'] },
    ]);
    t.same(meta(s.outputMetadata), [
        { name: 'sum', type: 'float32', shape: ['batch', 'seq'] },
        { name: 'mean', type: 'float32', shape: ['batch', 1] },
    ]);
    const a = [1, 2, 3, 4, 5, 9];
    const b = [10, 20, 30, 40, 50, 60];
    const out = await s.run({ a: f32(a, [2, 3]), b: f32(b, [2, 3]) });
    t.same(out.sum.dims, [2, 3]);
    t.same(values(out.sum), [11, 22, 33, 44, 55, 69]);
    t.same(out.mean.dims, [2, 1]);
    t.same(values(out.mean), [2, 6]);
});

t.test('fixedBatch', async (t) => {
    const s = await load(fixedBatch());
    t.same(meta(s.inputMetadata), [{ name: 'x', type: 'float32', shape: [2, 4] }]);
    t.same(meta(s.outputMetadata), [{ name: 'y', type: 'float32', shape: [2, 4] }]);
    const x = [1, -2, 3.5, 0, 5, 6, 7, -8.25];
    const { y } = await s.run({ x: f32(x, [2, 4]) });
    t.same(y.dims, [2, 4]);
    t.same(values(y), x.map((v) => v * 2));
    const s3 = await load(fixedBatch({ batch: 3 }));
    t.same(meta(s3.inputMetadata), [{ name: 'x', type: 'float32', shape: [3, 4] }]);
});

t.test('intInput', async (t) => {
    const s = await load(intInput());
    t.same(meta(s.inputMetadata), [{ name: 'ids', type: 'int64', shape: ['batch', 3] }]);
    t.same(meta(s.outputMetadata), [{ name: 'total', type: 'float32', shape: ['batch', 1] }]);
    const ids = new ort.Tensor('int64', BigInt64Array.of(1n, 2n, 3n, -4n, 100n, 7n), [2, 3]);
    const { total } = await s.run({ ids });
    t.same(total.dims, [2, 1]);
    t.same(values(total), [6, 103]);
});

t.test('slow: y = x', async (t) => {
    const small = await load(slow({ size: 8, repeats: 3 }));
    t.same(meta(small.inputMetadata), [{ name: 'x', type: 'float32', shape: ['batch', 1] }]);
    t.same(meta(small.outputMetadata), [{ name: 'y', type: 'float32', shape: ['batch', 1] }]);
    const x = [-3, 0.5, 0, 1234.5];
    const { y } = await small.run({ x: f32(x, [4, 1]) });
    t.same(y.dims, [4, 1]);
    close(t, values(y), x, 1e-5, 'size 8');

    const full = await load(slow());
    const out = await full.run({ x: f32([0.75], [1, 1]) });
    close(t, values(out.y), [0.75], 1e-3, 'size 512');
});

t.test('resnet18', async (t) => {
    const s = await load(resnet18());
    t.same(meta(s.inputMetadata), [{ name: 'input', type: 'float32', shape: ['batch', 3, 224, 224] }]);
    t.same(meta(s.outputMetadata), [{ name: 'logits', type: 'float32', shape: ['batch', 1000] }]);
    const rand = mulberry32(1);
    const x = Float32Array.from({ length: 3 * 224 * 224 }, () => rand() * 2 - 1);
    const { logits } = await s.run({ input: f32(x, [1, 3, 224, 224]) });
    t.same(logits.dims, [1, 1000]);
    const v = values(logits);
    t.same(v.filter((x) => !Number.isFinite(x)), [], 'finite');
    const distinct = new Set(v).size;
    t.ok(distinct > 100, `not degenerate: ${distinct} distinct values`);
});

t.test('make', async (t) => {
    t.equal(repoRoot(), ROOT);
    t.equal(repoRoot(join(ROOT, 'modelgen', 'nested')), ROOT, 'walks up from a missing folder');
    t.throws(() => repoRoot('/'), /no package.json above \//);

    const dir = t.testdir();
    // the MLP, and examples/multiplex.yaml's folder of models
    const made = ['mlp.onnx', 'adders/plus1.onnx', 'adders/plus10.onnx', 'adders/plus100.onnx'];
    t.same(writeModels(join(dir, 'out')), made.map((f) => join(dir, 'out', f)));
    t.same(new Uint8Array(readFileSync(join(dir, 'out', 'mlp.onnx'))), mlp());
    t.same(new Uint8Array(readFileSync(join(dir, 'out', 'adders', 'plus10.onnx'))), adder(10, 3));

    const cli = (...args: string[]) =>
        spawnSync(process.execPath, [...process.execArgv, join(ROOT, 'modelgen', 'make.ts'), ...args], { encoding: 'utf8' });
    const explicit = cli(join(dir, 'cli'));
    t.equal(explicit.status, 0, explicit.stderr);
    t.equal(explicit.stdout, made.map((f) => `wrote ${join(dir, 'cli', f)}\n`).join(''));
    const byDefault = cli();
    t.equal(byDefault.status, 0, byDefault.stderr);
    t.equal(byDefault.stdout, made.map((f) => `wrote ${join(ROOT, 'examples', 'models', f)}\n`).join(''));
});
