// The Open Inference Protocol (KServe V2, REST) on a real `tsserve up`: server and model metadata, health and
// readiness, inference in JSON and in the binary extension (with no Content-Type, as clients send it), the request id
// echoed, outputs selected, errors in the protocol's form, and the same answer as the application route's.
import t from 'tap';
import http from 'node:http';
import path from 'node:path';
import fs from 'node:fs';
import { fixtures, serve, until, validOpenApi, type Served } from './helpers';

const dir = fixtures();
const iris = path.join(__dirname, '..', 'examples', 'handlers', 'iris_handler.js');
let s: Served;

const config = `
max_cpus: 8
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

/** A POST with exactly these headers (fetch would add a Content-Type), answered as status and parsed JSON. */
function raw(route: string, body: Buffer | string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
    return new Promise((resolve, reject) => {
        const req = http.request(s.url + route, { method: 'POST', headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode as number, body: JSON.parse(Buffer.concat(chunks).toString()) }));
        });
        req.on('error', reject);
        req.end(body);
    });
}

const rows = [[0.5, -1.2, 3.0, 0.1], [1, 2, 3, 4]];
const v2 = (extra = {}) => JSON.stringify({ inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: rows.flat() }], ...extra });

t.test('server metadata and health; a model that failed to load is not ready, nor is the server', async (t) => {
    const meta = await s.get('/v2');
    t.equal(meta.status, 200);
    t.match(meta.body, { name: 'tsserve', version: String, extensions: ['binary_tensor_data'] });
    t.strictSame(meta.body.models, ['mlp', 'duo.a', 'ids', 'cold', 'halves', 'broken'], 'model_name, else an application\'s one deployment by its name, else application.deployment; only tensor handlers');
    const live = await s.get('/v2/health/live');
    t.strictSame([live.status, live.body], [200, { live: true }]);
    t.strictSame([(await s.get('/v2/health/ready')).status, (await s.get('/v2/health/ready')).body], [503, { ready: false }], 'not ready: a model failed');
    t.strictSame([(await s.get('/v2/models/broken/ready')).status, (await s.get('/v2/models/broken/ready')).body], [503, { name: 'broken', ready: false }]);
    fs.writeFileSync(path.join(dir, 'serve.yaml'), config);
    await until(async () => (await s.get('/v2/health/ready')).status === 200, { what: () => `ready once the broken model is gone:\n${s.output()}` });
    t.strictSame((await s.get('/v2/health/ready')).body, { ready: true });
    t.strictSame((await s.get('/v2')).body.models, ['mlp', 'duo.a', 'ids', 'cold', 'halves'], 'and it is gone from the list');
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

t.test('/openapi.json documents the V2 routes', async (t) => {
    const doc = (await s.get('/openapi.json')).body;
    await validOpenApi(t, doc);
    for (const p of ['/v2', '/v2/health/live', '/v2/health/ready', '/v2/models/{model}', '/v2/models/{model}/ready', '/v2/models/{model}/infer', '/v2/models/{model}/versions/{version}/infer']) {
        t.ok(doc.paths[p], p);
    }
    t.match(doc.paths['/v2/models/{model}/infer'].post.parameters[0].description, /one of: mlp, duo\.a, ids, cold, halves/);
});
