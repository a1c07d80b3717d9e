// A user's own handler module: the repo's documented example end to end, and every way a user's code can fail,
// each of which comes back as a clean error while the replica goes on serving.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { app, fixtures, serve, run, type Served } from './helpers';

const dir = fixtures();
const example = path.join(__dirname, '..', 'examples', 'handlers', 'iris_handler.js');

// Handlers that fail in each place a handler can, chosen by the request.
fs.writeFileSync(path.join(dir, 'faulty.js'), `
const Boom = require(${JSON.stringify(require.resolve('@hapi/boom'))});
exports.handler = {
    parse(req) {
        const mode = req.payload.mode;
        if (mode === 'parse-boom') throw Boom.conflict('not now');
        if (mode === 'parse-error') throw new Error('cannot read this');
        return { rows: 1, key: '', item: mode };
    },
    async load() {},
    preprocess(items) {
        if (items.includes('pre-error')) throw new Error('preprocess broke');
        if (items.includes('pre-async')) return Promise.reject(new Error('async preprocess broke'));
        if (items.includes('pre-string')) throw 'a bare string';
        if (items.includes('pre-503')) throw Boom.serverUnavailable('come back later');
        if (items.includes('pre-code')) throw new Boom.Boom('short and stout', { statusCode: 418, data: { code: 'TEAPOT', kind: 'pot' } });
        return { x: { type: 'float32', data: new Float32Array(items.length * 4), dims: [items.length, 4] } };
    },
    postprocess(outputs, items) {
        if (items.includes('post-count')) return [];
        if (items.includes('post-none')) return undefined;
        return items.map((mode) => ({ mode }));
    }
};`);
// No preprocess: the module is refused when the replica (and the front) load it.
fs.writeFileSync(path.join(dir, 'incomplete.js'), 'module.exports = { postprocess: () => [] };');
// A default export whose schema-less parse takes the JSON body as the item.
fs.writeFileSync(path.join(dir, 'echo.js'), `
const Joi = require(${JSON.stringify(require.resolve('joi'))});
exports.default = () => ({
    requestSchema: () => Joi.object({ any: Joi.array() }),
    openapi: () => ({ content: { 'text/csv': { schema: { type: 'string' } } } }),
    preprocess: (items) => ({ x: { type: 'float32', data: new Float32Array(items.length * 4), dims: [items.length, 4] } }),
    postprocess: (outputs, items) => items.map((item) => ({ item }))
});`);

// Made in the replicas, refused in the front process (which has no IPC channel): the front's reason is told.
fs.writeFileSync(path.join(dir, 'frontless.js'), `
if (!process.send) throw new Error('the front process is not for me');
module.exports = { preprocess: () => ({}), postprocess: (o, items) => items.map(() => ({})) };`);

const yaml = 'applications:\n' + [
    app('iris', 'mlp.onnx', `handler: ${example}\nuser_config: { digits: 4 }`),
    app('strict', 'mlp.onnx', `handler: ${example}\noptions: { max_flowers: 1 }`),
    app('faulty', 'mlp.onnx', 'handler: ./faulty.js\nbatching: { max_batch_size: 8, batch_wait_timeout_s: 0.05 }'),
    app('incomplete', 'mlp.onnx', 'handler: ./incomplete.js'),
    app('echo', 'mlp.onnx', 'handler: ./echo.js'),
    app('frontless', 'mlp.onnx', 'handler: ./frontless.js')
].join('');

let s: Served;
t.before(async () => {
    s = await serve(dir, yaml);
});
t.teardown(() => s?.stop());

/** Resolves once the app's replica has said it runs. */
async function ready(app: string): Promise<void> {
    await s.waitFor(new RegExp(`replica ${app}/model#0 RUNNING`));
}

/** Each score rounded to `digits` places. */
const rounded = (scores: number[][], digits: number): number[][] => scores.map((row) => row.map((v) => Math.round(v * 10 ** digits) / 10 ** digits));

t.test('the documented example handler answers like the model itself', async (t) => {
    await ready('iris');
    const flowers = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]];
    const res = await s.post('/iris/predict', { flowers });
    t.equal(res.status, 200);
    const session = await ort.InferenceSession.create(path.join(dir, 'mlp.onnx'));
    const y = (await session.run({ x: new ort.Tensor('float32', Float32Array.from(flowers.flat()), [2, 4]) })).y.data as Float32Array;
    const expected = [0, 1].map((r) => Array.from(y.subarray(r * 3, r * 3 + 3), (v) => Number(v.toFixed(4))));
    t.same(res.body.scores, expected, 'user_config.digits: 4 rounds to 4 places');
    t.same(res.body.species, expected.map((s) => ['setosa', 'versicolor', 'virginica'][s.indexOf(Math.max(...s))]));

    t.equal((await s.post('/iris/predict', { flowers: [[1, 2, 3]] })).status, 400, 'a Boom from parse keeps its status');
    const negative = await s.post('/iris/predict', { flowers: [[1, 2, 3, -4]] });
    t.match(negative, { status: 422, body: { code: 'BAD_REQUEST', message: 'a measurement cannot be negative' } }, 'a 4xx Boom from preprocess keeps its status');

    await ready('strict');
    t.match(await s.post('/strict/predict', { flowers }), { status: 413, body: { message: 'at most 1 flowers per request' } }, 'options reach the handler');
    const strict = await s.post('/strict/predict', { flowers: [flowers[0]] });
    t.equal(strict.body.scores[0].length, 3);
    t.same(strict.body.scores, rounded(strict.body.scores, 3), 'the default rounds to 3 places');

    const doc = (await s.get('/openapi.json')).body;
    const spec = doc.paths['/iris/predict'].post;
    t.equal(spec.summary, 'iris_handler.js handler for deployment "model" of application "iris"', 'the module by its file name');
    t.notMatch(JSON.stringify(doc), path.dirname(example), 'no absolute path of this machine in the document');
    t.same(spec.requestBody.content['application/json'].example, { flowers: [[5.1, 3.5, 1.4, 0.2]] });
    t.equal(spec.requestBody.content['application/json'].schema.properties.flowers.type, 'array');
});

t.test('whatever a handler throws is a clean error, and the replica keeps serving', async (t) => {
    await ready('faulty');
    const cases: Array<[string, number, string, RegExp]> = [
        ['parse-boom', 409, 'BAD_REQUEST', /not now/],
        ['parse-error', 400, 'BAD_REQUEST', /handler faulty.js: cannot read this/],
        ['pre-error', 500, 'HANDLER_ERROR', /handler faulty.js: preprocess broke/],
        ['pre-async', 500, 'HANDLER_ERROR', /async preprocess broke/],
        ['pre-string', 500, 'HANDLER_ERROR', /a bare string/],
        ['pre-503', 503, 'HANDLER_ERROR', /come back later/],
        ['pre-code', 418, 'BAD_REQUEST', /short and stout/],
        ['post-count', 500, 'HANDLER_ERROR', /postprocess returned 0 bodies for 1 items/],
        ['post-none', 500, 'HANDLER_ERROR', /postprocess returned no bodies for 1 items/]
    ];
    // All at once, with good requests among them: the batch fails, then each runs alone, so only the culprits fail.
    const results = await Promise.all([...cases.map(([mode]) => s.post('/faulty/predict', { mode })), ...[1, 2, 3].map(() => s.post('/faulty/predict', { mode: 'fine' }))]);
    cases.forEach(([mode, status, code, message], i) => t.match(results[i], { status, body: { code, message } }, mode));
    results.slice(cases.length).forEach((r) => t.same(r.body, { mode: 'fine' }));
    t.same((await s.post('/faulty/predict', { mode: 'fine' })).body, { mode: 'fine' }, 'still serving');
    const st = (await s.get('/-/status')).body;
    const dep = st.applications.find((a: { name: string }) => a.name === 'faulty').deployments[0];
    t.equal(dep.replicas[0].restarts, 0, 'no replica died');
});

t.test('a default-exported factory without parse takes the JSON body as its item', async (t) => {
    await ready('echo');
    t.same((await s.post('/echo/predict', { any: ['thing'] })).body, { item: { any: ['thing'] } });
    t.same(Object.keys((await s.get('/openapi.json')).body.paths['/echo/predict'].post.requestBody.content), ['application/json', 'text/csv'], 'its openapi() extras are listed');
    t.match(await s.post('/echo/predict', { other: 1 }), { status: 400, body: { code: 'INVALID_BODY', message: '"other" is not allowed' } }, 'checked against its requestSchema');
});

t.test('a module that is not a handler fails its deployment clearly; the others serve', async (t) => {
    const res = await s.post('/incomplete/predict', {});
    t.equal(res.status, 503);
    t.match(res.body.message, /must export a handler with preprocess\(\) and postprocess\(\)/);
    const st = (await s.get('/-/status')).body;
    t.match(st.applications.find((a: { name: string }) => a.name === 'incomplete').deployments[0].last_error, /must export a handler/);
    t.equal((await s.post('/iris/predict', { flowers: [[5.1, 3.5, 1.4, 0.2]] })).status, 200);
});

t.test('a handler the front process cannot make answers 503 with the reason', async (t) => {
    await ready('frontless');
    t.match(await s.post('/frontless/predict', {}), { status: 503, body: { code: 'REPLICA_UNAVAILABLE', message: /handler ".*frontless.js" cannot be set up: the front process is not for me/ } });
    const spec = (await s.get('/openapi.json')).body.paths['/frontless/predict'].post;
    t.same(spec.requestBody.content['application/json'], { schema: {}, example: {} }, 'the route is still listed, taking anything');
});

t.test('a user_config the handler refuses is not applied, and validate finds missing modules', async (t) => {
    const bad = yaml.replace('user_config: { digits: 4 }', 'user_config: { digits: 99 }');
    fs.writeFileSync(path.join(dir, 'serve.yaml'), bad);
    const result = (await s.post('/-/reload', {})).body;
    t.match(result.errors, [/digits must be an integer from 0 to 8/]);
    const scores = (await s.post('/iris/predict', { flowers: [[5.1, 3.5, 1.4, 0.2]] })).body.scores;
    t.same(scores, rounded(scores, 4), 'still 4 places: the refused user_config was not applied');

    fs.writeFileSync(path.join(dir, 'missing.yaml'), yaml.replace('./faulty.js', './nowhere.js'));
    const out = await run(['validate', path.join(dir, 'missing.yaml')]);
    t.equal(out.code, 1);
    t.match(out.stdout + out.stderr, /applications\[2\]\.deployments\[0\]\.handler: handler module not found: .*nowhere\.js/);
});
