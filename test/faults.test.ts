// Faults a replica set must absorb without a failed request: a replica that hangs holding requests, replicas killed
// together, a model file overwritten with garbage under a running version, invalid config files saved under load;
// and what status says once it has recovered. Real processes and HTTP, and in-process checks of the parts (batch
// deadlines, snapshots, probes).
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import * as Schemas from '../schemas/serve';
import { Replica } from '../lib/replica';
import { RunTimes, decay, firstDeadlineMs, floorMs, slack } from '../lib/run-times';
import { Snapshots } from '../lib/snapshot';
import { log } from '../lib/log';
import { fixtures, serve, app, held, near, sleep, slowRows, strikesUnderLoad, until, type Served } from './helpers';
import type { DeploymentConfig } from '../schemas/serve';

const dir = fixtures();

interface ReplicaStatus {
    id: string; pid: number; state: string; restarts: number; inflight_requests: number;
    last_error?: string; last_failure?: { error: string; at: string }; snapshot?: string;
}

const deployment = async (s: Served, name: string) =>
    (await s.get('/-/status')).body.applications.find((a: any) => a.name === name).deployments[0];
const replicas = async (s: Served, name: string): Promise<ReplicaStatus[]> => (await deployment(s, name)).replicas;

/** Both replicas of `name` RUNNING, none of them one of `pids`; resolves with them. */
const restarted = (s: Served, name: string, pids: number[]) => until(async () => {
    const rs = await replicas(s, name);
    return rs.every((r) => r.state === 'RUNNING' && !pids.includes(r.pid)) && rs;
}, { what: () => `replicas of ${name} running again, with new processes:\n${s.output()}` });

/** `slow` computes y = x at several milliseconds per row. */

/** Whether an answer of `slow` is y = x for rows of v. */
const right = (a: { status: number; body: any }, v: number) => a.status === 200 && near(a.body.outputs.y.flat(), [v, v, v], 1e-2);

t.test('a replica that hangs holding requests is killed at its batch deadline, and its requests are answered elsewhere', async (t) => {
    // Health checks and the request timeout are far off: only the batch deadline can save the requests held.
    const s = await serve(dir, `http_options: { request_timeout_s: 120 }
applications:
${app('slow', 'slow.onnx', `num_replicas: 2
batching: { max_batch_size: 4, batch_wait_timeout_s: 0.002 }
health_check_period_s: 3600
health_check_timeout_s: 3600`)}`);
    t.teardown(() => s.stop());
    // Batches on both replicas first: the version's deadline is learnt from them (before any, it is 30 s).
    for (let k = 0; k < 5; k++) {
        const warm = await Promise.all(Array.from({ length: 8 }, (_, i) => s.post('/slow/predict', { inputs: slowRows(3, i) })));
        t.ok(warm.every((a, i) => right(a, i)), `warm-up round ${k} answered`);
    }
    const [stuck, other] = await replicas(s, 'slow');
    const sent = Array.from({ length: 8 }, (_, i) => 100 + i);
    const answers = await held(stuck.pid, async () => {
        const posted = sent.map((v) => s.post('/slow/predict', { inputs: slowRows(3, v) }));
        // The first replica, idle, takes the first batch; it holds it, stopped, until it is found hung.
        await until(async () => {
            const r = (await replicas(s, 'slow'))[0];
            return r.pid !== stuck.pid || r.inflight_requests > 0;
        }, { what: 'requests in flight on the stopped replica' });
        // Awaited while the replica is still stopped: the answers must come without it.
        return Promise.all(posted);
    });
    t.same(answers.map((a, i) => right(a, sent[i])), sent.map(() => true), 'every request is answered, right', { found: answers.map((a) => [a.status, a.body]) });
    t.match(s.output(), /replica slow\/model#0: hung: a batch of \d+ row\(s\) got no answer within [\d.]+s, its deadline from what this version's batches take; killing it/);
    const [again, same] = await restarted(s, 'slow', [stuck.pid]);
    t.match(again, { id: stuck.id, restarts: 1, last_failure: { error: /^hung: a batch of/ } }, 'the hung replica was replaced');
    t.equal(again.last_error, undefined, 'and runs');
    t.match(same, { pid: other.pid, restarts: 0 }, 'the other one served on');
});

t.test('replicas killed together lose no request: a retry waits for a replica known alive', async (t) => {
    // A request timeout long enough for a restart, on a loaded machine.
    const s = await serve(dir, `http_options: { request_timeout_s: 120 }
applications:
${app('slow', 'slow.onnx', `num_replicas: 2
batching: { max_batch_size: 4, batch_wait_timeout_s: 0.002 }
health_check_timeout_s: 3600`)}`);
    t.teardown(() => s.stop());

    t.test('the second replica killed is not seen to exit before the first', async (t) => {
        // Both stopped, so that the request stays where it is sent and the second cannot show itself alive. The
        // first takes the request; once its death is seen, the second, killed with it, still looks RUNNING.
        const [a, b] = await replicas(s, 'slow');
        const { answer } = await held(b.pid, () => held(a.pid, async () => {
            const answer = s.post('/slow/predict', { inputs: slowRows(3, 7) });
            await until(async () => (await replicas(s, 'slow'))[0].inflight_requests === 1, { what: 'the request in flight on the first replica' });
            process.kill(a.pid, 'SIGKILL');
            await until(async () => {
                const first = (await replicas(s, 'slow'))[0];
                return first.pid !== a.pid || first.state !== 'RUNNING';
            }, { what: 'the first replica seen to exit' });
            process.kill(b.pid, 'SIGKILL');
            // wrapped: the answer needs a replica running again
            return { answer };
        }));
        const got = await answer;
        t.ok(right(got, 7), 'the request is answered, by a replica started since', { found: [got.status, got.body] });
        t.same((await restarted(s, 'slow', [a.pid, b.pid])).map((r) => r.restarts), [1, 1]);
    });

    t.test('under load, both replicas killed at once, three times: no request fails', async (t) => {
        const { done, failed } = await strikesUnderLoad(s, '/slow/predict', (line) => t.comment(line), async () => {
            const busy = await until(async () => {
                const rs = await replicas(s, 'slow');
                return rs.every((r) => r.state === 'RUNNING') && rs.some((r) => r.inflight_requests > 0) && rs;
            }, { what: 'both replicas running, with requests in flight' });
            for (const r of busy) {
                process.kill(r.pid, 'SIGKILL');
            }
            await restarted(s, 'slow', busy.map((r) => r.pid));
        });
        t.equal(failed, 0, `no failed request out of ${done}`);
    });
});

t.test('a replica running again after a failure shows it as last_failure, not as its last_error', async (t) => {
    // Health checks every 0.2 s: passing ones change nothing either.
    const s = await serve(dir, `applications:
${app('mlp', 'mlp.onnx', 'health_check_period_s: 0.2')}`);
    t.teardown(() => s.stop());
    const [r] = await replicas(s, 'mlp');
    t.same([r.last_error, r.last_failure], [undefined, undefined], 'nothing has failed yet');
    process.kill(r.pid, 'SIGKILL');
    const [again] = await restarted(s, 'mlp', [r.pid]);
    t.equal(again.last_error, undefined, 'no error is current');
    t.match(again.last_failure, { error: 'process exited unexpectedly (code null, signal SIGKILL)', at: /^\d{4}-\d\d-\d\dT[\d:.]+Z$/ }, 'what it recovered from, and when');
    t.equal((await deployment(s, 'mlp')).last_error, undefined, 'nor is any for the deployment');
    t.equal((await s.post('/mlp/predict', { inputs: [[1, 2, 3, 4]] })).status, 200);
});

t.test('replicas restart from their version\'s snapshot: files overwritten with garbage on disk change nothing', async (t) => {
    const model = path.join(dir, 'victim.onnx');
    const handler = path.join(dir, 'victim_handler.js');
    fs.copyFileSync(path.join(dir, 'mlp.onnx'), model);
    // The handler's own require() of a module beside it resolves there, not in the snapshot.
    fs.writeFileSync(path.join(dir, 'victim_util.js'), 'exports.rounded = (v) => Math.round(v * 1000) / 1000;');
    const handlerSource = `const { rounded } = require('./victim_util');
module.exports = {
    preprocess: (items) => ({ x: { type: 'float32', data: Float32Array.from(items.flatMap((i) => i.x)), dims: [items.length, 4] } }),
    postprocess: (outputs, items) => items.map((_, i) => ({ y: Array.from(outputs.y.data.slice(i * 3, i * 3 + 3), rounded) }))
};`;
    fs.writeFileSync(handler, handlerSource);
    const s = await serve(dir, `http_options: { request_timeout_s: 120 }
applications:
${app('victim', 'victim.onnx', 'num_replicas: 2\nhandler: ./victim_handler.js')}`, 'victim.yaml');
    t.teardown(() => s.stop());
    const ask = async () => (await s.post('/victim/predict', { x: [1, 2, 3, 4] })).body;
    const before = await ask();
    t.match(before, { y: [Number, Number, Number] }, 'the model answers through the handler');

    const [a, b] = await replicas(s, 'victim');
    t.equal(a.snapshot, b.snapshot, 'the replicas of one version share its snapshot');
    t.match(a.snapshot, /^\w{12}-\w+$/, 'status names it by its folder\'s name (the version, a random part), not where it lies');
    // where it lies: in the server's own folder of the system's temporary folder
    const [root] = fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(`tsserve-snapshots-${s.proc.pid}-`));
    const at = (name: string) => path.join(os.tmpdir(), root, 'victim', 'model', name);
    const snapshot = at(a.snapshot as string);
    t.match(path.relative(os.tmpdir(), snapshot), /^tsserve-snapshots-\d+-\w+\/victim\/model\/\w{12}-\w+$/, 'in a folder of its own, by application, deployment and version');
    t.same(fs.readFileSync(path.join(snapshot, 'model', 'victim.onnx')), fs.readFileSync(model), 'holding a copy of the model');
    t.ok(fs.lstatSync(path.join(snapshot, 'model', 'mlp.onnx')).isSymbolicLink(), 'with what lies beside it linked');
    t.equal(fs.readFileSync(path.join(snapshot, 'handler', 'victim_handler.js'), 'utf8'), fs.readFileSync(handler, 'utf8'), 'and of the handler module');
    t.equal((await deployment(s, 'victim')).model.path, './victim.onnx', 'status names the model as serve.yaml does');

    // A failed update: both files overwritten with garbage. The reload's new version fails; the old keeps serving.
    fs.writeFileSync(model, 'garbage, not an ONNX model');
    fs.writeFileSync(handler, 'throw new Error("garbage, not a handler");');
    const reload = await until(async () => (await s.get('/-/status')).body.config.last_reload, { what: () => `the reload:\n${s.output()}` });
    t.match(reload.errors, [/^victim\/model: new version \w+ failed to start \(model failed to load: .*\); version \w+ keeps serving$/]);
    t.notMatch(reload.errors.join(), /tsserve-snapshots/, 'the error names the files as serve.yaml does, not their copies');
    // (awaited: the two writes may have made a second reload, whose snapshot lives until its version fails too)
    await until(() => fs.readdirSync(path.dirname(snapshot)).join() === path.basename(snapshot), { what: 'only the running version\'s snapshot' });
    t.pass('the failed version\'s snapshot is gone, the running one\'s stays');

    // Every replica of the running version restarts: from its snapshot, not from the garbage on disk.
    for (const r of [a, b]) {
        process.kill(r.pid, 'SIGKILL');
    }
    await restarted(s, 'victim', [a.pid, b.pid]);
    const after = await Promise.all(Array.from({ length: 4 }, ask));
    t.same(after, after.map(() => before), 'the old model answers, through the old handler');
    t.match(await replicas(s, 'victim'), [{ snapshot: a.snapshot, restarts: 1 }, { snapshot: a.snapshot, restarts: 1 }]);

    // A good update: the new version runs from a snapshot of its own, and the old one's goes with its last replica.
    fs.copyFileSync(path.join(dir, 'mlp2.onnx'), model);
    fs.writeFileSync(handler, handlerSource);
    const fresh = await until(async () => {
        const rs = await replicas(s, 'victim');
        return rs.length === 2 && rs.every((r) => r.state === 'RUNNING' && r.snapshot && r.snapshot !== a.snapshot) && at(rs[0].snapshot as string);
    }, { what: () => `the new version running:\n${s.output()}` });
    await until(() => !fs.existsSync(snapshot), { what: 'the old version\'s snapshot removed' });
    t.pass('the old version\'s snapshot is gone with its last replica');
    t.same(fs.readFileSync(path.join(fresh, 'model', 'victim.onnx')), fs.readFileSync(path.join(dir, 'mlp2.onnx')), 'the new one holds the new model');
    const updated = await ask();
    t.match(updated, { y: [Number, Number, Number] });
    t.notSame(updated, before, 'which answers');

    t.equal(await s.stop(), 0);
    t.notOk(fs.existsSync(path.join(os.tmpdir(), path.relative(os.tmpdir(), snapshot).split(path.sep)[0])), 'the server\'s snapshots are gone with it');
});

t.test('invalid files saved under load, one kind after another, are refused: the running version serves on and stays ready; a valid edit then applies', async (t) => {
    const file = path.join(dir, 'edits.yaml');
    const valid = (replicas: number) => `applications:
${app('slow', 'slow.onnx', `num_replicas: ${replicas}
batching: { max_batch_size: 4, batch_wait_timeout_s: 0.002 }`)}`;
    const original = valid(2);
    const s = await serve(dir, original, 'edits.yaml');
    t.teardown(() => s.stop());
    const status = async () => (await s.get('/-/status')).body;
    const first = await status();
    const serving = first.applications[0].deployments[0];
    const pids = (serving.replicas as ReplicaStatus[]).map((r) => r.pid);
    // Each kind of invalid file, with the error /-/status must show for it (one, at its path in the file).
    const half = Buffer.from(original).subarray(0, Buffer.byteLength(original) >> 1);
    const invalid: Array<{ what: string; text: string | Buffer; error: RegExp }> = [
        { what: 'a YAML syntax error', text: original.replace('    deployments:', '   deployments:'), error: /^YAML syntax error: bad indentation of a sequence entry in ".*edits\.yaml" \(4:4\)/ },
        { what: 'a schema error', text: original.replace('num_replicas: 2', 'num_replicas: -1'), error: /^applications\[0\]\.deployments\[0\]\.num_replicas: .* must be greater than or equal to 1$/ },
        { what: 'an unknown handler', text: original.replace('num_replicas: 2', 'num_replicas: 2\n        handler: nope'), error: /^applications\[0\]\.deployments\[0\]\.handler: .* must be one of tensor, text, image, audio, or the path of a handler module/ },
        { what: 'a model path that does not exist', text: original.replace('./slow.onnx', './missing.onnx'), error: /^applications\[0\]\.deployments\[0\]\.model\.path: model file or folder not found: .*missing\.onnx$/ },
        { what: 'a file truncated to half its bytes', text: half, error: /^YAML syntax error: unexpected end of the stream/ },
        { what: 'an empty file', text: '', error: /^applications: "applications" is required$/ }
    ];
    /** Saves serve.yaml and resolves with /-/status once the reload the save causes is recorded. */
    const save = async (text: string | Buffer, what: string) => {
        const before = (await status()).config.reloads;
        fs.writeFileSync(file, text);
        return until(async () => {
            const now = await status();
            return now.config.reloads > before && now;
        }, { what: () => `the reload of ${what}:\n${s.output()}` });
    };
    // /-/ready, asked all along, from before the first save to after the last.
    const unready: string[] = [];
    let asked = 0;
    let watching = true;
    const readiness = (async () => {
        while (watching) {
            const r = await s.get('/-/ready').catch((e: Error) => ({ status: 0, body: e.message }));
            asked++;
            if (r.status !== 200) {
                unready.push(`${r.status} ${JSON.stringify(r.body)}`);
            }
            // a pause between asks, as until() makes
            await sleep(20);
        }
    })();

    const { done, failed } = await strikesUnderLoad(s, '/slow/predict', (line) => t.comment(line), async (k) => {
        if (k < invalid.length) {
            const { what, text, error } = invalid[k];
            const now = await save(text, what);
            t.match(now.config, { version: first.config.version, last_reload: { trigger: 'file change', result: 'invalid', config_version: first.config.version } }, `${what}: refused, the running config version kept`);
            t.match(now.config.last_reload.errors, { length: 1, 0: error }, `${what}: the error says what is wrong, and where`);
            const d = now.applications[0].deployments[0];
            t.match(d, { status: 'RUNNING', version: serving.version, target_replicas: 2, running_replicas: 2 }, `${what}: the deployment's version serves on`);
            t.same(d.replicas.map((r: ReplicaStatus) => [r.pid, r.state, r.restarts]), pids.map((p) => [p, 'RUNNING', 0]), `${what}: on the same replicas`);
            t.equal((await s.get('/-/ready')).status, 200, `${what}: ready`);
        }
        else if (k === invalid.length) {
            // the running version's own file put back: applied, nothing touched
            const now = await save(original, 'the original file');
            t.match(now.config, { version: first.config.version, last_reload: { result: 'applied', errors: [], changes: { unchanged: ['slow/model'], updated: [], replaced: [] } } }, 'the original file again: applied, as it runs');
            t.same(now.applications[0].deployments[0].replicas.map((r: ReplicaStatus) => r.pid), pids, 'no replica touched');
        }
        else {
            // a real change still applies: 2 -> 1 replicas, in place (the newest drains and goes; no process to start)
            const now = await save(valid(1), 'num_replicas: 1');
            t.match(now.config.last_reload, { result: 'applied', errors: [], changes: { updated: ['slow/model'], replaced: [], added: [], removed: [] } }, 'num_replicas 2 -> 1: applied');
            t.not(now.config.version, first.config.version, 'a new config version');
            const d = await until(async () => {
                const dep = (await status()).applications[0].deployments[0];
                return dep.replicas.length === 1 && dep;
            }, { what: () => `one replica left:\n${s.output()}` });
            t.match(d, { target_replicas: 1, running_replicas: 1, replicas: [{ pid: pids[0], state: 'RUNNING' }] }, 'the first replica serves on, alone');
            t.not(d.version, serving.version, 'a new deployment version');
        }
    }, invalid.length + 2);
    watching = false;
    await readiness;
    t.equal(failed, 0, `no failed request out of ${done}`);
    t.same(unready, [], `/-/ready answered 200 all along (${asked} times)`);
    t.equal((await status()).config.reloads, invalid.length + 2, 'one reload per save');
    t.equal(s.output().match(/reload \(file change\) refused, the running version keeps serving/g)?.length, invalid.length, 'each refusal logged');
});

t.test('a batch deadline: generous before any history, then slack times the recent peak, per batch or per row', async (t) => {
    const times = new RunTimes();
    t.equal(times.deadline(1), firstDeadlineMs, 'before any batch has finished');
    times.record(10, 2);
    t.equal(times.deadline(2), floorMs, 'fast batches: the floor');
    times.record(2000, 10);
    t.equal(times.deadline(10), slack * 2000, 'slack times the slowest recent batch');
    t.equal(times.deadline(100), slack * 100 * 200, 'a larger batch gets longer, by the slowest recent time per row');
    times.record(1, 1);
    t.equal(times.deadline(1), slack * (2000 * decay), 'a peak decays with each batch after it');
    const deadline = times.deadline(1);
    times.record(deadline, 1);
    t.equal(times.deadline(1), slack * deadline, 'a batch given up on at its deadline gives the next one slack times longer');
});

t.test('snapshots: copies beside links, folders file by file; a copy that fails falls back to the files where they are', async (t) => {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-faults-'));
    t.teardown(() => fs.rmSync(parent, { recursive: true, force: true }));
    const warnings: string[] = [];
    const warn = log.warn;
    log.warn = (msg) => warnings.push(msg);
    t.teardown(() => {
        log.warn = warn;
    });
    const config = (model: string): DeploymentConfig => Schemas.deployment.validate({ name: 'm', model: { path: model } }).value;
    const mine = (): string[] => fs.readdirSync(parent).filter((n) => n.startsWith(`tsserve-snapshots-${process.pid}-`));

    // Folders of processes gone are removed when a process makes its own; those of processes alive are not.
    const dead = path.join(parent, 'tsserve-snapshots-999999999-gone');
    const living = path.join(parent, `tsserve-snapshots-${process.ppid}-alive`);
    fs.mkdirSync(dead);
    fs.mkdirSync(living);
    const snapshots = new Snapshots(parent);
    const file = await snapshots.take('app/m', 'v1', config(path.join(dir, 'mlp.onnx')));
    t.same([fs.existsSync(dead), fs.existsSync(living)], [false, true], 'a dead process\'s folder is swept, a live one\'s is not');
    t.same(fs.readFileSync(file.model.path), fs.readFileSync(path.join(dir, 'mlp.onnx')), 'a model file is copied');
    t.equal(fs.readlinkSync(path.join(path.dirname(file.model.path), 'slow.onnx')), path.join(dir, 'slow.onnx'), 'what lies beside it is linked');
    t.equal(file.handler, undefined, 'a built-in handler has nothing to copy');

    const folder = path.join(parent, 'folder');
    fs.mkdirSync(path.join(folder, 'onnx'), { recursive: true });
    fs.copyFileSync(path.join(dir, 'mlp.onnx'), path.join(folder, 'onnx', 'model.onnx'));
    fs.writeFileSync(path.join(folder, 'config.json'), '{}');
    const copied = await snapshots.take('app/m', 'v2', config(folder));
    t.same(fs.readdirSync(copied.model.path).sort(), ['config.json', 'onnx'], 'a model folder is copied as it is');
    t.ok(fs.statSync(path.join(copied.model.path, 'onnx', 'model.onnx')).isFile(), 'its files, not links to them');

    // A model gone by the time of the copy: the half-made snapshot goes, and the version loads the path it names.
    const gone = config(path.join(dir, 'nowhere.onnx'));
    t.same(await snapshots.take('app/m', 'v3', gone), { model: gone.model }, 'no snapshot: the files where they are');
    t.match(warnings, [/^deployment app\/m: no snapshot of version v3 \(.*nowhere\.onnx.*\); its replicas load .*nowhere\.onnx itself/]);
    t.same(fs.readdirSync(path.join(parent, mine()[0], 'app', 'm')).sort(), [path.basename(file.dir as string), path.basename(copied.dir as string)]);

    // Nowhere to write: nothing is made.
    const blocked = path.join(parent, 'not-a-folder');
    fs.writeFileSync(blocked, '');
    t.same(await new Snapshots(blocked).take('app/m', 'v1', gone), { model: gone.model });
    t.equal(warnings.length, 2, 'said too');

    // The process's folder stays while any snapshot does, and goes with the last.
    for (const s of [file, copied]) {
        await snapshots.remove(s);
        t.equal(mine().length, 1, 'kept while a snapshot is held');
    }
    await snapshots.remove({ model: gone.model });
    t.same(mine(), [], 'gone with the last');
});

t.test('a replica: known alive since its start, then since a probe it answers; a batch\'s own deadline is the one that applies', async (t) => {
    const spec = { ...Schemas.deployment.validate({ name: 'm', model: { path: path.join(dir, 'mlp.onnx') }, health_check_period_s: 3600 }).value as DeploymentConfig, id: 'probed' };
    // A batch of 2 rows has 2 s; one of 1 row, a minute.
    const times = new (class extends RunTimes {
        override deadline(rows: number): number {
            return rows === 2 ? 2_000 : 60_000;
        }
    })();
    const r = new Replica(spec, 'v1', times);
    r.start();
    const started = r.aliveAt;
    await once(r, 'ready');
    t.equal(r.aliveAt, started, 'known alive since it was started');
    // A second probe while the first awaits its answer sends no second ping.
    r.probe();
    r.probe();
    await once(r, 'alive');
    t.ok(r.aliveAt > started, 'then since the probe');

    // The replica's one timer is set for the first batch's deadline (2 s); when it fires, a later batch with a
    // longer one (a minute) runs, held: the replica is not taken to be hung. That it is NOT killed can only be seen
    // by waiting past the first deadline, hence the sleep.
    const x = (rows: number) => ({ feeds: { x: { type: 'float32', data: new Float32Array(rows * 4), dims: [rows, 4] } } });
    t.equal((await r.run([x(2)], 2)).length, 1);
    const { later } = await held(r.pid as number, async () => {
        const later = r.run([x(1)], 1);
        await sleep(3_000);
        t.match(r, { state: 'RUNNING', restarts: 0, inflightBatches: 1 }, 'still running, holding the batch');
        return { later };
    });
    t.equal((await later).length, 1, 'which it answers once running again');
    await r.stop(60000);
});
