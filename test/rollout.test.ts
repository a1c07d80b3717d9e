// Beyond one machine on Kubernetes (issue 13): several pods behind a Service lose no request, neither when their
// ConfigMap changes nor when a pod is replaced. Three real `tsserve up` processes share one config folder laid out as
// the kubelet lays out a ConfigMap volume, behind a small load balancer of this file that does what a Service and its
// endpoints controller do: it sends each request to one pod it believes ready, round-robin, learns readiness by
// probing GET /-/ready every 100 ms, takes a terminating pod out at once, and never retries (a failed request is
// failed). Eight clients loop through it for the whole test, each answer checked against the model's own arithmetic.
// 1. The ConfigMap's `..data` link is swapped, as the kubelet does, to a file that names another model: each pod
//    applies it as a rolling update; every answer comes from one model or the other, the old one before the swap, the
//    new one once every pod has applied it, and no request fails.
// 2. A pod is replaced, as a Deployment's rolling update does: a new pod starts and joins once ready; the old one is
//    taken out of the endpoints, its preStop hook sleeps, then it gets SIGTERM: /-/ready turns 503 while it still
//    serves what is in flight (a slow upload, and a request sent to it after the signal), then it exits 0. No request
//    fails at the balancer.
// The pods run the whole test, both scenarios, so that three start-ups are paid once.
import t from 'tap';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { mlpWeights, type MlpWeights } from '../modelgen/zoo';
import { fixtures, near, sleep, start, until, type Served } from './helpers';

const dir = fixtures();

/** The part of tap's `t` that noneFailed() uses. */
type Checks = Pick<typeof t, 'comment' | 'same'>;

/** The two models' weights, as fixtures() writes them: mlp.onnx and mlp2.onnx. */
const weights = { old: mlpWeights(), new: mlpWeights({ seed: 7 }) };
type Model = keyof typeof weights;

/** What mlp() computes for one row x: relu(x·w1 + b1)·w2 + b2. */
function forward({ hidden, outputs, w1, b1, w2, b2 }: MlpWeights, x: number[]): number[] {
    const h = Array.from({ length: hidden }, (_, j) => Math.max(0, b1[j] + x.reduce((s, v, i) => s + v * w1[i * hidden + j], 0)));
    return Array.from({ length: outputs }, (_, k) => b2[k] + h.reduce((s, v, j) => s + v * w2[j * outputs + k], 0));
}

/** Which model answered y for x, if either did. */
function answeredBy(x: number[], y: unknown): Model | undefined {
    const row = Array.isArray(y) && y.length === 1 && Array.isArray(y[0]) ? y[0] as number[] : undefined;
    return row && (Object.keys(weights) as Model[]).find((m) => near(row, forward(weights[m], x), 1e-4));
}

/** serve.yaml of the pods: one application, one replica of the model (a file of fixtures()). */
const yaml = (model: string) => `http_options: { request_timeout_s: 30 }
applications:
  - name: mlp
    deployments:
      - name: model
        model: { path: ${path.join(dir, model)} }
`;

/**
 * A ConfigMap volume as the kubelet lays it out (its AtomicWriter): the files in a timestamped folder, `..data` a link
 * to it, and each file a link through `..data`: serve.yaml -> ..data/serve.yaml. update() writes a new timestamped
 * folder, points a temporary link `..data_tmp` at it, renames that over `..data` (the one atomic step), and removes
 * the old folder, in the kubelet's order.
 */
function configMap(text: string): { file: string; update(text: string): void } {
    const root = fs.mkdtempSync(path.join(dir, 'configmap-'));
    let n = 0;
    const folder = () => {
        // the kubelet's name: the time, and a random suffix (here a count)
        const name = `..2026_12_02_10_00_${String(n).padStart(2, '0')}.${String(++n).padStart(9, '0')}`;
        fs.mkdirSync(path.join(root, name));
        fs.writeFileSync(path.join(root, name, 'serve.yaml'), text);
        return name;
    };
    let current = folder();
    fs.symlinkSync(current, path.join(root, '..data'));
    fs.symlinkSync('..data/serve.yaml', path.join(root, 'serve.yaml'));
    return {
        file: path.join(root, 'serve.yaml'),
        update(next) {
            text = next;
            const old = current;
            current = folder();
            fs.symlinkSync(current, path.join(root, '..data_tmp'));
            fs.renameSync(path.join(root, '..data_tmp'), path.join(root, '..data'));
            fs.rmSync(path.join(root, old), { recursive: true });
        }
    };
}

/** A pod behind the balancer, as its endpoints controller sees it. */
interface Endpoint {
    name: string;
    pod: Served;
    /** the last probe's verdict: GET /-/ready answered 200 */
    ready: boolean;
    /** taken out of the endpoints, as a pod is once it starts terminating (its probes go on, for the test to see) */
    terminating: boolean;
    /** what the probes saw, each change once: a status code, or the error of a probe that got no answer */
    probes: Array<number | string>;
    /** requests sent to it */
    forwarded: number;
    removed: boolean;
}

/** How often a pod's readiness is probed. */
const probePeriodMs = 100;

/**
 * The test's load balancer: a Service and its endpoints controller in one small HTTP server. Each request goes to the
 * next ready, non-terminating pod (round-robin), over kept-alive connections, as an L7 proxy's upstreams do. It is
 * never retried: a connection error, an answer cut short or a 5xx from the pod, or no pod to send it to, is a failure,
 * recorded in `failures` (and the client gets a 502 or 503, or a cut answer).
 */
async function balancer() {
    const endpoints: Endpoint[] = [];
    /** every pod that ever joined */
    const all: Endpoint[] = [];
    const failures: string[] = [];
    const agent = new http.Agent({ keepAlive: true });
    let next = 0;
    let closed = false;
    const fail = (why: string) => failures.push(why);

    const probe = async (ep: Endpoint) => {
        while (!ep.removed && !closed) {
            const seen = await new Promise<number | string>((resolve) => {
                const req = http.get(`${ep.pod.url}/-/ready`, { agent: false, timeout: 2000 }, (res) => {
                    res.resume();
                    res.on('end', () => resolve(res.statusCode as number));
                    res.on('error', (e) => resolve(e.message));
                });
                req.on('timeout', () => req.destroy(new Error('probe timed out')));
                req.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
            });
            ep.ready = seen === 200;
            if (ep.probes.at(-1) !== seen) {
                ep.probes.push(seen);
            }
            // the probe's period, as a readinessProbe's periodSeconds
            await sleep(probePeriodMs);
        }
    };

    const server = http.createServer((req, res) => {
        const ready = endpoints.filter((e) => e.ready && !e.terminating);
        if (!ready.length) {
            fail(`${req.method} ${req.url}: no ready endpoint`);
            req.resume();
            res.writeHead(503).end('no ready endpoint');
            return;
        }
        const ep = ready[next++ % ready.length];
        ep.forwarded++;
        const what = `${req.method} ${req.url} to ${ep.name}`;
        const { connection: _c, 'keep-alive': _k, ...headers } = req.headers;
        const up = http.request(`${ep.pod.url}${req.url}`, { method: req.method, headers, agent }, (answer) => {
            const status = answer.statusCode as number;
            if (status >= 500) {
                fail(`${what}: ${status}`);
            }
            answer.on('error', (e) => fail(`${what}: the answer was cut: ${e.message}`));
            answer.on('aborted', () => fail(`${what}: the answer was cut (aborted)`));
            res.writeHead(status, answer.headers);
            answer.pipe(res);
        });
        up.on('error', (e: NodeJS.ErrnoException) => {
            fail(`${what}: ${e.code ?? ''} ${e.message}`);
            if (!res.headersSent) {
                res.writeHead(502).end(e.message);
            }
            else {
                res.destroy();
            }
        });
        req.pipe(up);
    });
    // longer than the clients keep an idle connection, so that the balancer never closes one under a request
    server.keepAliveTimeout = 65_000;
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    return {
        url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        endpoints,
        all,
        failures,
        /** A pod joins: it is probed from now on, and takes requests once ready. */
        add(name: string, pod: Served): Endpoint {
            const ep: Endpoint = { name, pod, ready: false, terminating: false, probes: [], forwarded: 0, removed: false };
            endpoints.push(ep);
            all.push(ep);
            void probe(ep);
            return ep;
        },
        /** The pod starts terminating: out of the endpoints at once, whatever its probes say. */
        terminate(ep: Endpoint) {
            ep.terminating = true;
        },
        /** The pod is gone: no more probes. */
        remove(ep: Endpoint) {
            ep.removed = true;
            endpoints.splice(endpoints.indexOf(ep), 1);
        },
        async close() {
            closed = true;
            server.closeAllConnections();
            server.close();
            agent.destroy();
        }
    };
}

/** One answer the clients got: which model gave it, and when the request was sent and answered. */
interface Answer {
    model: Model;
    sent: number;
    answered: number;
}

/** The pause each client makes between its requests. */
const thinkMs = 20;

/**
 * Eight clients, each sending POST /mlp/predict through url in a loop, one request at a time (thinkMs apart), each
 * with its own input, and checking the answer: 200, and one of the two models' outputs for that input. Anything else
 * is a failure, recorded in `failures`.
 */
function load(url: string) {
    const answers: Answer[] = [];
    const failures: string[] = [];
    let running = true;
    const client = async (c: number) => {
        for (let i = 0; running; i++) {
            const x = [c / 4 - 1, (i % 13) / 6 - 1, 0.5, ((c + i) % 5) / 2 - 1];
            const sent = performance.now();
            try {
                const res = await fetch(`${url}/mlp/predict`, {
                    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [x] }), signal: AbortSignal.timeout(60000)
                });
                const text = await res.text();
                const model = res.status === 200 ? answeredBy(x, JSON.parse(text).outputs?.y) : undefined;
                if (model) {
                    answers.push({ model, sent, answered: performance.now() });
                }
                else {
                    failures.push(`client ${c}, request ${i} (${JSON.stringify(x)}): ${res.status} ${text.slice(0, 300)}`);
                }
            }
            catch (e) {
                failures.push(`client ${c}, request ${i}: ${(e as Error).message}: ${((e as Error).cause as Error)?.message ?? ''}`);
            }
            // a client's think time: steady load that leaves the pods' start-up and rollouts CPU on a 2-core machine
            await sleep(thinkMs);
        }
    };
    const clients = Array.from({ length: 8 }, (_, c) => client(c));
    return {
        answers,
        failures,
        /** Resolves once n more answers have come. */
        async answered(n: number, after: string) {
            const mark = answers.length + failures.length;
            await until(() => answers.length + failures.length >= mark + n, { what: `${n} answers ${after}` });
        },
        async stop() {
            running = false;
            await Promise.all(clients);
        }
    };
}

/** A pod's /-/status. */
const status = async (pod: Served) => (await pod.get('/-/status')).body;

/**
 * The pod's config version once it has settled: its deployment RUNNING its one replica, of the deployment's version
 * (the old one gone); undefined before.
 */
async function settled(pod: Served): Promise<string | undefined> {
    const s = await status(pod);
    const d = s.applications[0].deployments[0];
    const one = d.status === 'RUNNING' && d.running_replicas === 1 && d.target_replicas === 1
        && JSON.stringify(d.replicas_by_version) === JSON.stringify({ [d.version]: 1 });
    return one ? s.config.version : undefined;
}

/**
 * A POST /mlp/predict sent straight to a pod whose body is held back: resolves once the pod has the request (it
 * answered `Expect: 100-continue`, as hapi does once it has it; curl sends that header with a large body), with send()
 * to send the body and get the answer.
 */
async function slowUpload(pod: Served, x: number[]): Promise<{ send(): Promise<{ status: number; body: string }> }> {
    const body = JSON.stringify({ inputs: [x] });
    const req = http.request(`${pod.url}/mlp/predict`, {
        method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), expect: '100-continue' }
    });
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
        req.on('response', (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d) => text += d);
            res.on('end', () => resolve({ status: res.statusCode as number, body: text }));
            res.on('error', reject);
        });
        req.on('error', reject);
    });
    req.flushHeaders();
    await Promise.race([once(req, 'continue'), answer]);
    return {
        send() {
            req.end(body);
            return answer;
        }
    };
}

t.test('pods behind a load balancer: a ConfigMap update and a pod replaced, under load, fail no request', async (t) => {
    const map = configMap(yaml('mlp.onnx'));
    const pods = await Promise.all([0, 1, 2].map(() => start(map.file)));
    const lb = await balancer();
    const eps = pods.map((pod, i) => lb.add(`pod-${i}`, pod));
    const running = new Set(pods);
    const out = () => [...running].map((pod, i) => `pod ${i}:\n${pod.output()}`).join('\n');
    await until(() => eps.every((e) => e.ready), { what: () => `every pod ready at the balancer:\n${out()}` });

    const clients = load(lb.url);
    t.teardown(async () => {
        await clients.stop();
        await lb.close();
        await Promise.all([...running].map((pod) => pod.stop()));
    });
    const failures = () => [...lb.failures.map((f) => `balancer: ${f}`), ...clients.failures.map((f) => `client: ${f}`)];
    /** asserts that nothing failed so far, showing each failure */
    const noneFailed = (t: Checks, what: string) => {
        for (const f of failures()) {
            t.comment(f);
        }
        t.same(failures(), [], what);
    };
    await clients.answered(80, 'to start with');

    await t.test('the ConfigMap swapped under load: a rolling update on each pod, and no request fails', async (t) => {
        const before = await Promise.all(pods.map(async (pod) => (await status(pod)).config.version as string));
        const swapped = performance.now();
        map.update(yaml('mlp2.onnx'));
        await until(async () => (await Promise.all(pods.map(async (pod, i) => ((await settled(pod)) ?? before[i]) !== before[i]))).every(Boolean),
            { what: () => `every pod to apply the new config:\n${out()}`, timeoutMs: 120000 });
        const done = performance.now();
        for (const pod of pods) {
            t.match((await status(pod)).config.last_reload, { trigger: /file change/, result: 'applied', changes: { replaced: ['mlp/model'] } }, 'a rolling replace');
        }
        // load on the new version too, so that the answers after the rollout are seen
        await clients.answered(150, 'since every pod applied the change');

        noneFailed(t, 'no request failed');
        const { answers } = clients;
        t.same(answers.filter((a) => a.answered < swapped && a.model !== 'old'), [], 'before the swap, the old model answers');
        t.same(answers.filter((a) => a.sent > done && a.model !== 'new'), [], 'once every pod has applied it, the new model answers');
        t.ok(answers.some((a) => a.model === 'new'), 'the new model answered');
        t.comment(`${answers.length} answers: ${answers.filter((a) => a.model === 'old').length} by the old model, ${answers.filter((a) => a.model === 'new').length} by the new`);
    });

    await t.test('a pod replaced under load: readiness turns 503 first, what is in flight is answered, no request fails', async (t) => {
        const began = performance.now();
        // A Deployment's rolling update (maxSurge 1, maxUnavailable 0): the new pod starts, on the same ConfigMap, and
        // joins the endpoints once its readiness probe passes.
        const fresh = await start(map.file, { started: false });
        running.add(fresh);
        const joined = lb.add('pod-3', fresh);
        await until(() => joined.ready, { what: () => `the new pod ready at the balancer:\n${fresh.output()}`, timeoutMs: 120000 });
        t.equal((await status(fresh)).config.version, (await status(pods[1])).config.version, 'the new pod runs the current ConfigMap');

        // Then the old pod goes. A request that reached it before is still arriving: a slow upload, held by the test.
        const [old] = pods;
        const x = [0.25, -0.5, 1, 0];
        const upload = await slowUpload(old, x);
        const served = eps[0].forwarded;
        // It starts terminating: the endpoints controller takes it out of the Service at once, while its preStop hook
        // sleeps (this sleep is that hook's), and only then the kubelet sends SIGTERM.
        lb.terminate(eps[0]);
        await sleep(1000);
        const exited = old.stop('SIGTERM');
        await until(() => eps[0].probes.includes(503), { what: () => `the old pod's /-/ready to answer 503 (probes saw ${eps[0].probes})` });
        const ready = await old.get('/-/ready');
        t.match(ready, { status: 503, body: { code: 'REPLICA_UNAVAILABLE', details: { not_ready: { tsserve: 'shutting down' } } } }, '/-/ready answers 503: shutting down');
        t.equal((await old.get('/-/healthz')).status, 200, '/-/healthz stays 200');
        // a client that has not seen /-/ready fail yet is still served, while a request is in flight
        const late = await old.post('/mlp/predict', { inputs: [x] });
        t.equal(answeredBy(x, late.body.outputs?.y), 'new', 'a request sent after SIGTERM is served');
        const held = await upload.send();
        t.equal(held.status, 200, 'the upload in flight at SIGTERM is answered');
        t.equal(answeredBy(x, JSON.parse(held.body).outputs?.y), 'new', 'and rightly');
        t.equal(await exited, 0, 'the old pod exits 0');
        running.delete(old);
        t.match(old.output(), /shutting down: \/-\/ready answers 503[^]*stopped/, 'it said so, and stopped');
        lb.remove(eps[0]);
        t.equal(eps[0].forwarded, served, 'the balancer sent it nothing once it was terminating');

        // load on the pods that are left and the new one
        await clients.answered(150, 'since the old pod went');
        t.ok(joined.forwarded > 0, `the new pod took requests (${joined.forwarded})`);
        noneFailed(t, 'no request failed');
        t.same(clients.answers.filter((a) => a.sent > began && a.model !== 'new'), [], 'the new model answers throughout');
    });
    await clients.stop();
    noneFailed(t, 'no request failed, in all');
    t.comment(`${clients.answers.length} answers through the balancer; sent to each pod: ${lb.all.map((e) => `${e.name} ${e.forwarded}`).join(', ')}`);
});
