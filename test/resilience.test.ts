// Overload, timeouts, dying and hanging replicas, failing models, graceful shutdown: each with a real process.
import t from 'tap';
import { fixtures, serve, app, sleep, type Served } from './helpers';

const dir = fixtures();

interface ReplicaStatus { id: string; pid: number; state: string; restarts: number; inflight_requests: number; last_error?: string }

async function replicas(s: Served, name: string): Promise<ReplicaStatus[]> {
    const status = (await s.get('/-/status')).body;
    return status.applications.find((a: any) => a.name === name).deployments[0].replicas;
}

async function until<T>(what: () => Promise<T | undefined | false>, timeoutMs = 20000): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
        const v = await what();
        if (v) {
            return v;
        }
        if (Date.now() > end) {
            throw new Error('condition not met in time');
        }
        await sleep(20);
    }
}

/** `slow` computes y = x at several milliseconds per row. */
const slowRows = (n: number, v: number) => Array.from({ length: n }, () => [v]);
const near = (a: number, b: number) => Math.abs(a - b) < 1e-2 * Math.max(1, Math.abs(b));

t.test('overload: a full queue answers 503 with Retry-After, a slow request 504, a gone client leaves the queue', async (t) => {
    const s = await serve(dir, `http_options: { request_timeout_s: 2 }
applications:
${app('slow', 'slow.onnx', `max_ongoing_requests: 1
max_queued_requests: 2
batching: { max_batch_size: 1 }`)}`);
    t.teardown(() => s.stop());

    // Small requests (tens of milliseconds), so that even a loaded machine answers the three admitted in time.
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => s.post('/slow/predict', { inputs: slowRows(6, i) })));
    const ok = answers.filter((a) => a.status === 200);
    const full = answers.filter((a) => a.status === 503);
    t.ok(ok.length >= 3, `${ok.length} answered`);
    t.ok(full.length >= 1, `${full.length} refused`);
    t.equal(ok.length + full.length, 12, 'nothing else happened');
    t.ok(full.every((a) => a.body.code === 'QUEUE_FULL' && a.headers.get('retry-after') === '1'));
    t.match(full[0].body.message, /max_queued_requests/);
    answers.forEach((a, i) => a.status === 200 && t.ok(near(a.body.outputs.y[5][0], i), `request ${i} got y = x`));

    // One request long enough to outlive request_timeout_s, and one queued behind it.
    const started = Date.now();
    const [long, behind] = await Promise.all([s.post('/slow/predict', { inputs: slowRows(800, 1) }), s.post('/slow/predict', { inputs: slowRows(1, 1) })]);
    t.equal(long.status, 504);
    t.equal(long.body.code, 'REQUEST_TIMEOUT');
    t.match(long.body.message, /no answer within 2s/);
    t.equal(behind.status, 504, 'a queued request times out too');
    t.ok(Date.now() - started < 6000, 'timeouts are not stuck behind the model');
    t.equal((await replicas(s, 'slow'))[0].state, 'RUNNING');

    // A client that disconnects while queued is dropped from the queue.
    await until(async () => (await replicas(s, 'slow'))[0].inflight_requests === 0);
    const blocker = s.post('/slow/predict', { inputs: slowRows(40, 2) });
    await until(async () => (await replicas(s, 'slow'))[0].inflight_requests === 1);
    const abort = new AbortController();
    const gone = fetch(`${s.url}/slow/predict`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: slowRows(1, 3) }), signal: abort.signal });
    const queued = async () => (await s.get('/-/status')).body.applications[0].deployments[0].queued_requests;
    await until(async () => await queued() === 1);
    abort.abort();
    const aborted = Date.now();
    await t.rejects(gone);
    await until(async () => await queued() === 0, 5000);
    t.ok(Date.now() - aborted < 1000, 'the disconnected request left the queue at once, well before its timeout');
    t.equal((await blocker).status, 200);
    t.equal((await s.post('/slow/predict', { inputs: slowRows(1, 4) })).body.outputs.y[0].length, 1, 'and the server keeps serving');
});

t.test('a batch the model fails on is split, so only the bad request fails', async (t) => {
    const s = await serve(dir, `applications:
${app('lookup', 'lookup.onnx', 'batching: { max_batch_size: 64, batch_wait_timeout_s: 0.05 }')}`);
    t.teardown(() => s.stop());
    const ids = [1, 2, 3, 42, 4, 5, 6, 7];
    const answers = await Promise.all(ids.map((id) => s.post('/lookup/predict', { inputs: [[id]] })));
    answers.forEach((a, i) => {
        if (ids[i] === 42) {
            t.equal(a.status, 500);
            t.equal(a.body.code, 'MODEL_ERROR');
            t.match(a.body.message, /out of bounds|idx/i);
        }
        else {
            t.equal(a.status, 200);
            t.same(a.body.outputs.y, [[10 * ids[i]]]);
        }
    });
    t.equal((await replicas(s, 'lookup'))[0].restarts, 0, 'a model error is not a crash');
});

t.test('kill -9 of replicas under load loses no request; a replica killed twice under one request fails it cleanly', async (t) => {
    const s = await serve(dir, `applications:
${app('slow', 'slow.onnx', `num_replicas: 2
batching: { max_batch_size: 4, batch_wait_timeout_s: 0.002 }`)}`);
    t.teardown(() => s.stop());

    let failed = 0;
    let done = 0;
    let running = true;
    const client = async (c: number) => {
        for (let i = 0; running; i++) {
            const v = c * 1000 + i;
            const a = await s.post('/slow/predict', { inputs: slowRows(3, v) });
            if (a.status !== 200 || !near(a.body.outputs.y[2][0], v)) {
                failed++;
                t.comment(`failed: ${a.status} ${JSON.stringify(a.body)}`);
            }
            done++;
        }
    };
    const clients = Array.from({ length: 8 }, (_, c) => client(c));
    for (let k = 0; k < 3; k++) {
        await sleep(700);
        // Kill a busy replica while the other is up, as one crash at a time looks in production.
        const busy = await until(async () => {
            const rs = await replicas(s, 'slow');
            return rs.every((r) => r.state === 'RUNNING') && rs.find((r) => r.inflight_requests > 0);
        });
        process.kill(busy.pid, 'SIGKILL');
    }
    await sleep(700);
    running = false;
    await Promise.all(clients);
    t.equal(failed, 0, `no failed request out of ${done}`);
    const after = await until(async () => {
        const rs = await replicas(s, 'slow');
        return rs.every((r) => r.state === 'RUNNING') && rs;
    });
    t.equal(after.reduce((n, r) => n + r.restarts, 0), 3, 'each killed replica was restarted');
    t.match(after.map((r) => r.last_error).join(), /process exited unexpectedly \(code null, signal SIGKILL\)/);
    t.match(s.output(), /exited unexpectedly \(code null, signal SIGKILL\); restarting/);

    // The same request dies with its replica twice: it fails, clearly, once.
    const victim = s.post('/slow/predict', { inputs: slowRows(600, 5) });
    for (let k = 0; k < 2; k++) {
        const r = await until(async () => (await replicas(s, 'slow')).find((x) => x.state === 'RUNNING' && x.inflight_requests === 1));
        process.kill(r.pid, 'SIGKILL');
        await until(async () => (await replicas(s, 'slow')).find((x) => x.id === r.id && x.pid !== r.pid));
    }
    const v = await victim;
    t.equal(v.status, 500);
    t.equal(v.body.code, 'REPLICA_CRASHED');
});

t.test('a hung replica fails its health check and is replaced', async (t) => {
    const s = await serve(dir, `applications:
${app('mlp', 'mlp.onnx', `health_check_period_s: 0.2
health_check_timeout_s: 0.5`)}`);
    t.teardown(() => s.stop());
    t.same((await s.get('/-/ready')).body, { ready: true });
    const [r] = await replicas(s, 'mlp');
    process.kill(r.pid, 'SIGSTOP');
    await s.waitFor(/health check: no answer within 0.5s; killing it/);
    const next = await until(async () => (await replicas(s, 'mlp')).find((x) => x.state === 'RUNNING' && x.pid !== r.pid));
    t.equal(next.restarts, 1);
    t.equal((await s.post('/mlp/predict', { inputs: [[1, 2, 3, 4]] })).status, 200);
});

t.test('SIGTERM finishes requests in flight, then stops replicas and exits 0', async (t) => {
    const s = await serve(dir, `applications:
${app('slow', 'slow.onnx', 'num_replicas: 2')}`);
    const inflight = Array.from({ length: 4 }, (_, i) => s.post('/slow/predict', { inputs: slowRows(40, i) }));
    await until(async () => (await replicas(s, 'slow')).some((r) => r.inflight_requests > 0));
    const pids = (await replicas(s, 'slow')).map((r) => r.pid);
    const code = s.stop('SIGTERM');
    const answers = await Promise.all(inflight);
    t.same(answers.map((a) => a.status), [200, 200, 200, 200], 'every request in flight was answered');
    t.equal(await code, 0, 'exit code 0');
    t.match(s.output(), /SIGTERM received[\s\S]*shutting down[\s\S]*stopped/);
    for (const pid of pids) {
        t.throws(() => process.kill(pid, 0), 'replica process is gone');
    }
    await t.rejects(fetch(s.url), 'the listener is closed');
});
