// Composition on a real `tsserve up`: a handler that calls other deployments (ctx.deployment(name).call(body)),
// pipeline routes (each step's answer the next step's body), and GET routes taking their input from the query string.
// Answers equal the steps run by hand; each step batches on its own under concurrent load; a failing step, an
// undeclared call, a target's error give clean errors; the request id travels with a call; a call that outlasts the
// caller's batch deadline does not get the caller taken for a hang; a rolling update of the steps under load fails
// no request; the call graph shows in status and /openapi.json; a cycle is refused.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fixtures, near, serve, until, validOpenApi, type Served } from './helpers';
import { validate, ConfigError } from '../lib/config';
import { deploymentHandle, inBatch, answered } from '../lib/handle';
import { template } from '../lib/pipeline';
import { floorMs } from '../lib/run-times';
import type { FromWorker } from '../lib/messages';

const repo = path.join(__dirname, '..');
const dir = fixtures();
const sentiment = path.join(repo, 'examples', 'models', 'sentiment');
const review = path.join(repo, 'examples', 'handlers', 'review_handler.js');
for (const copy of ['head', 'head2']) {
    fs.mkdirSync(path.join(dir, copy));
    fs.copyFileSync(path.join(repo, 'examples', 'models', 'sentiment-head', 'model.onnx'), path.join(dir, copy, 'model.onnx'));
}
fs.cpSync(sentiment, path.join(dir, 'sentiment2'), { recursive: true });

// Calls `target` with `body` for each item, and answers what came back, or the error (thrown on when asked to).
fs.writeFileSync(path.join(dir, 'caller.js'), `
module.exports = (ctx) => {
    let answers = [];
    return {
        async preprocess(items, sig) {
            answers = await Promise.all(items.map(async (item) => {
                try {
                    const body = item.raw === undefined ? item.body : Buffer.from(item.raw);
                    return { answer: await ctx.deployment(item.target).call(body, { for: item, model: item.model }) };
                }
                catch (err) {
                    if (item.rethrow) {
                        throw err;
                    }
                    return { error: err.message, status: err.output.statusCode, code: err.data.code };
                }
            }));
            return { x: { type: 'float32', data: new Float32Array(items.length * 4), dims: [items.length, 4] } };
        },
        postprocess: (outputs, items) => answers
    };
};
`);
// Answers the request id it was called with and the body; fails when the body asks it to.
fs.writeFileSync(path.join(dir, 'echo.js'), `
module.exports = {
    parse: (req) => ({ rows: 1, key: '', item: { id: req.headers['x-request-id'], model: req.headers['serve_multiplexed_model_id'],
        body: Buffer.isBuffer(req.payload) ? { bytes: req.payload.toString(), type: req.contentType } : req.payload } }),
    preprocess(items) {
        if (items.some((i) => i.body.fail)) {
            throw new Error('echo was asked to fail');
        }
        return { x: { type: 'float32', data: new Float32Array(items.length * 4), dims: [items.length, 4] } };
    },
    postprocess: (outputs, items) => items.map((i) => ({ request_id: i.id, model: i.model, body: i.body }))
};
`);

// Takes as long as each call asks it to (test/fixtures/handlers/sleeper.js).
const sleeper = path.join(__dirname, 'fixtures', 'handlers', 'sleeper.js');

const batching = 'batching: { max_batch_size: 16, batch_wait_timeout_s: 0.05 }';
const config = (head: string, embedder: string) => `
max_cpus: 16
applications:
  - name: review
    route_prefix: /review
    deployments:
      - { name: embedder, handler: text, model: { path: ${embedder} }, options: { task: embedding, normalize: false }, ${batching} }
      - { name: head, model: { path: ./${head} }, ${batching} }
      - { name: classifier, handler: ${review}, model: { path: ${path.join(repo, 'examples', 'models', 'sentiment-head')} }, calls: [embedder] }
      - { name: caller, handler: ./caller.js, model: { path: ./mlp.onnx }, calls: [embedder, head, other/echo, other/sleeper] }
    routes:
      - { path: /logits, pipeline: [embedder, { deployment: head, input: { inputs: { embedding: ["$.embedding"] } } }] }
      - { path: /missing, pipeline: [embedder, { deployment: head, input: { inputs: { embedding: ["$.vector"] } } }] }
      - { path: /as-is, pipeline: [embedder, head] }
      - { path: /embed, deployment: embedder }
      - { path: /embed, method: GET, deployment: embedder }
      - { path: /head, deployment: head }
      - { path: /predict, deployment: classifier }
      - { path: /predict, method: GET, deployment: classifier }
      - { path: /call, deployment: caller }
      - { path: /call, method: GET, deployment: caller }
  - name: other
    route_prefix: /other
    deployments:
      - { name: echo, handler: ./echo.js, model: { path: ./mlp.onnx }, ingress: true }
      - { name: sleeper, handler: ${sleeper}, model: { path: ./mlp.onnx } }
`;

let s: Served;
t.before(async () => {
    s = await serve(dir, config('head', sentiment));
});
t.teardown(() => s?.stop());

const texts = ['a wonderful film, I loved it', 'boring and far too long', 'the plot was dull', 'brilliant acting', 'not good', 'great'];
const softmax = (v: number[]): number[] => {
    const e = v.map((x) => Math.exp(x - Math.max(...v)));
    return e.map((x) => x / e.reduce((a, b) => a + b, 0));
};

/** The steps by hand: the embedder's answer, then the head's on it. */
async function byHand(text: string): Promise<number[]> {
    const e = await s.post('/review/embed', { text });
    const h = await s.post('/review/head', { inputs: { embedding: [e.body.embedding] } });
    return h.body.outputs.logits[0];
}

t.test('a pipeline and a handler that calls another deployment answer as the steps run by hand', async (t) => {
    for (const text of texts) {
        const want = await byHand(text);
        const piped = await s.post('/review/logits', { text });
        t.equal(piped.status, 200);
        t.ok(near(piped.body.outputs.logits[0], want), `pipeline logits for ${JSON.stringify(text)}`);
        const p = softmax(want);
        const best = p.indexOf(Math.max(...p));
        const called = await s.post('/review/predict', { text });
        t.same({ status: called.status, label: called.body.label }, { status: 200, label: ['negative', 'positive'][best] });
        t.ok(near(called.body.score, p[best]), 'the score is the softmax of the logits by hand');
        const got = await s.get(`/review/predict?text=${encodeURIComponent(text)}`);
        t.same(got.body, called.body, 'GET with the text in the query string answers as the POST');
        const embedded = await s.get(`/review/embed?text=${encodeURIComponent(text)}`);
        t.same(embedded.body, (await s.post('/review/embed', { text })).body, 'the text handler takes GET ?text=...');
    }
});

/** What the deployment's counters say: batches answered and requests in them. */
async function counted(deployment: string): Promise<{ batches: number; requests: number }> {
    const text = (await s.get('/metrics')).body as string;
    const value = (name: string) => Number(new RegExp(`^${name}\\{application="review",deployment="${deployment}"\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
    return { batches: value('tsserve_deployment_inference_executions_total'), requests: value('tsserve_deployment_inferences_total') };
}

t.test('each step batches on its own under concurrent load', async (t) => {
    const before = { embedder: await counted('embedder'), head: await counted('head') };
    const answers = await Promise.all(Array.from({ length: 48 }, (_, i) => i % 2
        ? s.post('/review/logits', { text: texts[i % texts.length] })
        : s.post('/review/predict', { text: texts[i % texts.length] })));
    t.same(answers.map((a) => a.status), answers.map(() => 200));
    for (const name of ['embedder', 'head'] as const) {
        const now = await counted(name);
        const requests = now.requests - before[name].requests;
        const batches = now.batches - before[name].batches;
        t.equal(requests, name === 'embedder' ? 48 : 24, `${name}: every call and pipeline step is one of its requests`);
        t.ok(batches < requests, `${name}: ${requests} requests in ${batches} batches`);
    }
});

t.test('a failing step, an undeclared call and a target\'s error give clean errors', async (t) => {
    const first = await s.post('/review/logits', { txt: 'no text' });
    t.same([first.status, first.body.code], [400, 'INVALID_BODY'], 'the client\'s error at the first step is the client\'s');
    t.match(first.body.message, /^pipeline step 1 \("embedder"\): /);
    const missing = await s.post('/review/missing', { text: 'fine' });
    t.same([missing.status, missing.body.code], [500, 'PIPELINE_ERROR']);
    t.match(missing.body.message, /pipeline step 2 \("head"\).*"\$\.vector"/);
    const asIs = await s.post('/review/as-is', { text: 'fine' });
    t.same([asIs.status, asIs.body.code, asIs.body.details.step, asIs.body.details.cause], [500, 'PIPELINE_ERROR', 2, 'INVALID_BODY']);
    t.match(asIs.body.message, /pipeline step 2 \("head"\) refused the previous step's answer/);

    const undeclared = await s.post('/review/call', { target: 'classifier', body: { text: 'x' } });
    t.same(undeclared.body[0] ?? undeclared.body, { error: undeclared.body.error, status: 500, code: 'HANDLER_ERROR' });
    t.match(undeclared.body.error, /"review\/caller" called "classifier", which it does not declare/);
    const refused = await s.post('/review/call', { target: 'head', body: { inputs: { embedding: [[1, 2]] } } });
    t.same([refused.body.status, refused.body.code], [400, 'INPUT_SHAPE_MISMATCH'], 'the target\'s own error, with its status');
    t.match(refused.body.error, /^deployment "head": /);
    const thrown = await s.post('/review/call', { target: 'other/echo', body: { fail: true }, rethrow: true });
    t.same([thrown.status, thrown.body.code], [500, 'HANDLER_ERROR'], 'thrown on, the target\'s error answers the request');
    t.match(thrown.body.message, /deployment "other\/echo": handler echo\.js: echo was asked to fail/);
    const ok = await s.post('/review/predict', { text: 'still serving' });
    t.equal(ok.status, 200, 'and everything goes on serving');
});

t.test('a call carries the request\'s id, and the model it names for a multiplexed target', async (t) => {
    const a = await s.post('/review/call', { target: 'other/echo', body: { hello: 1 } }, { 'x-request-id': 'compose-1' });
    t.same(a.body, { answer: { request_id: 'compose-1', body: { hello: 1 } } });
    const b = await s.post('/review/call', { target: 'other/echo', body: { hello: 2 }, model: 'adder-10' }, { 'x-request-id': 'compose-2' });
    t.same(b.body, { answer: { request_id: 'compose-2', model: 'adder-10', body: { hello: 2 } } });
    const raw = await s.post('/review/call', { target: 'other/echo', raw: 'raw bytes' }, { 'x-request-id': 'compose-3' });
    t.same(raw.body, { answer: { request_id: 'compose-3', body: { bytes: 'raw bytes', type: 'application/octet-stream' } } }, 'a Buffer goes as raw bytes');
});

t.test('a batch waiting for its call past its deadline is not taken for a hang: its clock stops while the call is out', async (t) => {
    // The caller's version has finished batches by now (one here, should this test run alone): its batch deadline is
    // learnt (lib/run-times.ts), at the floor for batches this quick. Its replica's one timer fires by then, and, the
    // batch still waiting, is set again a deadline later; a call that outlasts two deadlines is sure to be out when
    // the timer fires past the batch's deadline, whatever timer was pending when the batch began. The sleeper has
    // finished no batch: its first has the first deadline, 30 s, and is not taken for a hang either.
    const sleepMs = 2 * floorMs + 1500;
    t.match((await s.post('/review/call', { target: 'other/echo', body: { warm: 1 } })).body, { answer: { body: { warm: 1 } } });
    const replicas = async () => {
        const apps = (await s.get('/-/status')).body.applications;
        const of = (app: string, name: string) => apps.find((a: { name: string }) => a.name === app).deployments.find((d: { name: string }) => d.name === name).replicas;
        return [...of('review', 'caller'), ...of('other', 'sleeper')].map((r: { id: string; pid: number; restarts: number; state: string }) => ({ id: r.id, pid: r.pid, restarts: r.restarts, state: r.state }));
    };
    const before = await replicas();
    const slept = await s.post('/review/call', { target: 'other/sleeper', body: { sleep_ms: sleepMs } });
    t.same([slept.status, slept.body], [200, { answer: { slept_ms: sleepMs } }], 'the call, longer than two of the caller\'s deadlines, is answered through it');
    t.same(await replicas(), before, 'neither replica was killed or restarted');
    t.notMatch(s.output(), /hung: a batch/, 'none was taken for a hang');
});

t.test('GET routes take the query string, as the handler declares', async (t) => {
    const empty = await s.get('/review/predict?text=');
    t.same([empty.status, empty.body.code], [400, 'INVALID_BODY']);
    t.match(empty.body.message, /^query string: /);
    const none = await s.get('/review/call?x=1');
    t.same([none.status, none.body.code], [405, 'METHOD_NOT_ALLOWED'], 'a handler without querySchema takes no GET');
});

t.test('the call graph and the pipelines show in status and /openapi.json', async (t) => {
    const status = (await s.get('/-/status')).body;
    const app = status.applications.find((a: { name: string }) => a.name === 'review');
    t.same(Object.fromEntries(app.deployments.map((d: { name: string; calls?: string[] }) => [d.name, d.calls])),
        { embedder: undefined, head: undefined, classifier: ['review/embedder'], caller: ['review/embedder', 'review/head', 'other/echo', 'other/sleeper'] });
    t.same(app.routes.find((r: { path: string }) => r.path === '/review/logits'), { method: 'POST', path: '/review/logits', deployment: 'embedder', pipeline: ['embedder', 'head'] });
    const doc = (await s.get('/openapi.json')).body;
    await validOpenApi(t, doc);
    t.same(doc.paths['/review/logits'].post['x-tsserve-pipeline'], ['review/embedder', 'review/head']);
    t.same(doc.paths['/review/predict'].post['x-tsserve-calls'], ['review/embedder']);
    t.same(doc.paths['/review/predict'].get.parameters, [{ name: 'text', in: 'query', required: true, schema: { type: 'string' }, description: 'the review' }]);
    t.notOk(doc.paths['/review/predict'].get.requestBody, 'a GET has no body');
    t.same(doc.paths['/review/call'].get.parameters, [], 'a handler without querySchema: no parameters');
});

t.test('a rolling update of the steps under load fails no request', async (t) => {
    const before = (await s.get('/-/status')).body.config.version;
    let running = true;
    let done = 0;
    const failures: string[] = [];
    const client = async (c: number) => {
        for (let i = 0; running; i++) {
            const text = texts[(c + i) % texts.length];
            const a = await (c % 2 ? s.post('/review/logits', { text }) : s.post('/review/predict', { text }));
            if (a.status !== 200) {
                failures.push(`${a.status} ${JSON.stringify(a.body)}`);
            }
            done++;
        }
    };
    const clients = Array.from({ length: 6 }, (_, c) => client(c));
    await until(() => done >= 30, { what: '30 answers before the update' });
    fs.writeFileSync(path.join(dir, 'serve.yaml'), config('head2', path.join(dir, 'sentiment2')));
    const rolled = await until(async () => {
        const st = (await s.get('/-/status')).body;
        const deps = st.applications.find((a: { name: string }) => a.name === 'review').deployments;
        const of = (name: string) => deps.find((d: { name: string }) => d.name === name);
        return st.config.version !== before && of('head').model.path.endsWith('head2') && of('embedder').model.path.endsWith('sentiment2')
            && of('head').status === 'RUNNING' && Object.keys(of('head').replicas_by_version).length === 1
            && of('embedder').status === 'RUNNING' && Object.keys(of('embedder').replicas_by_version).length === 1;
    }, { what: 'the head and the embedder rolled to their new versions', timeoutMs: 120000 });
    t.ok(rolled);
    const mark = done;
    await until(() => done >= mark + 30, { what: '30 answers after the update' });
    running = false;
    await Promise.all(clients);
    t.same(failures, [], `${done} requests, none failed`);
});

t.test('calls that name no deployment, name the caller, or go round in a cycle are refused when loaded', async (t) => {
    const d = (name: string, calls: string[]) => ({ name, model: { path: './mlp.onnx' }, calls });
    const issues = (apps: unknown[]) => {
        try {
            validate({ applications: apps }, dir);
            return [];
        }
        catch (err) {
            return (err as ConfigError).issues.map(ConfigError.line);
        }
    };
    t.same(issues([{ name: 'a', deployments: [d('x', ['y']), d('y', ['b/z']), d('w', [])], routes: [{ deployment: 'x' }] }, { name: 'b', deployments: [d('z', ['a/w'])] }]), [], 'a chain across applications is fine');
    t.same(issues([{ name: 'a', deployments: [d('x', ['x', 'nope', 'b/nope'])] }]), [
        'applications[0].deployments[0].calls[0]: "x" is this deployment itself: a deployment cannot call itself',
        'applications[0].deployments[0].calls[1]: "nope" names no deployment (expected "name" of application "a", or "application/name"; known: a/x)',
        'applications[0].deployments[0].calls[2]: "b/nope" names no deployment (expected "name" of application "a", or "application/name"; known: a/x)'
    ]);
    t.same(issues([{ name: 'a', deployments: [d('x', ['y']), d('y', ['b/z']), d('v', ['x'])], routes: [{ deployment: 'x' }] }, { name: 'b', deployments: [d('z', ['a/x'])] }]), [
        'applications[0].deployments[0].calls: the calls go round in a cycle, which would never answer: a/x -> a/y -> b/z -> a/x'
    ], 'a cycle is reported once, naming its deployments');
    t.same(issues([{ name: 'a', deployments: [d('x', [])], routes: [{ method: 'get', deployment: 'x' }, { path: '/p', pipeline: ['x', { deployment: 'q', input: '$oops' }] }, { path: '/r', deployment: 'x', pipeline: ['x', 'x'] }] }]), [
        'applications[0].routes[2]: "applications[0].routes[2]" takes deployment or pipeline, not both'
    ]);
    t.same(issues([{ name: 'a', deployments: [d('x', [])], routes: [{ method: 'get', deployment: 'x' }, { path: '/p', pipeline: ['x', { deployment: 'q', input: { a: ['$oops'] } }] }] }]), [
        'applications[0].routes[0].method: a GET route takes its input from the query string, and the tensor handler of "x" takes none (the text handler does: ?text=...)',
        'applications[0].routes[1].pipeline[1].deployment: "q" is not a deployment of application "a" (expected one of: x)',
        'applications[0].routes[1].pipeline[1].input: "$oops" is not a reference: write "$", "$.field" or "$.list[0]" (and "$$" for a literal "$")'
    ]);
});

t.test('templates: references, literals and "$$"', async (t) => {
    const answer = { a: { b: [10, { c: 'deep' }] }, v: [1, 2] };
    t.same(template({ whole: '$', deep: '$.a.b[1].c', list: ['$.v', 3, null], literal: '$$5', text: 'plain' })(answer),
        { whole: answer, deep: 'deep', list: [[1, 2], 3, null], literal: '$5', text: 'plain' });
    t.throws(() => template('$.a.x')(answer), { message: 'the previous step\'s answer has no "$.a.x" (the step\'s input template refers to it)' });
    t.throws(() => template('$.v[5]')(answer), { message: /has no "\$\.v\[5\]"/ });
    t.throws(() => template('$.a.b[0].c')(answer), { message: /has no "\$\.a\.b\[0\]\.c"/ });
});

t.test('a replica\'s call carries its item\'s request id and deadline, or the batch\'s', async (t) => {
    const sent: FromWorker[] = [];
    const handle = deploymentHandle('target', (msg) => sent.push(msg));
    const items = [{ n: 1 }, { n: 2 }];
    const calls = inBatch(items, ['id-1', 'id-2'], [5000, 2000], () => [handle.call({ q: 1 }, { for: items[0] }), handle.call({ q: 2 }), handle.call({ q: 3 }, { for: {} })]);
    const outside = handle.call({ q: 4 });
    const shown = sent.map((m) => {
        const c = m as Extract<FromWorker, { type: 'call' }>;
        return { body: c.body, request_id: c.request_id, timeout: c.timeout_ms === undefined ? undefined : c.timeout_ms > 1000 ? Math.round(c.timeout_ms / 1000) : 'short' };
    });
    t.same(shown, [
        { body: { q: 1 }, request_id: 'id-1', timeout: 5 },
        { body: { q: 2 }, request_id: 'id-1,id-2', timeout: 2 },
        { body: { q: 3 }, request_id: 'id-1,id-2', timeout: 2 },
        { body: { q: 4 }, request_id: undefined, timeout: 30 }
    ]);
    const ids = sent.map((m) => (m as { id: number }).id);
    answered({ type: 'called', id: ids[0], body: '{"ok":1}' });
    answered({ type: 'called', id: ids[1], error: { code: 'QUEUE_FULL', message: 'full' } });
    answered({ type: 'called', id: ids[1], body: '{}' });
    t.same(await calls[0], { ok: 1 });
    await t.rejects(calls[1], { message: 'full', output: { statusCode: 503 } });
    const none = inBatch([{}], undefined, undefined, () => handle.call(1));
    t.same((sent.at(-1) as { request_id?: string; timeout_ms?: number }), { type: 'call', id: (sent.at(-1) as { id: number }).id, target: 'target', body: 1, timeout_ms: 30000 }, 'no id, and the default timeout');
    for (const m of sent.slice(2)) {
        answered({ type: 'called', id: (m as { id: number }).id, body: 'null' });
    }
    t.same(await Promise.all([calls[2], outside, none]), [null, null, null]);
});
