// End to end: a real `tsserve up` process, real replica processes, real HTTP. Then the front door alone, in process
// through hapi's inject(): its admin routes, docs and error bodies need no model and no process.
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { createServer } from '../lib/http';
import { Controller } from '../lib/controller';
import { ConfigWatcher } from '../lib/watcher';
import { fixtures, serve, cliHere, app, held, near, until, validOpenApi, type Served } from './helpers';
import type { ServeConfig } from '../schemas/serve';

const dir = fixtures();
const tsserve = cliHere();

const yaml = `http_options: { host: 127.0.0.1, port: 8000, request_timeout_s: 20 }
applications:
${app('mlp', 'mlp.onnx', `num_replicas: 2
batching: { max_batch_size: 8, batch_wait_timeout_s: 0.005 }`)}
${app('pair', 'pair.onnx', 'batching: { max_batch_size: 16, batch_wait_timeout_s: 0.01 }')}
${app('fixed', 'fixed.onnx', 'resources: { cpus: 1, gpus: 1 }')}
${app('ints', 'int.onnx')}
${app('broken', 'broken.onnx')}
${app('halves', 'halves.onnx')}
${app('batched', 'mlp.onnx', 'batching: { max_batch_size: 8, batch_wait_timeout_s: 60 }\nhealth_check_timeout_s: 600')}
  - name: multi
    route_prefix: /
    deployments:
      - { name: a, model: { path: ./mlp.onnx } }
      - { name: b, model: { path: ./mlp2.onnx } }
    routes:
      - { path: /first, deployment: a }
      - { path: /second, method: PUT, deployment: b }
`;

/** Rows of random values, and what onnxruntime-node itself answers for them. */
async function direct(model: string, rows: number[][]): Promise<number[][]> {
    const session = await ort.InferenceSession.create(path.join(dir, model));
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from(rows.flat()), [rows.length, rows[0].length]) });
    const y = Array.from(out.y.data as Float32Array);
    return rows.map((_, i) => y.slice(i * 3, i * 3 + 3));
}

const random = (n: number, width = 4) => Array.from({ length: n }, () => Array.from({ length: width }, () => Math.round((Math.random() * 4 - 2) * 1000) / 1000));

/** The replicas of one application's first deployment, as /-/status shows them. */
const replicas = async (s: Served, name: string): Promise<Array<{ pid: number; state: string; inflight_requests: number }>> =>
    (await s.get('/-/status')).body.applications.find((a: any) => a.name === name).deployments[0].replicas;

t.test('tsserve up serves every deployment declared in serve.yaml', async (t) => {
    const s = await serve(dir, yaml);
    t.teardown(() => s.stop());

    t.test('concurrent requests of different sizes each get their own rows, exactly as a direct onnxruntime run', async (t) => {
        const requests = Array.from({ length: 200 }, (_, i) => random(1 + (i % 5)));
        const expected = await direct('mlp.onnx', requests.flat());
        const answers = await Promise.all(requests.map((rows) => s.post('/mlp/predict', { inputs: { x: rows } })));
        let at = 0;
        for (const [i, a] of answers.entries()) {
            t.equal(a.status, 200);
            const want = expected.slice(at, at + requests[i].length);
            at += requests[i].length;
            t.equal(a.body.outputs.y.length, requests[i].length, 'as many rows out as in');
            t.ok(near(a.body.outputs.y.flat(), want.flat()), `request ${i} got its own rows`, { found: a.body.outputs.y, wanted: want });
        }
    });

    t.test('requests that wait together share a batch, and each gets its own row back', async (t) => {
        // The replica is stopped (SIGSTOP) while the requests arrive, so nothing it is sent can finish: what is in
        // flight on it stays there to be seen. A replica holds at most two batches (the one it runs and the next),
        // so more than two requests in flight on it means some of them were sent as one batch. With
        // batch_wait_timeout_s at 60, a second batch leaves only full (8 rows) while the first is held.
        const [replica] = await replicas(s, 'batched');
        const requests = Array.from({ length: 12 }, () => random(1));
        const { answers, holding } = await held(replica.pid, async () => {
            const answers = Promise.all(requests.map((rows) => s.post('/batched/predict', { inputs: rows })));
            const holding = await until(async () => {
                const [r] = await replicas(s, 'batched');
                return r.inflight_requests > 2 && r;
            }, { what: 'more than two requests in flight on the stopped replica' });
            return { answers, holding };
        });
        t.equal(holding.pid, replica.pid, 'the same replica, never restarted');
        const expected = await direct('mlp.onnx', requests.flat());
        for (const [i, a] of (await answers).entries()) {
            t.equal(a.status, 200);
            t.ok(near(a.body.outputs.y.flat(), expected[i]), `request ${i} got its own row`, { found: a.body.outputs.y[0], wanted: expected[i] });
        }
    });

    t.test('a request with more rows than max_batch_size is still answered correctly', async (t) => {
        const rows = random(21);
        const a = await s.post('/mlp/predict', { inputs: rows });
        t.equal(a.status, 200);
        const want = await direct('mlp.onnx', rows);
        t.ok(near(a.body.outputs.y.flat(), want.flat()), 'every row', { found: a.body.outputs.y, wanted: want });
    });

    t.test('requests whose symbolic dims differ never share a batch', async (t) => {
        const lens = Array.from({ length: 60 }, (_, i) => 1 + (i % 7));
        const answers = await Promise.all(lens.map((n, i) => {
            const a = Array.from({ length: n }, (_, k) => i + k);
            const b = Array.from({ length: n }, () => 1);
            return s.post('/pair/predict', { inputs: { a: [a], b: [b] } }).then((r) => ({ r, a }));
        }));
        for (const { r, a } of answers) {
            t.equal(r.status, 200);
            t.same(r.body.outputs.sum, [a.map((v) => v + 1)]);
            t.same(r.body.outputs.mean, [[a.reduce((x, y) => x + y, 0) / a.length]]);
        }
        const bad = await s.post('/pair/predict', { inputs: { a: [[1, 2]], b: [[1, 2, 3]] } });
        t.equal(bad.status, 400);
        t.equal(bad.body.code, 'INPUT_SHAPE_MISMATCH');
        t.match(bad.body.message, /dimension "seq" is 2 in another input/);
    });

    t.test('a model with a fixed first dimension is batched only up to it', async (t) => {
        const one = await s.post('/fixed/predict', { inputs: [[1, 2, 3, 4]] });
        t.equal(one.status, 200);
        t.same(one.body.outputs.y, [[2, 4, 6, 8]], 'padded to the fixed batch, then sliced back');
        const answers = await Promise.all([1, 2, 3, 4, 5].map((v) => s.post('/fixed/predict', { inputs: [[v, v, v, v]] })));
        t.same(answers.map((a) => a.body.outputs.y[0][0]), [2, 4, 6, 8, 10]);
        const three = await s.post('/fixed/predict', { inputs: [[1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]] });
        t.equal(three.status, 400);
        t.match(three.body.message, /at most 2 rows/);
    });

    t.test('int64 inputs take integers and refuse anything else', async (t) => {
        const ok = await s.post('/ints/predict', { inputs: { ids: [[1, 2, 3], [10, 20, 30]] } });
        t.same(ok.body.outputs.total, [[6], [60]]);
        const frac = await s.post('/ints/predict', { inputs: { ids: [[1.5, 2, 3]] } });
        t.equal(frac.status, 400);
        t.equal(frac.body.code, 'INPUT_DTYPE_MISMATCH');
        t.match(frac.body.message, /expects int64 values, received 1.5/);
    });

    t.test('a model whose warm-up fails still serves the inputs it takes', async (t) => {
        t.match(s.output(), /replica halves\/model#0: warm-up inference failed/);
        const r = await s.post('/halves/predict', { inputs: [[1, 2], [3, 4], [5, 6]] });
        t.same(r.body.outputs, { left: [[1], [3], [5]], right: [[2], [4], [6]], shape: [3, 2] }, 'an output that is not per row comes whole');
    });

    t.test('bad requests get a clear 4xx with a stable code, and nothing else is lost', async (t) => {
        // Malformed JSON, a content type hapi refuses and an unknown route need no model: see the in-process tests below.
        const cases: Array<[string, () => Promise<{ status: number; body: any }>, number, string, RegExp]> = [
            ['no inputs', () => s.post('/mlp/predict', { rows: [] }), 400, 'INVALID_BODY', /"inputs"/],
            ['inputs of the wrong kind', () => s.post('/mlp/predict', { inputs: 'x' }), 400, 'INVALID_BODY', /object of nested arrays/],
            ['wrong width', () => s.post('/mlp/predict', { inputs: { x: [[1, 2, 3]] } }), 400, 'INPUT_SHAPE_MISMATCH', /input "x" expects shape \[batch, 4\], received \[1, 3\]/],
            ['wrong rank', () => s.post('/mlp/predict', { inputs: { x: [1, 2, 3, 4] } }), 400, 'INPUT_SHAPE_MISMATCH', /received \[4\]/],
            ['no rows', () => s.post('/mlp/predict', { inputs: { x: [] } }), 400, 'INPUT_SHAPE_MISMATCH', /at least one row/],
            ['ragged', () => s.post('/mlp/predict', { inputs: { x: [[1, 2, 3, 4], [1, 2]] } }), 400, 'INPUT_SHAPE_MISMATCH', /ragged/],
            ['strings', () => s.post('/mlp/predict', { inputs: { x: [[1, 2, 3, 'four']] } }), 400, 'INPUT_DTYPE_MISMATCH', /expects float32 values, received "four"/],
            ['unknown input', () => s.post('/mlp/predict', { inputs: { x: [[1, 2, 3, 4]], z: [[1]] } }), 400, 'INVALID_BODY', /unknown input "z"/],
            ['missing input', () => s.post('/pair/predict', { inputs: { a: [[1]] } }), 400, 'INVALID_BODY', /missing input "b"/],
            ['array for a two-input model', () => s.post('/pair/predict', { inputs: [[1]] }), 400, 'INVALID_BODY', /2 inputs/],
            ['rows that differ between inputs', () => s.post('/pair/predict', { inputs: { a: [[1], [2]], b: [[1]] } }), 400, 'INPUT_SHAPE_MISMATCH', /same number of rows/],
            ['wrong method', () => s.get('/mlp/predict'), 405, 'METHOD_NOT_ALLOWED', /takes POST/],
            ['an image for a tensor route', () => s.post('/mlp/predict', Buffer.from('GIF89a'), { 'content-type': 'image/gif' }), 415, 'UNSUPPORTED_MEDIA_TYPE', /takes application\/json or application\/octet-stream .*, not image\/gif/]
        ];
        for (const [name, send, status, code, message] of cases) {
            const r = await send();
            t.equal(r.status, status, `${name}: status`);
            t.equal(r.body.code, code, `${name}: code`);
            t.match(r.body.message, message, `${name}: message`);
            t.same(Object.keys(r.body).slice(0, 4), ['statusCode', 'error', 'message', 'code'], `${name}: the one error body`);
        }
        const still = await s.post('/mlp/predict', { inputs: [[0, 0, 0, 0]] });
        t.equal(still.status, 200, 'the server keeps serving');
        const untyped = await new Promise<{ status: number; body: any }>((resolve, reject) => {
            // fetch() always names a type; node:http sends none unless told.
            const req = http.request(`${s.url}/mlp/predict`, { method: 'POST' }, (res) => {
                let text = '';
                res.on('data', (d) => text += d).on('end', () => resolve({ status: res.statusCode as number, body: JSON.parse(text) }));
            }).on('error', reject);
            req.end(JSON.stringify({ inputs: [[0, 0, 0, 0]] }));
        });
        t.same(untyped, { status: 200, body: still.body }, 'a body without a content type is taken as JSON, as hapi does');
    });

    t.test('the Open Inference Protocol JSON and binary tensor forms give the same answer', async (t) => {
        const rows = random(3);
        const want = (await s.post('/mlp/predict', { inputs: rows })).body;
        const oip = await s.post('/mlp/predict', { inputs: [{ name: 'x', shape: [3, 4], datatype: 'FP32', data: rows.flat() }] });
        t.same(oip.body, want);
        const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [3, 4], datatype: 'FP32', parameters: { binary_data_size: 48 } }] }));
        const data = Buffer.from(Float32Array.from(rows.flat()).buffer);
        const bin = await s.post('/mlp/predict', Buffer.concat([header, data]), { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) });
        t.same(bin.body, want);

        const bad: Array<[unknown, Record<string, string> | undefined, string, RegExp]> = [
            [{ inputs: [{ name: 'x', shape: [3, 4], datatype: 'FP32', data: [1, 2] }] }, undefined, 'INPUT_SHAPE_MISMATCH', /flat array of 12 values/],
            [{ inputs: [{ name: 'x', shape: [1, 4], datatype: 'INT32', data: [1, 2, 3, 4] }] }, undefined, 'INPUT_DTYPE_MISMATCH', /expects float32, received datatype INT32/],
            [{ inputs: [{ name: 'x', shape: [1, 4], datatype: 'FP17' }] }, undefined, 'INVALID_BODY', /datatype/],
            [Buffer.concat([header, data.subarray(4)]), { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) }, 'INPUT_SHAPE_MISMATCH', /has 44 bytes/],
            [data, { 'content-type': 'application/octet-stream' }, 'INVALID_BODY', /Inference-Header-Content-Length/],
            [Buffer.concat([Buffer.from('{nope'), data]), { 'content-type': 'application/octet-stream', 'inference-header-content-length': '5' }, 'INVALID_JSON', /inference header/]
        ];
        for (const [body, headers, code, message] of bad) {
            const r = await s.post('/mlp/predict', body, headers);
            t.equal(r.status, 400);
            t.equal(r.body.code, code);
            t.match(r.body.message, message);
        }
    });

    t.test('routes declared in serve.yaml dispatch to their deployments', async (t) => {
        const rows = random(2);
        const a = await s.post('/first', { inputs: rows });
        const b = await fetch(`${s.url}/second`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: rows }) }).then((r) => r.json()) as { outputs: { y: number[][] } };
        t.same(a.body.outputs.y.length, 2);
        t.notSame(a.body.outputs.y, b.outputs.y, 'a different model answers on /second');
        t.same(b.outputs.y.length, 2);
    });

    t.test('a model that fails to load is reported, and the others keep serving', async (t) => {
        const r = await s.post('/broken/predict', { inputs: [[1]] });
        t.equal(r.status, 503);
        t.equal(r.body.code, 'REPLICA_UNAVAILABLE');
        t.match(r.body.message, /model failed to load/);
        t.equal(r.headers.get('retry-after'), '1');
        const ready = await s.get('/-/ready');
        t.equal(ready.status, 503);
        const healthz = await s.get('/-/healthz');
        t.equal(healthz.body.status, 'ok');
        t.equal(healthz.headers.get('keep-alive'), 'timeout=65', 'idle connections are kept longer than clients keep theirs: the client closes first');
        t.match(s.output(), /replica broken\/model#0: model failed to load/);
    });

    t.test('status shows applications, deployments and replicas, as JSON and as a table', async (t) => {
        const status = (await s.get('/-/status')).body;
        t.equal(status.ready, false);
        const deps = Object.fromEntries(status.applications.flatMap((a: any) => a.deployments.map((d: any) => [`${a.name}/${d.name}`, d])));
        t.equal(deps['mlp/model'].status, 'RUNNING');
        t.equal(deps['mlp/model'].running_replicas, 2);
        t.same(deps['mlp/model'].replicas.map((r: any) => r.state), ['RUNNING', 'RUNNING']);
        t.equal(deps['broken/model'].status, 'UNHEALTHY');
        t.match(deps['broken/model'].last_error, /model failed to load/);
        t.match(deps['fixed/model'].replicas[0].notice, /asked for CUDA, which is unavailable.*running on CPU/);
        t.equal(deps['fixed/model'].replicas[0].backend, 'onnxruntime cpu');
        t.match(s.output(), /replica fixed\/model#0: resources.gpus=1 asked for CUDA/);
        const multi = status.applications.find((a: any) => a.name === 'multi');
        t.same(multi.routes, [{ method: 'POST', path: '/first', deployment: 'a' }, { method: 'PUT', path: '/second', deployment: 'b' }]);

        // `tsserve status` in this process (its subprocess entry point is test/cli.test.ts's)
        const table = await tsserve(['status', '--address', s.url]);
        t.equal(table.code, 0);
        t.match(table.stdout, /NOT READY/);
        t.match(table.stdout, /mlp \(\/mlp\)\s+model\s+RUNNING\s+2\/2/);
        t.match(table.stdout, /broken\/model#0\s+BACKOFF|broken\/model#0\s+STARTING/);
        const json = await tsserve(['status', '--address', s.url, '--json']);
        t.same(JSON.parse(json.stdout).applications.map((a: any) => a.name), ['mlp', 'pair', 'fixed', 'ints', 'broken', 'halves', 'batched', 'multi']);
    });

    t.test('/openapi.json is a valid OpenAPI document with the models\' real schemas', async (t) => {
        const doc = (await s.get('/openapi.json')).body;
        await validOpenApi(t, doc, 'passes a real OpenAPI validator');
        // validOpenApi() itself fails on a broken document, showing the validator's errors
        const seen: Array<{ found: any; wanted: unknown }> = [];
        const passed = await validOpenApi({ same: (found, wanted) => seen.push({ found, wanted }) > 0 && false },
            { ...doc, paths: { '/x': { post: { responses: { 200: { content: {} } } } } } });
        t.equal(passed, false);
        t.match(seen, [{ found: { valid: false, errors: [{ message: /must have required property 'description'/ }] }, wanted: { valid: true } }], 'the check does reject a broken document');
        const op = doc.paths['/mlp/predict'].post;
        const body = op.requestBody.content['application/json'];
        t.same(body.example, { inputs: { x: [[0, 0, 0, 0]] } });
        t.same(body.schema.properties.inputs.oneOf[1], {
            type: 'array', description: 'float32 [batch, 4]; the first dimension is the rows of the batch',
            items: { type: 'array', items: { type: 'number' }, minItems: 4, maxItems: 4 }
        });
        t.same(op.responses[200].content['application/json'].schema.properties.outputs.properties.y.items.maxItems, 3);
        t.same(Object.keys(doc.paths['/second']), ['put'], 'declared routes and methods');
        t.same(doc.paths['/ints/predict'].post.requestBody.content['application/json'].schema.properties.inputs.oneOf[1].items.items, { type: 'integer' });
        t.match(doc.paths['/broken/predict'].post.description, /unknown until a replica/);
        const example = await s.post('/mlp/predict', body.example);
        t.equal(example.status, 200, 'the documented example works');
    });
});

t.test('the front door in process: admin routes, docs and error bodies need no deployment', async (t) => {
    // A controller with no deployments, and a watcher on a file that it refuses (an application list must not be empty).
    const file = path.join(dir, 'empty.yaml');
    fs.writeFileSync(file, 'applications: []\n');
    const controller = new Controller();
    await controller.apply({ http_options: { host: '127.0.0.1', port: 0, request_timeout_s: 1, max_body_size_mb: 1 }, applications: [] } as ServeConfig, new Map());
    const server = createServer(controller, new ConfigWatcher(file, controller), { host: '127.0.0.1', port: 0, requestTimeoutMs: 1000, maxBytes: 1024 });
    const call = async (method: string, url: string, payload?: string | Buffer, headers: Record<string, string> = {}) => {
        const res = await server.inject({ method, url, payload, headers });
        const type = String(res.headers['content-type'] ?? '');
        return { status: res.statusCode, type, headers: res.headers, raw: res.rawPayload, body: /json/.test(type) ? JSON.parse(res.payload) : res.payload };
    };

    t.test('admin routes: alive, ready with nothing to wait for, status, and a reload that refuses the file', async (t) => {
        t.same((await call('GET', '/-/healthz')).body, { status: 'ok' });
        t.same((await call('GET', '/-/ready')).body, { ready: true });
        const reload = await call('POST', '/-/reload');
        t.equal(reload.status, 200);
        t.match(reload.body, { trigger: 'POST /-/reload', result: 'invalid', errors: [/^applications: .*at least 1/] });
        const status = await call('GET', '/-/status');
        t.match(status.body, { ready: true, applications: [], config: { file: 'empty.yaml', reloads: 1, last_reload: reload.body } }, 'serve.yaml by its name');
    });

    t.test('/openapi.json lists no path, and is still a valid document', async (t) => {
        const doc = (await call('GET', '/openapi.json')).body;
        await validOpenApi(t, doc);
        t.same(doc.paths, {});
        t.match(doc.servers, [{ url: /^http:\/\/\S+$/ }]);
    });

    t.test('/docs serves Swagger UI without a CDN', async (t) => {
        const page = await call('GET', '/docs');
        t.equal(page.status, 200);
        t.match(page.type, /^text\/html/);
        t.match(page.body, /SwaggerUIBundle\(\{ url: '\/openapi.json'/);
        t.notMatch(page.body, /https?:\/\//, 'nothing fetched from elsewhere');
        const swaggerDir = path.dirname(require.resolve('swagger-ui-dist/package.json'));
        const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
        for (const [name, type] of [['swagger-ui.css', 'text/css; charset=utf-8'], ['swagger-ui-bundle.js', 'application/javascript; charset=utf-8'], ['favicon-32x32.png', 'image/png']]) {
            const file = await call('GET', `/docs/${name}`);
            t.equal(file.status, 200, name);
            t.equal(file.type, type, `${name}: its type`);
            t.equal(file.headers['cache-control'], 'public, max-age=86400', `${name}: cached`);
            t.equal(sha(file.raw), sha(fs.readFileSync(path.join(swaggerDir, name))), `${name}: swagger-ui-dist's own file`);
        }
        t.match((await call('GET', '/docs/index.html')).body, { statusCode: 404, code: 'NOT_FOUND', message: 'no file /docs/index.html' }, 'only those files');
        t.match((await call('GET', '/docs/../../package.json')).body, { statusCode: 404, code: 'NOT_FOUND' }, 'nothing outside them');
    });

    t.test('every error, hapi\'s own included, has the one JSON body with a stable code', async (t) => {
        const json = { 'content-type': 'application/json' };
        const cases: Array<[string, () => ReturnType<typeof call>, object]> = [
            ['unknown route', () => call('GET', '/nope'), { statusCode: 404, error: 'Not Found', message: 'no route GET /nope; see /openapi.json', code: 'NOT_FOUND' }],
            ['unknown route, with a body', () => call('POST', '/nope/predict', '{"inputs": [[1, 2, 3, 4]]}', json), { statusCode: 404, error: 'Not Found', message: 'no route POST /nope/predict; see /openapi.json', code: 'NOT_FOUND' }],
            ['malformed JSON', () => call('POST', '/nope', '{"inputs": [[1, 2', json), { statusCode: 400, error: 'Bad Request', message: 'Invalid request payload JSON format', code: 'INVALID_JSON' }],
            ['a content type no route takes', () => call('POST', '/nope', 'x=1', { 'content-type': 'text/plain' }), { statusCode: 415, error: 'Unsupported Media Type', message: 'Unsupported Media Type', code: 'UNSUPPORTED_MEDIA_TYPE' }],
            ['a body over max_body_size_mb', () => call('POST', '/nope', JSON.stringify({ inputs: Array(1024).fill(0) }), json), { statusCode: 413, error: 'Request Entity Too Large', message: 'Payload content length greater than maximum allowed: 1024', code: 'PAYLOAD_TOO_LARGE' }],
            ['an image reaches routing as raw bytes', () => call('POST', '/nope', Buffer.from('GIF89a'), { 'content-type': 'image/gif' }), { statusCode: 404, code: 'NOT_FOUND' }]
        ];
        for (const [name, send, body] of cases) {
            const r = await send();
            t.match(r.type, /^application\/json/, `${name}: JSON`);
            t.match(r.body, body, name);
            t.same(Object.keys(r.body), ['statusCode', 'error', 'message', 'code', 'request_id'], `${name}: the one error body`);
        }
    });
});
