// Start priority (lib/start-priority.ts): the replicas a rolling update starts run at nice 10, every thread of them,
// until they are ready, then at 0; the old version's replicas, and a replica that restarts, are never lowered. A real
// server rolls a deployment whose handler holds its replicas' start while a file exists, so that the new replica is
// seen STARTING for as long as the test looks, however fast or slow the machine. Then the parts alone: the capability
// check on /proc/<pid>/status texts, a process without CAP_SYS_NICE (or not on Linux) lowering nothing, threads made
// after the lowering, a process that exits before ready, one already gone, a replica in the server's own process.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { spawn, type ChildProcess } from 'node:child_process';
import { fixtures, serve, until, type Served } from './helpers';
import { StartPriority, hasSysNice, startPriority } from '../lib/start-priority';
import { log } from '../lib/log';

/** The nice value of each thread of `pid`: field 19 of /proc/<pid>/task/<tid>/stat. */
function nices(pid: number): number[] {
    return fs.readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
        try {
            const stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
            // the fields after the command name, which is in parentheses and may hold spaces, start with field 3
            return [Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19 - 3])];
        }
        catch {
            // a thread that ended meanwhile
            return [];
        }
    });
}

type Test = Pick<typeof t, 'ok'>;

/** Asserts that every thread of `pid` has the nice value `nice`; a failure shows each thread's. */
function atNice(t: Test, pid: number, nice: number, message: string): void {
    const found = nices(pid);
    t.ok(found.length && found.every((n) => n === nice), message, { found, wanted: `every thread at ${nice}` });
}

// This machine's tests run with CAP_SYS_NICE (as root, which has it unless a container dropped it); without it, the
// tests below see nothing lowered, which the second half of this file tests apart.
const privileged = hasSysNice(fs.readFileSync('/proc/self/status', 'utf8'));

const dir = fixtures();
/** While this file exists, the gated deployment's replicas hold their start, after their model has loaded. */
const hold = path.join(dir, 'hold');
// Its load() leaves a file named after its process, so that the test knows the model is loaded (onnxruntime's threads
// made) before it looks at the threads. preprocess and postprocess: the MLP's rows in, its rows out.
fs.writeFileSync(path.join(dir, 'gate.js'), `
const fs = require('fs');
const path = require('path');
exports.handler = {
    async load() {
        fs.writeFileSync(path.join(__dirname, 'loaded-' + process.pid), '');
        while (fs.existsSync(path.join(__dirname, 'hold'))) {
            await new Promise((r) => setTimeout(r, 20));
        }
    },
    preprocess: (items) => ({ x: { type: 'float32', data: Float32Array.from(items.flatMap((i) => i.x).flat()), dims: [items.flatMap((i) => i.x).length, 4] } }),
    postprocess: (outputs, items) => items.map(() => ({ y: Array.from(outputs.y.data) }))
};`);
const loaded = (pid: number) => fs.existsSync(path.join(dir, `loaded-${pid}`));
// cpus: 2: onnxruntime makes an intra-op thread of its own, after the lowering, from a thread of libuv's pool
const config = (model: string) => `applications:
  - name: gated
    deployments:
      - { name: model, handler: ./gate.js, model: { path: ./${model} }, num_replicas: 1, resources: { cpus: 2 } }
`;

/**
 * How long a replica starting at nice 10 may take to get as far as the test looks: on a machine that other processes
 * keep busy (the other test files, say), it gets a tenth of a core's share, and under the test loader it compiles
 * lib/ first.
 */
const lowStartMs = 300_000;

interface Replica { id: string; pid: number; state: string }
const replicas = async (s: Served): Promise<Replica[]> => (await s.get('/-/status')).body.applications[0].deployments[0].replicas;
const replica = async (s: Served, id: string): Promise<Replica | undefined> => (await replicas(s)).find((r) => r.id === `gated/model#${id}`);

t.test('a rolling update\'s new replica starts at nice 10 and serves at 0; the old one and a restart are never lowered', { skip: !privileged && 'no CAP_SYS_NICE here' }, async (t) => {
    const s = await serve(dir, config('mlp.onnx'));
    t.teardown(() => s.stop());
    const predict = async () => (await s.post('/gated/predict', { x: [[1, 2, 3, 4]] })).status;
    const old = await replica(s, '0') as Replica;
    t.equal(old.state, 'RUNNING');
    atNice(t, old.pid, 0, 'the first version\'s replica, started by no rolling update, runs at 0');

    // The update: a new model, so a new replica, held before ready.
    fs.writeFileSync(hold, '');
    fs.writeFileSync(path.join(dir, 'serve.yaml'), config('mlp2.onnx'));
    const fresh = await until(async () => {
        const r = await replica(s, '1');
        return r?.state === 'STARTING' && loaded(r.pid) && r;
    }, { what: () => `the new replica, loaded and held:\n${s.output()}`, timeoutMs: lowStartMs });
    atNice(t, fresh.pid, 10, 'while STARTING, every thread of the new replica is at nice 10');
    t.ok(nices(fresh.pid).length > 5, 'threads made before the lowering and after it (node\'s, libuv\'s, onnxruntime\'s)', { found: nices(fresh.pid).length });
    atNice(t, old.pid, 0, 'the old replica, serving meanwhile, is not lowered');
    t.equal(await predict(), 200, 'the old version serves');

    fs.rmSync(hold);
    await until(async () => (await replica(s, '1'))?.state === 'RUNNING' && !(await replica(s, '0')), { what: () => `the roll to finish:\n${s.output()}`, timeoutMs: lowStartMs });
    atNice(t, fresh.pid, 0, 'once RUNNING, every thread of it is back at 0');
    t.equal(await predict(), 200, 'the new version serves');

    // It dies and restarts: its new process comes from the server, at 0, and is not lowered again.
    fs.writeFileSync(hold, '');
    process.kill(fresh.pid, 'SIGKILL');
    const again = await until(async () => {
        const r = await replica(s, '1');
        return r && r.pid !== fresh.pid && r.state === 'STARTING' && loaded(r.pid) && r;
    }, { what: () => `the replica's restart, held:\n${s.output()}` });
    atNice(t, again.pid, 0, 'a restarting replica is at 0 while STARTING');
    fs.rmSync(hold);
    await until(async () => (await replica(s, '1'))?.state === 'RUNNING', { what: 'the restart to be ready' });
    atNice(t, again.pid, 0, 'and at 0 once RUNNING');
    t.notMatch(s.output(), /normal CPU priority/, 'nothing said of a capability it has');
});

t.test('CAP_SYS_NICE is read from the effective set of /proc/<pid>/status', async (t) => {
    const status = (capEff: string) => `Name:\tnode\nUid:\t1000\t1000\t1000\t1000\nCapInh:\t0000000000000000\nCapPrm:\t${capEff}\nCapEff:\t${capEff}\nCapBnd:\t000001ffffffffff\n`;
    t.equal(hasSysNice(status('000001ffffffffff')), true, 'root with every capability');
    t.equal(hasSysNice(status('0000000000800000')), true, 'CAP_SYS_NICE alone (bit 23)');
    t.equal(hasSysNice(status('00000000a80425fb')), false, 'root in a container with Docker\'s default set, which leaves it out');
    t.equal(hasSysNice(status('0000000000000000')), false, 'a user without capabilities');
    t.equal(hasSysNice(status('0000000000400000').replace('CapBnd:\t000001ffffffffff', 'CapBnd:\t0000000000800000')), false, 'the bounding set is not the effective one');
    t.equal(hasSysNice('Name:\tnode\n'), false, 'no CapEff line');
});

/** A process with a few threads (node's own), and a way to make it start one more. */
function child(): ChildProcess {
    return spawn(process.execPath, ['-e', 'process.stdin.on("data", () => new (require("worker_threads").Worker)("setInterval(() => {}, 1000)", { eval: true }))'], { stdio: ['pipe', 'ignore', 'inherit'] });
}

/** A stand-in for a Replica: a pid, 'ready' and 'exit'. */
const starting = (pid?: number) => Object.assign(new EventEmitter(), { pid });

t.test('without CAP_SYS_NICE, or elsewhere than Linux, nothing is lowered; the first is said once, at info', async (t) => {
    const said: string[] = [];
    const info = log.info;
    log.info = (msg) => said.push(msg);
    t.teardown(() => log.info = info);
    const unprivileged = new StartPriority({ status: () => 'CapEff:\t00000000a80425fb\n' });
    t.match(unprivileged.off, /lacks CAP_SYS_NICE/);
    t.same(said, ['a rolling update\'s new replicas start at the normal CPU priority: this process lacks CAP_SYS_NICE, without which a lowered priority cannot be raised again']);
    const elsewhere = new StartPriority({ platform: 'darwin', status: () => t.fail('no /proc to read') as never });
    t.equal(elsewhere.off, 'not on Linux (darwin)');
    t.equal(said.length, 1, 'not on Linux: nothing to say');

    const p = child();
    t.teardown(() => p.kill());
    for (const priority of [unprivileged, elsewhere]) {
        const r = starting(p.pid);
        priority.untilReady(r);
        atNice(t, p.pid as number, 0, `not lowered (${priority.off})`);
        t.equal(r.listenerCount('ready'), 0, 'nothing waits for its ready');
    }
});

t.test('with it: every thread lowered, those made later too, until ready; one that exits first is forgotten', { skip: !privileged && 'no CAP_SYS_NICE here' }, async (t) => {
    const priority = startPriority();
    t.equal(priority.off, undefined);
    t.equal(startPriority(), priority, 'one for the process');

    const p = child();
    t.teardown(() => p.kill());
    const pid = p.pid as number;
    const r = starting(pid);
    priority.untilReady(r);
    atNice(t, pid, 10, 'lowered at once, every thread');
    const before = nices(pid).length;
    p.stdin?.write('\n');
    await until(() => nices(pid).length > before, { what: 'a worker thread made after the lowering' });
    atNice(t, pid, 10, 'a thread made after the lowering starts low');
    r.emit('ready');
    atNice(t, pid, 0, 'ready: every thread back at 0');
    t.same([r.listenerCount('ready'), r.listenerCount('exit')], [0, 0], 'nothing left listening');

    // A process that exits before ready: its replica restarts as another process, which the pid lowered is not.
    const q = starting(pid);
    priority.untilReady(q);
    q.emit('exit');
    q.emit('ready');
    atNice(t, pid, 10, 'after an exit, a ready (the restart\'s) touches the old pid no more');
    t.same([q.listenerCount('ready'), q.listenerCount('exit')], [0, 0]);

    // Gone before it could be lowered, or with no process at all (a fork that failed): no error.
    const gone = spawn(process.execPath, ['-e', '0']);
    await new Promise((resolve) => gone.on('exit', resolve));
    t.doesNotThrow(() => priority.untilReady(starting(gone.pid)), 'a process already gone');
    t.doesNotThrow(() => priority.untilReady(starting(undefined)), 'no pid');
    // An in-process replica (its model host in the server's process) has the server's pid: the server is not lowered.
    const own = nices(process.pid);
    const inProcess = starting(process.pid);
    priority.untilReady(inProcess);
    t.same(nices(process.pid), own, 'a replica with this process\'s pid lowers nothing');
    t.equal(inProcess.listenerCount('ready'), 0);
});
