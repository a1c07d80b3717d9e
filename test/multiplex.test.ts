// Model multiplexing: one deployment serving the models of a folder, each request naming its model. In-process: how
// the folder is read and checked, the replica's cache (LRU), and where the scheduler sends a model's batch (fake
// replicas, the front's real view of their caches). Then a real `tsserve up` with 5 small ONNX models that each add
// their own constant, 2 replicas holding at most 2 each: every model answers correctly, evictions happen and are
// counted in status and metrics, a hot model spreads to both replicas, and the folder's changes are served live;
// a user_config edited in serve.yaml reaches the handler of every model a replica holds.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Boom from '@hapi/boom';
import { adder } from '../modelgen/zoo';
import { cliHere, serve, until, validOpenApi, type Served } from './helpers';
import { ConfigError, validate } from '../lib/config';
import { checkModelFolder, folderModels, ModelFolder, type ModelRef } from '../lib/model-folder';
import { ModelCache, type CacheReport } from '../lib/model-cache';
import { Multiplexer, ReplicaModels, modelIdParameter } from '../lib/multiplex';
import { Scheduler, type SchedulerConfig, type SchedulerReplica } from '../lib/scheduler';
import { load } from '../lib/runtimes';
import type { DeploymentConfig } from '../schemas/serve';

// Loaded now, before any request is in flight: loading it compiles much of lib/ (see cliHere()).
const cli = cliHere();

/** A fresh temporary folder. */
const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-multiplex-'));

/** Writes `files` (name: content; a name with a slash makes its folder) into `dir`; returns dir. */
function write(dir: string, files: Record<string, string | Uint8Array>): string {
    for (const [name, content] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
        fs.writeFileSync(path.join(dir, name), content);
    }
    return dir;
}

const onnx = (p: string) => ({ runtime: 'onnx' as const, path: p });

t.test('the folder: one model an entry, <id>.onnx or <id>/; what is no model is not listed; a bad folder is a clear error', async (t) => {
    const dir = write(tmp(), {
        'b.onnx': 'x', 'a/model.onnx': 'x', 'a.onnx': 'x', 'c/onnx/model.onnx': 'x', 'empty/README.md': 'x', 'README.md': 'x', '.tmp.onnx': 'x', 't/model.json': '{}'
    });
    t.strictSame(folderModels(onnx(dir)), [
        { id: 'a', path: path.join(dir, 'a') }, { id: 'b', path: path.join(dir, 'b.onnx') }, { id: 'c', path: path.join(dir, 'c') }
    ], 'a folder holding a model, a file, a model folder\'s onnx/model.onnx; a.onnx repeats the id a: the first in order is it');
    t.strictSame(folderModels({ runtime: 'tfjs', path: dir }), [{ id: 't', path: path.join(dir, 't') }], 'tfjs: folders holding model.json only');
    t.throws(() => folderModels(onnx(path.join(dir, 'nope'))), { message: `multiplexed model folder not found: ${path.join(dir, 'nope')}` });
    t.throws(() => folderModels(onnx(path.join(dir, 'b.onnx'))), { message: /b\.onnx is a file: a multiplexed deployment's model\.path is a folder/ });
    t.throws(() => checkModelFolder(onnx(path.join(dir, 'empty'))), { message: /holds no model \(a file <id>\.onnx, or a folder <id>\/ holding model\.onnx or onnx\/model\.onnx\)/ });
    t.throws(() => checkModelFolder({ runtime: 'tfjs', path: path.join(dir, 'empty') }), { message: /holds no model \(a folder <id>\/ holding model\.json or tfjs\/model\.json\)/ });

    // in serve.yaml: the error at the model's path; the defaults are Ray Serve's
    const doc = (p: string, multiplex: unknown = {}) => ({ applications: [{ name: 'm', deployments: [{ name: 'model', model: { path: p }, multiplex }] }] });
    const issues = (d: unknown) => {
        try {
            validate(d, dir);
        }
        catch (err) {
            return (err as ConfigError).issues;
        }
        return [];
    };
    t.strictSame(issues(doc('./nope')), [{ path: 'applications[0].deployments[0].model.path', message: `multiplexed model folder not found: ${path.join(dir, 'nope')}` }]);
    t.match(issues(doc('./empty')), [{ path: 'applications[0].deployments[0].model.path', message: /holds no model/ }]);
    t.match(issues(doc('.', { max_num_models_per_replica: 0 })), [{ path: 'applications[0].deployments[0].multiplex.max_num_models_per_replica' }]);
    t.strictSame(validate(doc('.'), dir).applications[0].deployments[0].multiplex, { max_num_models_per_replica: 3 });
    t.strictSame(validate(doc('.', { max_models_per_replica: 2 }), dir).applications[0].deployments[0].multiplex, { max_num_models_per_replica: 2 }, 'the shorter spelling is taken for Ray\'s');
});

t.test('the folder\'s listing is read again on each change to it, with each model\'s content hash', async (t) => {
    const dir = write(tmp(), { 'a.onnx': 'one', 'b/model.onnx': 'two' });
    const changes: unknown[] = [];
    const folder = new ModelFolder(onnx(dir), (c) => changes.push(c));
    t.strictSame(await folder.look(), { added: ['a', 'b'], removed: [], changed: [] }, 'the first look finds what is there');
    t.equal(folder.first?.id, 'a');
    const digest = (folder.models.get('a') as ModelRef).digest;
    write(dir, { 'c.onnx': 'three' });
    await until(() => changes.length, { what: 'a look after c.onnx came' });
    write(dir, { 'a.onnx': 'one, changed' });
    fs.rmSync(path.join(dir, 'b'), { recursive: true });
    await until(() => changes.length > 1 && folder.models.size === 2 && folder.models.get('a')?.digest !== digest, { what: 'a look after a changed and b went' });
    t.strictSame(changes, [{ added: ['c'], removed: [], changed: [] }, { added: [], removed: ['b'], changed: ['a'] }]);
    folder.close();
    await folder.look();
    write(dir, { 'd.onnx': 'four' });
    t.strictSame((await folder.look()).added, ['d'], 'a look asked for still reads it');
    t.equal(changes.length, 2, 'closed: nothing watched, nothing heard');
    fs.rmSync(dir, { recursive: true });
    t.strictSame(await folder.look(), { added: [], removed: ['a', 'c', 'd'], changed: [] }, 'the folder gone: no model');
});

t.test('a replica\'s cache: loaded on first use, the least recently used evicted first, reloaded when its content changed', async (t) => {
    const reports: CacheReport[] = [];
    const released: string[] = [];
    const ref = (id: string, digest = 'v1'): ModelRef => ({ id, path: `/m/${id}`, digest });
    const cache = new ModelCache<string>(2, async (r) => {
        if (r.id === 'broken') {
            throw new Error('not a model');
        }
        return `${r.id}@${r.digest}`;
    }, (v) => released.push(v), (r) => reports.push(r));
    cache.seed(ref('a'), 'a@v1');
    t.strictSame(reports.pop(), { held: ['a'], evicted: [] }, 'the model a replica starts with is held, not counted as a load');
    t.equal(await cache.use(ref('b')), 'b@v1');
    t.match(reports.pop(), { held: ['b', 'a'], loaded: { id: 'b', seconds: Number }, evicted: [] });
    t.equal(await cache.use(ref('a')), 'a@v1', 'held: no load');
    t.equal(reports.length, 0);
    t.equal(await cache.use(ref('c')), 'c@v1');
    t.match(reports.pop(), { held: ['c', 'a'], loaded: { id: 'c' }, evicted: ['b'] }, 'b, the least recently used, made room');
    t.equal(await cache.use(ref('a', 'v2')), 'a@v2', 'a changed: loaded again');
    t.match(reports.pop(), { held: ['a', 'c'], loaded: { id: 'a' }, evicted: [] }, 'the old a is no eviction');
    await t.rejects(cache.use(ref('broken')), { message: 'not a model' });
    t.strictSame(reports.pop(), { held: ['a'], evicted: ['c'] }, 'room was made before the load, which failed');
    cache.drop(['a', 'x']);
    t.strictSame(reports.pop(), { held: [], evicted: [] });
    cache.drop(['x']);
    t.equal(reports.length, 0, 'nothing held, nothing to say');
    t.strictSame(released, ['b@v1', 'a@v1', 'c@v1', 'a@v2'], 'each model that left was released');
    t.strictSame(cache.values(), []);
});

t.test('a request names one of the folder\'s models; a message names at most 20 of them', async (t) => {
    const dir = write(tmp(), Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`m${String(i).padStart(2, '0')}.onnx`, 'x'])));
    const m = new Multiplexer('app/model', { model: onnx(dir), multiplex: { max_num_models_per_replica: 2 } } as DeploymentConfig, () => []);
    await m.open();
    t.teardown(() => m.close());
    t.equal(m.model({ serve_multiplexed_model_id: 'm03' }).id, 'm03');
    const refused = (headers: Record<string, string>) => {
        try {
            m.model(headers);
        }
        catch (err) {
            const b = err as Boom.Boom;
            return { status: b.output.statusCode, message: b.message, data: b.data };
        }
        return undefined;
    };
    t.match(refused({}), { status: 400, message: /^deployment "app\/model" serves several models: name one in the serve_multiplexed_model_id header \(its models: m00, m01, .*, m19 and 1 more\)$/, data: { code: 'BAD_REQUEST', models: Array } });
    t.match(refused({ serve_multiplexed_model_id: 'zz' }), { status: 404, message: /^deployment "app\/model" has no model "zz" \(its models: m00,/, data: { code: 'NOT_FOUND' } });
    t.match(modelIdParameter(m), { name: 'serve_multiplexed_model_id', in: 'header', required: true, description: /m19 and 1 more$/ });
});

t.test('a model that leaves a replica\'s cache is released: ONNX Runtime\'s session, TensorFlow.js\'s weights', async (t) => {
    const dir = write(tmp(), { 'a.onnx': adder(1) });
    const session = await load(onnx(path.join(dir, 'a.onnx')), { cpus: 1, gpus: 0 });
    session.release();
    await t.rejects(session.run({ x: { type: 'float32', data: Float32Array.of(1), dims: [1, 1] } }), 'a released session runs no more');

    const tf = await import('@tensorflow/tfjs');
    const model = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 2 })] });
    await model.save(tf.io.withSaveHandler(async (a) => {
        write(dir, { 'tfjs/weights.bin': Buffer.from(a.weightData as ArrayBuffer), 'tfjs/model.json': JSON.stringify({ format: 'layers-model', modelTopology: a.modelTopology, weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }] }) });
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }));
    const before = tf.memory().numTensors;
    const loaded = await load({ runtime: 'tfjs', path: path.join(dir, 'tfjs', 'model.json') }, { cpus: 1, gpus: 0 });
    t.equal(tf.memory().numTensors, before + 2, 'its kernel and bias');
    loaded.release();
    t.equal(tf.memory().numTensors, before, 'disposed of');
});

/** A replica process as the scheduler sees it, whose worker holds models as a replica's cache of 2 does. */
class FakeReplica implements SchedulerReplica {
    state = 'RUNNING';
    aliveAt = Infinity;
    signature = { inputs: [{ name: 'x', type: 'float32', dims: ['batch', 1] }], outputs: [] };
    readonly models: ReplicaModels;
    /** each batch it got: its model and items, and the hand that answers it */
    readonly batches: Array<{ model?: string; items: string[]; answer(): void }> = [];
    private inflight = 0;

    constructor(multiplexer: Multiplexer, held: string[]) {
        this.models = new ReplicaModels(multiplexer);
        this.models.report({ held, evicted: [] });
    }

    get inflightBatches(): number {
        return this.inflight;
    }

    get inflightRequests(): number {
        return this.inflight;
    }

    probe(): void {}

    run(items: unknown[], _rows: number, _ids?: string[], _deadlines?: number[], model?: ModelRef): Promise<string[]> {
        const id = (model as ModelRef).id;
        this.models.sent(id);
        this.inflight++;
        return new Promise((resolve) => this.batches.push({
            model: id, items: items as string[], answer: () => {
                // its worker loads what it does not hold (a cache of 2)
                if (!this.models.held.includes(id)) {
                    this.models.report({ held: [id, ...this.models.held].slice(0, 2), loaded: { id, seconds: 0.001 }, evicted: this.models.held.slice(1) });
                }
                this.inflight--;
                this.models.answered(id, 1);
                resolve((items as string[]).map((i) => `${i}:${id}`));
            }
        }));
    }

    /** what it got: each batch as `model:item,item` */
    get got(): string[] {
        return this.batches.map((b) => `${b.model}:${b.items.join(',')}`);
    }
}

/** Resolves after the scheduler's deferred dispatch of this loop turn has run. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * A scheduler over fake replicas of a multiplexed deployment whose models load in `loadMs` and whose batches take
 * `batchMs`, as its Multiplexer has learnt. Batches leave at once (no wait for company) and hold one request unless
 * said.
 */
async function setup(t: Test, held: string[][], { loadMs = 10, batchMs = 4, max_batch_size = 1 } = {}) {
    const dir = write(tmp(), { 'a.onnx': 'x', 'b.onnx': 'x', 'c.onnx': 'x', 'd.onnx': 'x' });
    const m = new Multiplexer('app/model', { model: onnx(dir), multiplex: { max_num_models_per_replica: 2 } } as DeploymentConfig, () => []);
    await m.open();
    m.counted({ held: [], loaded: { id: 'x', seconds: loadMs / 1000 }, evicted: [] });
    m.ran(batchMs);
    const replicas = held.map((h) => new FakeReplica(m, h));
    const config: SchedulerConfig = { max_ongoing_requests: 64, max_queued_requests: 256, batching: { max_batch_size, batch_wait_timeout_s: 0 } };
    const s = new Scheduler({ id: 'app/model', replicas, config, multiplexer: m });
    t.teardown(async () => {
        m.close();
        await s.drain(0);
    });
    const submit = (model: string, item = model) => s.submit({ rows: 1, key: 'k', item }, 60_000, undefined, undefined, m.model({ serve_multiplexed_model_id: model }));
    return { replicas, submit };
}

t.test('the scheduler: a batch never mixes models, and goes to a replica holding its model', async (t) => {
    const { replicas: [r1, r2], submit } = await setup(t, [['a'], ['b']], { max_batch_size: 8 });
    const answers = [submit('b', 'b1'), submit('a', 'a1'), submit('b', 'b2'), submit('a', 'a2')];
    await turn();
    t.strictSame([r1.got, r2.got], [['a:a1,a2'], ['b:b1,b2']], 'each model\'s requests together, on the replica holding it, though r1 comes first');
    r1.batches[0].answer();
    r2.batches[0].answer();
    t.strictSame(await Promise.all(answers), ['b1:b', 'a1:a', 'b2:b', 'a2:a']);
});

t.test('the scheduler: a model held nowhere goes to the least busy replica, and of equals the one holding fewer models', async (t) => {
    t.test('fewer models', async (t) => {
        const { replicas: [r1, r2], submit } = await setup(t, [['a', 'b'], ['c']]);
        const answer = submit('d');
        await turn();
        t.strictSame([r1.got, r2.got], [[], ['d:d']], 'r2 loads d, evicting nothing');
        r2.batches[0].answer();
        t.equal(await answer, 'd:d');
        t.strictSame(r2.models.held, ['d', 'c']);
    });
    t.test('of equals, the first', async (t) => {
        const { replicas: [r1, r2], submit } = await setup(t, [['a'], ['b', 'c']]);
        const answer = submit('d');
        await turn();
        t.strictSame([r1.got, r2.got], [['d:d'], []]);
        r1.batches[0].answer();
        await answer;
    });
});

t.test('the scheduler: of the replicas holding a model, the least busy; of equals, the one holding fewer models', async (t) => {
    const { replicas: [r1, r2], submit } = await setup(t, [['a', 'c'], ['a']]);
    const answers = [submit('c', 'c1')];
    await turn();
    answers.push(submit('a', 'a1'));
    await turn();
    t.strictSame([r1.got, r2.got], [['c:c1'], ['a:a1']], 'a1: r2, idle, rather than r1, busy with c');
    answers.push(submit('a', 'a2'));
    await turn();
    t.strictSame(r2.got, ['a:a1', 'a:a2'], 'a2: both busy with one batch; r2 holds fewer models');
    r1.batches[0].answer();
    await answers[0];
    answers.push(submit('a', 'a3'));
    await turn();
    t.strictSame(r1.got, ['c:c1', 'a:a3'], 'a3: r1, idle again, rather than r2, busy');
    [...r1.batches, ...r2.batches].forEach((b) => b.answer());
    t.strictSame(await Promise.all(answers), ['c1:c', 'a1:a', 'a2:a', 'a3:a']);
});

t.test('the scheduler: while its holder is busy, a model waits for it until the waits add up to a load; then an idle replica loads it', async (t) => {
    // a load takes 10 ms, a batch 4 ms: each batch sent behind the busy holder waits about 4 ms
    const { replicas: [r1, r2], submit } = await setup(t, [['a'], ['b']], { loadMs: 10, batchMs: 4 });
    const answers = [submit('a', 'a1')];
    await turn();
    for (const [i, next] of ['a2', 'a3', 'a4'].entries()) {
        answers.push(submit('a', next));
        await turn();
        t.strictSame(r1.got.at(-1), `a:${next}`, `${next}: behind the busy holder, ${4 * (i + 1)} ms waited in all`);
        r1.batches[i].answer();
    }
    t.strictSame(r2.got, [], 'r2 idled meanwhile');
    answers.push(submit('a', 'a5'));
    await turn();
    t.strictSame(r2.got, ['a:a5'], 'a5: 12 ms waited, more than a load: r2 loads a');
    answers.push(submit('a', 'a6'));
    await turn();
    t.strictSame(r1.got, ['a:a1', 'a:a2', 'a:a3', 'a:a4', 'a:a6'], 'a6: both hold a now, equally busy: the first');
    [...r1.batches, ...r2.batches].forEach((b) => b.answer());
    await Promise.all(answers);
    t.strictSame([r1.models.held, r2.models.held], [['a'], ['a', 'b']], 'both hold it');
});

t.test('the scheduler: when every replica holding a model has its pipeline full, a free one loads it at once (over-subscribed)', async (t) => {
    const { replicas: [r1, r2], submit } = await setup(t, [['a'], ['b']], { loadMs: 1000 });
    const answers = [submit('b', 'b1'), submit('a', 'a1')];
    await turn();
    answers.push(submit('a', 'a2'));
    await turn();
    t.strictSame([r1.got, r2.got], [['a:a1', 'a:a2'], ['b:b1']], 'a2 waits behind a1 on r1, whose pipeline is now full');
    answers.push(submit('a', 'a3'), submit('a', 'a4'));
    await turn();
    t.strictSame(r2.got, ['b:b1', 'a:a3'], 'a3: r2, busy but free, loads a; a4 finds no free replica and waits');
    r1.batches[0].answer();
    await turn();
    t.strictSame(r1.got, ['a:a1', 'a:a2', 'a:a4']);
    [...r1.batches, ...r2.batches].forEach((b) => b.answer());
    t.strictSame(await Promise.all(answers), ['b1:b', 'a1:a', 'a2:a', 'a3:a', 'a4:a']);
});

// A real `tsserve up`: 5 models, 2 replicas, at most 2 models each. Beside it, for the user_config test, tuned: 4
// adders on one replica holding up to 3, through test/fixtures/handlers/offset.js, which adds user_config.offset to
// each answer. That test edits serve.yaml, so it comes after the one that sees no reload, and before the folder of
// mux is emptied (a file naming an empty folder is refused).
const dir = tmp();
const models = path.join(dir, 'models');
write(models, { 'a.onnx': adder(1), 'b.onnx': adder(2), 'c.onnx': adder(3), 'd.onnx': adder(4), 'e/model.onnx': adder(5) });
const added: Record<string, number> = { a: 1, b: 2, c: 3, d: 4, e: 5 };
write(path.join(dir, 'tuned'), { 'a.onnx': adder(1), 'b.onnx': adder(2), 'c.onnx': adder(3), 'd.onnx': adder(4) });
const offsetHandler = path.join(__dirname, 'fixtures', 'handlers', 'offset.js');
/** serve.yaml, with tuned's user_config as YAML flow text. */
const yaml = (userConfig: string) => `
max_cpus: 8
applications:
  - name: mux
    deployments:
      - name: model
        model: { path: ./models }
        multiplex: { max_num_models_per_replica: 2 }
        num_replicas: 2
        batching: { max_batch_size: 4, batch_wait_timeout_s: 0.002 }
  - name: tuned
    deployments:
      - name: model
        handler: ${offsetHandler}
        model: { path: ./tuned }
        multiplex: { max_num_models_per_replica: 3 }
        user_config: ${userConfig}
`;
let s: Served;

t.before(async () => {
    s = await serve(dir, yaml('{ offset: 100 }'));
});
t.teardown(() => s?.stop());

/** A request for model `id` (no header when undefined) of one row, x. */
const ask = (id: string | undefined, x: number) => s.post('/mux/predict', { inputs: [[x]] }, id === undefined ? {} : { serve_multiplexed_model_id: id });

/** Whether an answer is model `id`'s for x: y = x + its constant. */
const right = (a: { status: number; body: any }, id: string, x: number) => a.status === 200 && JSON.stringify(a.body) === JSON.stringify({ outputs: { y: [[x + added[id]]] } });

/** The deployment's status. */
const deployment = async () => (await s.get('/-/status')).body.applications[0].deployments[0];

/** The models each replica holds, by replica id. */
const holdings = async (): Promise<Record<string, string[]>> => Object.fromEntries((await deployment()).replicas.map((r: { id: string; models: string[] }) => [r.id, r.models]));

/** The value of a metric's series for the deployment (or one replica of it), from /metrics. */
async function metric(name: string, replica?: string): Promise<number> {
    const text = (await s.get('/metrics')).body as string;
    const labels = `application="mux",deployment="model"${replica ? `,replica="${replica}"` : ''}`;
    const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
    return Number(line?.split(' ')[1]);
}

t.test('5 models on 2 replicas holding 2 each: every model answers as itself; evictions happen and are counted', async (t) => {
    const ids = Object.keys(added);
    for (let round = 0; round < 2; round++) {
        for (const id of ids) {
            const a = await ask(id, round);
            t.ok(right(a, id, round), `${id}, round ${round}`, { found: a.body, wanted: round + added[id] });
        }
    }
    // every model at once: batches never mix models
    const xs = ids.flatMap((id, k) => [0, 1, 2].map((j) => ({ id, x: 10 * k + j })));
    const answers = await Promise.all(xs.map(({ id, x }) => ask(id, x)));
    t.equal(answers.filter((a, i) => right(a, xs[i].id, xs[i].x)).length, xs.length, 'concurrent requests for all 5 models: each its own model\'s answer');

    const d = await deployment();
    t.match(d.multiplex, { max_num_models_per_replica: 2, models: ids, model_load_s: { mean: Number, max: Number, last: Number } });
    t.ok(d.multiplex.model_loads >= 5, `loads counted (${d.multiplex.model_loads})`);
    t.ok(d.multiplex.model_evictions > 0, `evictions counted (${d.multiplex.model_evictions}): 5 models, 4 places`);
    t.ok(d.multiplex.model_load_s.mean > 0);
    for (const r of d.replicas) {
        t.ok(r.models.length >= 1 && r.models.length <= 2 && r.models.every((m: string) => ids.includes(m)), `${r.id} holds ${r.models}`);
        t.equal(await metric('tsserve_multiplexed_models', r.id), r.models.length, 'its gauge says as much');
    }
    t.equal(await metric('tsserve_multiplexed_model_loads_total'), d.multiplex.model_loads, 'metrics count the loads');
    t.equal(await metric('tsserve_multiplexed_model_evictions_total'), d.multiplex.model_evictions, 'and the evictions');
    t.equal(await metric('tsserve_multiplexed_model_load_seconds_count'), d.multiplex.model_loads, 'and each load\'s time');
});

t.test('a request names its model: Ray Serve\'s header, or over V2 the model name <name>.<id>; else a 4xx naming the models', async (t) => {
    const none = await ask(undefined, 1);
    t.equal(none.status, 400);
    t.match(none.body, { code: 'BAD_REQUEST', message: 'deployment "mux/model" serves several models: name one in the serve_multiplexed_model_id header (its models: a, b, c, d, e)', details: { models: ['a', 'b', 'c', 'd', 'e'] } });
    const unknown = await ask('zz', 1);
    t.equal(unknown.status, 404);
    t.match(unknown.body, { code: 'NOT_FOUND', message: 'deployment "mux/model" has no model "zz" (its models: a, b, c, d, e)' });

    const v2 = (x: number) => ({ inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [x] }] });
    const byName = await s.post('/v2/models/mux.c/infer', v2(7));
    t.equal(byName.status, 200);
    t.match(byName.body, { model_name: 'mux.c', outputs: [{ name: 'y', shape: [1, 1], data: [10] }] }, 'c: 7 + 3');
    const byHeader = await s.post('/v2/models/mux/infer', v2(7), { serve_multiplexed_model_id: 'b' });
    t.match(byHeader.body, { outputs: [{ data: [9] }] }, 'the header on the deployment\'s own name: b, 7 + 2');
    const noSuch = await s.post('/v2/models/mux.zz/infer', v2(7));
    t.equal(noSuch.status, 404);
    t.match(noSuch.body, { code: 'NOT_FOUND', error: /no model "mux\.zz"/ });
    t.match((await s.get('/v2/models/mux.a')).body, { name: 'mux.a', inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 1] }] });

    const doc = (await s.get('/openapi.json')).body;
    const header = doc.paths['/mux/predict'].post.parameters.find((p: { name: string }) => p.name === 'serve_multiplexed_model_id');
    t.match(header, { in: 'header', required: true, description: /a, b, c, d, e$/ }, '/openapi.json: the route takes the header');
    await validOpenApi(t, doc);
    t.match(await cli(['validate', path.join(dir, 'serve.yaml')]), { code: 0, stdout: /is valid/ }, 'tsserve validate loads each model of the folder');
});

t.test('a model of another kind, or one that does not load, fails its own requests clearly; the others serve on', async (t) => {
    write(models, { 'junk.onnx': 'not a model', 'wide.onnx': adder(0, 2) });
    await until(async () => (await deployment()).multiplex.models.length === 7, { what: 'junk and wide listed' });
    const junk = await ask('junk', 1);
    t.equal(junk.status, 500);
    t.match(junk.body, { code: 'MODEL_ERROR', message: /^model "junk" failed to load: / });
    t.notMatch(junk.body.message, dir, 'the message names the model, not where it lies');
    const wide = await ask('wide', 1);
    t.match(wide.body, { code: 'MODEL_ERROR', message: /^model "wide" takes other inputs \(.*\) than the deployment's other models \(.*\): a multiplexed deployment serves models of one kind$/ });
    t.ok(right(await ask('a', 1), 'a', 1), 'a still answers');
    fs.rmSync(path.join(models, 'junk.onnx'));
    fs.rmSync(path.join(models, 'wide.onnx'));
    await until(async () => (await deployment()).multiplex.models.length === 5, { what: 'junk and wide gone' });
});

t.test('a model added to the folder is served without a restart; a hot model spreads to both replicas (ray-project/ray#48741)', async (t) => {
    const pids = (await deployment()).replicas.map((r: { pid: number }) => r.pid);
    t.equal((await ask('f', 1)).status, 404, 'not there yet');
    write(models, { 'f.onnx': adder(6) });
    added.f = 6;
    const first = await until(async () => {
        const a = await ask('f', 1);
        return a.status === 200 && a;
    }, { what: () => `f served:\n${s.output()}` });
    t.ok(right(first, 'f', 1));
    const holders = async () => Object.entries(await holdings()).filter(([, m]) => m.includes('f')).map(([id]) => id);
    t.equal((await holders()).length, 1, 'one replica loaded it');

    // 8 clients at once, each sending its next request once answered
    let running = true;
    let wrong = 0;
    const client = async (c: number) => {
        for (let i = 0; running; i++) {
            const x = c * 1000 + i;
            wrong += right(await ask('f', x), 'f', x) ? 0 : 1;
        }
    };
    const clients = Array.from({ length: 8 }, (_, c) => client(c));
    await until(async () => (await holders()).length === 2, { what: () => `both replicas to hold f:\n${s.output()}`, timeoutMs: 120000 });
    running = false;
    await Promise.all(clients);
    t.equal(wrong, 0, 'every answer f\'s');
    t.strictSame((await deployment()).replicas.map((r: { pid: number }) => r.pid), pids, 'no replica restarted');
    t.notMatch(s.output(), /reload \(file change\)/, 'the folder is no part of serve.yaml\'s version: no reload');
});

t.test('a model removed from the folder is refused, and the replicas drop it; one changed is loaded again', async (t) => {
    t.ok(right(await ask('c', 1), 'c', 1));
    fs.rmSync(path.join(models, 'c.onnx'));
    const gone = await until(async () => {
        const a = await ask('c', 1);
        return a.status === 404 && a;
    }, { what: 'c refused' });
    t.match(gone.body, { code: 'NOT_FOUND', details: { models: ['a', 'b', 'd', 'e', 'f'] } });
    await until(async () => Object.values(await holdings()).every((m) => !m.includes('c')), { what: 'no replica holding c' });

    t.ok(right(await ask('a', 1), 'a', 1), 'a held by a replica');
    write(models, { 'a.onnx': adder(100) });
    added.a = 100;
    await until(async () => right(await ask('a', 1), 'a', 1), { what: 'a, changed, answering 1 + 100' });
    t.ok(right(await ask('a', 2), 'a', 2));
});

t.test('a user_config change reconfigures the handler of every model a replica holds, and of those it loads later; one refused, by any of them, changes none', async (t) => {
    const file = path.join(dir, 'serve.yaml');
    const tuned = async () => (await s.get('/-/status')).body.applications.find((a: { name: string }) => a.name === 'tuned').deployments[0];
    /** Model `id`'s answer for x, as the handler adds its offset: x + the model's constant + the offset. */
    const y = async (id: string, x: number) => {
        const a = await s.post('/tuned/predict', { x }, { serve_multiplexed_model_id: id });
        return a.status === 200 ? a.body.y : a.body;
    };
    /** Rewrites serve.yaml with tuned's user_config, and resolves with the reload that the change makes. */
    const edit = async (userConfig: string) => {
        const reloads = (await s.get('/-/status')).body.config.reloads;
        fs.writeFileSync(file, yaml(userConfig));
        await until(async () => (await s.get('/-/status')).body.config.reloads > reloads, { what: () => `a reload of user_config ${userConfig}:\n${s.output()}` });
        return (await s.get('/-/status')).body.config.last_reload;
    };

    // The replica starts with a; b is loaded on its first use. Both are held when user_config changes.
    t.same([await y('a', 1), await y('b', 1)], [102, 103], 'offset 100 from the start, for the model started with and one loaded');
    const before = await tuned();
    t.same([...before.replicas[0].models].sort(), ['a', 'b'], 'the replica holds a and b');
    t.equal(before.multiplex.model_loads, 1, 'b was loaded');

    const applied = await edit('{ offset: 200 }');
    t.same([applied.result, applied.errors, applied.changes.updated], ['applied', [], ['tuned/model']], 'applied in place, without an error');
    t.same([await y('a', 1), await y('b', 1)], [202, 203], 'both held models answer with the new offset');
    const after = await tuned();
    t.equal(after.multiplex.model_loads, 1, 'neither was loaded again: their handlers were reconfigured in place');
    t.equal(after.replicas[0].pid, before.replicas[0].pid, 'and the replica was not restarted');
    t.equal(await y('c', 1), 204, 'c, loaded after the change, takes the new user_config');

    const refused = await edit('{ offset: high }');
    t.match(refused.errors, [/^tuned\/model#0: user_config\.offset must be a number \(received "high"\); user_config stays as it was$/]);
    t.same([await y('a', 1), await y('b', 1), await y('c', 1)], [202, 203, 204], 'every held model keeps offset 200');
    // refused by the second held model, after the first took it: the first gets offset 200 back
    const second = await edit('{ offset: 300, refuse_second: true }');
    t.match(second.errors, [/^tuned\/model#0: user_config refused by the second model given it; user_config stays as it was$/]);
    t.same([await y('a', 1), await y('b', 1), await y('c', 1)], [202, 203, 204], 'every held model keeps offset 200, the one that took 300 too');
    t.equal(await y('d', 1), 205, 'd, loaded after the refused change, takes the user_config in force');
    const last = await tuned();
    t.equal(last.multiplex.model_loads, 3, 'c and d were loaded');
    t.equal(last.replicas[0].pid, before.replicas[0].pid, 'and the replica was never restarted');
});

t.test('tsserve status shows the models, the loads and evictions, and what each replica holds; an emptied folder serves none', async (t) => {
    const shown = await cli(['status', '--address', s.url]);
    t.match(shown.stdout, /MULTIPLEXED\s+MODELS\s+PER REPLICA\s+LOADS\s+EVICTIONS\s+LOAD MEAN\s+LOAD MAX\nmux\/model\s+5\s+2\s+\d+\s+\d+\s+\S+ms/);
    t.match(shown.stdout, /REPLICA\s+MODELS HELD \(MOST RECENTLY USED FIRST\)\nmux\/model#0\s+\w+(, \w+)?\nmux\/model#1\s+\w+/);

    for (const name of fs.readdirSync(models)) {
        fs.rmSync(path.join(models, name), { recursive: true });
    }
    await until(async () => {
        const d = await deployment();
        return !d.multiplex.models.length && d.replicas.every((r: { models: string[] }) => !r.models.length);
    }, { what: 'no model listed, none held' });
    t.match((await ask('b', 1)).body, { code: 'NOT_FOUND', message: 'deployment "mux/model" has no model "b" (its models: none)' });
    t.match((await cli(['status', '--address', s.url])).stdout, /mux\/model#0\s+-\nmux\/model#1\s+-/);
});
