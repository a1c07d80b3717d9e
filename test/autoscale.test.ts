// Autoscaling: the decision rule alone (lib/autoscaler.ts, time injected), the CPU budget, the schema of
// autoscaling_config; then a real server under load: up from the minimum, capped by max_cpus with replicas pending,
// down after the delay to zero, a request that wakes it, and autoscaling_config changed in place.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { Autoscaler, aggregate, desiredReplicas, initialReplicas } from '../lib/autoscaler';
import { CpuBudget, configuredCpus, cpuBudget } from '../lib/cpu-budget';
import { ConfigError, parse, type ConfigIssue } from '../lib/config';
import { fixtures, near, serve, slowRows, until, type Served } from './helpers';
import type { AutoscalingConfig, ServeConfig } from '../schemas/serve';

const dir = fixtures();

/** Ray's defaults, with these fields changed. */
const config = (c: Partial<AutoscalingConfig> = {}): AutoscalingConfig => ({
    min_replicas: 1, max_replicas: 10, target_ongoing_requests: 2, upscale_delay_s: 30, downscale_delay_s: 600, upscaling_factor: 1,
    downscaling_factor: 1, metrics_interval_s: 10, look_back_period_s: 30, aggregation_function: 'mean', ...c
});

t.test('the desired count: ongoing per replica against the target, smoothed by the factors, within the bounds', async (t) => {
    const c = config();
    t.equal(desiredReplicas(c, 8, 2), 4, '8 ongoing on 2 replicas, 2 each wanted: 4');
    t.equal(desiredReplicas(c, 5, 2), 3, 'rounded up');
    t.equal(desiredReplicas(c, 4, 2), 2, 'at the target: as it is');
    t.equal(desiredReplicas(c, 1, 4), 1, 'down to what the load needs');
    t.equal(desiredReplicas(c, 100, 2), 10, 'at most max_replicas');
    t.equal(desiredReplicas(c, 0, 2), 1, 'at least min_replicas');
    t.equal(desiredReplicas(config({ min_replicas: 0 }), 0, 2), 0, 'zero when allowed');
    t.equal(desiredReplicas(config({ upscaling_factor: 0.5 }), 8, 2), 3, 'upscaling_factor 0.5: half the way up (2 + 2/2)');
    t.equal(desiredReplicas(config({ upscaling_factor: 2 }), 8, 2), 6, 'upscaling_factor 2: twice the way up');
    t.equal(desiredReplicas(config({ downscaling_factor: 0.5 }), 2, 4), 3, 'downscaling_factor 0.5: half the way down (4 - 2/2)');
    t.equal(desiredReplicas(config({ downscaling_factor: 0.01 }), 6, 4), 3, 'a factor that would hold the count: one down all the same');
    t.equal(desiredReplicas(c, (2 + 2 + 2.0000000000000004) / 3 * 2, 2), 2, 'deaf to floating-point dust');
});

t.test('aggregation over the look-back window: mean, max, min', async (t) => {
    const samples = [{ at: 0, ongoing: 1 }, { at: 1, ongoing: 5 }, { at: 2, ongoing: 3 }];
    t.equal(aggregate(samples, 'mean'), 3);
    t.equal(aggregate(samples, 'max'), 5);
    t.equal(aggregate(samples, 'min'), 1);
    const a = new Autoscaler(config({ look_back_period_s: 1, aggregation_function: 'max' }));
    a.record(0, 9);
    a.record(500, 1);
    a.record(1000, 1);
    a.decide(1000, 1);
    t.equal(a.ongoing, 1, 'a sample older than look_back_period_s is dropped');
});

t.test('decisions: up after upscale_delay_s, down after downscale_delay_s, to zero after its own delay', async (t) => {
    t.equal(initialReplicas(config({ min_replicas: 2 })), 2, 'starts at min_replicas');
    t.equal(initialReplicas(config({ initial_replicas: 3 })), 3, 'or at initial_replicas');
    const a = new Autoscaler(config({ min_replicas: 0, upscale_delay_s: 1, downscale_delay_s: 5, downscale_to_zero_delay_s: 20 }), 1);
    t.equal(a.decide(0, 1), undefined, 'no samples: no decision');
    a.record(0, 8);
    t.equal(a.decide(0, 1), undefined, 'over the target, but not for upscale_delay_s yet');
    a.record(500, 8);
    t.equal(a.decide(500, 1), undefined);
    a.record(1000, 8);
    t.match(a.decide(1000, 1), { at: 1000, from: 1, to: 4, reason: /8 ongoing request\(s\) \(mean over 30s\) on 1 running replica\(s\), target 2 each/ }, 'up after 1 s');
    t.equal(a.target, 4);
    // the load falls: a reversal restarts the clock
    a.record(2000, 0);
    t.equal(a.decide(2000, 4), undefined, 'the mean still wants more (8, 8, 8, 0 over the window)');
    const quiet = new Autoscaler(config({ min_replicas: 0, downscale_delay_s: 5, downscale_to_zero_delay_s: 20, look_back_period_s: 1 }), 4);
    quiet.record(0, 0);
    t.equal(quiet.decide(0, 4), undefined, 'under the target, not for downscale_delay_s yet');
    quiet.record(4000, 0);
    t.equal(quiet.decide(4000, 4), undefined);
    quiet.record(5000, 0);
    t.match(quiet.decide(5000, 4), { from: 4, to: 1 }, 'down after 5 s, to 1 first, not to 0');
    quiet.record(10000, 0);
    t.equal(quiet.decide(10000, 1), undefined, '1 -> 0 waits for downscale_to_zero_delay_s, counted afresh');
    quiet.record(29000, 0);
    t.equal(quiet.decide(29000, 1), undefined);
    quiet.record(30000, 0);
    t.match(quiet.decide(30000, 1), { from: 1, to: 0 }, 'to zero 20 s after the first look at 1');
    const ray = new Autoscaler(config({ min_replicas: 0, downscale_delay_s: 5, look_back_period_s: 1 }), 1);
    ray.record(0, 0);
    ray.decide(0, 1);
    ray.record(5000, 0);
    t.match(ray.decide(5000, 1), { from: 1, to: 0 }, 'without downscale_to_zero_delay_s, 1 -> 0 takes downscale_delay_s');
});

t.test('scaled to zero: a request wakes it at once; with none running, only requests raise the target', async (t) => {
    const a = new Autoscaler(config({ min_replicas: 0, upscaling_factor: 2 }), 0);
    t.match(a.wake(7), { at: 7, from: 0, to: 2, reason: 'a request arrived while scaled to zero' }, 'ceil(upscaling_factor) replicas');
    t.equal(a.wake(8), undefined, 'not when it has a target');
    const b = new Autoscaler(config({ min_replicas: 0 }), 0);
    b.record(0, 0);
    t.equal(b.decide(0, 0), undefined, 'nothing ongoing, nothing running: as it is');
    b.record(100, 3);
    t.match(b.decide(100, 0), { from: 0, to: 1 }, 'requests with none running: one, at once');
    b.record(200, 3);
    t.equal(b.decide(200, 0), undefined, 'while it starts, no more');
});

t.test('a new config keeps the target, within its bounds', async (t) => {
    const a = new Autoscaler(config(), 5);
    t.equal(a.reconfigure(config({ max_replicas: 8 }), 1), undefined, 'still within: no decision');
    t.match(a.reconfigure(config({ max_replicas: 3 }), 2), { from: 5, to: 3, reason: /autoscaling_config changed: min_replicas 1, max_replicas 3/ });
    t.equal(a.last?.to, 3);
    t.equal(new Autoscaler(config({ min_replicas: 2 }), 0).target, 2, 'a start below min_replicas is raised to it');
});

t.test('the CPU budget: max_cpus, else the cores or the configured replicas\' CPUs, whichever is larger', async (t) => {
    const doc = (extra: string, head = '') => parse(`${head}applications:
  - name: a
    deployments:
      - { name: fixed, model: { path: ./mlp.onnx }, num_replicas: 3, resources: { cpus: 2 }, ingress: true }
      - { name: auto, model: { path: ./mlp.onnx }, ${extra} }
`, dir);
    const c = doc('autoscaling_config: { min_replicas: 1, initial_replicas: 2, max_replicas: 4 }');
    t.equal(configuredCpus(c), 8, '3 x 2 fixed, 2 initial x 1');
    t.equal(cpuBudget(c, 2), 8, 'more than 2 cores');
    t.equal(cpuBudget(c, 32), 32, 'fewer than 32 cores');
    t.equal(configuredCpus(doc('num_replicas: auto')), 7, 'auto starts at min_replicas (1)');
    t.equal(cpuBudget(doc('num_replicas: auto', 'max_cpus: 12\n')), 12, 'max_cpus');
    const budget = new CpuBudget();
    t.equal(budget.room, Infinity, 'unlimited until a config sets it');
    const user = { cpusTaken: 3 };
    budget.limit = 4;
    budget.join(user);
    t.equal(budget.room, 1);
    budget.leave(user);
    t.equal(budget.used, 0);
});

/** The issues a document raises, as `path: message`. */
function issues(yaml: string): string[] {
    try {
        parse(yaml, dir);
    }
    catch (e) {
        return (e as ConfigError).issues.map((i: ConfigIssue) => `${i.path}: ${i.message}`);
    }
    return [];
}

t.test('schema: Ray\'s defaults, num_replicas: auto, and the errors', async (t) => {
    const one = (extra: string, head = ''): string => `${head}applications:\n  - name: a\n    deployments:\n      - { name: d, model: { path: ./mlp.onnx }, ${extra} }\n`;
    const d = (c: ServeConfig) => c.applications[0].deployments[0];
    t.strictSame(d(parse(one('autoscaling_config: {}'), dir)).autoscaling_config, {
        min_replicas: 1, max_replicas: 1, target_ongoing_requests: 2, upscale_delay_s: 30, downscale_delay_s: 600, upscaling_factor: 1,
        downscaling_factor: 1, metrics_interval_s: 10, look_back_period_s: 30, aggregation_function: 'mean'
    }, 'Ray\'s defaults');
    t.equal(d(parse(one('autoscaling_config: {}'), dir)).num_replicas, 'auto', 'num_replicas reads auto');
    t.match(d(parse(one('num_replicas: auto'), dir)), { num_replicas: 'auto', autoscaling_config: { min_replicas: 1, max_replicas: 100, target_ongoing_requests: 2 } }, 'auto: Ray\'s defaults for auto');
    t.match(d(parse(one('num_replicas: auto, autoscaling_config: { min_replicas: 0 }'), dir)).autoscaling_config, { min_replicas: 0, max_replicas: 100 }, 'auto with autoscaling_config: its fields over auto\'s');
    t.equal(d(parse(one('num_replicas: 3'), dir)).autoscaling_config, undefined, 'a fixed count has none');
    const D = 'applications[0].deployments[0]';
    t.match(issues(one('num_replicas: 2, autoscaling_config: { max_replicas: 3 }')), [`${D}.num_replicas: "${D}.num_replicas" and autoscaling_config cannot both be set: num_replicas fixes the count, autoscaling_config lets it change (num_replicas: auto with autoscaling_config is allowed)`]);
    t.match(issues(one('autoscaling_config: { min_replicas: 3, max_replicas: 2 }')), [/autoscaling_config\.min_replicas: .* must be less than or equal to max_replicas$/]);
    t.match(issues(one('autoscaling_config: { min_replicas: 1, max_replicas: 3, initial_replicas: 4 }')), [/autoscaling_config\.initial_replicas: .* must be between min_replicas and max_replicas$/]);
    t.match(issues(one('autoscaling_config: { min_replicas: 2, max_replicas: 3, initial_replicas: 1 }')), [/autoscaling_config\.initial_replicas: .* must be between min_replicas and max_replicas$/]);
    t.match(issues(one('autoscaling_config: { min_replicas: -1, target_ongoing_requests: 0, metrics_interval_s: 0.001, downscale_delay_s: -1, upscaling_factor: 0, aggregation_function: median }')), [
        /min_replicas: .* must be greater than or equal to 0/, /target_ongoing_requests: .* must be greater than 0/, /downscale_delay_s: .* must be greater than or equal to 0/,
        /upscaling_factor: .* must be greater than 0/, /metrics_interval_s: .* must be greater than or equal to 0.01/, /aggregation_function: .* must be one of \[mean, max, min\]/
    ]);
    t.match(issues(one('num_replicas: some')), [/num_replicas: .* must be a number/]);
    t.same(issues(one('num_replicas: 2, resources: { cpus: 2 }', 'max_cpus: 3\n')), ['max_cpus: 3 CPUs are fewer than the 4 that the configured replicas take (num_replicas, or initial_replicas, times resources.cpus)']);
});

// A real server. Status is read through /-/status; nothing here times anything: it waits for states with until().
interface Scaling { target_replicas: number; pending_replicas: number; scaled_from_zero: number; last_decision?: { from: number; to: number; reason: string } }
interface Dep { status: string; target_replicas: number; running_replicas: number; autoscaling?: Scaling; replicas: Array<{ pid: number; state: string }> }

const status = async (s: Served) => (await s.get('/-/status')).body;
const dep = async (s: Served, app: string): Promise<Dep> => (await status(s)).applications.find((a: { name: string }) => a.name === app).deployments[0];

const slowAuto = (c: string) => `  - name: slow
    deployments:
      - name: model
        model: { path: ./slow.onnx }
        max_ongoing_requests: 2
        batching: { max_batch_size: 2, batch_wait_timeout_s: 0 }
        autoscaling_config: { ${c} }
`;
const mlpApp = (extra: string, model = 'mlp.onnx') => `  - name: mlp
    deployments:
      - { name: model, model: { path: ./${model} }, ${extra} }
`;
/** min_replicas 0 and no initial_replicas: it starts with no replica, and has never run when its first request comes */
const coldApp = `  - name: cold
    deployments:
      - { name: model, model: { path: ./mlp.onnx }, autoscaling_config: { min_replicas: 0, max_replicas: 1, downscale_to_zero_delay_s: 600 } }
`;
const quick = 'metrics_interval_s: 0.1, look_back_period_s: 0.5, upscale_delay_s: 0.2, downscale_delay_s: 1, downscale_to_zero_delay_s: 1';
const yaml = (...apps: string[]) => `max_cpus: 3\nhttp_options: { request_timeout_s: 60 }\napplications:\n${apps.join('')}`;

t.test('under load: up from the minimum within max_cpus (the rest pending), down to zero after the delays, woken by a request; no request fails', async (t) => {
    const file = path.join(dir, 'serve.yaml');
    const first = yaml(slowAuto(`min_replicas: 0, initial_replicas: 1, max_replicas: 4, target_ongoing_requests: 1, ${quick}`), mlpApp('num_replicas: 1'), coldApp);
    const s = await serve(dir, first);
    t.teardown(() => s.stop());
    // It starts at initial_replicas (1); idle, it may be at 0 already by now (downscale_to_zero_delay_s is 1 s).
    t.match((await status(s)).cpu_budget, { max_cpus: 3 });
    t.match(await dep(s, 'cold'), { status: 'SCALED_TO_ZERO', target_replicas: 0, replicas: [] }, 'min_replicas 0 and no initial_replicas: no replica');
    t.equal((await status(s)).ready, true, 'and ready');

    // 8 clients, one request each at a time: 8 ongoing against a target of 1 each wants 8, at most 4; max_cpus 3 leaves room for 2
    let failed = 0;
    let done = 0;
    let running = true;
    const clients = Array.from({ length: 8 }, async (_, c) => {
        for (let i = 0; running; i++) {
            const v = c * 1000 + i;
            const a = await s.post('/slow/predict', { inputs: slowRows(2, v) });
            if (a.status !== 200 || !near(a.body.outputs.y.flat(), [v, v], 1e-2)) {
                failed++;
                t.comment(`failed: ${a.status} ${JSON.stringify(a.body)}`);
            }
            done++;
        }
    });
    const up = await until(async () => {
        const d = await dep(s, 'slow');
        return d.target_replicas === 4 && d.running_replicas === 2 && d.autoscaling?.pending_replicas === 2 && d;
    }, { what: () => `4 wanted, 2 running, 2 pending:\n${s.output()}` });
    t.match(up.autoscaling, { last_decision: { to: 4, reason: /ongoing request/ } }, 'the decision, and why');
    t.equal(up.status, 'RUNNING', 'running as many as the budget allows');
    t.match((await status(s)).cpu_budget, { max_cpus: 3, used: 3 }, 'the budget full');
    const mark = done;
    await until(() => done >= mark + 10, { what: 'answers from the grown deployment' });
    running = false;
    await Promise.all(clients);

    // idle: 4 -> 1 after downscale_delay_s, then 1 -> 0 after downscale_to_zero_delay_s
    const zero = await until(async () => {
        const d = await dep(s, 'slow');
        return d.status === 'SCALED_TO_ZERO' && d;
    }, { what: () => `scaled to zero:\n${s.output()}` });
    t.match(zero, { target_replicas: 0, running_replicas: 0, replicas: [], autoscaling: { last_decision: { from: 1, to: 0 } } });
    t.match(s.output(), /autoscaler slow\/model: [234] -> 1 replica\(s\)/, 'down to 1 first');
    t.equal((await status(s)).ready, true, 'scaled to zero is ready');
    const woke = (zero.autoscaling as Scaling).scaled_from_zero;

    // a request to the deployment scaled to zero waits for a replica, and is answered (idle a second later, it may be
    // back at zero by the time status is read: what is checked is the count and the log)
    const woken = await s.post('/slow/predict', { inputs: slowRows(1, 42) });
    t.equal(woken.status, 200, 'answered');
    t.ok(near(woken.body.outputs.y.flat(), [42], 1e-2));
    t.match(await dep(s, 'slow'), { autoscaling: { scaled_from_zero: woke + 1 } });
    t.match(s.output(), /autoscaler slow\/model: 0 -> 1 replica\(s\): a request arrived while scaled to zero/);
    t.equal(failed, 0, `none of ${done} requests failed`);

    // the deployment that started at zero has never run: its first request waits for its first replica, and is answered
    const cold = await s.post('/cold/predict', { inputs: [[1, 2, 3, 4]] });
    t.equal(cold.status, 200, 'the first request of a deployment started at zero');
    t.match(await dep(s, 'cold'), { target_replicas: 1, autoscaling: { scaled_from_zero: 1 } });

    // autoscaling_config changed in place: no replica restarts; a fixed deployment turned autoscaling keeps its replica
    const pids = async (app: string) => (await dep(s, app)).replicas.map((r) => r.pid);
    const mlpPids = await pids('mlp');
    let reloads = 0;
    const edit = async (text: string) => {
        fs.writeFileSync(file, text);
        reloads++;
        return until(async () => {
            const st = await status(s);
            return st.config.reloads >= reloads && st.config.last_reload;
        }, { what: () => `reload ${reloads}:\n${s.output()}` });
    };
    let last = await edit(yaml(slowAuto(`min_replicas: 1, max_replicas: 2, target_ongoing_requests: 1, ${quick}`), mlpApp('num_replicas: auto'), coldApp));
    t.match(last, { result: 'applied', changes: { replaced: [] } });
    t.same(last.changes.updated.sort(), ['mlp/model', 'slow/model'], 'both in place');
    // min_replicas 1 now: a replica runs for good (started by this change if it was at zero)
    const slowPids = await until(async () => (await dep(s, 'slow')).running_replicas === 1 && pids('slow'), { what: () => `slow's replica:\n${s.output()}` });
    t.same(await pids('mlp'), mlpPids, 'mlp: the same replica, now autoscaled');
    t.match(await dep(s, 'mlp'), { target_replicas: 1, autoscaling: { target_replicas: 1 } });
    // a new metrics_interval_s; a new model; autoscaling turned off (a fixed count of 1)
    const coldPids = await pids('cold');
    last = await edit(yaml(slowAuto(`min_replicas: 1, max_replicas: 2, target_ongoing_requests: 1, ${quick.replace('metrics_interval_s: 0.1', 'metrics_interval_s: 0.2')}`), mlpApp('num_replicas: auto', 'mlp2.onnx'),
        coldApp.replace(/autoscaling_config: \{[^}]*\}/, 'num_replicas: 1')));
    t.match(last, { result: 'applied', changes: { replaced: ['mlp/model'] } });
    t.same(last.changes.updated.sort(), ['cold/model', 'slow/model'], 'in place');
    t.same(await pids('slow'), slowPids, 'a new metrics_interval_s: the same replica');
    t.same(await pids('cold'), coldPids, 'autoscaling off: the same replica');
    t.match(await dep(s, 'cold'), { status: 'RUNNING', target_replicas: 1, autoscaling: undefined });
    t.notSame(await pids('mlp'), mlpPids, 'a new model: replaced');
    t.match(await dep(s, 'mlp'), { status: 'RUNNING', target_replicas: 1 });
    t.equal((await s.post('/mlp/predict', { inputs: [[1, 2, 3, 4]] })).status, 200);
});
