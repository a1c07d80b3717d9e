// Start-up, readiness and shutdown: the listener is bound before the models load, /-/healthz answers meanwhile,
// /-/ready (and /-/ready/{application}) says which deployments can serve and why the others cannot, a request that
// comes while its deployment starts waits for it, and on SIGTERM /-/ready turns 503 at once while what is in flight
// drains. A model is made slow to load on purpose: its handler's load() waits for a file that the test writes, so the
// test decides when loading ends, with no timing assumption.
import t from 'tap';
import { CpuBudget } from '../lib/cpu-budget';
import fs from 'node:fs';
import path from 'node:path';
import { app, fixtures, serve, until, type Served } from './helpers';
import { loadFile } from '../lib/config';
import { Controller } from '../lib/controller';
import { Deployment } from '../lib/deployment';
import { ConfigWatcher } from '../lib/watcher';
import { createServer } from '../lib/http';
import type { ServeConfig } from '../schemas/serve';

const dir = fixtures();
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

// load() waits for options.gate to exist; a request { hold: true } waits in preprocess for options.hold.
fs.writeFileSync(path.join(dir, 'gated.js'), `
const fs = require('node:fs');
const until = (file) => new Promise((resolve) => {
    const look = () => fs.existsSync(file) ? resolve() : setTimeout(look, 20);
    look();
});
module.exports = ({ options }) => ({
    parse: (req) => ({ rows: 1, key: '', item: req.payload }),
    load: () => until(options.gate),
    async preprocess(items) {
        if (items.some((i) => i.hold)) await until(options.hold);
        return { x: { type: 'float32', data: new Float32Array(items.length * 4), dims: [items.length, 4] } };
    },
    postprocess: (outputs, items) => items.map((i) => ({ n: i.n }))
});`);

const gate = path.join(dir, 'gate');
const hold = path.join(dir, 'hold');
const gated = (name: string) => app(name, 'mlp.onnx', `handler: ./gated.js
options: { gate: ${JSON.stringify(gate)}, hold: ${JSON.stringify(hold)} }
health_check_timeout_s: 600
graceful_shutdown_timeout_s: 60`);

/** How long to wait for what a loaded 2-core machine may be slow to do (only a failure waits it out). */
const long = 180_000;

/** The body of a 503 from /-/ready: why each deployment that is not ready is not. */
const notReady = (r: { body: any }): Record<string, string> => r.body.details?.not_ready;

t.test('the listener is up before the models: healthz at once, ready once each deployment runs, requests wait; SIGTERM', async (t) => {
    const yaml = (broken: boolean) => `http_options: { request_timeout_s: 120 }
applications:
${app('quick', 'mlp.onnx')}${gated('slow')}${gated('held')}${broken ? app('broken', 'broken.onnx') : ''}`;
    const s: Served = await serve(dir, yaml(true), 'serve.yaml', { started: false });
    t.teardown(() => s.stop('SIGKILL'));

    t.same((await s.get('/-/healthz')).body, { status: 'ok' }, '/-/healthz answers while the models load');
    // (until the model files are read, /-/ready names tsserve itself; then each deployment, while slow's gate holds it)
    const early = await until(async () => {
        const r = await s.get('/-/ready');
        return notReady(r)?.['slow/model'] !== undefined && r;
    }, { what: '/-/ready naming slow/model', timeoutMs: long });
    t.equal(early.status, 503, '/-/ready is 503 while they load');
    t.equal(early.body.code, 'REPLICA_UNAVAILABLE');
    t.match(notReady(early)['slow/model'], /^starting: 0\/1 replica\(s\) running$/, 'why, by deployment');
    t.equal(early.headers.get('retry-after'), '1');

    // The quick model loads, the broken one fails to; the slow ones cannot load until the gate exists.
    await s.waitFor(/quick\/model: 1\/1 replica\(s\) ready \(quick\/model#0 loaded in \d+\.\d\ds\)/, long);
    await s.waitFor(/broken\/model: 0\/1 replica\(s\) ready \(broken\/model#0 failed after \d+\.\d\ds: model failed to load: .*; retried with backoff\)/, long);
    t.same((await s.get('/-/ready/quick')).body, { ready: true }, 'an application is ready on its own');
    const slow = await s.get('/-/ready/slow');
    t.match(slow, { status: 503, body: { message: 'not every deployment of application "slow" has a replica running; see /-/status' } }, 'the other is not');
    t.same(Object.keys(notReady(slow)), ['slow/model'], 'only its own deployments are named');
    const all = await s.get('/-/ready');
    t.match(all.body, { message: 'not every deployment has a replica running; see /-/status', details: { not_ready: { 'broken/model': /^no replica running: model failed to load: / } } });
    t.same(Object.keys(notReady(all)), ['slow/model', 'held/model', 'broken/model'], 'the whole server is not ready while a deployment starts or has failed');
    t.match(await s.get('/-/ready/nope'), { status: 404, body: { code: 'NOT_FOUND', message: 'no application "nope"' } });
    t.equal((await s.post('/quick/predict', { inputs: [[1, 2, 3, 4]] })).status, 200, 'a ready deployment serves while another loads');
    t.match(await s.post('/broken/predict', { inputs: [[1, 2, 3, 4]] }), { status: 503, body: { code: 'REPLICA_UNAVAILABLE', message: /model failed to load/ } }, 'a failed one refuses at once, not leaving its requests waiting');
    const status = (await s.get('/-/status')).body;
    t.equal(status.ready, false);
    t.match(status.applications[1].deployments[0], { name: 'model', status: 'DEPLOYING', running_replicas: 0 });

    // A request for the deployment still loading, and a reload asked for meanwhile, wait for it.
    let answered = false;
    const waiting = s.post('/slow/predict', { n: 1 }).finally(() => {
        answered = true;
    });
    const reload = s.post('/-/reload', '');
    await until(async () => (await s.get('/-/status')).body.applications[1].deployments[0].replicas[0]?.state === 'STARTING', { what: 'the slow replica starting', timeoutMs: long });
    t.equal(answered, false, 'not answered while its model loads');
    t.notMatch(s.output(), /start-up complete/);

    fs.writeFileSync(gate, '');
    t.match(await waiting, { status: 200, body: { n: 1 } }, 'answered once its deployment is up');
    t.match(await reload, { status: 200, body: { trigger: 'POST /-/reload', result: 'unchanged' } }, 'the reload ran after the start-up');
    await s.waitFor(/start-up complete/, long);
    t.same((await s.get('/-/ready/slow')).body, { ready: true });
    t.same(Object.keys(notReady(await s.get('/-/ready'))), ['broken/model'], 'a model that failed to load keeps the server not ready');

    const out = s.output();
    t.match(out, /slow\/model: 1\/1 replica\(s\) ready \(slow\/model#0 loaded in \d+\.\d\ds\)/, 'progress: ready out of wanted, and the load time');
    t.match(out, /start-up complete in \d+\.\d\ds: 3\/4 deployment\(s\) ready; not ready: broken\/model \(no replica running: model failed to load: /, 'the summary');
    for (const name of ['quick', 'slow', 'held', 'broken']) {
        t.match(out, `  POST ${s.url}/${name}/predict -> ${name}/model`, `the route of ${name}, with its URL`);
    }
    t.match(out, `  docs: ${s.url}/docs, OpenAPI: ${s.url}/openapi.json, status: ${s.url}/-/status`);
    t.ok(out.indexOf('listening on') < out.indexOf('quick/model: 1/1'), 'the listener before the first replica');

    // Without the broken application, the server is ready.
    fs.writeFileSync(path.join(dir, 'serve.yaml'), yaml(false));
    await until(async () => (await s.get('/-/ready')).status === 200, { what: () => `ready without the broken application:\n${s.output()}`, timeoutMs: long });
    t.same((await s.get('/-/ready')).body, { ready: true }, '/-/ready is 200 once every deployment runs');

    // SIGTERM with a request in flight: /-/ready is 503 at once, /-/healthz still 200, the request is still answered,
    // and a request that comes meanwhile (from a client that has not seen /-/ready yet) too. The held request is its
    // version's first batch, which has 30 s before it is taken for a hang (lib/run-times.ts).
    const held = s.post('/held/predict', { n: 2, hold: true });
    await until(async () => (await s.get('/-/status')).body.applications[2].deployments[0].replicas[0].inflight_requests > 0, { what: 'the held request in flight', timeoutMs: long });
    const mark = s.output().length;
    // (s.stop() would send a second SIGTERM, which ends tsserve at once)
    const exited = new Promise<number | null>((resolve) => s.proc.once('exit', resolve));
    s.proc.kill('SIGTERM');
    await s.waitFor(/shutting down: \/-\/ready answers 503/, long);
    const draining = await s.get('/-/ready');
    t.match(draining, { status: 503, body: { code: 'REPLICA_UNAVAILABLE', message: 'tsserve is shutting down', details: { not_ready: { tsserve: 'shutting down' } } } }, '/-/ready is 503 at once');
    t.equal((await s.get('/-/ready/quick')).status, 503, 'every application is');
    t.equal((await s.get('/-/healthz')).status, 200, 'alive still');
    t.equal((await s.post('/quick/predict', { inputs: [[1, 2, 3, 4]] })).status, 200, 'a late request is served while the drain runs');
    t.notMatch(s.output().slice(mark), /stopped/, 'still draining');
    fs.writeFileSync(hold, '');
    t.match(await held, { status: 200, body: { n: 2 } }, 'the request in flight is answered');
    t.equal(await exited, 0, 'exit 0');
    t.match(s.output().slice(mark), /SIGTERM received[\s\S]*shutting down[\s\S]*stopped/);
});

t.test('in process: before the first config is applied, and a deployment that waits for its first replica', async (t) => {
    fs.writeFileSync(path.join(dir, 'one.yaml'), `applications:\n${app('fine', 'mlp.onnx')}`);
    const config = loadFile(path.join(dir, 'one.yaml')).config;
    const deployment = config.applications[0].deployments[0];

    t.test('the front door before the first config is applied: not ready, status empty, model requests wait', async (t) => {
        const file = path.join(dir, 'empty.yaml');
        fs.writeFileSync(file, 'applications: []\n');
        const controller = new Controller();
        const server = createServer(controller, new ConfigWatcher(file, controller), { host: '127.0.0.1', port: 0, requestTimeoutMs: 1000, maxBytes: 1024 });
        const call = async (method: string, url: string) => {
            const res = await server.inject({ method, url, payload: method === 'POST' ? '{}' : undefined });
            return { status: res.statusCode, body: JSON.parse(res.payload) };
        };
        t.match(await call('GET', '/-/ready'), { status: 503, body: { details: { not_ready: { tsserve: 'starting: reading the model files' } } } });
        t.equal((await call('GET', '/-/ready/any')).status, 503, 'no application is known yet: none is ready');
        t.match(await call('GET', '/-/status'), { status: 200, body: { ready: false, applications: [] } });
        let answered = false;
        const routed = call('POST', '/a/predict').finally(() => {
            answered = true;
        });
        await call('GET', '/-/healthz');
        t.equal(answered, false, 'a model request waits for the routes');
        await controller.apply({ ...config, applications: [] } as ServeConfig, new Map());
        t.match(await routed, { status: 404, body: { code: 'NOT_FOUND' } }, 'then goes by them');
        t.same((await call('GET', '/-/ready')).body, { ready: true });
    });

    t.test('a request to a deployment with no replica yet times out after its timeout', async (t) => {
        const d = new Deployment('fine', deployment, 'v1', 'digest', new CpuBudget(), () => undefined);
        await t.rejects(d.handle({ payload: { inputs: [[1, 2, 3, 4]] }, headers: {}, contentType: 'application/json' }, 10), { output: { statusCode: 504 }, data: { code: 'REQUEST_TIMEOUT' }, message: 'deployment "fine/model" had no replica ready within 0.01s' });
    });

    t.test('a deployment stopped while it prepares starts no replica; a request waiting for one is refused', async (t) => {
        const d = new Deployment('fine', deployment, 'v1', 'digest', new CpuBudget(), () => undefined);
        const starting = d.start();
        const waiting = d.handle({ payload: { inputs: [[1, 2, 3, 4]] }, headers: {}, contentType: 'application/json' }, 60_000);
        await d.stop();
        await starting;
        t.same(d.replicas, [], 'no replica was started');
        await t.rejects(waiting, { data: { code: 'REPLICA_UNAVAILABLE' }, message: 'deployment "fine/model" has no replica ready' });
    });

    t.test('a config that cannot be applied after the listener is bound: the start-up fails, logged', async (t) => {
        const logged: string[] = [];
        const { up } = t.mockRequire<typeof import('../lib/server')>('../lib/server', {
            '../lib/log': { log: { info: () => {}, warn: () => {}, error: (m: string) => logged.push(m) } },
            '../lib/watcher': {
                ConfigWatcher: class {
                    auth = undefined;
                    constructor(readonly file: string) {}
                    start = () => Promise.reject(new Error('mlp.onnx is gone'));
                    close = async () => {};
                }
            }
        });
        const appliance = await up(path.join(dir, 'one.yaml'), { port: 0 });
        await t.rejects(appliance.started, { message: 'mlp.onnx is gone' });
        t.same(logged, ['start-up failed: mlp.onnx is gone']);
        await appliance.stop();
        t.equal(appliance.server.listener.listening, false, 'the listener is closed');
    });
});
