// Observability: /metrics (parsed by a real Prometheus text parser) moving by exactly what was sent, request ids end
// to end (the replica's line about a failed batch included), the access log, logging_config applied live without a
// replica restart, JSON and TEXT encodings, and the admin key on /metrics. A real `tsserve up` over real HTTP.
import t from 'tap';
import http from 'node:http';
import { Traffic, windowS } from '../lib/traffic';
import { LineBatch } from '../lib/log-batch';
import fs from 'node:fs';
import path from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { app, fixtures, serve, until, type Served } from './helpers';
import { accessLogOn, configureLogging, toText } from '../lib/log';
import { requestId } from '../lib/request-id';
import { processUsage, registry } from '../lib/metrics';
import { bytesIn } from '../lib/access-log';

const dir = fixtures();
const adminKey = 'observe-admin-key';
process.env.TSSERVE_OBSERVE_ADMIN = adminKey;
const admin = { 'x-api-key': adminKey };

// A handler whose preprocess fails on request: the replica logs the failure with the batch's request ids.
fs.writeFileSync(path.join(dir, 'faulty.js'), `
exports.handler = {
    parse(req) { return { rows: 1, key: '', item: req.payload.mode }; },
    preprocess(items) {
        if (items.includes('break')) throw new Error('preprocess broke');
        return { x: { type: 'float32', data: new Float32Array(items.length * 4), dims: [items.length, 4] } };
    },
    postprocess(outputs, items) { return items.map((mode) => ({ mode })); }
};`);

/** serve.yaml, with `top` (top-level lines) and the faulty deployment's extra fields. */
const yaml = (top = '', faulty = '') => `${top}auth: { admin_keys: { env: TSSERVE_OBSERVE_ADMIN } }
applications:
${app('mlp', 'mlp.onnx', 'batching: { max_batch_size: 8, batch_wait_timeout_s: 0.01 }')}${app('faulty', 'mlp.onnx', `handler: ./faulty.js\n${faulty}`)}${app('closed', 'mlp.onnx', 'max_queued_requests: 0')}`;

let s: Served;
t.before(async () => {
    s = await serve(dir, yaml());
    await Promise.all(['mlp', 'faulty', 'closed'].map((a) => s.waitFor(new RegExp(`replica ${a}/model#0 RUNNING`))));
});
t.teardown(() => s?.stop());

interface Sample { value?: string; labels?: Record<string, string> }
interface Family { name: string; type: string; metrics: Sample[] }

/** GET /metrics with the admin key, parsed. */
async function scrape(): Promise<Map<string, Family>> {
    const res = await fetch(`${s.url}/metrics`, { headers: admin });
    if (res.status !== 200) {
        throw new Error(`/metrics: ${res.status}`);
    }
    const text = await res.text();
    const families = parsePrometheusTextFormat(text) as Family[];
    const histograms = families.filter((f) => f.type === 'HISTOGRAM').map((f) => f.name);
    for (const name of ['tsserve_http_request_duration_seconds', 'tsserve_deployment_queue_wait_seconds', 'tsserve_deployment_batch_size_rows', 'tsserve_deployment_replica_stage_seconds', 'tsserve_replica_start_seconds', 'tsserve_replica_model_load_seconds']) {
        if (!histograms.includes(name)) {
            throw new Error(`${name} is no histogram family`);
        }
    }
    // This parser merges a labelled histogram's series into one sample: read untyped, its _count and _sum lines are
    // series of their own (a family each time the name changes, gathered here by name).
    const untyped = parsePrometheusTextFormat(text.replace(/^# TYPE \S+ histogram$/gm, '')) as Family[];
    const byName = new Map(families.map((f) => [f.name, f]));
    for (const f of untyped.filter((u) => /_(count|sum)$/.test(u.name))) {
        byName.set(f.name, { ...f, metrics: [...byName.get(f.name)?.metrics ?? [], ...f.metrics] });
    }
    return byName;
}

/** The sample of `name` whose labels include `labels`. */
function sample(m: Map<string, Family>, name: string, labels: Record<string, string> = {}): Sample | undefined {
    return m.get(name)?.metrics.find((x) => Object.entries(labels).every(([k, v]) => x.labels?.[k] === v));
}
const num = (m: Map<string, Family>, name: string, labels?: Record<string, string>): number => Number(sample(m, name, labels)?.value ?? 0);
const count = (m: Map<string, Family>, name: string, labels?: Record<string, string>): number => num(m, `${name}_count`, labels);
const sum = (m: Map<string, Family>, name: string, labels?: Record<string, string>): number => num(m, `${name}_sum`, labels);

/** The JSON log records the server printed so far. */
const records = (): Array<Record<string, any>> => s.output().split('\n').filter((l) => l.startsWith('{')).map((l) => {
    try {
        return JSON.parse(l);
    }
    catch {
        return {};
    }
});

/** Rewrites serve.yaml and reloads it (the watcher may see the write first: either way it is applied when this resolves). */
async function reconfigure(text: string): Promise<void> {
    fs.writeFileSync(path.join(dir, 'serve.yaml'), text);
    const res = await fetch(`${s.url}/-/reload`, { method: 'POST', headers: admin });
    const { result } = await res.json() as { result: string };
    if (result !== 'applied' && result !== 'unchanged') {
        throw new Error(`reload: ${result}\n${s.output()}`);
    }
}

const status = async () => (await fetch(`${s.url}/-/status`, { headers: admin })).json() as Promise<any>;
const pids = async () => (await status()).applications.flatMap((a: any) => a.deployments.flatMap((d: any) => d.replicas.map((r: any) => r.pid)));

t.test('units: a request id, a record as TEXT, a process gone', async (t) => {
    t.equal(requestId('abc-1.2:3_X'), 'abc-1.2:3_X', 'a sane id is kept');
    for (const insane of ['', 'a b', 'x'.repeat(129), 'é', 'a\nb', ['a', 'b']]) {
        t.match(requestId(insane), /^[0-9a-f]{12}-[0-9a-z]+$/, `${JSON.stringify(insane)}: one of ours`);
    }
    t.not(requestId(undefined), requestId(undefined), 'each new');
    const line = toText(JSON.stringify({ level: 'warn', time: 0, msg: 'hello', plain: 'word', spaced: 'two words', n: 3, err: { type: 'Error', stack: 'Error: x\n    at y' } }));
    t.equal(line, '1970-01-01T00:00:00.000Z WARN  hello plain=word spaced="two words" n=3 err="Error: x\\n    at y"\n', 'one line, the stack in it');
    t.equal(toText(JSON.stringify({ level: 'info', time: 0 })), '1970-01-01T00:00:00.000Z INFO  \n', 'no message');
    t.equal(processUsage(2 ** 30), undefined, 'no such process');
    t.equal(bytesIn('12'), 12, 'bytes in: the Content-Length');
    t.equal(bytesIn(undefined), 0, 'none (chunked): 0');
    t.match(processUsage(process.pid), { rss: Number, cpu: Number });
    // this process's own registry, with nothing to read: no deployment, no version
    t.match(await registry.metrics(), /^tsserve_config_info\{version=""\} 1$/m, 'a scrape before anything runs');
    configureLogging({ log_level: 'ERROR', enable_access_log: true });
    t.equal(accessLogOn(), false, 'no access log below its level');
    configureLogging();
    t.equal(accessLogOn(), true, 'the defaults: INFO, access log on');
    t.equal(accessLogOn(false), false, 'a deployment\'s own switch');
});

t.test('units: a deployment\'s last minute of traffic', async (t) => {
    const t0 = 1_000_000_000_000;
    const traffic = new Traffic(t0);
    t.strictSame(traffic.summary(t0), { window_s: 1, requests: 0, requests_per_s: 0, errors_per_s: 0 }, 'nothing yet: no percentile');
    // 100 requests in the first 10 s: 98 of 2 ms, one of 40 µs, one of 1 h (past the last bucket); one 503 and one 400
    for (let i = 0; i < 100; i++) {
        traffic.record(i === 0 ? 0.04 : i === 99 ? 3_600_000 : 2, i === 1 ? 503 : i === 2 ? 400 : 200, t0 + i * 100);
    }
    const at10 = traffic.summary(t0 + 10_000);
    t.match(at10, { window_s: 10, requests: 100, requests_per_s: 10, errors_per_s: 0.1 }, 'the rate over the 10 s it has run; only a 5xx is an error');
    t.ok((at10.p50_ms as number) >= 2 && (at10.p50_ms as number) < 2.5, 'p50: the bucket above 2 ms, at most 25% above', at10);
    t.ok((at10.p99_ms as number) >= 2 && (at10.p99_ms as number) < 2.5, 'p99 too: the 1 h request is the 100th', at10);
    t.ok((traffic.summary(t0 + 30_000).p50_ms as number) < 2.5, 'the window is a minute: still there at 30 s');
    traffic.record(10, 200, t0 + 75_000);
    t.match(traffic.summary(t0 + 75_000), { window_s: 60, requests: 1, requests_per_s: 0.02, errors_per_s: 0 }, 'at 75 s: the first 10 s are out of it');
    t.ok(traffic.summary(t0 + 75_000).p50_ms as number >= 10, 'and so are their latencies');
    traffic.record(20, 200, t0 + 75_000 + windowS * 1000);
    t.match(traffic.summary(t0 + 75_000 + windowS * 1000), { requests: 1 }, 'a slot a minute later is cleared before it counts again');
});

t.test('units: log lines leave in batches, at a size or after a wait, and at exit', async (t) => {
    const chunks: string[] = [];
    const batch = new LineBatch((c) => chunks.push(c), 10, 30);
    batch.write('abcd\n');
    t.strictSame(chunks, [], 'a line waits');
    batch.write('efghi\n');
    t.strictSame(chunks, ['abcd\nefghi\n'], 'and leaves with the next once they reach the size, in one chunk');
    batch.write('j\n');
    await new Promise((r) => setTimeout(r, 60));
    t.strictSame(chunks, ['abcd\nefghi\n', 'j\n'], 'or after the wait');
    batch.flush();
    t.equal(chunks.length, 3 - 1, 'a flush with nothing waiting writes nothing');
    batch.write('k\n');
    batch.flush();
    t.strictSame(chunks.at(-1), 'k\n', 'a flush writes what waits at once (at exit, say)');
});

t.test('/metrics is an admin route', async (t) => {
    t.equal((await fetch(`${s.url}/metrics`)).status, 401, 'no key: 401');
    t.equal((await fetch(`${s.url}/metrics`, { headers: { 'x-api-key': 'wrong' } })).status, 401, 'a wrong key: 401');
    const res = await fetch(`${s.url}/metrics`, { headers: admin });
    t.equal(res.status, 200, 'the admin key');
    t.match(res.headers.get('content-type'), /^text\/plain; version=0\.0\.4/, 'Prometheus\' text format');
});

t.test('the families are there, and move by exactly what was sent', async (t) => {
    const before = await scrape();
    const dep = { application: 'mlp', deployment: 'model' };
    const route = { route: '/mlp/predict', method: 'POST', status_code: '200' };
    // 24 requests of 1 to 3 rows, sent together: batched by the scheduler as it sees fit.
    const sizes = Array.from({ length: 24 }, (_, i) => 1 + (i % 3));
    const answers = await Promise.all(sizes.map((n) => s.post('/mlp/predict', { inputs: Array.from({ length: n }, () => [1, 2, 3, 4]) })));
    t.same(answers.map((a) => a.status), sizes.map(() => 200));
    const bad = await Promise.all([1, 2, 3].map(() => s.post('/mlp/predict', { inputs: [[1, 2, 3]] })));
    t.same(bad.map((a) => a.body.code), Array(3).fill('INPUT_SHAPE_MISMATCH'));
    const after = await scrape();
    const delta = (f: (m: Map<string, Family>) => number) => f(after) - f(before);

    t.equal(delta((m) => num(m, 'tsserve_http_requests_total', route)), 24, 'requests by route, method and status');
    t.equal(delta((m) => num(m, 'tsserve_http_requests_total', { ...route, status_code: '400' })), 3, 'and the refused ones');
    t.equal(delta((m) => count(m, 'tsserve_http_request_duration_seconds', route)), 24, 'a latency each');
    t.ok(sample(after, 'tsserve_http_requests_in_flight'), 'requests in flight');
    t.equal(delta((m) => num(m, 'tsserve_deployment_inferences_total', dep)), 24, 'inferences: the requests answered');
    const executions = delta((m) => num(m, 'tsserve_deployment_inference_executions_total', dep));
    t.ok(executions >= 1 && executions <= 24, 'executions: the batches', { found: executions });
    t.equal(delta((m) => count(m, 'tsserve_deployment_batch_size_rows', dep)), executions, 'a batch size per batch');
    t.equal(delta((m) => sum(m, 'tsserve_deployment_batch_size_rows', dep)), sizes.reduce((a, b) => a + b), 'summing to the rows sent');
    t.equal(delta((m) => count(m, 'tsserve_deployment_queue_wait_seconds', dep)), 24, 'a queue wait per request');
    for (const stage of ['preprocess', 'inference', 'postprocess']) {
        t.equal(delta((m) => count(m, 'tsserve_deployment_replica_stage_seconds', { ...dep, stage })), executions, `${stage}: a time per batch`);
    }
    t.equal(delta((m) => num(m, 'tsserve_deployment_errors_total', { ...dep, code: 'INPUT_SHAPE_MISMATCH' })), 3, 'errors by code');
    t.equal(num(after, 'tsserve_deployment_queued_requests', dep), 0, 'nothing queued now');
    t.equal(num(after, 'tsserve_deployment_ongoing_requests', dep), 0, 'nothing ongoing now');
    t.equal(num(after, 'tsserve_deployment_target_replicas', dep), 1, 'the target');
    t.equal(num(after, 'tsserve_replicas', { ...dep, state: 'RUNNING' }), 1, 'replicas by state');
    t.equal(num(after, 'tsserve_replicas', { ...dep, state: 'BACKOFF' }), 0);
    const replica = { ...dep, replica: 'mlp/model#0' };
    t.equal(num(after, 'tsserve_replica_restarts_total', replica), 0, 'restarts');
    t.ok(num(after, 'tsserve_replica_resident_memory_bytes', replica) > 1e6, 'the replica\'s RSS');
    t.ok(num(after, 'tsserve_replica_cpu_seconds_total', replica) > 0, 'its CPU time');
    t.ok(count(after, 'tsserve_replica_start_seconds', dep) >= 1, 'its start time');
    t.ok(count(after, 'tsserve_replica_model_load_seconds', dep) >= 1, 'its model\'s load time');
    t.equal(sample(after, 'tsserve_config_info')?.labels?.version, (await status()).config.version, 'the running version');
    t.equal(num(after, 'tsserve_config_info'), 1);
    for (const own of ['tsserve_process_cpu_user_seconds_total', 'tsserve_process_resident_memory_bytes', 'tsserve_nodejs_eventloop_lag_seconds', 'tsserve_nodejs_heap_size_used_bytes']) {
        t.ok(after.has(own), `the front process's own: ${own}`);
    }
    const traffic = (await status()).applications[0].deployments[0].traffic;
    t.ok(traffic.requests >= 27 && traffic.requests_per_s > 0, 'status: the last minute\'s requests and rate', traffic);
    t.ok((traffic.p50_ms as number) > 0 && (traffic.p99_ms as number) >= (traffic.p50_ms as number), 'and its latency percentiles', traffic);
    const reloads = (m: Map<string, Family>) => num(m, 'tsserve_config_reloads_total', { result: 'unchanged' });
    const mark = reloads(after);
    await fetch(`${s.url}/-/reload`, { method: 'POST', headers: admin });
    t.equal(reloads(await scrape()) - mark, 1, 'reloads by result');
});

t.test('a request refused before hapi (a full queue) is counted, logged and has its id', async (t) => {
    const before = await scrape();
    const a = await s.post('/closed/predict', { inputs: [[1, 2, 3, 4]] }, { 'x-request-id': 'refused-1' });
    t.match(a, { status: 503, body: { code: 'QUEUE_FULL', request_id: 'refused-1' } });
    t.equal(a.headers.get('x-request-id'), 'refused-1');
    const after = await scrape();
    t.equal(num(after, 'tsserve_http_requests_total', { route: '/closed/predict', status_code: '503' }) - num(before, 'tsserve_http_requests_total', { route: '/closed/predict', status_code: '503' }), 1);
    t.equal(num(after, 'tsserve_deployment_errors_total', { application: 'closed', code: 'QUEUE_FULL' }) - num(before, 'tsserve_deployment_errors_total', { application: 'closed', code: 'QUEUE_FULL' }), 1);
    const line = await until(() => records().find((r) => r.request_id === 'refused-1'), { what: 'the refusal\'s access-log line' });
    t.match(line, { msg: 'POST /closed/predict 503', application: 'closed', deployment: 'model', status: 503, bytes_in: Number, bytes_out: Number, total_ms: Number });
    // one that waits for 100 Continue before its body (curl's, with a large body) is refused before it sends it
    const expecting = await new Promise<{ status?: number; continued: boolean; body: string }>((resolve, reject) => {
        let continued = false;
        const req = http.request(`${s.url}/closed/predict`, { method: 'POST', headers: { 'content-type': 'application/json', expect: '100-continue', 'content-length': 2 } }, (res) => {
            let body = '';
            res.on('data', (d) => body += d).on('end', () => resolve({ status: res.statusCode, continued, body }));
        });
        req.on('continue', () => {
            continued = true;
            req.end('{}');
        }).on('error', reject);
        req.flushHeaders();
    });
    t.match(expecting, { status: 503, continued: false, body: /"code":"QUEUE_FULL"/ });
});

t.test('request ids: kept when sane, else made; in the header, the error body, the access log and the replica\'s line', async (t) => {
    const kept = await s.post('/mlp/predict', { inputs: [[1, 2, 3, 4], [4, 3, 2, 1]] }, { 'x-request-id': 'client-id.7' });
    t.equal(kept.headers.get('x-request-id'), 'client-id.7');
    const made = await s.post('/mlp/predict', { inputs: [[1, 2, 3]] }, { 'x-request-id': 'not sane!' });
    const id = made.headers.get('x-request-id') as string;
    t.match(id, /^[0-9a-f]{12}-[0-9a-z]+$/, 'one of ours for an insane one');
    t.equal(made.body.request_id, id, 'in the error body');
    t.equal((await s.get('/nowhere')).body.request_id.length > 0, true, 'any error body');

    const access = await until(() => records().find((r) => r.request_id === 'client-id.7'), { what: 'the access-log line' });
    t.match(access, {
        level: 'info', time: Number, msg: 'POST /mlp/predict 200', method: 'POST', path: '/mlp/predict', application: 'mlp', deployment: 'model',
        status: 200, bytes_in: JSON.stringify({ inputs: [[1, 2, 3, 4], [4, 3, 2, 1]] }).length, bytes_out: Number(kept.headers.get('content-length')),
        total_ms: Number, queue_ms: Number, batch_size: 2
    }, 'one line with its fields');
    t.match(await until(() => records().find((r) => r.request_id === id), { what: 'the refused request\'s line' }), { status: 400, application: 'mlp' });

    const failed = await s.post('/faulty/predict', { mode: 'break' }, { 'x-request-id': 'fault-1' });
    t.match(failed, { status: 500, body: { code: 'HANDLER_ERROR', request_id: 'fault-1' } });
    const replicaLine = await until(() => records().find((r) => r.request_ids?.includes('fault-1')), { what: 'the replica\'s line' });
    t.match(replicaLine, { level: 'error', application: 'faulty', deployment: 'model', replica: 'faulty/model#0', msg: 'a batch of 1 request(s) failed: HANDLER_ERROR: handler faulty.js: preprocess broke', err: { message: /preprocess broke/, stack: /^Error: handler faulty\.js: preprocess broke\n\s+at / } },
        'its application, deployment and replica; the stack in one record');
    t.match(await until(() => records().find((r) => r.request_id === 'fault-1'), { what: 'its access line' }), { status: 500, deployment: 'model', application: 'faulty' }, 'and the access line');
});

t.test('logging_config and metrics apply live, and restart no replica', async (t) => {
    const before = await pids();
    // The access log off: a request then leaves no line (seen by the line of one sent after it is back on).
    await reconfigure(yaml('logging_config: { enable_access_log: false }\n'));
    t.equal((await s.post('/mlp/predict', { inputs: [[1, 2, 3, 4]] }, { 'x-request-id': 'quiet-1' })).status, 200);
    // Level ERROR: info lines go, warnings too; then the access log back on, and TEXT.
    await reconfigure(yaml('logging_config: { log_level: error }\n'));
    t.equal((await s.post('/mlp/predict', { inputs: [[1, 2, 3, 4]] }, { 'x-request-id': 'quiet-2' })).status, 200);
    await reconfigure(yaml('logging_config: { encoding: TEXT }\nmetrics: false\n'));
    t.equal((await s.post('/mlp/predict', { inputs: [[1, 2, 3, 4]] }, { 'x-request-id': 'loud-1' })).status, 200);
    const text = await s.waitFor(/^(\S+Z INFO  POST \/mlp\/predict 200 request_id=loud-1 .*)$/m);
    t.match(text, /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO  POST \/mlp\/predict 200 request_id=loud-1 method=POST path=\/mlp\/predict application=mlp deployment=model status=200 bytes_in=\d+ bytes_out=\d+ total_ms=[\d.]+ queue_ms=[\d.]+ batch_size=1$/, 'TEXT: one line, fields as key=value');
    t.notMatch(s.output(), /quiet-1|quiet-2/, 'no line while the access log was off, nor below its level');
    t.equal((await fetch(`${s.url}/metrics`, { headers: admin })).status, 404, 'metrics: false: no /metrics');

    // A deployment's own logging_config reaches its replicas in place: the faulty replica's line in TEXT, the front's in JSON.
    await reconfigure(yaml('metrics: true\n', 'logging_config: { encoding: TEXT }'));
    t.equal((await s.post('/faulty/predict', { mode: 'break' }, { 'x-request-id': 'fault-text' })).status, 500);
    const line = await s.waitFor(/^(\S+Z ERROR a batch of 1 request\(s\) failed: .*request_ids=\["fault-text"\].*)$/m);
    t.match(line, /application=faulty deployment=model replica=faulty\/model#0/, 'the replica\'s fields');
    t.match(line, /err=.*preprocess broke\\n\s+at /, 'its stack on the line');
    await until(() => records().find((r) => r.request_id === 'fault-text'), { what: 'the front\'s JSON access line' });
    t.equal((await fetch(`${s.url}/metrics`, { headers: admin })).status, 200, 'metrics back');
    t.same(await pids(), before, 'no replica restarted');
    t.same((await status()).applications.flatMap((a: any) => a.deployments.map((d: any) => d.replicas[0].restarts)), [0, 0, 0]);
});
