// Live config: serve.yaml edited while a real server runs under load; each way a file can change. Starting servers
// and replicas is most of what these tests cost: the tests but one share one server, each on applications of its own,
// and each writes the whole file, as the one before left it, with its own change (see `shared` below). The watched
// Kubernetes layout has a server of its own. Both start at once, before the first test; the Kubernetes test runs
// beside the others.
import t from 'tap';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { once } from 'node:events';
import { fixtures, serve, start, cliHere, held, sleep, until, validOpenApi, type Served } from './helpers';

const dir = fixtures();
const probe = { inputs: [[1, 2, 3, 4]] };

interface DeploymentStatus { name: string; version: string; target_replicas: number; running_replicas: number; queued_requests: number; replicas: Array<{ pid: number; state: string }> }

type Test = Pick<typeof t, 'equal'>;

const status = async (s: Served) => (await s.get('/-/status')).body;
const deployment = async (s: Served, app: string): Promise<DeploymentStatus> =>
    (await status(s)).applications.find((a: any) => a.name === app).deployments[0];
const pids = async (s: Served, app: string) => (await deployment(s, app)).replicas.map((r) => r.pid).sort();

/**
 * Waits for the n-th counted reload, and checks that no other follows: one change makes exactly one reload. A second
 * (of a file seen half-written, say) would come within the watcher's debounce (150 ms) and a look; that something
 * does NOT happen can only be seen by waiting, hence the sleep.
 */
async function reloaded(t: Test, s: Served, n: number): Promise<any> {
    await until(async () => (await status(s)).config.reloads >= n, { what: () => `reload ${n}:\n${s.output()}` });
    await sleep(600);
    const after = await status(s);
    t.equal(after.config.reloads, n, `exactly one reload (${after.config.last_reload.trigger})`);
    return after.config.last_reload;
}

const mlpApp = (extra: string, model = 'mlp.onnx') => `  - name: mlp
    deployments:
      - name: model
        model: { path: ./${model} }
${extra.split('\n').map((l) => `        ${l}`).join('\n')}
`;
const keepApp = `  - name: keep
    deployments:
      - { name: model, model: { path: ./mlp2.onnx } }
`;
const config = (...apps: string[]) => `http_options: { request_timeout_s: 30 }\napplications:\n${apps.join('')}`;
/** The application of 'user_config is applied in place through the handler' with its user_config, as YAML flow text. */
const halvesApp = (userConfig: string) => mlpApp(`user_config: ${userConfig}`, 'halves.onnx').replace('name: mlp', 'name: halves');
/** The application of 'removing an application finishes its queued requests first'. */
const slowApp = `  - name: slow\n    deployments:\n      - { name: model, max_ongoing_requests: 1, batching: { max_batch_size: 1 }, health_check_timeout_s: 600, model: { path: ./slow.onnx } }\n`;

/**
 * The server that the tests but the Kubernetes one share, on serve.yaml: mlp and keep (edits under load), halves
 * (user_config), slow (removed while requests wait). mlp comes first, for errors to name it as applications[0].
 */
const file = path.join(dir, 'serve.yaml');
/** The other applications, as they stay while mlp and keep change. */
const others = halvesApp('{ outputs: [right] }') + slowApp;
const shared = serve(dir, config(mlpApp('num_replicas: 1'), keepApp, others));

// Kubernetes' layout, for 'every way a file changes triggers exactly one reload': serve.yaml -> ..data/serve.yaml,
// ..data -> ..<timestamp>/, swapped atomically. One application, w, on a model of its own.
const k8s = fs.mkdtempSync(path.join(dir, 'configmap-'));
const watched = path.join(dir, 'watched.onnx');
fs.copyFileSync(path.join(dir, 'mlp.onnx'), watched);
const yaml = (n: number) => `applications:\n  - name: w\n    deployments:\n      - { name: model, num_replicas: ${n}, model: { path: ${watched} } }\n`;
const version = (name: string, n: number) => {
    fs.mkdirSync(path.join(k8s, name));
    fs.writeFileSync(path.join(k8s, name, 'serve.yaml'), yaml(n));
};
version('..2026_01', 2);
fs.symlinkSync('..2026_01', path.join(k8s, '..data'));
fs.symlinkSync('..data/serve.yaml', path.join(k8s, 'serve.yaml'));
const kubernetes = start(path.join(k8s, 'serve.yaml'));

/** Both servers, started (a failure to start is the tests' to report). */
const started = Promise.all([shared, kubernetes]);
started.catch(() => {});
t.before(() => started);
// (the last test on each stops it; this is for a failure before that)
t.teardown(async () => {
    for (const server of [shared, kubernetes]) {
        await (await server.catch(() => undefined))?.stop();
    }
});

// `tsserve reload` and `tsserve status` run in this process (their subprocess entry point is test/cli.test.ts's);
// loaded while the servers start.
const tsserve = cliHere();

/** How many lines of the server's output match re (a global RegExp). */
const lines = (s: Served, re: RegExp): number => s.output().match(re)?.length ?? 0;

// The tests on the shared server run one after another, in order, as one test; the Kubernetes one, on a server of its
// own, runs beside them (two at a time): it waits on its reloads, which the others' load and restarts fill.
t.jobs = 2;

t.test('on the shared server', async (t) => {
    t.test('edits under load: rolling and in-place updates, apps added and removed, bad files refused; nothing fails', async (t) => {
        const s = await shared;
        const answer = async (route: string) => (await s.post(route, probe)).body.outputs.y;
        const mlp1 = await answer('/mlp/predict');
        const mlp2 = await answer('/keep/predict');
        t.notSame(mlp1, mlp2, 'the two models answer differently');
        const keepPids = await pids(s, 'keep');

        let failed = 0;
        let done = 0;
        let running = true;
        const clients = Array.from({ length: 8 }, async () => {
            while (running) {
                const r = await s.post('/mlp/predict', probe).catch((e: Error) => ({ status: 0, body: e.message }));
                if (r.status !== 200 || !([mlp1, mlp2].some((m) => JSON.stringify(m) === JSON.stringify(r.body.outputs.y)))) {
                    failed++;
                    t.comment(`failed: ${r.status} ${JSON.stringify(r.body)}`);
                }
                done++;
            }
        });
        let reloads = (await status(s)).config.reloads;
        const edit = async (yaml: string) => {
            fs.writeFileSync(file, yaml);
            return reloaded(t, s, ++reloads);
        };

        // model changed: rolling replace; answers come from the new weights
        const before = await pids(s, 'mlp');
        let last = await edit(config(mlpApp('num_replicas: 1', 'mlp2.onnx'), keepApp, others));
        t.same(last.changes.replaced, ['mlp/model']);
        t.same(last.changes.unchanged, ['keep/model', 'halves/model', 'slow/model']);
        t.same(await answer('/mlp/predict'), mlp2, 'the new model answers');
        t.notSame(await pids(s, 'mlp'), before, 'by new replicas');

        // batching: in place, same processes
        const replaced = await pids(s, 'mlp');
        last = await edit(config(mlpApp('num_replicas: 1\nbatching: { max_batch_size: 4, batch_wait_timeout_s: 0.01 }', 'mlp2.onnx'), keepApp, others));
        t.same(last.changes.updated, ['mlp/model']);
        t.same(await pids(s, 'mlp'), replaced, 'no replica restarted');

        // scale 1 -> 2 -> 1, draining the one that goes (one replica to start: several start and go the same way)
        last = await edit(config(mlpApp('num_replicas: 2\nbatching: { max_batch_size: 4, batch_wait_timeout_s: 0.01 }', 'mlp2.onnx'), keepApp, others));
        const two = await deployment(s, 'mlp');
        t.equal(two.running_replicas, 2);
        t.same(two.replicas.map((r) => r.pid).filter((p) => replaced.includes(p)), replaced, 'the running replica stays');
        last = await edit(config(mlpApp('num_replicas: 1\nbatching: { max_batch_size: 4, batch_wait_timeout_s: 0.01 }', 'mlp2.onnx'), keepApp, others));
        t.same(await pids(s, 'mlp'), replaced, 'scaled back to the first one');

        // a second application appears in routing and in the OpenAPI document, then goes
        const extra = `  - name: extra\n    route_prefix: /more\n    deployments:\n      - { name: model, model: { path: ./pair.onnx } }\n`;
        const current = config(mlpApp('num_replicas: 1\nbatching: { max_batch_size: 4, batch_wait_timeout_s: 0.01 }', 'mlp2.onnx'), keepApp, others);
        last = await edit(current + extra);
        t.same(last.changes.added, ['extra/model']);
        t.same((await s.post('/more/predict', { inputs: { a: [[1, 2]], b: [[3, 4]] } })).body.outputs.sum, [[4, 6]]);
        const doc = (await s.get('/openapi.json')).body;
        t.match(doc.paths['/more/predict'], { post: { tags: ['extra'] } }, 'in /openapi.json');
        await validOpenApi(t, doc, 'still a valid document');
        last = await edit(current);
        t.same(last.changes.removed, ['extra/model']);
        t.equal((await s.post('/more/predict', { inputs: { a: [[1]], b: [[1]] } })).status, 404);
        t.equal((await s.get('/openapi.json')).body.paths['/more/predict'], undefined, 'gone from /openapi.json');

        // an invalid file changes nothing and says why, until a valid one arrives
        last = await edit(current.replace('num_replicas: 1', 'num_replicas: -2'));
        t.equal(last.result, 'invalid');
        t.match(last.errors, [/applications\[0\]\.deployments\[0\]\.num_replicas: .* must be greater than or equal to 1/]);
        t.match(s.output(), /reload \(file change\) refused, the running version keeps serving/);
        const table = await tsserve(['status', '--address', s.url]);
        t.match(table.stdout, /file change: invalid\)\n {2}! applications\[0\]\.deployments\[0\]\.num_replicas/);
        last = await edit(current.replace('mlp2.onnx', 'broken.onnx'));
        t.match(last.errors, [/mlp\/model: new version \w+ failed to start \(model failed to load: .*\); version \w+ keeps serving/]);
        t.same(await answer('/mlp/predict'), mlp2, 'a model that fails to load leaves the old version serving');
        last = await edit(current.replace('max_batch_size: 4', 'max_batch_size: 8'));
        t.equal(last.result, 'applied');
        t.same(last.errors, []);

        running = false;
        await Promise.all(clients);
        t.equal(failed, 0, `no failed request out of ${done}`);
        t.same(await pids(s, 'keep'), keepPids, 'the untouched deployment kept its replicas throughout');
    });

    t.test('user_config is applied in place through the handler; a wrong one is reported', async (t) => {
        // halves, on the shared server: the file as the test before left it, halves' user_config changed.
        const s = await shared;
        const running = fs.readFileSync(file, 'utf8');
        t.ok(running.includes(halvesApp('{ outputs: [right] }')), 'halves runs as it started');
        const halves = (userConfig: string) => running.replace(halvesApp('{ outputs: [right] }'), halvesApp(userConfig));
        const reloads = (await status(s)).config.reloads;
        const before = await pids(s, 'halves');
        t.same((await s.post('/halves/predict', { inputs: [[1, 2]] })).body.outputs, { right: [[2]] }, 'user_config at start');
        fs.writeFileSync(file, halves('{ outputs: [left, shape] }'));
        let last = await reloaded(t, s, reloads + 1);
        t.same(last.changes.updated, ['halves/model']);
        t.same((await s.post('/halves/predict', { inputs: [[1, 2]] })).body.outputs, { left: [[1]], shape: [1, 2] }, 'only the chosen outputs');
        fs.writeFileSync(file, halves('{ outputs: [nope] }'));
        last = await reloaded(t, s, reloads + 2);
        t.match(last.errors, [/halves\/model#0: user_config of the tensor handler: "outputs" names nope, not among the model's outputs \(left, right, shape\)/]);
        fs.writeFileSync(file, halves('{ outputs: left }'));
        last = await reloaded(t, s, reloads + 3);
        t.match(last.errors, [/"outputs" must be an array/]);
        t.same(await pids(s, 'halves'), before, 'no replica restarted for user_config');
    });

    t.test('removing an application finishes its queued requests first; overlapping reloads run one after another', async (t) => {
        // slow, on the shared server, the last test to use it: it goes from the file as the tests before left it.
        const s = await shared;
        t.teardown(() => s.stop());
        const running = fs.readFileSync(file, 'utf8');
        t.ok(running.includes(slowApp), 'slow runs as it started');
        const reloads = (await status(s)).config.reloads;
        const applying = lines(s, /reload \(file change\): applying/g);
        // The slow replica is stopped (SIGSTOP) holding one request, with three queued behind it (max_ongoing_requests: 1):
        // the reload that removes it cannot finish until it runs again, however fast or slow this machine is.
        const [replica] = (await deployment(s, 'slow')).replicas;
        let answered = 0;
        const { queued, second } = await held(replica.pid, async () => {
            const queued = Array.from({ length: 4 }, (_, i) => s.post('/slow/predict', { inputs: Array.from({ length: 30 }, () => [i]) }).finally(() => answered++));
            await until(async () => (await deployment(s, 'slow')).queued_requests === 3, { what: 'three requests queued behind the one held' });
            fs.writeFileSync(file, running.replace(slowApp, ''));
            await until(() => lines(s, /reload \(file change\): applying/g) > applying, { what: () => `the reload to begin:\n${s.output()}` });
            t.equal((await s.post('/slow/predict', { inputs: [[1]] })).status, 404, 'the route goes at once');
            t.equal((await status(s)).config.reloads, reloads, 'the reload is not done while requests wait');
            t.equal(answered, 0, 'they are still waiting');
            // A second reload, sent while the first cannot finish: once the request is written, the server reads it
            // before anything the stopped replica can answer after SIGCONT.
            const req = http.request(`${s.url}/-/reload`, { method: 'POST' });
            const second = once(req, 'response').then(async ([res]) => {
                let text = '';
                for await (const chunk of res as http.IncomingMessage) {
                    text += chunk;
                }
                return JSON.parse(text);
            });
            req.end();
            await once(req, 'finish');
            return { queued, second };
        });
        const answers = await Promise.all(queued);
        t.same(answers.map((a) => a.status), [200, 200, 200, 200], 'every queued request was answered before the replicas stopped');
        t.match(await second, { trigger: 'POST /-/reload', result: 'unchanged' }, 'the overlapping reload waited for the first, then found nothing to do');
        t.match((await status(s)).config, { reloads: reloads + 1, last_reload: { trigger: 'file change', result: 'applied', changes: { removed: ['slow/model'] } } });
        t.equal((await s.post('/slow/predict', { inputs: [[1]] })).status, 404);
    });
});

t.test('every way a file changes triggers exactly one reload', async (t) => {
    // The Kubernetes layout (see the top), its server started with the shared one, idle since: w's 2 replicas.
    const model = watched;
    const proc = await kubernetes;
    t.teardown(() => proc.stop());
    const target = () => deployment(proc, 'w').then((d) => d.target_replicas);

    // ConfigMap update: a new timestamped folder, and the ..data link swapped by rename
    version('..2026_02', 1);
    fs.symlinkSync('..2026_02', path.join(k8s, '..data_tmp'));
    fs.renameSync(path.join(k8s, '..data_tmp'), path.join(k8s, '..data'));
    await reloaded(t, proc, 1);
    t.equal(await target(), 1, 'symlink swap');

    // an in-place write, through the link, and an editor's atomic save
    fs.writeFileSync(path.join(k8s, 'serve.yaml'), yaml(2));
    await reloaded(t, proc, 2);
    t.equal(await target(), 2, 'in-place write');
    const real = fs.realpathSync(path.join(k8s, 'serve.yaml'));
    fs.writeFileSync(`${real}.swp`, yaml(1));
    fs.renameSync(`${real}.swp`, real);
    await reloaded(t, proc, 3);
    t.equal(await target(), 1, 'atomic rename');

    // the model file replaced on disk: a rolling replace onto the new weights (of the one replica: one to start)
    const oldPids = await pids(proc, 'w');
    fs.copyFileSync(path.join(dir, 'mlp2.onnx'), `${model}.tmp`);
    fs.renameSync(`${model}.tmp`, model);
    const last = await reloaded(t, proc, 4);
    t.same(last.changes.replaced, ['w/model'], 'model file replaced');
    t.notSame(await pids(proc, 'w'), oldPids);

    // SIGHUP, `tsserve reload` and POST /-/reload re-read the file; with nothing changed, nothing happens.
    // `tsserve reload` runs in this process (its subprocess entry point is test/cli.test.ts's).
    proc.proc.kill('SIGHUP');
    await proc.waitFor(/reload \(SIGHUP\): no change/);
    const cli = await tsserve(['reload', '--address', proc.url]);
    t.equal(cli.code, 0);
    t.match(JSON.parse(cli.stdout), { trigger: 'POST /-/reload', result: 'unchanged' });
    fs.writeFileSync(real, 'applications: [\n');
    const bad = await tsserve(['reload', '--address', proc.url]);
    t.equal(bad.code, 1, 'tsserve reload of an invalid file exits 1');
    t.match(JSON.parse(bad.stdout), { result: 'invalid', errors: [/^YAML syntax error: unexpected end of the stream/] });
    // the watcher's own look at the invalid file, before the next write (within its debounce, it would see only that)
    await proc.waitFor(/reload \(file change\) refused/);
    fs.writeFileSync(real, yaml(1).replace('applications:', 'http_options: { port: 1234 }\napplications:'));
    const notice = await proc.waitFor(/reload: (http_options changed.*)/);
    t.match(notice, /restarted/);
    // 4 file changes, the invalid file seen by the watcher and again by `tsserve reload`, and the http_options edit
    t.equal((await status(proc)).config.reloads, 7);
});
