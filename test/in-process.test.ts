// A deployment's replicas in the front process (`in_process: true`, lib/in-process.ts) on a real `tsserve up`: the
// same answers, byte for byte, as replica processes give for every datatype, on the application route and the Open
// Inference Protocol's (JSON and binary); a handler's error answered as a replica process's is; a batch past its
// deadline gets its replica replaced and its request answered; a model that fails to load is reported as one in a
// process is; a multiplexed deployment; a live change of its logging_config and user_config; a clean stop.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fixtures, serve, until, type Served } from './helpers';
import { datatype, raws, values } from './dtype-values';

const dir = fixtures();
const stall = path.join(__dirname, 'fixtures', 'handlers', 'stall.js');
const adders = path.join(__dirname, '..', 'examples', 'models', 'adders');
let s: Served;

const config = (extra = '', stallInProcess = true) => `
max_cpus: 16
applications:
  - name: proc
    deployments:
      - { name: model, model: { path: ./dtypes.onnx }, batching: { max_batch_size: 8, batch_wait_timeout_s: 0.01 } }
  - name: local
    deployments:
      - { name: model, in_process: true, model: { path: ./dtypes.onnx }, batching: { max_batch_size: 8, batch_wait_timeout_s: 0.01 }${extra} }
  - name: stall
    deployments:
      - { name: model, in_process: ${stallInProcess}, handler: ${stall}, model: { path: ./mlp.onnx } }
  - name: broken
    deployments:
      - { name: model, in_process: true, model: { path: ./broken.onnx } }
  - name: mux
    deployments:
      - { name: model, in_process: true, model: { path: ${adders} }, multiplex: { max_num_models_per_replica: 2 } }
`;

t.before(async () => {
    s = await serve(dir, config());
});
t.teardown(() => s?.stop());

/** A POST's status, content type and body's bytes. */
async function send(route: string, body: Buffer | string, headers: Record<string, string> = { 'content-type': 'application/json' }): Promise<{ status: number; type: string | null; bytes: Buffer }> {
    const res = await fetch(s.url + route, { method: 'POST', headers, body });
    return { status: res.status, type: res.headers.get('content-type'), bytes: Buffer.from(await res.arrayBuffer()) };
}

/** An answer's bytes, but for what names its deployment and its request: the V2 model's name, the request id. */
const normal = (bytes: Buffer) => bytes.toString('latin1').replace('"model_name":"local"', '"model_name":"proc"').replace(/"request_id":"[^"]*"/, '"request_id":""').replace(/"model_version":"[^"]*"/, '"model_version":""');

/** The same request to the process deployment and to the in-process one: the same status, type and bytes. */
async function same(t: Test, what: string, route: (app: string) => string, body: Buffer | string, headers?: Record<string, string>, status = 200): Promise<void> {
    const [a, b] = await Promise.all([send(route('proc'), body, headers), send(route('local'), body, headers)]);
    t.equal(a.status, status, `${what}: ${status} from replica processes`);
    t.strictSame({ status: b.status, type: b.type, bytes: normal(b.bytes) }, { status: a.status, type: a.type, bytes: normal(a.bytes) }, `${what}: the same answer in-process, byte for byte`);
}

t.test('every datatype: the same answers in-process as from replica processes, byte for byte', async (t) => {
    const pairs = (v: unknown[]) => [v.slice(0, 2), v.slice(2)];
    await same(t, 'the application route, JSON', (app) => `/${app}/predict`, JSON.stringify({ inputs: Object.fromEntries(Object.entries(values).map(([name, v]) => [name, pairs(v)])) }));
    const v2 = JSON.stringify({ inputs: Object.keys(values).map((name) => ({ name, shape: [2, 2], datatype: datatype(name), data: values[name] })) });
    await same(t, 'V2, JSON', (app) => `/v2/models/${app}/infer`, v2);
    const names = Object.keys(raws);
    const header = Buffer.from(JSON.stringify({ inputs: names.map((name) => ({ name, shape: [2, 2], datatype: datatype(name), parameters: { binary_data_size: raws[name].length } })), parameters: { binary_data_output: true } }));
    const binary = Buffer.concat([header, ...names.map((name) => raws[name])]);
    await same(t, 'V2, binary in and out', (app) => `/v2/models/${app}/infer`, binary, { 'inference-header-content-length': String(header.length) });
    await same(t, 'V2, binary in, JSON out', (app) => `/v2/models/${app}/infer`, Buffer.concat([Buffer.from(header.toString().replace(',"parameters":{"binary_data_output":true}', '').padEnd(header.length)), ...names.map((name) => raws[name])]),
        { 'inference-header-content-length': String(header.length) });
    // several requests at once: batched together, each answered with its own rows
    const many = Array.from({ length: 6 }, (_, k) => JSON.stringify({ inputs: Object.fromEntries(Object.entries(values).map(([name, v]) =>
        [name, [name === 'bytes' ? [`${k}`, `${k}${k}`] : name === 'bool' ? [k % 2 === 0, true] : [v[k % 4], v[(k + 1) % 4]]]])) }));
    await Promise.all(many.map((body, k) => same(t, `concurrent request ${k}`, (app) => `/${app}/predict`, body)));
    await same(t, 'a request the model refuses', (app) => `/${app}/predict`, JSON.stringify({ inputs: { ...Object.fromEntries(Object.entries(values).map(([name, v]) => [name, pairs(v)])), uint8: [[1, 256], [0, 0]] } }), undefined, 400);
});

t.test('in the front process: its replica is the server, and serves as one', async (t) => {
    const status = (await s.get('/-/status')).body;
    const local = status.applications.find((a: { name: string }) => a.name === 'local').deployments[0];
    const proc = status.applications.find((a: { name: string }) => a.name === 'proc').deployments[0];
    t.equal(local.replicas[0].pid, s.proc.pid, 'the in-process replica\'s pid is tsserve\'s');
    t.not(proc.replicas[0].pid, s.proc.pid, 'a replica process has its own');
    t.equal(local.replicas[0].state, 'RUNNING');
});

t.test('a multiplexed deployment in-process: each model answers, loaded on its first use', async (t) => {
    const y = async (id: string) => {
        const res = await s.post('/mux/predict', { inputs: [[1, 2, 3]] }, { serve_multiplexed_model_id: id });
        return res.status === 200 ? Object.values(res.body.outputs as Record<string, number[][]>)[0][0][0] : res.body;
    };
    t.same([await y('plus1'), await y('plus10'), await y('plus100'), await y('plus1')], [2, 11, 101, 2]);
    const replica = (await s.get('/-/status')).body.applications.find((a: { name: string }) => a.name === 'mux').deployments[0].replicas[0];
    t.equal(replica.pid, s.proc.pid);
    t.equal(replica.models.length, 2, 'at most 2 held');
});

t.test('a handler\'s error is answered, and the deployment goes on serving', async (t) => {
    const failed = await s.post('/stall/predict', { fail: true });
    t.equal(failed.status, 500);
    t.match(failed.body, { code: 'HANDLER_ERROR', message: /asked to fail/ });
    const client = await s.post('/stall/predict', { fail: 400 });
    t.equal(client.status, 400);
    t.match(client.body, { message: 'asked to fail as the client\'s error' });
    const ok = await s.post('/stall/predict', { x: [0.1, 0.2, 0.3, 0.4] });
    t.equal(ok.status, 200);
    t.equal(ok.body.pid, s.proc.pid, 'run in the front process');
    t.match(s.output(), /a batch of 1 request\(s\) failed: HANDLER_ERROR[^\n]*replica[^\n]*stall\/model#0|replica[^\n]*stall\/model#0[^\n]*a batch of 1 request\(s\) failed/, 'its log record names its replica');
});

t.test('a batch past its deadline: its replica is replaced and its request answered by the new one', async (t) => {
    // a batch finished first, so that the deadline is its floor (5 s) rather than the first batch's 30 s
    t.equal((await s.post('/stall/predict', { x: [0, 0, 0, 0] })).status, 200);
    const res = await s.post('/stall/predict', { x: [1, 2, 3, 4], stall_ms: 6500 });
    t.equal(res.status, 200, 'answered, by the replica started in its place');
    const replica = (await s.get('/-/status')).body.applications.find((a: { name: string }) => a.name === 'stall').deployments[0].replicas[0];
    t.equal(replica.restarts, 1);
    t.match(replica.last_failure.error, /^hung: a batch of 1 row\(s\) got no answer within 5\.0s/);
    // the stalled batch finishes after its replica was replaced: what it says goes nowhere, and tsserve serves on
    await new Promise((resolve) => setTimeout(resolve, 1000));
    t.equal((await s.post('/stall/predict', { x: [1, 2, 3, 4] })).status, 200);
});

t.test('a model that fails to load in-process is reported as one in a process is', async (t) => {
    const replica = await until(async () => {
        const r = (await s.get('/-/status')).body.applications.find((a: { name: string }) => a.name === 'broken').deployments[0].replicas[0];
        return r.restarts >= 1 && r;
    }, { what: 'the broken model\'s replica to have failed and been restarted' });
    t.match(replica.last_error, /^model failed to load: .*broken\.onnx/);
    t.equal((await s.get('/-/ready')).status, 503);
});

t.test('a live change of its logging_config and user_config, and of in_process, then a clean stop', async (t) => {
    fs.writeFileSync(path.join(dir, 'serve.yaml'), config(', logging_config: { log_level: DEBUG }, user_config: { outputs: [uint8_out] }', false));
    await until(async () => {
        const res = await s.post('/local/predict', { inputs: Object.fromEntries(Object.entries(values).map(([name, v]) => [name, [v.slice(0, 2)]])) });
        return res.status === 200 && Object.keys(res.body.outputs).join() === 'uint8_out';
    }, { what: 'the new user_config to be in force' });
    t.pass('reconfigured in place');
    await until(async () => {
        const res = await s.post('/stall/predict', { x: [1, 2, 3, 4] });
        return res.status === 200 && res.body.pid !== s.proc.pid;
    }, { what: 'the stall deployment to be rolled onto a replica process' });
    t.pass('in_process: false rolls the deployment onto replica processes');
    t.equal(await s.stop(), 0, 'tsserve stops cleanly, its in-process replicas drained');
});
