// Deterministic ONNX model factories for tests, examples and benchmarks.
// Every random weight comes from a seeded mulberry32 stream, so the same
// options always yield byte-identical models.
import { Graph } from './onnx-builder';

/** mulberry32 PRNG: uniform floats in [0, 1). */
export function mulberry32(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = Math.imul(a ^ (a >>> 15), a | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

/** `n` values uniform in [-limit, limit). */
function uniform(rand: () => number, n: number, limit: number): Float32Array {
    const out = new Float32Array(n);
    for (let k = 0; k < n; k++) out[k] = (rand() * 2 - 1) * limit;
    return out;
}

/** He-uniform weights (variance 2 / fanIn) keep ReLU activations at a stable scale. */
function he(rand: () => number, n: number, fanIn: number): Float32Array {
    return uniform(rand, n, Math.sqrt(6 / fanIn));
}

const int64 = (...v: number[]): BigInt64Array => BigInt64Array.from(v.map(BigInt));
const scalar = (v: number): Float32Array => Float32Array.of(v);

export interface MlpOptions {
    inputs?: number;
    hidden?: number;
    outputs?: number;
    seed?: number;
}

/** Row-major weights of mlp(): y = relu(x·w1 + b1)·w2 + b2. */
export interface MlpWeights {
    inputs: number;
    hidden: number;
    outputs: number;
    w1: Float32Array; // [inputs, hidden]
    b1: Float32Array; // [hidden]
    w2: Float32Array; // [hidden, outputs]
    b2: Float32Array; // [outputs]
}

export function mlpWeights({ inputs = 4, hidden = 16, outputs = 3, seed = 42 }: MlpOptions = {}): MlpWeights {
    const rand = mulberry32(seed);
    return {
        inputs,
        hidden,
        outputs,
        w1: he(rand, inputs * hidden, inputs),
        b1: uniform(rand, hidden, 0.1),
        w2: he(rand, hidden * outputs, hidden),
        b2: uniform(rand, outputs, 0.1),
    };
}

/** x float32 [batch, inputs] -> MatMul+Add -> Relu -> MatMul+Add -> y float32 [batch, outputs]. */
export function mlp(options: MlpOptions = {}): Uint8Array {
    const { inputs, hidden, outputs, w1, b1, w2, b2 } = mlpWeights(options);
    const g = new Graph('mlp').input('x', 'float32', ['batch', inputs]);
    let h = g.node('MatMul', ['x', g.initializer('w1', w1, [inputs, hidden])], ['xw1']);
    h = g.node('Add', [h, g.initializer('b1', b1, [hidden])], ['h1']);
    h = g.node('Relu', [h], ['relu1']);
    h = g.node('MatMul', [h, g.initializer('w2', w2, [hidden, outputs])], ['hw2']);
    g.node('Add', [h, g.initializer('b2', b2, [outputs])], ['y']);
    return g.output('y', 'float32', ['batch', outputs]).toBytes();
}

/** a, b float32 [batch, seq] -> sum = a + b [batch, seq], mean = mean of each row of a [batch, 1]. */
export function pairSeq(): Uint8Array {
    const g = new Graph('pair_seq').input('a', 'float32', ['batch', 'seq']).input('b', 'float32', ['batch', 'seq']);
    g.node('Add', ['a', 'b'], ['sum']);
    // Opset 17: ReduceMean still takes `axes` as an attribute (it became an input in opset 18).
    g.node('ReduceMean', ['a'], ['mean'], { axes: { ints: [1] }, keepdims: { i: 1 } });
    return g.output('sum', 'float32', ['batch', 'seq']).output('mean', 'float32', ['batch', 1]).toBytes();
}

/** x float32 [batch, 4] with a fixed batch size -> y = 2x, [batch, 4]. */
export function fixedBatch({ batch = 2 }: { batch?: number } = {}): Uint8Array {
    const g = new Graph('fixed_batch').input('x', 'float32', [batch, 4]);
    g.node('Mul', ['x', g.initializer('two', scalar(2), [])], ['y']);
    return g.output('y', 'float32', [batch, 4]).toBytes();
}

/** ids int64 [batch, 3] -> total = sum of each row as float32 [batch, 1]. */
export function intInput(): Uint8Array {
    const g = new Graph('int_input').input('ids', 'int64', ['batch', 3]);
    g.node('Cast', ['ids'], ['ids_f'], { to: { i: 1 } });
    // ReduceSum has taken `axes` as an int64 input since opset 13.
    g.node('ReduceSum', ['ids_f', g.initializer('axes', int64(1), [1])], ['total'], { keepdims: { i: 1 } });
    return g.output('total', 'float32', ['batch', 1]).toBytes();
}

/** x float32 [batch, 'n'] split into halves `left` and `right`: any n but 2 fails, so a warm-up on n = 1 does too. */
export function halves(): Uint8Array {
    const g = new Graph('halves').input('x', 'float32', ['batch', 'n']);
    g.node('Split', ['x', g.initializer('split', int64(1, 1), [2])], ['left', 'right'], { axis: { i: 1 } });
    g.node('Shape', ['x'], ['shape']); // an output that is not per row: every request gets it whole
    return g.output('left', 'float32', ['batch', 1]).output('right', 'float32', ['batch', 1]).output('shape', 'int64', [2]).toBytes();
}

/** ids int64 [batch, 1] -> y = table[ids] with table[i] = 10 * i, i < 10; an index out of range makes the run fail. */
export function lookup(): Uint8Array {
    const g = new Graph('lookup').input('ids', 'int64', ['batch', 1]);
    const table = g.initializer('table', Float32Array.from({ length: 10 }, (_, i) => 10 * i), [10]);
    g.node('Gather', [table, 'ids'], ['y'], { axis: { i: 0 } });
    return g.output('y', 'float32', ['batch', 1]).toBytes();
}

/**
 * A deliberately slow model: x float32 [batch, 1] -> y float32 [batch, 1] with y = x.
 * Each row is broadcast to a size×size matrix M filled with x, then `repeats` times
 * M = M · J where J is size×size filled with 1/size (a row-averaging matrix, so every
 * entry stays x), and finally y = mean(M). Cost: repeats · size³ multiply-adds per row.
 */
export function slow({ size = 512, repeats = 4 }: { size?: number; repeats?: number } = {}): Uint8Array {
    const g = new Graph('slow').input('x', 'float32', ['batch', 1]);
    const cube = g.initializer('cube', int64(-1, 1, 1), [3]);
    const square = g.initializer('square', int64(size, size), [2]);
    let m = g.node('Reshape', ['x', cube], ['x3']);
    m = g.node('Expand', [m, square], ['m0']); // [batch, size, size]
    const j = g.node('Expand', [g.initializer('inv', scalar(1 / size), []), square], ['j']);
    for (let r = 1; r <= repeats; r++) m = g.node('MatMul', [m, j], [`m${r}`]);
    m = g.node('ReduceMean', [m], ['mean'], { axes: { ints: [1, 2] }, keepdims: { i: 0 } });
    g.node('Reshape', [m, g.initializer('column', int64(-1, 1), [2])], ['y']);
    return g.output('y', 'float32', ['batch', 1]).toBytes();
}

/**
 * x float32 [batch, width] -> y = x + c: models of one kind that each answer differently, as a multiplexed
 * deployment's folder holds them (examples/multiplex.yaml, test/multiplex.test.ts).
 */
export function adder(c: number, width = 1): Uint8Array {
    const g = new Graph('adder').input('x', 'float32', ['batch', width]);
    g.node('Add', ['x', g.initializer('c', scalar(c), [])], ['y']);
    return g.output('y', 'float32', ['batch', width]).toBytes();
}

/**
 * ResNet-18 topology with seeded random He-scaled weights (batch norm folded into conv bias):
 * input float32 [batch, 3, 224, 224] -> logits float32 [batch, classes]. ~11.7M parameters.
 */
export function resnet18({ classes = 1000, seed = 18 }: { classes?: number; seed?: number } = {}): Uint8Array {
    const rand = mulberry32(seed);
    const g = new Graph('resnet18').input('input', 'float32', ['batch', 3, 224, 224]);

    const conv = (name: string, x: string, cin: number, cout: number, k: number, stride: number): string => {
        const w = g.initializer(`${name}.w`, he(rand, cout * cin * k * k, cin * k * k), [cout, cin, k, k]);
        const b = g.initializer(`${name}.b`, uniform(rand, cout, 0.01), [cout]);
        const p = (k - 1) >> 1;
        return g.node('Conv', [x, w, b], [name], {
            kernel_shape: { ints: [k, k] },
            strides: { ints: [stride, stride] },
            pads: { ints: [p, p, p, p] },
        });
    };
    const relu = (x: string): string => g.node('Relu', [x], [`${x}.relu`]);

    let x = relu(conv('conv1', 'input', 3, 64, 7, 2));
    x = g.node('MaxPool', [x], ['pool1'], {
        kernel_shape: { ints: [3, 3] },
        strides: { ints: [2, 2] },
        pads: { ints: [1, 1, 1, 1] },
    });
    let cin = 64;
    [64, 128, 256, 512].forEach((cout, stage) => {
        for (let block = 0; block < 2; block++) {
            const name = `layer${stage + 1}.${block}`;
            const stride = stage > 0 && block === 0 ? 2 : 1;
            const shortcut = cin === cout ? x : conv(`${name}.down`, x, cin, cout, 1, stride);
            const y = conv(`${name}.conv2`, relu(conv(`${name}.conv1`, x, cin, cout, 3, stride)), cout, cout, 3, 1);
            x = relu(g.node('Add', [y, shortcut], [`${name}.add`]));
            cin = cout;
        }
    });
    x = g.node('GlobalAveragePool', [x], ['gap']);
    x = g.node('Flatten', [x], ['flat'], { axis: { i: 1 } });
    const fcW = g.initializer('fc.w', he(rand, classes * 512, 512), [classes, 512]);
    const fcB = g.initializer('fc.b', uniform(rand, classes, 0.01), [classes]);
    g.node('Gemm', [x, fcW, fcB], ['logits'], { transB: { i: 1 } });
    return g.output('logits', 'float32', ['batch', classes]).toBytes();
}

/** The Open Inference Protocol's datatypes as ONNX names them, by the protocol's name (lowercase): one model input each. */
const oipTypes = {
    bool: 'bool', uint8: 'uint8', uint16: 'uint16', uint32: 'uint32', uint64: 'uint64', int8: 'int8', int16: 'int16', int32: 'int32',
    int64: 'int64', fp16: 'float16', fp32: 'float32', fp64: 'float64', bytes: 'string'
} as const;

/**
 * Every datatype of the Open Inference Protocol in and out: an input [batch, n] per datatype, named after it in
 * lowercase (`bool`, `uint8`, ..., `fp16`, `bytes`: an ONNX string tensor), each passed through Identity to
 * `<name>_out`.
 */
export function dtypes(): Uint8Array {
    const g = new Graph('dtypes');
    for (const [name, type] of Object.entries(oipTypes)) {
        g.input(name, type, ['batch', 'n']).output(`${name}_out`, type, ['batch', 'n']);
        g.node('Identity', [name], [`${name}_out`]);
    }
    return g.toBytes();
}

/**
 * The model of the Open Inference Protocol's example request: `input0` uint32 [2, 2] and `input1` bool [3] in,
 * `output0` float32 [3, 2] out, which the example's answer shows as [1.0, 1.1, 2.0, 2.1, 3.0, 3.1]. The protocol does
 * not say what the model computes: this one answers that table whatever its inputs. Its inputs share no batch
 * dimension (2 rows and 3), so a request to it runs alone.
 */
export function oipExample(): Uint8Array {
    const g = new Graph('mymodel').input('input0', 'uint32', [2, 2]).input('input1', 'bool', [3]);
    g.node('Constant', [], ['output0'], { value: { t: { data: Float32Array.of(1.0, 1.1, 2.0, 2.1, 3.0, 3.1), dims: [3, 2] } } });
    return g.output('output0', 'float32', [3, 2]).toBytes();
}
