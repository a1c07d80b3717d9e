// The Open Inference Protocol (KServe V2, REST) on a real `tsserve up`: server and model metadata, health and
// readiness, inference in JSON and in the binary extension (with no Content-Type, as clients send it), the request id
// echoed, outputs selected, errors in the protocol's form, and the same answer as the application route's. The
// protocol's own examples (test/fixtures/oip), byte for byte in the binary extension; every datatype in and out (half
// precision, BYTES); and text, image and audio deployments as V2 models.
import t from 'tap';
import http from 'node:http';
import path from 'node:path';
import fs from 'node:fs';
import { fixtures, held, serve, until, validOpenApi, type Served } from './helpers';
import { fromHalf, toHalf } from '../lib/tensor';
import { bytesOf, datatype, elements, raws, values } from './dtype-values';

const dir = fixtures();
const iris = path.join(__dirname, '..', 'examples', 'handlers', 'iris_handler.js');
const examples = path.join(__dirname, '..', 'examples');
const specs = path.join(__dirname, 'fixtures', 'oip');
let s: Served;

const config = `
max_cpus: 16
applications:
  - name: mlp
    deployments:
      - { name: model, model: { path: ./mlp.onnx }, batching: { max_batch_size: 8, batch_wait_timeout_s: 0.05 } }
  - name: duo
    route_prefix: /duo
    deployments:
      - { name: a, ingress: true, model: { path: ./mlp2.onnx } }
      - { name: ids, model_name: ids, model: { path: ./int.onnx } }
  - name: iris
    route_prefix: /iris
    deployments:
      - { name: model, handler: ${iris}, model: { path: ./mlp.onnx } }
  - name: cold
    route_prefix: /cold
    deployments:
      - { name: model, model: { path: ./mlp.onnx }, autoscaling_config: { min_replicas: 0, max_replicas: 1 } }
  - name: halves
    route_prefix: /halves
    deployments:
      - { name: model, model: { path: ./halves.onnx } }
  - name: mymodel
    deployments:
      - { name: model, model: { path: ./mymodel.onnx } }
  - name: dtypes
    deployments:
      - { name: model, model: { path: ./dtypes.onnx }, batching: { max_batch_size: 8, batch_wait_timeout_s: 0.05 } }
  - name: sentiment
    deployments:
      - { name: classifier, handler: text, model: { path: ${examples}/models/sentiment }, options: { top_k: 2 } }
      - { name: embedder, handler: text, model: { path: ${examples}/models/sentiment }, options: { task: embedding } }
    routes:
      - { path: /predict, deployment: classifier }
      - { path: /embed, deployment: embedder }
  - name: digits
    deployments:
      - { name: model, handler: image, model: { path: ${examples}/models/digits }, options: { top_k: 3 } }
  - name: tones
    deployments:
      - { name: model, handler: audio, model: { path: ${examples}/models/tones }, options: { top_k: 3 } }
`;

t.before(async () => {
    s = await serve(dir, `${config}
  - name: broken
    route_prefix: /broken
    deployments:
      - { name: model, model: { path: ./broken.onnx } }
`);
});
t.teardown(() => s?.stop());

/** A POST with exactly these headers (fetch would add a Content-Type): its status, headers and body's bytes. */
function send(route: string, body: Buffer | string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; bytes: Buffer }> {
    return new Promise((resolve, reject) => {
        const req = http.request(s.url + route, { method: 'POST', headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode as number, headers: res.headers, bytes: Buffer.concat(chunks) }));
        });
        req.on('error', reject);
        req.end(body);
    });
}

/** The same, answered as status and parsed JSON. */
async function raw(route: string, body: Buffer | string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
    const res = await send(route, body, headers);
    return { status: res.status, body: JSON.parse(res.bytes.toString()) };
}

/** A request in the binary extension: the JSON header, then these bytes (the Inference-Header-Content-Length header says where they start). */
function binary(header: unknown, ...chunks: Buffer[]): { body: Buffer; headers: Record<string, string> } {
    const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
    return { body: Buffer.concat([json, ...chunks]), headers: { 'inference-header-content-length': String(json.length) } };
}

/** An answer in the binary extension: its JSON header, and the bytes after it. */
function split(res: { headers: http.IncomingHttpHeaders; bytes: Buffer }): { header: any; rest: Buffer } {
    const n = Number(res.headers['inference-header-content-length']);
    return { header: JSON.parse(res.bytes.subarray(0, n).toString()), rest: res.bytes.subarray(n) };
}

/** BYTES elements read back from the binary extension's bytes. */
function readElements(bytes: Buffer): string[] {
    const out: string[] = [];
    for (let at = 0; at < bytes.length; at += 4 + bytes.readUInt32LE(at)) {
        out.push(bytes.toString('utf8', at + 4, at + 4 + bytes.readUInt32LE(at)));
    }
    return out;
}

/**
 * One of the protocol's example messages (test/fixtures/oip): its first line, its headers, its JSON body, and the
 * binary data the example stands for by a line `<N bytes of data for NAME tensor>`, as the sizes and names it gives.
 */
function message(file: string): { start: string; headers: Record<string, string>; json: string; data: Array<{ bytes: number; name: string }> } {
    const lines = fs.readFileSync(path.join(specs, file), 'utf8').trimEnd().split('\n');
    const body = lines.findIndex((l) => l.startsWith('{'));
    const placeholders = lines.findIndex((l) => l.startsWith('<'));
    const end = placeholders < 0 ? lines.length : placeholders;
    return {
        start: lines[0],
        headers: Object.fromEntries(lines.slice(1, body).map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()])),
        json: lines.slice(body, end).join('\n'),
        data: lines.slice(end).map((l) => /^<(\d+) bytes of data for (\w+) tensor>$/.exec(l) as RegExpExecArray).map((m) => ({ bytes: Number(m[1]), name: m[2] }))
    };
}

/** The replica of a deployment, by its application's name, as /-/status shows it. */
async function replicaOf(app: string): Promise<{ pid: number; inflight_requests: number }> {
    const status = (await s.get('/-/status')).body;
    return status.applications.find((a: { name: string }) => a.name === app).deployments[0].replicas[0];
}

const rows = [[0.5, -1.2, 3.0, 0.1], [1, 2, 3, 4]];
const v2 = (extra = {}) => JSON.stringify({ inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: rows.flat() }], ...extra });

t.test('server metadata and health; a model that failed to load is not ready, nor is the server', async (t) => {
    const meta = await s.get('/v2');
    t.equal(meta.status, 200);
    t.match(meta.body, { name: 'tsserve', version: String, extensions: ['binary_tensor_data'] });
    t.strictSame(meta.body.models, ['mlp', 'duo.a', 'ids', 'cold', 'halves', 'mymodel', 'dtypes', 'sentiment.classifier', 'sentiment.embedder', 'digits', 'tones', 'broken'],
        'model_name, else an application\'s one deployment by its name, else application.deployment; the built-in handlers (not iris, a handler of its own)');
    const live = await s.get('/v2/health/live');
    t.strictSame([live.status, live.body], [200, { live: true }]);
    t.strictSame([(await s.get('/v2/health/ready')).status, (await s.get('/v2/health/ready')).body], [503, { ready: false }], 'not ready: a model failed');
    t.strictSame([(await s.get('/v2/models/broken/ready')).status, (await s.get('/v2/models/broken/ready')).body], [503, { name: 'broken', ready: false }]);
    fs.writeFileSync(path.join(dir, 'serve.yaml'), config);
    await until(async () => (await s.get('/v2/health/ready')).status === 200, { what: () => `ready once the broken model is gone:\n${s.output()}` });
    t.strictSame((await s.get('/v2/health/ready')).body, { ready: true });
    t.strictSame((await s.get('/v2')).body.models, ['mlp', 'duo.a', 'ids', 'cold', 'halves', 'mymodel', 'dtypes', 'sentiment.classifier', 'sentiment.embedder', 'digits', 'tones'], 'and it is gone from the list');
});

t.test('model metadata and readiness, by name and by version', async (t) => {
    const status = (await s.get('/-/status')).body;
    const version = status.applications[0].deployments[0].version;
    const meta = await s.get('/v2/models/mlp');
    t.strictSame(meta.body, {
        name: 'mlp', versions: [version], platform: 'onnxruntime_onnx',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 4] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 3] }]
    }, 'from the model\'s own signature: a symbolic dimension is -1');
    t.strictSame((await s.get(`/v2/models/mlp/versions/${version}`)).body, meta.body, 'the running version');
    t.match((await s.get('/v2/models/ids')).body, { inputs: [{ name: 'ids', datatype: 'INT64', shape: [-1, 3] }] });
    t.strictSame((await s.get('/v2/models/mlp/ready')).body, { name: 'mlp', ready: true });
    t.equal((await s.get(`/v2/models/mlp/versions/${version}/ready`)).status, 200);
    const old = await s.get('/v2/models/mlp/versions/000000000000');
    t.equal(old.status, 404);
    t.match(old.body, { error: /has no version "000000000000"; it runs /, code: 'NOT_FOUND', request_id: String }, 'the protocol\'s error form');
    for (const name of ['nope', 'iris', '__proto__']) {
        const none = await s.get(`/v2/models/${name}`);
        t.equal(none.status, 404, `${name}: no such model (iris has a handler of its own)`);
        t.match(none.body, { error: /^no model/ });
    }
    const cold = await s.get('/v2/models/cold');
    t.equal(cold.status, 503, 'scaled to zero before any replica ran: no signature to tell yet');
    t.match(cold.body, { error: /is starting/, code: 'REPLICA_UNAVAILABLE' });
    t.strictSame((await s.get('/v2/models/cold/ready')).body, { name: 'cold', ready: true }, 'yet ready: a request wakes it');
});

t.test('inference: JSON, the same answer as the application route, with the id echoed', async (t) => {
    const route = await s.post('/mlp/predict', { inputs: { x: rows } });
    const y = route.body.outputs.y;
    for (const headers of [{}, { 'content-type': 'application/json' }, { 'content-type': 'text/plain' }] as Array<Record<string, string>>) {
        const a = await raw('/v2/models/mlp/infer', v2({ id: 'req-7' }), headers);
        t.equal(a.status, 200, `Content-Type ${JSON.stringify(headers)}`);
        t.strictSame(a.body, { model_name: 'mlp', model_version: String(a.body.model_version), id: 'req-7', outputs: [{ name: 'y', datatype: 'FP32', shape: [2, 3], data: y.flat() }] });
    }
    const version = (await raw('/v2/models/mlp/infer', v2())).body.model_version;
    const byVersion = await raw(`/v2/models/mlp/versions/${version}/infer`, v2({ outputs: [{ name: 'y' }] }));
    t.strictSame(byVersion.body.outputs[0].data, y.flat(), 'by version, the output asked for');
    t.notOk('id' in byVersion.body, 'no id sent, none echoed');
    const ids = await raw('/v2/models/ids/infer', JSON.stringify({ inputs: [{ name: 'ids', shape: [1, 3], datatype: 'INT64', data: [1, 2, 39] }] }));
    t.strictSame(ids.body.outputs, [{ name: 'total', datatype: 'FP32', shape: [1, 1], data: [42] }], 'another model of an application of two');
    const woken = await raw('/v2/models/cold/infer', v2());
    t.equal(woken.status, 200, 'a model scaled to zero is woken, as on its route');
});

t.test('inference: the binary extension, with no Content-Type', async (t) => {
    const route = await s.post('/mlp/predict', { inputs: { x: rows } });
    const header = JSON.stringify({ inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', parameters: { binary_data_size: 32 } }] });
    const body = Buffer.concat([Buffer.from(header), Buffer.from(new Float32Array(rows.flat()).buffer)]);
    const a = await raw('/v2/models/mlp/infer', body, { 'inference-header-content-length': String(Buffer.byteLength(header)) });
    t.equal(a.status, 200);
    t.strictSame(a.body.outputs[0].data, route.body.outputs.y.flat(), 'the same answer as the JSON route');
});

t.test('errors, in the protocol\'s form', async (t) => {
    const cases: Array<[string, string | Buffer, Record<string, string>, number, string]> = [
        ['/v2/models/mlp/infer', '{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}', {}, 400, 'INPUT_SHAPE_MISMATCH'],
        ['/v2/models/mlp/infer', '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3, 4]}]}', {}, 400, 'INPUT_DTYPE_MISMATCH'],
        ['/v2/models/mlp/infer', v2({ outputs: [{ name: 'zz' }] }), {}, 400, 'INVALID_BODY'],
        ['/v2/models/mlp/infer', '{"inputs": [', {}, 400, 'INVALID_JSON'],
        ['/v2/models/mlp/infer', 'null', {}, 400, 'INVALID_BODY'],
        ['/v2/models/mlp/infer', 'xx', { 'inference-header-content-length': '99' }, 400, 'INVALID_BODY'],
        ['/v2/models/mlp/infer', 'xx', { 'inference-header-content-length': '2' }, 400, 'INVALID_JSON'],
        ['/v2/models/nope/infer', v2(), {}, 404, 'NOT_FOUND'],
        ['/v2/models/iris/infer', v2(), {}, 404, 'NOT_FOUND']
    ];
    for (const [route, body, headers, status, code] of cases) {
        const a = await raw(route, body, headers);
        t.equal(a.status, status, `${route} ${String(body).slice(0, 40)}`);
        t.match(a.body, { error: String, code, request_id: String });
        t.notOk('message' in a.body || 'statusCode' in a.body, 'not tsserve\'s own form');
    }
});

t.test('one queue: V2 requests batch with each other, and count in metrics under their route', async (t) => {
    const count = (metrics: string, name: string) => Number(new RegExp(`${name}\\{application="mlp",deployment="model"\\} (\\d+)`).exec(metrics)?.[1]);
    const before = await (await fetch(`${s.url}/metrics`)).text();
    const answers = await Promise.all(Array.from({ length: 24 }, () => raw('/v2/models/mlp/infer', v2())));
    t.same(answers.map((a) => a.status), Array(24).fill(200));
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    t.match(metrics, /tsserve_http_requests_total\{route="\/v2\/models\/\{model\}\/infer",method="POST",status_code="200"\} \d+/, 'the route as declared, not the model\'s name');
    const batches = count(metrics, 'tsserve_deployment_inference_executions_total') - count(before, 'tsserve_deployment_inference_executions_total');
    const inferences = count(metrics, 'tsserve_deployment_inferences_total') - count(before, 'tsserve_deployment_inferences_total');
    t.equal(inferences, 24, 'each one an inference of the deployment');
    t.ok(batches < inferences, 'in fewer batches: they were batched', { batches, inferences });
});

t.test('binary outputs: all of them, or each as asked; the JSON header first, then the bytes in order', async (t) => {
    /** a binary answer's JSON header and the bytes after it */
    const split = async (res: Response) => {
        const bytes = Buffer.from(await res.arrayBuffer());
        const n = Number(res.headers.get('inference-header-content-length'));
        return { type: res.headers.get('content-type'), header: JSON.parse(bytes.subarray(0, n).toString()), rest: bytes.subarray(n) };
    };
    const x = { name: 'x', shape: [2, 2], datatype: 'FP32', data: [1, 2, 3, 4] };
    const post = (body: unknown) => fetch(`${s.url}/v2/models/halves/infer`, { method: 'POST', body: JSON.stringify(body) });
    const all = await split(await post({ inputs: [x], parameters: { binary_data_output: true } }));
    t.equal(all.type, 'application/octet-stream');
    t.strictSame(all.header.outputs, [
        { name: 'left', datatype: 'FP32', shape: [2, 1], parameters: { binary_data_size: 8 } },
        { name: 'right', datatype: 'FP32', shape: [2, 1], parameters: { binary_data_size: 8 } },
        { name: 'shape', datatype: 'INT64', shape: [2], parameters: { binary_data_size: 16 } }
    ]);
    t.strictSame([...new Float32Array(all.rest.buffer.slice(all.rest.byteOffset, all.rest.byteOffset + 16))], [1, 3, 2, 4], 'left, then right, little-endian float32');
    t.strictSame([...new BigInt64Array(all.rest.buffer.slice(all.rest.byteOffset + 16, all.rest.byteOffset + 32))], [2n, 2n], 'then shape, int64');
    const mixed = await split(await post({ inputs: [x], parameters: { binary_data_output: true }, outputs: [{ name: 'left', parameters: { binary_data: false } }, { name: 'shape' }] }));
    t.strictSame(mixed.header.outputs, [
        { name: 'left', datatype: 'FP32', shape: [2, 1], data: [1, 3] },
        { name: 'shape', datatype: 'INT64', shape: [2], parameters: { binary_data_size: 16 } }
    ], 'an output\'s own binary_data: false wins over binary_data_output');
    t.equal(mixed.rest.length, 16);
    const one = await split(await post({ inputs: [x], outputs: [{ name: 'right', parameters: { binary_data: true } }] }));
    t.strictSame(one.header.outputs, [{ name: 'right', datatype: 'FP32', shape: [2, 1], parameters: { binary_data_size: 8 } }], 'one output asked as binary');
    t.strictSame([...new Float32Array(one.rest.buffer.slice(one.rest.byteOffset, one.rest.byteOffset + 8))], [2, 4]);
});

t.test('the specification\'s JSON example, and its answer', async (t) => {
    const request = message('infer-request.http');
    t.equal(request.start, 'POST /v2/models/mymodel/infer HTTP/1.1');
    const headers = { 'content-type': request.headers['content-type'] };
    // the example's slip: input1 declares [ 3 ] and gives one value
    const verbatim = await raw('/v2/models/mymodel/infer', request.json, headers);
    t.strictSame([verbatim.status, verbatim.body.code, verbatim.body.error], [400, 'INPUT_SHAPE_MISMATCH', 'input "input1" declares shape [3], so "data" must be a flat array of 3 values'],
        'as printed, input1 is refused: 3 values declared, 1 given');
    const fixed = request.json.replace('"data" : [ true ]', '"data" : [ true, false, true ]');
    t.not(fixed, request.json);
    const answer = await raw('/v2/models/mymodel/infer', fixed, headers);
    t.equal(answer.status, 200);
    const response = message('infer-response.http');
    t.equal(response.start, 'HTTP/1.1 200 OK');
    // the example answer's slip: no comma after "id"
    t.throws(() => JSON.parse(response.json));
    const example = JSON.parse(response.json.replace('"id" : "42"\n', '"id" : "42",\n'));
    const { data, ...form } = example.outputs[0];
    t.match(answer.body, { model_name: 'mymodel', model_version: String, id: example.id, outputs: [form] }, 'the example\'s answer: id, and output0 as a [3, 2] FP32 tensor');
    t.strictSame(answer.body.outputs[0].data, [...Float32Array.from(data)], 'its values (the example\'s, as float32)');
    t.strictSame(Object.keys(answer.body.outputs[0]).sort(), Object.keys(example.outputs[0]).sort(), 'and nothing else');
    // two at once: a model with no batch dimension runs each alone
    const both = await Promise.all([raw('/v2/models/mymodel/infer', fixed), raw('/v2/models/mymodel/infer', fixed)]);
    t.strictSame(both.map((a) => a.body.outputs), [answer.body.outputs, answer.body.outputs]);
    t.equal((await s.post('/mymodel/predict', { inputs: { input0: [[1, 2], [3, 4]], input1: [true, false, true] } })).body.outputs.output0.flat().length, 6, 'and on its route');
});

t.test('tensor data nested or flat, as the specification shows them', async (t) => {
    const text = fs.readFileSync(path.join(specs, 'tensor-data.txt'), 'utf8');
    const [nested, flat] = [...text.matchAll(/"data" : (.*)/g)].map((m) => JSON.parse(m[1]));
    t.strictSame([nested, flat], [[[1, 2], [4, 5]], [1, 2, 4, 5]]);
    const infer = (data: unknown) => raw('/v2/models/halves/infer', JSON.stringify({ inputs: [{ name: 'x', shape: [2, 2], datatype: 'FP32', data }], outputs: [{ name: 'left' }] }));
    const [a, b] = [await infer(nested), await infer(flat)];
    t.strictSame(a.body.outputs, [{ name: 'left', datatype: 'FP32', shape: [2, 1], data: [1, 4] }]);
    t.strictSame(b.body.outputs, a.body.outputs, 'the same tensor');
    const wrong = await infer([[1, 2, 4, 5]]);
    t.strictSame([wrong.status, wrong.body.error], [400, 'input "x" declares shape [2, 2], but its nested "data" is [1, 4]']);
});

t.test('Triton\'s binary example, byte for byte, with its Content-Type and with none', async (t) => {
    const request = message('binary-request.http');
    t.strictSame(request.data, [{ bytes: 16, name: 'input0' }, { bytes: 3, name: 'input1' }]);
    const input0 = bytesOf(Uint32Array.of(1, 2, 3, 4));
    const input1 = Buffer.from([1, 0, 1]);
    t.strictSame([input0.length, input1.length], request.data.map((d) => d.bytes));
    const { body, headers } = binary(request.json, input0, input1);
    t.equal(request.headers['content-length'], '<xx+19>');
    t.equal(body.length, Number(headers['inference-header-content-length']) + 19, 'Content-Length: the header\'s length + 19');
    const response = message('binary-response.http');
    const example = JSON.parse(response.json);
    t.strictSame(response.data, [{ bytes: 24, name: 'output0' }]);
    const version = (await s.get('/v2/models/mymodel')).body.versions[0];
    // what the answer must be, to the byte: the JSON header, then output0's 24 bytes (little-endian float32)
    const header = Buffer.from(JSON.stringify({ model_name: 'mymodel', model_version: version, outputs: [{ name: 'output0', datatype: 'FP32', shape: [3, 2], parameters: { binary_data_size: 24 } }] }));
    const expected = Buffer.concat([header, bytesOf(Float32Array.of(1.0, 1.1, 2.0, 2.1, 3.0, 3.1))]);
    for (const type of [{ 'content-type': request.headers['content-type'] }, {}] as Array<Record<string, string>>) {
        const res = await send('/v2/models/mymodel/infer', body, { ...headers, ...type });
        t.equal(res.status, 200, `Content-Type ${JSON.stringify(type)}`);
        t.equal(res.headers['content-type'], response.headers['content-type']);
        t.equal(res.headers['inference-header-content-length'], String(header.length));
        t.equal(res.headers['content-length'], String(header.length + 24), 'Content-Length: <yy+24>');
        t.ok(res.bytes.equals(expected), 'every byte as expected', { found: res.bytes.toString('hex'), wanted: expected.toString('hex') });
        const { header: answer, rest } = split(res);
        t.match(answer, example, 'the example\'s header, model_name and model_version besides');
        t.equal(rest.length, 24);
    }
});

/** A JSON request to the dtypes model: every input, [rows, n], from `of`. */
const dtypesJson = (of: (name: string) => unknown[], shape = [2, 2], extra = {}) =>
    JSON.stringify({ inputs: Object.keys(values).map((name) => ({ name, shape, datatype: datatype(name), data: of(name) })), ...extra });

t.test('every datatype in and out as JSON, nested or flat, and the same values on the application route', async (t) => {
    const pairs = (v: unknown[]) => [v.slice(0, 2), v.slice(2)];
    // every other input nested, the rest flat
    const a = await raw('/v2/models/dtypes/infer', dtypesJson((name) => Object.keys(values).indexOf(name) % 2 ? pairs(values[name]) : values[name]));
    t.equal(a.status, 200);
    t.strictSame(a.body.outputs, Object.entries(values).map(([name, data]) => ({ name: `${name}_out`, datatype: datatype(name), shape: [2, 2], data })),
        'each datatype as sent: booleans for BOOL, strings for BYTES, half precision as its value');
    const route = await s.post('/dtypes/predict', { inputs: Object.fromEntries(Object.entries(values).map(([name, v]) => [name, pairs(v)])) });
    t.equal(route.status, 200);
    for (const o of a.body.outputs) {
        t.strictSame(route.body.outputs[o.name].flat(), o.name === 'bool_out' ? o.data.map(Number) : o.data, `${o.name}: the application route's values`);
    }
});

t.test('every datatype in and out in the binary extension, byte for byte; half precision\'s NaN and infinities as JSON', async (t) => {
    const names = Object.keys(raws);
    const header = { inputs: names.map((name) => ({ name, shape: [2, 2], datatype: datatype(name), parameters: { binary_data_size: raws[name].length } })), parameters: { binary_data_output: true } };
    const { body, headers } = binary(header, ...names.map((name) => raws[name]));
    const res = await send('/v2/models/dtypes/infer', body, headers);
    t.equal(res.status, 200);
    const { header: answer, rest } = split(res);
    t.strictSame(answer.outputs, names.map((name) => ({ name: `${name}_out`, datatype: datatype(name), shape: [2, 2], parameters: { binary_data_size: raws[name].length } })));
    t.ok(rest.equals(Buffer.concat(names.map((name) => raws[name]))), 'every output\'s bytes are its input\'s: UINT64 beyond 2^53, NaN and infinities, BYTES with their lengths');
    t.equal(res.headers['content-length'], String(res.bytes.length));
    t.strictSame(readElements(rest.subarray(rest.length - raws.bytes.length)), ['', '✓', '日', 'a'.repeat(300)]);
    // the same bytes, answered as JSON: half precision's values, NaN and infinity as null (JSON has neither)
    const asJson = binary({ ...header, parameters: {}, outputs: [{ name: 'fp16_out' }, { name: 'bytes_out' }] }, ...names.map((name) => raws[name]));
    const json = await send('/v2/models/dtypes/infer', asJson.body, asJson.headers);
    t.strictSame(JSON.parse(json.bytes.toString()).outputs, [
        { name: 'fp16_out', datatype: 'FP16', shape: [2, 2], data: [null, null, 2 ** -24, 0] },
        { name: 'bytes_out', datatype: 'BYTES', shape: [2, 2], data: ['', '✓', '日', 'a'.repeat(300)] }
    ]);
});

t.test('half precision from JSON numbers: rounded to the nearest, ties to even', async (t) => {
    const halves = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 65519, 65520, 1e6, -0.1, 1e-8, 3e-8, -0, 1023.9999999999999];
    const bits = [0x3c00, 0x3c02, 0x7bff, 0x7c00, 0x7c00, 0xae66, 0x0000, 0x0001, 0x8000, 0x6400];
    t.strictSame(halves.map(toHalf), bits, 'lib/tensor.ts toHalf');
    t.strictSame(bits.map(fromHalf), [1, 1.001953125, 65504, Infinity, Infinity, -0.0999755859375, 0, 2 ** -24, -0, 1024]);
    const of = (name: string) => name === 'fp16' ? halves : name === 'bytes' ? Array(10).fill('') : name === 'bool' ? Array(10).fill(false) : Array(10).fill(0);
    // -0 does not survive JSON.stringify: written by hand
    const body = dtypesJson(of, [1, 10], { outputs: [{ name: 'fp16_out', parameters: { binary_data: true } }] }).replace('65519,65520,1000000,-0.1,1e-8,3e-8,0,', '65519,65520,1000000,-0.1,1e-8,3e-8,-0,');
    t.match(body, /,-0,/);
    const res = await send('/v2/models/dtypes/infer', body);
    const { header, rest } = split(res);
    t.strictSame(header.outputs, [{ name: 'fp16_out', datatype: 'FP16', shape: [1, 10], parameters: { binary_data_size: 20 } }]);
    t.strictSame([...new Uint16Array(rest.buffer.slice(rest.byteOffset, rest.byteOffset + 20))], bits, 'the bits the model received and gave back');
});

t.test('BYTES and half precision: mistakes are 400s that say what is wrong', async (t) => {
    const one = (name: string, dt: string, data: unknown, shape = [1, 2]) => raw('/v2/models/dtypes/infer', JSON.stringify({ inputs: [{ name, shape, datatype: dt, data }] }));
    const bin = (bytes: Buffer, shape = [1, 2], size = bytes.length) => {
        const { body, headers } = binary({ inputs: [{ name: 'bytes', shape, datatype: 'BYTES', parameters: { binary_data_size: size } }] }, bytes);
        return raw('/v2/models/dtypes/infer', body, headers);
    };
    const cases: Array<[string, Promise<{ status: number; body: any }>, string, string]> = [
        ['a number for BYTES', one('bytes', 'BYTES', [1, 2]), 'INPUT_DTYPE_MISMATCH', 'input "bytes" expects string values, received 1'],
        ['a string for FP16', one('fp16', 'FP16', ['x', 1]), 'INPUT_DTYPE_MISMATCH', 'input "fp16" expects float16 values, received "x"'],
        ['FP32 for an FP16 input', one('fp16', 'FP32', [1, 2]), 'INPUT_DTYPE_MISMATCH', 'input "fp16" expects float16, received datatype FP32'],
        ['FP32 for a BYTES input', one('bytes', 'FP32', [1, 2]), 'INPUT_DTYPE_MISMATCH', 'input "bytes" expects string, received datatype FP32'],
        ['an element longer than the data', bin(Buffer.concat([elements('abc'), Buffer.from([9, 0, 0, 0, 1])])), 'INVALID_BODY', 'input "bytes": its BYTES element 2 runs past the end of its binary data (each is a 4-byte little-endian length, then its bytes)'],
        ['a length cut short', bin(Buffer.concat([elements('abc'), Buffer.from([1, 0])])), 'INVALID_BODY', 'input "bytes": its BYTES element 2 runs past the end of its binary data (each is a 4-byte little-endian length, then its bytes)'],
        ['fewer elements than the shape', bin(elements('abc')), 'INPUT_SHAPE_MISMATCH', 'input "bytes" has 1 BYTES element(s), but its shape needs 2'],
        ['bytes beyond the elements', bin(Buffer.concat([elements('a', 'b'), Buffer.from([0])])), 'INPUT_SHAPE_MISMATCH', 'input "bytes" has 2 BYTES element(s) and bytes beyond them, but its shape needs 2'],
        ['binary_data_size beyond the body', bin(elements('a', 'b'), [1, 2], 100), 'INPUT_SHAPE_MISMATCH', 'input "bytes" has 10 bytes left in the body, but its binary_data_size is 100'],
        ['an element that is not UTF-8', bin(elements('a', Buffer.from([0xff, 0xfe]))), 'INPUT_DTYPE_MISMATCH', 'input "bytes": its BYTES element 2 is not UTF-8 text, which a string of the model must be'],
        ['a NUL character', raw('/v2/models/dtypes/infer', dtypesJson((name) => name === 'bytes' ? ['a\u0000b', '', '', ''] : values[name])), 'INPUT_DTYPE_MISMATCH', 'input "bytes" holds a NUL character, which would end its string in ONNX Runtime']
    ];
    for (const [what, answer, code, error] of cases) {
        const a = await answer;
        t.strictSame([a.status, a.body.code, a.body.error], [400, code, error], what);
    }
});

t.test('BYTES and half precision batch: rows of concurrent requests share a batch and come back to each', async (t) => {
    const replica = await replicaOf('dtypes');
    const request = (k: number) => dtypesJson((name) => name === 'bytes' ? [`${k}a`, `${k}b`, `${k}c`, `${k}d`] : name === 'fp16' ? [k, k + 0.5, -k, 0.25] : values[name]);
    // held: the first request is sent to the replica, the other two queue and then leave together
    const { answers } = await held(replica.pid, async () => {
        const sent = [1, 2, 3].map((k) => raw('/v2/models/dtypes/infer', request(k), {}));
        await until(async () => (await replicaOf('dtypes')).inflight_requests === 3, { what: 'three requests in flight' });
        return { answers: Promise.all(sent) };
    });
    const done = await answers;
    t.strictSame(done.map((a) => a.body.outputs.find((o: { name: string }) => o.name === 'bytes_out').data), [1, 2, 3].map((k) => [`${k}a`, `${k}b`, `${k}c`, `${k}d`]));
    t.strictSame(done.map((a) => a.body.outputs.find((o: { name: string }) => o.name === 'fp16_out').data), [1, 2, 3].map((k) => [k, k + 0.5, -k, 0.25]));
});

t.test('text, image and audio deployments as V2 models: BYTES in, one element per item, the answers of their routes', async (t) => {
    t.strictSame((await s.get('/v2/models/sentiment.classifier')).body, {
        name: 'sentiment.classifier', versions: [(await s.get('/v2/models/sentiment.classifier')).body.versions[0]], platform: 'onnxruntime_onnx',
        inputs: [{ name: 'text', datatype: 'BYTES', shape: [-1] }, { name: 'text_pair', datatype: 'BYTES', shape: [-1] }],
        outputs: [{ name: 'label', datatype: 'BYTES', shape: [-1] }, { name: 'score', datatype: 'FP64', shape: [-1] }, { name: 'json', datatype: 'BYTES', shape: [-1] }]
    });
    t.match((await s.get('/v2/models/sentiment.embedder')).body, { outputs: [{ name: 'embedding', datatype: 'FP64', shape: [-1, -1] }, { name: 'json', datatype: 'BYTES', shape: [-1] }] });
    t.match((await s.get('/v2/models/digits')).body, { inputs: [{ name: 'image', datatype: 'BYTES', shape: [-1] }], outputs: [{ name: 'label' }, { name: 'score' }, { name: 'json' }] });
    t.match((await s.get('/v2/models/tones')).body, { inputs: [{ name: 'audio', datatype: 'BYTES', shape: [-1] }] });

    const texts = ['I loved this film, it was wonderful', 'what a boring and awful movie'];
    const results = (await s.post('/sentiment/predict', { texts })).body.results;
    const asV2 = (r: Array<{ label: string; score: number }>) => [
        { name: 'label', datatype: 'BYTES', shape: [r.length], data: r.map((x) => x.label) },
        { name: 'score', datatype: 'FP64', shape: [r.length], data: r.map((x) => x.score) },
        { name: 'json', datatype: 'BYTES', shape: [r.length], data: r.map((x) => JSON.stringify(x)) }
    ];
    const json = await raw('/v2/models/sentiment.classifier/infer', JSON.stringify({ id: 't', inputs: [{ name: 'text', shape: [2], datatype: 'BYTES', data: texts }] }));
    t.strictSame(json.body, { model_name: 'sentiment.classifier', model_version: json.body.model_version, id: 't', outputs: asV2(results) }, 'the same answers as {"texts": [...]} on the route');
    // BYTES in binary, outputs in binary: each element its 4-byte length and UTF-8 bytes; FP64 raw
    const { body, headers } = binary({ inputs: [{ name: 'text', shape: [2], datatype: 'BYTES', parameters: { binary_data_size: elements(...texts).length } }], parameters: { binary_data_output: true } }, elements(...texts));
    const bin = split(await send('/v2/models/sentiment.classifier/infer', body, headers));
    const sizes = bin.header.outputs.map((o: { parameters: { binary_data_size: number } }) => o.parameters.binary_data_size);
    t.strictSame(readElements(bin.rest.subarray(0, sizes[0])), results.map((r: { label: string }) => r.label));
    t.strictSame([...new Float64Array(bin.rest.buffer.slice(bin.rest.byteOffset + sizes[0], bin.rest.byteOffset + sizes[0] + sizes[1]))], results.map((r: { score: number }) => r.score));
    t.strictSame(readElements(bin.rest.subarray(sizes[0] + sizes[1])), results.map((r: unknown) => JSON.stringify(r)));

    const pair = (await s.post('/sentiment/predict', { text: 'a fine film', text_pair: 'the pizza was cold' })).body;
    const paired = await raw('/v2/models/sentiment.classifier/infer', JSON.stringify({ inputs: [{ name: 'text', shape: [1], datatype: 'BYTES', data: ['a fine film'] }, { name: 'text_pair', shape: [1], datatype: 'BYTES', data: ['the pizza was cold'] }] }));
    t.strictSame(paired.body.outputs, asV2([pair]), 'a text pair, as {"text", "text_pair"}');
    const pairs = await raw('/v2/models/sentiment.classifier/infer', JSON.stringify({ inputs: [{ name: 'text', shape: [2], datatype: 'BYTES', data: ['a fine film', 'x'] }, { name: 'text_pair', shape: [2], datatype: 'BYTES', data: ['the pizza was cold', 'y'] }], outputs: [{ name: 'score' }] }));
    t.equal(pairs.body.outputs[0].data[0], pair.score, 'pairs, as {"texts": [[text, pair], ...]}');

    const embedding = (await s.post('/sentiment/embed', { text: texts[0] })).body.embedding;
    const embedded = await raw('/v2/models/sentiment.embedder/infer', JSON.stringify({ inputs: [{ name: 'text', shape: [1], datatype: 'BYTES', data: [texts[0]] }], outputs: [{ name: 'embedding' }] }));
    t.strictSame(embedded.body.outputs, [{ name: 'embedding', datatype: 'FP64', shape: [1, embedding.length], data: embedding }], 'an embedding: [items, width]');

    const seven = fs.readFileSync(path.join(examples, 'seven.png'));
    const three = fs.readFileSync(path.join(examples, 'three.jpg'));
    const form = new FormData();
    form.append('a', new Blob([seven]), 'seven.png');
    form.append('b', new Blob([three]), 'three.jpg');
    const images = ((await (await fetch(`${s.url}/digits/predict`, { method: 'POST', body: form })).json()) as { results: Array<{ label: string; score: number }> }).results;
    const both = elements(seven, three);
    const digits = binary({ inputs: [{ name: 'image', shape: [2], datatype: 'BYTES', parameters: { binary_data_size: both.length } }] }, both);
    t.strictSame((await raw('/v2/models/digits/infer', digits.body, digits.headers)).body.outputs, asV2(images), 'images as BYTES elements: the answers of the route\'s multipart files');
    const b64 = await raw('/v2/models/digits/infer', JSON.stringify({ inputs: [{ name: 'image', shape: [1], datatype: 'BYTES', data: [seven.toString('base64')] }] }));
    t.strictSame(b64.body.outputs, asV2([images[0]]), 'an image in JSON: its base64 text');
    const b64s = await raw('/v2/models/digits/infer', JSON.stringify({ inputs: [{ name: 'image', shape: [2], datatype: 'BYTES', data: [seven, three].map((b) => `data:image/png;base64,${b.toString('base64')}`) }], outputs: [{ name: 'label' }] }));
    t.strictSame(b64s.body.outputs[0].data, ['7', '3'], 'images in JSON, data: URLs too');
    const one = elements(seven);
    const single = binary({ inputs: [{ name: 'image', shape: [1], datatype: 'BYTES', parameters: { binary_data_size: one.length } }], outputs: [{ name: 'label' }] }, one);
    t.strictSame((await raw('/v2/models/digits/infer', single.body, single.headers)).body.outputs[0].data, ['7'], 'one image');

    const wav = fs.readFileSync(path.join(examples, 'tone-440hz.wav'));
    const tone = (await s.post('/tones/predict', wav, { 'content-type': 'audio/wav' })).body;
    const audio = binary({ inputs: [{ name: 'audio', shape: [1], datatype: 'BYTES', parameters: { binary_data_size: elements(wav).length } }], outputs: [{ name: 'json', parameters: { binary_data: true } }] }, elements(wav));
    t.strictSame(readElements(split(await send('/v2/models/tones/infer', audio.body, audio.headers)).rest), [JSON.stringify(tone)], 'a WAV file: the answer of its route');
});

t.test('text, image and audio: mistakes are 400s in the protocol\'s form', async (t) => {
    const text = (inputs: unknown[], extra = {}) => raw('/v2/models/sentiment.classifier/infer', JSON.stringify({ inputs, ...extra }));
    const el = (name: string, data: unknown[], shape = [data.length], dt = 'BYTES') => ({ name, shape, datatype: dt, data });
    const junk = elements('not an image');
    const image = binary({ inputs: [{ name: 'image', shape: [1], datatype: 'BYTES', parameters: { binary_data_size: junk.length } }] }, junk);
    const seven = fs.readFileSync(path.join(examples, 'seven.png'));
    const broken = elements(seven, seven.subarray(0, 300));
    const cut = binary({ inputs: [{ name: 'image', shape: [2], datatype: 'BYTES', parameters: { binary_data_size: broken.length } }] }, broken);
    const cases: Array<[string, Promise<{ status: number; body: any }>, string, RegExp | string]> = [
        ['an unknown input', text([el('texts', ['a'])]), 'INVALID_BODY', 'unknown input "texts"; the model\'s inputs are "text", "text_pair"'],
        ['not BYTES', text([el('text', [1], [1], 'FP32')]), 'INPUT_DTYPE_MISMATCH', 'input "text" expects datatype BYTES, received FP32'],
        ['a number', text([el('text', [1])]), 'INPUT_DTYPE_MISMATCH', 'input "text" expects string values, received 1'],
        ['shape [1, 1]', text([el('text', ['a'], [1, 1])]), 'INPUT_SHAPE_MISMATCH', 'input "text" expects shape [-1], received [1, 1]'],
        ['no element', text([el('text', [])]), 'INPUT_SHAPE_MISMATCH', 'input "text" expects shape [-1], received [0]: at least one row is needed'],
        ['a pair alone', text([el('text_pair', ['a'])]), 'INVALID_BODY', 'missing input "text"'],
        ['pairs short of texts', text([el('text', ['a', 'b']), el('text_pair', ['c'])]), 'INPUT_SHAPE_MISMATCH', 'input "text_pair" has 1 element(s), and "text" 2: one pair per text'],
        ['an unknown output', text([el('text', ['a'])], { outputs: [{ name: 'logits' }] }), 'INVALID_BODY', 'the model has no output "logits"; its outputs: label, score, json'],
        ['an empty text, refused by the handler', text([el('text', ['   '])]), 'INVALID_BODY', '"text" is empty'],
        ['not an image', raw('/v2/models/digits/infer', image.body, image.headers), 'INVALID_MEDIA', 'file part "image[0]" is not a JPEG, PNG, WebP, GIF, AVIF or TIFF image'],
        ['a PNG that does not decode, refused by the replica', raw('/v2/models/digits/infer', cut.body, cut.headers), 'INVALID_MEDIA', /^image 2 of 2 cannot be decoded/]
    ];
    for (const [what, answer, code, error] of cases) {
        const a = await answer;
        t.equal(a.status, 400, what);
        t.match(a.body, { error, code, request_id: String }, what);
    }
});

t.test('/openapi.json documents the V2 routes', async (t) => {
    const doc = (await s.get('/openapi.json')).body;
    await validOpenApi(t, doc);
    for (const p of ['/v2', '/v2/health/live', '/v2/health/ready', '/v2/models/{model}', '/v2/models/{model}/ready', '/v2/models/{model}/infer', '/v2/models/{model}/versions/{version}/infer']) {
        t.ok(doc.paths[p], p);
    }
    t.match(doc.paths['/v2/models/{model}/infer'].post.parameters[0].description, /one of: mlp, duo\.a, ids, cold, halves, mymodel, dtypes, sentiment\.classifier, sentiment\.embedder, digits, tones$/);
    t.match(doc.paths['/v2/models/{model}/infer'].post.requestBody.content['application/json'].schema.properties.inputs.items.properties.datatype.enum,
        ['FP32', 'FP64', 'INT8', 'UINT8', 'INT16', 'UINT16', 'INT32', 'UINT32', 'INT64', 'UINT64', 'BOOL', 'FP16', 'BYTES']);
    t.same(doc.paths['/dtypes/predict'].post.requestBody.content['application/json'].schema.properties.inputs.properties.bytes.items.items, { type: 'string' }, 'a string input takes strings on its route');
});
