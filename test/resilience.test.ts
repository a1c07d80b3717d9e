// Overload, timeouts, dying and hanging replicas, failing models, graceful shutdown: each with a real process.
// Starting servers and replicas is most of what these tests cost: the first test has a server of its own (a request
// timeout of 2 s, which no other test could live with); the others share one, each on an application of its own but
// for the last, which stops it (see `shared` below). Both start at once, before the first test.
import t from 'tap';
import net from 'node:net';
import { fixtures, serve, app, held, near, slowRows, strikesUnderLoad, until, type Served } from './helpers';

const dir = fixtures();

process.env.TSSERVE_SHED_TEST_KEYS = 'shed-test-key-0123456789';
const key = { 'x-api-key': process.env.TSSERVE_SHED_TEST_KEYS };

/** The first test's server: a request timeout of 2 s. */
const overload = serve(dir, `http_options: { request_timeout_s: 2 }
applications:
${app('slow', 'slow.onnx', `max_ongoing_requests: 1
max_queued_requests: 2
batching: { max_batch_size: 1 }
health_check_timeout_s: 600`)}`);

/**
 * The server the tests after the first share. API keys on (see 'a full deployment refuses a request as soon as its
 * headers arrive'), so the others send the key: see keyed(). No request should time out (see 'a model error or a
 * client gone costs no other request'). slow: one replica that holds one request at a time, one more queued, held
 * stopped on purpose (a long health check timeout); lookup: a model that fails on one id; mlp: health checks every 0.2
 * s that give up after 0.5 s; twin: two replicas of slow, killed under load, then shut down.
 */
const shared = serve(dir, `auth: { api_keys: { env: TSSERVE_SHED_TEST_KEYS } }
http_options: { request_timeout_s: 600 }
applications:
${app('slow', 'slow.onnx', `max_ongoing_requests: 1
max_queued_requests: 1
batching: { max_batch_size: 1 }
health_check_timeout_s: 600`)}${app('lookup', 'lookup.onnx', 'batching: { max_batch_size: 64, batch_wait_timeout_s: 0.05 }')}${app('mlp', 'mlp.onnx', `health_check_period_s: 0.2
health_check_timeout_s: 0.5`)}${app('twin', 'slow.onnx', `num_replicas: 2
batching: { max_batch_size: 4, batch_wait_timeout_s: 0.002 }`)}`, 'shared.yaml');
/**
 * Both servers, started: the first test waits for both, so that no start-up (CPU-heavy) runs beside its requests, which
 * have 2 s. (A failure to start is the tests' to report.)
 */
const started = Promise.all([overload, shared]);
started.catch(() => {});
// (the first test stops its server, the last the shared one, and checks how; this is for a failure before that)
t.teardown(async () => {
    for (const server of [overload, shared]) {
        await (await server.catch(() => undefined))?.stop();
    }
});

/** The shared server, as a client with the key sees it: every request it sends carries the key. */
async function keyed(): Promise<Served> {
    const s = await shared;
    const withKey = async (route: string, init: RequestInit = {}) => {
        const res = await fetch(s.url + route, { ...init, headers: { ...init.headers as Record<string, string>, ...key } });
        const text = await res.text();
        let body: unknown = text;
        try {
            body = JSON.parse(text);
        }
        catch {}
        return { status: res.status, body: body as any, headers: res.headers };
    };
    return {
        ...s,
        post: (route, body, headers = {}) => s.post(route, body, { ...key, ...headers }),
        get: (route) => withKey(route)
    };
}

interface ReplicaStatus { id: string; pid: number; state: string; restarts: number; inflight_requests: number; last_error?: string; last_failure?: { error: string; at: string } }

async function replicas(s: Served, name: string): Promise<ReplicaStatus[]> {
    const status = (await s.get('/-/status')).body;
    return status.applications.find((a: any) => a.name === name).deployments[0].replicas;
}

/** Requests waiting in one application's first deployment's queue (not those in flight). */
const queued = async (s: Served, name: string): Promise<number> =>
    (await s.get('/-/status')).body.applications.find((a: any) => a.name === name).deployments[0].queued_requests;

/** `slow` computes y = x at several milliseconds per row. */

t.test('overload: a full queue answers 503 with Retry-After; no answer within request_timeout_s is a 504', async (t) => {
    const [s] = await started;
    t.teardown(() => s.stop());

    // Small requests (tens of milliseconds), so that even a loaded machine answers the three admitted in time.
    const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => s.post('/slow/predict', { inputs: slowRows(6, i) })));
    const ok = answers.filter((a) => a.status === 200);
    const full = answers.filter((a) => a.status === 503);
    t.ok(ok.length >= 3, `${ok.length} answered`);
    t.ok(full.length >= 1, `${full.length} refused`);
    t.equal(ok.length + full.length, 12, 'nothing else happened');
    t.same(full.map((a) => [a.body.code, a.headers.get('retry-after')]), full.map(() => ['QUEUE_FULL', '1']), 'QUEUE_FULL, Retry-After: 1');
    t.match(full[0].body.message, /max_queued_requests/);
    for (const [i, a] of answers.entries()) {
        if (a.status === 200) {
            t.ok(near(a.body.outputs.y.flat(), slowRows(6, i).flat(), 1e-2), `request ${i} got y = x`, { found: a.body.outputs.y, wanted: slowRows(6, i) });
        }
    }

    // A request its replica does not answer (it is stopped), and one queued behind it (max_ongoing_requests: 1): both
    // time out while the first is still in flight on the replica: a timeout does not wait for the model.
    const [replica] = await replicas(s, 'slow');
    await held(replica.pid, async () => {
        const answers: Array<{ status: number; body: any }> = [];
        for (let i = 0; i < 2; i++) {
            void s.post('/slow/predict', { inputs: slowRows(1, 1) }).then((a) => answers.push(a));
        }
        await until(() => answers.length === 2, { what: 'both requests answered while the replica is stopped' });
        for (const a of answers) {
            t.equal(a.status, 504);
            t.equal(a.body.code, 'REQUEST_TIMEOUT');
            t.match(a.body.message, /no answer within 2s/);
        }
        t.match(await replicas(s, 'slow'), [{ pid: replica.pid, inflight_requests: 1 }], 'answered while the model still holds the request');
    });
    await until(async () => (await replicas(s, 'slow'))[0].inflight_requests === 0, { what: 'the replica to finish the request that timed out' });
    t.match(await replicas(s, 'slow'), [{ pid: replica.pid, state: 'RUNNING', restarts: 0 }], 'the replica serves on');
    const after = await s.post('/slow/predict', { inputs: slowRows(2, 4) });
    t.ok(near(after.body.outputs.y.flat(), [4, 4], 1e-2), 'and so does the server', { found: after.body.outputs.y, wanted: slowRows(2, 4) });
});

t.test('a full deployment refuses a request as soon as its headers arrive, and keeps the connection', async (t) => {
    // Refusing without reading the body is what keeps refusals cheap under overload (lib/shed.ts): here the body
    // is never sent before the answer, which only a refusal at the headers can give. With API keys on, a request
    // without one learns nothing of the queue: it gets 401, as from any route that needs a key.
    // The shared server (see the top), as a client sees it: the key is sent where said.
    const s = await shared;
    const status = async () => ((await (await fetch(`${s.url}/-/status`, { headers: key })).json()) as any).applications.find((a: any) => a.name === 'slow').deployments[0];
    const [replica] = (await status()).replicas;
    const { admitted } = await held(replica.pid, async () => {
        const admitted = [s.post('/slow/predict', { inputs: slowRows(1, 1) }, key)];
        await until(async () => (await status()).replicas[0].inflight_requests === 1, { what: 'the first request in flight' });
        admitted.push(s.post('/slow/predict', { inputs: slowRows(1, 2) }, key));
        await until(async () => (await status()).queued_requests === 1, { what: 'the second request queued' });

        const socket = net.connect(Number(new URL(s.url).port), '127.0.0.1');
        t.teardown(() => socket.destroy());
        let received = '';
        socket.on('data', (d) => received += d);
        const answer = async (what: string) => {
            const text = await until(() => /\r\n\r\n/.test(received) && received.length >= received.indexOf('\r\n\r\n') + 4 + Number(/content-length: (\d+)/i.exec(received)?.[1]) && received, { what });
            received = '';
            const [head, body] = text.split('\r\n\r\n');
            return { head, body: JSON.parse(body) };
        };
        const body = JSON.stringify({ inputs: slowRows(1, 3) });
        // A trailing slash and a query string reach the same route, as hapi would route them.
        socket.write(`POST /slow/predict/?a=1 HTTP/1.1\r\nHost: x\r\nX-API-Key: ${key['x-api-key']}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
        const refused = await answer('a refusal before the body is sent');
        t.match(refused.head, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
        t.match(refused.head, /\r\nretry-after: 1\r\n/i);
        t.notMatch(refused.head, /connection: close/i, 'the connection is kept');
        t.same(refused.body, { statusCode: 503, error: 'Service Unavailable', message: 'deployment "slow/model" has 1 requests queued (max_queued_requests)', code: 'QUEUE_FULL', request_id: refused.body.request_id });
        t.match(refused.head, new RegExp(`\r\nx-request-id: ${refused.body.request_id}\r\n`, 'i'), 'the request\'s id, in the body and the header');
        // The body that follows is read and dropped; the connection then carries the next request.
        socket.write(body);
        socket.write('GET /-/healthz HTTP/1.1\r\nHost: x\r\n\r\n');
        t.match(await answer('the next request on the same connection'), { head: /^HTTP\/1\.1 200 OK/, body: { status: 'ok' } });
        // A request refused later, by the scheduler once its body has arrived (a path hapi decodes first), has the same body.
        const late = await s.post('/slow/%70redict', { inputs: slowRows(1, 4) }, key);
        t.equal(late.status, 503);
        t.same({ ...late.body, request_id: undefined }, { ...refused.body, request_id: undefined }, 'the same answer as a refusal at the headers (but for its own id)');
        t.equal(late.headers.get('retry-after'), '1');
        const keyless = await s.post('/slow/predict', { inputs: slowRows(1, 5) });
        t.match(keyless, { status: 401, body: { code: 'UNAUTHORIZED' } }, 'no key: 401, full queue or not');
        return { admitted };
    });
    const answers = await Promise.all(admitted);
    t.same(answers.map((a) => a.status), [200, 200], 'the admitted requests are answered');
    t.ok(near([...answers[0].body.outputs.y.flat(), ...answers[1].body.outputs.y.flat()], [1, 2], 1e-2), 'rightly', { found: answers.map((a) => a.body.outputs.y) });
});

t.test('a model error or a client gone costs no other request', async (t) => {
    // No request here should ever time out (the shared server's request timeout is 600 s): a request left in the
    // queue would stay there. slow: one request at a time, and a long health check timeout, since its replica is held
    // stopped on purpose.
    const s = await keyed();

    t.test('a batch the model fails on is split, so only the bad request fails', async (t) => {
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

    t.test('a client that hangs up while its request is queued takes it out of the queue at once', async (t) => {
        // The replica is stopped holding one request (max_ongoing_requests: 1), so the next one stays queued: it can
        // leave the queue only because its client went (it has 600 s before a timeout, and until() waits 60 s).
        const [replica] = await replicas(s, 'slow');
        const { first } = await held(replica.pid, async () => {
            const first = s.post('/slow/predict', { inputs: slowRows(1, 1) });
            await until(async () => (await replicas(s, 'slow'))[0].inflight_requests === 1, { what: 'the first request in flight' });
            const abort = new AbortController();
            const gone = fetch(`${s.url}/slow/predict`, { method: 'POST', headers: { 'content-type': 'application/json', ...key }, body: JSON.stringify({ inputs: slowRows(1, 2) }), signal: abort.signal });
            await until(async () => await queued(s, 'slow') === 1, { what: 'the second request queued' });
            abort.abort();
            await t.rejects(gone, { name: 'AbortError' });
            await until(async () => await queued(s, 'slow') === 0, { what: 'the request whose client hung up to leave the queue' });
            t.match(await replicas(s, 'slow'), [{ inflight_requests: 1 }], 'while the request ahead of it is still held: it never reached the replica');
            // wrapped: an async function returning the promise itself would wait for it, and it waits for SIGCONT
            return { first };
        });
        t.equal((await first).status, 200, 'the request ahead is answered');
        t.equal((await s.post('/slow/predict', { inputs: slowRows(1, 0) })).status, 200, 'and the server keeps serving');
    });
});

t.test('a hung replica fails its health check and is replaced', async (t) => {
    // mlp, on the shared server: health checks every 0.2 s, given up on after 0.5 s. Its replica has been up since the
    // server started: the one stopped must be RUNNING (one held in its start would never be checked), not one being
    // restarted after a check it missed meanwhile, on a loaded machine.
    const s = await keyed();
    const [r] = await until(async () => {
        const rs = await replicas(s, 'mlp');
        return rs[0].state === 'RUNNING' && rs;
    }, { what: 'the replica of mlp running' });
    t.same((await s.get('/-/ready')).body, { ready: true });
    const killed = () => s.output().match(/replica mlp\/model#0: health check: no answer within 0.5s; killing it/g)?.length ?? 0;
    const seen = killed();
    process.kill(r.pid, 'SIGSTOP');
    await until(() => killed() > seen, { what: () => `the health check to give up on the replica:\n${s.output()}` });
    const next = await until(async () => (await replicas(s, 'mlp')).find((x) => x.state === 'RUNNING' && x.pid !== r.pid), { what: 'a new replica running' });
    t.equal(next.restarts, r.restarts + 1);
    t.equal((await s.post('/mlp/predict', { inputs: [[1, 2, 3, 4]] })).status, 200);
});

t.test('kill -9 of replicas under load loses no request; a replica killed twice under one request fails it cleanly', async (t) => {
    // twin: two replicas of slow, on the shared server.
    const s = await keyed();
    const before = await replicas(s, 'twin');
    const { done, failed } = await strikesUnderLoad(s, '/twin/predict', (line) => t.comment(line), async () => {
        // Kill a busy replica while the other is up, as one crash at a time looks in production.
        const busy = await until(async () => {
            const rs = await replicas(s, 'twin');
            return rs.every((r) => r.state === 'RUNNING') && rs.find((r) => r.inflight_requests > 0);
        }, { what: 'a busy replica, with the other one running' });
        process.kill(busy.pid, 'SIGKILL');
    });
    t.equal(failed, 0, `no failed request out of ${done}`);
    const after = await until(async () => {
        const rs = await replicas(s, 'twin');
        return rs.every((r) => r.state === 'RUNNING') && rs;
    }, { what: 'both replicas running again' });
    t.equal(after.reduce((n, r) => n + r.restarts, 0), before.reduce((n, r) => n + r.restarts, 0) + 3, 'each killed replica was restarted');
    t.match(after.map((r) => r.last_failure?.error).join(), /process exited unexpectedly \(code null, signal SIGKILL\)/, 'what happened is kept, no longer as the last error');
    t.match(s.output(), /exited unexpectedly \(code null, signal SIGKILL\); restarting/);

    // The same request dies with its replica twice: it fails, clearly, once.
    const victim = s.post('/twin/predict', { inputs: slowRows(600, 5) });
    for (let k = 0; k < 2; k++) {
        const r = await until(async () => (await replicas(s, 'twin')).find((x) => x.state === 'RUNNING' && x.inflight_requests === 1), { what: 'the replica running the request' });
        process.kill(r.pid, 'SIGKILL');
        await until(async () => (await replicas(s, 'twin')).find((x) => x.id === r.id && x.pid !== r.pid), { what: `${r.id} restarted` });
    }
    const v = await victim;
    t.equal(v.status, 500);
    t.equal(v.body.code, 'REPLICA_CRASHED');
});

t.test('SIGTERM finishes requests in flight, then stops replicas and exits 0', async (t) => {
    // The shared server's last test: twin's two replicas hold the requests (each larger than a batch: it runs alone).
    const s = await keyed();
    const inflight = Array.from({ length: 4 }, (_, i) => s.post('/twin/predict', { inputs: slowRows(40, i) }));
    await until(async () => (await replicas(s, 'twin')).some((r) => r.inflight_requests > 0), { what: 'requests in flight' });
    // every replica of the server, not only twin's
    const pids: number[] = (await s.get('/-/status')).body.applications.flatMap((a: any) => a.deployments.flatMap((d: any) => d.replicas.map((r: any) => r.pid)));
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
