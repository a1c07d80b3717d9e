// The bulk channel (lib/bulk.ts): a batch's large arrays go to a replica process through a pipe beside its IPC
// channel. What is split off and what is not; and on a real `tsserve up`, every datatype's large tensors come back
// from an Identity model byte for byte, alone and batched with others, large and small mixed, on the application
// route and the Open Inference Protocol's, and the same as from an in-process replica (which shares them by reference).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { BulkReader, bulkMinBytes, splitBulk, writeBulk } from '../lib/bulk';
import { fixtures, serve, type Served } from './helpers';

t.test('splitBulk takes out large typed arrays and Buffers, and leaves the items as they were', async (t) => {
    const big = new Float32Array(bulkMinBytes / 4);
    const odd = Buffer.alloc(bulkMinBytes + 3, 1);
    const small = new Float32Array(4);
    const view = new DataView(new ArrayBuffer(bulkMinBytes));
    class Holder {
        data = new Float32Array(bulkMinBytes);
    }
    const holder = new Holder();
    const deep = { a: { b: { c: { d: { e: new Float32Array(bulkMinBytes) } } } } };
    const long = Array.from({ length: 17 }, () => new Float32Array(bulkMinBytes));
    const items = [{ feeds: { x: { type: 'float32', data: big, dims: [1, big.length] } } }, { file: odd, small }, view, holder, deep, long, 'text'];
    const before = JSON.stringify(items.map((i) => Object.keys(i)));
    const split = splitBulk(items);
    t.strictSame(split.arrays, [
        { path: [0, 'feeds', 'x', 'data'], ctor: 'Float32Array', offset: 0, length: big.length },
        { path: [1, 'file'], ctor: 'Buffer', offset: bulkMinBytes, length: bulkMinBytes + 3 }
    ], 'the large Float32Array and Buffer; not a small array, a DataView, a class instance\'s field, one 6 deep, nor one in a long array');
    t.equal(split.bytes, 2 * bulkMinBytes + 8, 'each padded to 8 bytes');
    t.equal(split.views[0], big);
    t.equal(split.views[1], odd);
    t.strictSame(split.items[0], { feeds: { x: { type: 'float32', data: null, dims: [1, big.length] } } });
    t.strictSame(split.items[1], { file: null, small });
    t.equal((split.items[1] as { small: unknown }).small, small, 'what is not split off is shared, not copied');
    t.equal(split.items[2], view);
    t.equal(split.items[3], holder);
    t.equal(split.items[4], deep);
    t.equal(split.items[5], long);
    t.equal((items[0] as { feeds: { x: { data: unknown } } }).feeds.x.data, big, 'the items themselves are untouched (a failed batch is sent again, elsewhere)');
    t.equal(JSON.stringify(items.map((i) => Object.keys(i))), before);
    t.strictSame(splitBulk([{ x: small }, 'a', 1, null]).arrays, [], 'nothing to split off: no bulk bytes');
});

t.test('every kind of array, written and read back: the same kind, the same values, aligned views of one buffer', async (t) => {
    const n = bulkMinBytes + 1;
    const fill = <T extends { length: number; [i: number]: number | bigint }>(a: T, f: (i: number) => number | bigint): T => {
        for (let i = 0; i < a.length; i++) {
            a[i] = f(i);
        }
        return a;
    };
    const arrays = [Buffer.alloc(n, 7), fill(new Uint8Array(n), (i) => i), fill(new Uint8ClampedArray(n), (i) => i), fill(new Int8Array(n), (i) => -i),
        fill(new Uint16Array(n), (i) => i * 3), fill(new Int16Array(n), (i) => -i), fill(new Uint32Array(n), (i) => i * 99991), fill(new Int32Array(n), (i) => -i * 7),
        fill(new Float32Array(n), (i) => i / 3), fill(new Float64Array(n), (i) => i / 7), fill(new BigInt64Array(n), (i) => BigInt(-i) * 2n ** 40n), fill(new BigUint64Array(n), (i) => BigInt(i) * 2n ** 50n)];
    // one item holds them in a list, the kind of item a handler may make
    const split = splitBulk([{ arrays }, arrays[0]]);
    t.equal(split.arrays.length, arrays.length + 1);
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    writeBulk(out, split);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-bulk-')), 'bytes');
    fs.writeFileSync(file, Buffer.concat(chunks));
    t.equal(fs.statSync(file).size, split.bytes);
    const fd = fs.openSync(file, 'r');
    t.teardown(() => fs.closeSync(fd));
    const items = structuredClone(split.items) as [{ arrays: unknown[] }, unknown];
    new BulkReader(fd).restore(0, items, split.arrays, split.bytes);
    items[0].arrays.forEach((a, i) => {
        t.equal(Object.getPrototypeOf(a), Object.getPrototypeOf(arrays[i]), `${arrays[i].constructor.name}: the same kind`);
        t.strictSame(a, arrays[i], `${arrays[i].constructor.name}: the same values`);
        t.equal((a as ArrayBufferView).byteOffset % 8, 0, 'aligned');
    });
    t.ok(Buffer.isBuffer(items[1]) && items[1].equals(arrays[0] as Buffer), 'a Buffer stays a Buffer');
});

t.test('a bulk channel that ends before a batch\'s bytes have all arrived is an error (the front process is gone)', async (t) => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-bulk-')), 'short');
    fs.writeFileSync(file, Buffer.alloc(100));
    const fd = fs.openSync(file, 'r');
    t.teardown(() => fs.closeSync(fd));
    const items = [{ data: null }];
    t.throws(() => new BulkReader(fd).restore(0, items, [{ path: [0, 'data'], ctor: 'Uint8Array', offset: 0, length: 200 }], 200), /the bulk channel closed/);
});

const dir = fixtures();
let s: Served;
t.before(async () => {
    s = await serve(dir, `
max_cpus: 16
applications:
  - name: proc
    deployments:
      - { name: model, model: { path: ./dtypes.onnx }, batching: { max_batch_size: 8, batch_wait_timeout_s: 0.05 } }
  - name: local
    deployments:
      - { name: model, in_process: true, model: { path: ./dtypes.onnx }, batching: { max_batch_size: 8, batch_wait_timeout_s: 0.05 } }
  - name: mlp
    deployments:
      - { name: model, model: { path: ./mlp.onnx }, batching: { max_batch_size: 16384, batch_wait_timeout_s: 0.05 } }
  - name: mlplocal
    deployments:
      - { name: model, in_process: true, model: { path: ./mlp.onnx }, batching: { max_batch_size: 16384, batch_wait_timeout_s: 0.05 } }
`);
});
t.teardown(() => s?.stop());

const types: Record<string, { bytes: number; datatype: string }> = {
    bool: { bytes: 1, datatype: 'BOOL' }, uint8: { bytes: 1, datatype: 'UINT8' }, uint16: { bytes: 2, datatype: 'UINT16' },
    uint32: { bytes: 4, datatype: 'UINT32' }, uint64: { bytes: 8, datatype: 'UINT64' }, int8: { bytes: 1, datatype: 'INT8' },
    int16: { bytes: 2, datatype: 'INT16' }, int32: { bytes: 4, datatype: 'INT32' }, int64: { bytes: 8, datatype: 'INT64' },
    fp16: { bytes: 2, datatype: 'FP16' }, fp32: { bytes: 4, datatype: 'FP32' }, fp64: { bytes: 8, datatype: 'FP64' }
};
const elements = (...xs: string[]) => Buffer.concat(xs.flatMap((x) => {
    const n = Buffer.alloc(4);
    n.writeUInt32LE(Buffer.byteLength(x));
    return [n, Buffer.from(x)];
}));

/** A V2 binary request for every datatype, [1, n] each, random bytes (0/1 for bool), and the bytes it holds. */
function request(n: number, seed: number): { body: Buffer; headers: Record<string, string>; data: Buffer } {
    let x = seed;
    const rand = () => (x = (x * 1103515245 + 12345) >>> 0) >>> 16 & 0xff;
    const raws = Object.entries(types).map(([name, { bytes }]) => {
        const b = Buffer.alloc(n * bytes);
        for (let i = 0; i < b.length; i++) {
            b[i] = name === 'bool' ? rand() & 1 : rand();
        }
        return b;
    });
    const strings = elements(...Array.from({ length: n }, (_, i) => `${seed}-${i}`));
    const inputs = [...Object.entries(types).map(([name, { datatype }], i) => ({ name, shape: [1, n], datatype, parameters: { binary_data_size: raws[i].length } })),
        { name: 'bytes', shape: [1, n], datatype: 'BYTES', parameters: { binary_data_size: strings.length } }];
    const header = Buffer.from(JSON.stringify({ inputs, parameters: { binary_data_output: true } }));
    const data = Buffer.concat([...raws, strings]);
    return { body: Buffer.concat([header, data]), headers: { 'inference-header-content-length': String(header.length) }, data };
}

/** The answer's binary outputs, after its JSON header. */
async function outputs(app: string, r: { body: Buffer; headers: Record<string, string> }): Promise<Buffer> {
    const res = await fetch(`${s.url}/v2/models/${app}/infer`, { method: 'POST', headers: r.headers, body: r.body });
    const bytes = Buffer.from(await res.arrayBuffer());
    if (res.status !== 200) {
        throw new Error(`${res.status}: ${bytes.toString()}`);
    }
    return bytes.subarray(Number(res.headers.get('inference-header-content-length')));
}

t.test('every datatype\'s large tensors through a replica process: the same bytes back, alone and batched, large and small mixed', async (t) => {
    // 40,000 elements: 40 KB for a byte type, 320 KB for an 8-byte one: every numeric input goes as bulk bytes (and
    // 40,001, padded to a multiple of 8)
    const alone = request(40_000, 1);
    t.ok((await outputs('proc', alone)).equals(alone.data), 'alone: every output is its input, byte for byte');
    // sent together, so that they are batched: their bulk bytes lie one after another in the replica's buffer
    const many = [request(40_000, 2), request(3, 3), request(40_001, 4), request(50_000, 5), request(40_000, 6)];
    const got = await Promise.all(many.map((r) => outputs('proc', r)));
    many.forEach((r, i) => t.ok(got[i].equals(r.data), `request ${i + 1} of 5 sent at once: its own bytes back`));
    const local = await Promise.all(many.map((r) => outputs('local', r)));
    many.forEach((_, i) => t.ok(local[i].equals(got[i]), `request ${i + 1}: the same bytes from an in-process replica`));
    // the buffers the replica reuses hold the earlier batches' bytes: none leaks into a later answer
    const again = request(40_000, 7);
    t.ok((await outputs('proc', again)).equals(again.data), 'a later request, on reused buffers: its own bytes');
});

t.test('a large JSON tensor on the application route: the same answer from a replica process as in-process', async (t) => {
    const n = 20_000;
    const inputs = Object.fromEntries([...Object.keys(types).map((name) => [name, [Array.from({ length: n }, (_, i) => name === 'bool' ? i % 3 === 0 : name === 'fp16' ? (i % 100) / 8 : name.startsWith('fp') ? i / 7 : i % 100)]]),
        ['bytes', [Array.from({ length: n }, (_, i) => `s${i}`)]]]);
    const [a, b] = await Promise.all([s.post('/proc/predict', { inputs }), s.post('/local/predict', { inputs })]);
    t.equal(a.status, 200);
    t.strictSame(a.body, b.body);
    t.strictSame(a.body.outputs.int32_out, inputs.int32);
});

t.test('a one-input model\'s large tensors batched: the batch is a view of the replica\'s buffer, and each answer its own', async (t) => {
    /** A V2 binary request of `rows` rows of mlp's 4 features; `pad` spaces after its JSON header shift its data's alignment. */
    const mlpRequest = (rows: number, seed: number, pad: number) => {
        const x = Float32Array.from({ length: rows * 4 }, (_, i) => Math.sin(seed * 1000 + i));
        const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [rows, 4], datatype: 'FP32', parameters: { binary_data_size: x.byteLength } }], parameters: { binary_data_output: true } }) + ' '.repeat(pad));
        return { body: Buffer.concat([header, Buffer.from(x.buffer)]), headers: { 'inference-header-content-length': String(header.length) } };
    };
    // 2,048 rows and more: 32 KiB and more each, so each goes as bulk bytes; data aligned for float32 in the body, or not
    const requests = [mlpRequest(2048, 1, 0), mlpRequest(2049, 2, 1), mlpRequest(4000, 3, 2), mlpRequest(2048, 4, 3)];
    const alone: Buffer[] = [];
    for (const r of requests) {
        alone.push(await outputs('mlplocal', r));
    }
    const together = await Promise.all(requests.map((r) => outputs('mlp', r)));
    requests.forEach((_, i) => t.ok(together[i].equals(alone[i]), `request ${i + 1} of 4 sent at once to replica processes: the answer it gets alone in-process, byte for byte`));
    t.equal(together[2].length, 4000 * 3 * 4, 'its own rows\' outputs');
});
