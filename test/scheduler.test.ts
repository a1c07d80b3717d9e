// The dynamic batch scheduler in-process, with fake replicas that record each batch they get and answer it when the
// test says so: what leaves together, when, to which replica, and what a request gets when it cannot be answered.
import t, { type Test } from 'tap';
import { EventEmitter } from 'node:events';
import type Boom from '@hapi/boom';
import { Scheduler, ReplicaDied, type Client, type SchedulerConfig, type SchedulerReplica } from '../lib/scheduler';
import type { Signature } from '../lib/signature';
import type { WireError } from '../lib/errors';

/** A batch a fake replica got: its items and rows, and the test's hand on its outcome. */
interface Batch {
    items: string[];
    rows: number;
    answer(): void;
    fail(err: WireError | ReplicaDied): void;
}

/** Records each batch; answers each item with `<item>:ok` when the test calls answer(). */
class FakeReplica implements SchedulerReplica {
    state = 'RUNNING';
    signature: Signature;
    /** known alive at any time, unless a test says otherwise */
    aliveAt = Infinity;
    /** the signs of life asked of it */
    probes = 0;
    /** every batch it got, in order */
    readonly batches: Batch[] = [];
    private inflight = new Set<Batch>();
    private arrivals: Array<() => void> = [];

    /** `fixedRows`: the model's first dimension, when it is fixed */
    constructor(fixedRows?: number) {
        this.signature = { inputs: [{ name: 'x', type: 'float32', dims: [fixedRows ?? 'batch', 1] }], outputs: [] };
    }

    get inflightBatches(): number {
        return this.inflight.size;
    }

    get inflightRequests(): number {
        let n = 0;
        for (const b of this.inflight) {
            n += b.items.length;
        }
        return n;
    }

    probe(): void {
        this.probes++;
    }

    run(items: unknown[], rows: number): Promise<string[]> {
        return new Promise((resolve, reject) => {
            const b: Batch = {
                items: items as string[],
                rows,
                answer: () => {
                    this.inflight.delete(b);
                    resolve(b.items.map((item) => `${item}:ok`));
                },
                fail: (err) => {
                    this.inflight.delete(b);
                    reject(err);
                }
            };
            this.inflight.add(b);
            this.batches.push(b);
            this.arrivals.splice(0).forEach((arrived) => arrived());
        });
    }

    /** The n-th batch it got (from 0), once it has come. */
    async batch(n: number): Promise<Batch> {
        while (this.batches.length <= n) {
            await new Promise<void>((resolve) => this.arrivals.push(resolve));
        }
        return this.batches[n];
    }

    get items(): string[][] {
        return this.batches.map((b) => b.items);
    }

    get sizes(): number[] {
        return this.batches.map((b) => b.items.length);
    }
}

class FakeClient extends EventEmitter implements Client {
    writableEnded = false;
}

const defaults: SchedulerConfig = { max_ongoing_requests: 64, max_queued_requests: 256, batching: { max_batch_size: 32, batch_wait_timeout_s: 10 } };

interface Setup {
    s: Scheduler;
    host: { id: string; replicas: FakeReplica[]; config: SchedulerConfig };
    /** submits a request; resolves with its body, or with `<status> <code>: <message>` when it fails */
    submit(item: string, opts?: { rows?: number; key?: string; timeoutMs?: number; client?: Client }): Promise<string>;
}

/**
 * A scheduler over fake replicas. The batch wait is 10 s unless a test sets it: whatever leaves earlier did not wait
 * for it. Teardown drains it, so that no timer outlives the test.
 */
function setup(t: Test, config: Partial<SchedulerConfig> = {}, replicas = [new FakeReplica()]): Setup {
    const host = { id: 'app/model', replicas, config: { ...defaults, ...config } };
    const s = new Scheduler(host);
    t.teardown(() => s.drain(0));
    const submit: Setup['submit'] = (item, { rows = 1, key = 'k', timeoutMs = 60_000, client } = {}) =>
        (s.submit({ rows, key, item }, timeoutMs, client) as Promise<string>).catch((err: Boom.Boom) => `${err.output.statusCode} ${(err.data as { code: string }).code}: ${err.message}`);
    return { s, host, submit };
}

/** Resolves after the scheduler's deferred dispatch of this loop turn has run. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Resolves after what a batch's failure sets off has run: the retry, then the dispatch it asks for, one turn later
 * than the failure itself (a turn awaited right after fail() would end first).
 */
const settled = async () => {
    await turn();
    await turn();
};

t.test('a lone request on an idle replica leaves at once: the batch wait is a ceiling, not a toll', async (t) => {
    const { s, host: { replicas: [r] }, submit } = setup(t);
    const a = submit('a');
    t.equal(s.queued, 1, 'queued until the end of the loop turn');
    await turn();
    t.same(r.items, [['a']], 'dispatched in the same turn, not after batch_wait_timeout_s (10 s)');
    t.equal(s.queued, 0);
    r.batches[0].answer();
    t.equal(await a, 'a:ok');
});

t.test('requests that arrive in one loop turn leave together, as one batch', async (t) => {
    const { host: { replicas: [r] }, submit } = setup(t);
    const answers = ['a', 'b', 'c', 'd', 'e'].map((x) => submit(x));
    await turn();
    t.same(r.sizes, [5]);
    r.batches[0].answer();
    t.same(await Promise.all(answers), ['a:ok', 'b:ok', 'c:ok', 'd:ok', 'e:ok'], 'each request gets its own answer');
});

t.test('concurrent requests against a busy replica are batched', async (t) => {
    const { s, host: { replicas: [r] }, submit } = setup(t, { batching: { max_batch_size: 8, batch_wait_timeout_s: 10 } });
    const first = submit('a');
    await turn();
    t.same(r.sizes, [1], 'the first request finds the replica idle and leaves alone');
    const next = ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'].map((x) => submit(x));
    await turn();
    t.same(r.sizes, [1, 8], 'a full batch leaves at once, pipelined behind the running one');
    const last = ['j', 'k', 'l'].map((x) => submit(x));
    await turn();
    t.same(r.sizes, [1, 8], 'no third batch while two are in flight');
    t.equal(s.queued, 3);
    r.batches[0].answer();
    r.batches[1].answer();
    (await r.batch(2)).answer();
    t.same(r.sizes, [1, 8, 3], 'the replica, idle again, takes everything queued');
    t.same(await Promise.all([first, ...next, ...last]), ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l'].map((x) => `${x}:ok`));
});

t.test('a busy replica gets a partial batch once the oldest request has waited batch_wait_timeout_s', async (t) => {
    const { host: { replicas: [r] }, submit } = setup(t, { batching: { max_batch_size: 8, batch_wait_timeout_s: 0.25 } });
    const answers = [submit('a')];
    await turn();
    answers.push(submit('b'), submit('c'));
    await turn();
    t.same(r.sizes, [1], 'b and c wait for company while the replica is busy');
    await r.batch(1);
    t.same(r.items, [['a'], ['b', 'c']], 'then leave together');
    t.equal(r.inflightBatches, 2, 'while the first batch still runs');
    r.batches.forEach((b) => b.answer());
    t.same(await Promise.all(answers), ['a:ok', 'b:ok', 'c:ok']);
});

t.test('a batch holds at most max_batch_size rows, or the model\'s fixed batch size; an oversized request runs alone', async (t) => {
    t.test('max_batch_size, in rows', async (t) => {
        const { s, host: { replicas: [r] }, submit } = setup(t, { batching: { max_batch_size: 4, batch_wait_timeout_s: 10 } });
        const answers = [submit('a')];
        await turn();
        answers.push(submit('b', { rows: 2 }), submit('c', { rows: 3 }), submit('d', { rows: 2 }), submit('e'), submit('f', { rows: 10 }));
        await turn();
        t.same(r.items, [['a'], ['b', 'd']], 'the oldest, then later ones that fit: c (3 rows) does not, d (2) does');
        r.batches[0].answer();
        (await r.batch(2)).answer();
        r.batches[1].answer();
        (await r.batch(3)).answer();
        t.same(r.items, [['a'], ['b', 'd'], ['c', 'e'], ['f']], 'f, over max_batch_size, ran alone');
        t.same(r.batches.map((b) => b.rows), [1, 4, 4, 10], 'each replica is told its batch\'s rows');
        t.same(await Promise.all(answers), ['a:ok', 'b:ok', 'c:ok', 'd:ok', 'e:ok', 'f:ok']);
        t.equal(s.queued, 0);
    });

    t.test('a model whose first dimension is fixed', async (t) => {
        const { host: { replicas: [r] }, submit } = setup(t, {}, [new FakeReplica(2)]);
        const answers = ['a', 'b', 'c'].map((x) => submit(x));
        await turn();
        t.same(r.items, [['a', 'b']], 'batches of at most 2 rows, though max_batch_size is 32');
        r.batches[0].answer();
        (await r.batch(1)).answer();
        t.same(r.items, [['a', 'b'], ['c']]);
        t.same(await Promise.all(answers), ['a:ok', 'b:ok', 'c:ok']);
    });
});

t.test('max_ongoing_requests bounds the requests a replica holds, across its batches', async (t) => {
    const { s, host: { replicas: [r] }, submit } = setup(t, { max_ongoing_requests: 3, batching: { max_batch_size: 3, batch_wait_timeout_s: 10 } });
    const answers = [submit('a'), submit('b')];
    await turn();
    answers.push(...['c', 'd', 'e', 'f'].map((x) => submit(x)));
    await turn();
    t.same(r.items, [['a', 'b'], ['c']], 'with 2 requests in flight, the next batch takes 1 more');
    t.equal(r.inflightRequests, 3);
    t.equal(s.queued, 3, 'the others wait');
    r.batches[0].answer();
    (await r.batch(2)).answer();
    t.same(r.sizes, [2, 1, 2], 'with 1 in flight, the next batch takes 2');
    r.batches[1].answer();
    (await r.batch(3)).answer();
    t.same(r.items, [['a', 'b'], ['c'], ['d', 'e'], ['f']]);
    t.same(await Promise.all(answers), ['a:ok', 'b:ok', 'c:ok', 'd:ok', 'e:ok', 'f:ok']);
});

t.test('a replica holds at most two batches (pipelining); the least busy replica takes the next', async (t) => {
    const replicas = [new FakeReplica(), new FakeReplica()];
    const { s, submit } = setup(t, { batching: { max_batch_size: 1, batch_wait_timeout_s: 10 } }, replicas);
    const [r1, r2] = replicas;
    const answers = ['a', 'b', 'c', 'd', 'e', 'f'].map((x) => submit(x));
    await turn();
    t.same(r1.items, [['a'], ['c']]);
    t.same(r2.items, [['b'], ['d']]);
    t.same([r1.inflightBatches, r2.inflightBatches], [2, 2]);
    t.equal(s.queued, 2, 'the rest wait for a batch to finish');
    r2.batches[0].answer();
    await r2.batch(2);
    t.same(r2.items, [['b'], ['d'], ['e']], 'the replica with room takes the next');
    t.same(r1.sizes, [1, 1]);
    r1.batches.forEach((b) => b.answer());
    (await r1.batch(2)).answer();
    r2.batches.slice(1).forEach((b) => b.answer());
    t.same(r1.items, [['a'], ['c'], ['f']]);
    t.same(await Promise.all(answers), ['a:ok', 'b:ok', 'c:ok', 'd:ok', 'e:ok', 'f:ok']);
});

t.test('requests with different batching keys never share a batch', async (t) => {
    const { host: { replicas: [r] }, submit } = setup(t);
    const answers = [submit('x1', { key: 'x' }), submit('y1', { key: 'y' }), submit('x2', { key: 'x' }), submit('y2', { key: 'y' }), submit('x3', { key: 'x' })];
    await turn();
    t.same(r.items, [['x1', 'x2', 'x3']], 'the oldest request\'s key, in order');
    r.batches[0].answer();
    (await r.batch(1)).answer();
    t.same(r.items, [['x1', 'x2', 'x3'], ['y1', 'y2']]);
    t.same(await Promise.all(answers), ['x1:ok', 'y1:ok', 'x2:ok', 'y2:ok', 'x3:ok']);
});

t.test('a request past its deadline gets 504 REQUEST_TIMEOUT and leaves the queue', async (t) => {
    const { s, host: { replicas: [r] }, submit } = setup(t, { max_ongoing_requests: 1 });
    const a = submit('a', { timeoutMs: 10_000 });
    await turn();
    const b = submit('b', { timeoutMs: 20 });
    const c = submit('c', { timeoutMs: 40 });
    t.equal(await b, '504 REQUEST_TIMEOUT: no answer within 0.02s');
    t.equal(await c, '504 REQUEST_TIMEOUT: no answer within 0.04s', 'the timer, set again for the next deadline, times out c too');
    t.equal(s.queued, 0, 'both left the queue');
    t.same(r.items, [['a']], 'without reaching the replica, busy with a');
    r.batches[0].answer();
    t.equal(await a, 'a:ok', 'a, within its deadline, is answered');

    const d = submit('d', { timeoutMs: 200 });
    await r.batch(1);
    t.same(r.items, [['a'], ['d']]);
    t.equal(await d, '504 REQUEST_TIMEOUT: no answer within 0.2s', 'a request in flight times out too');
    r.batches[1].answer();
    t.equal(await d, '504 REQUEST_TIMEOUT: no answer within 0.2s', 'and its late answer changes nothing');
});

t.test('a client that hangs up gets 499 CLIENT_CLOSED_REQUEST, and its request leaves the queue', async (t) => {
    const { s, host: { replicas: [r] }, submit } = setup(t, { max_ongoing_requests: 1 });
    const closed = 'The client closed the connection before the answer';
    const clients = { a: new FakeClient(), b: new FakeClient(), c: new FakeClient(), d: new FakeClient() };
    const a = submit('a', { client: clients.a });
    await turn();
    const b = submit('b', { client: clients.b });
    const c = submit('c', { client: clients.c });
    await turn();
    t.equal(s.queued, 2);
    clients.b.emit('close');
    t.equal(await b, `499 CLIENT_CLOSED_REQUEST: ${closed}`);
    t.equal(s.queued, 1, 'b left the queue at once');
    r.batches[0].answer();
    t.equal(await a, 'a:ok');
    clients.a.emit('close');
    (await r.batch(1)).answer();
    t.same(r.items, [['a'], ['c']], 'b never reached the replica');
    t.equal(await c, 'c:ok');
    clients.c.writableEnded = true;
    clients.c.emit('close');

    const d = submit('d', { client: clients.d });
    await r.batch(2);
    clients.d.emit('close');
    t.equal(await d, `499 CLIENT_CLOSED_REQUEST: ${closed}`, 'a client that hangs up while its request runs');
    r.batches[2].answer();
    t.equal(await d, `499 CLIENT_CLOSED_REQUEST: ${closed}`);
});

t.test('QUEUE_FULL at max_queued_requests, once what a free replica can take has left', async (t) => {
    const { s, host: { replicas: [r] }, submit } = setup(t, { max_queued_requests: 2, batching: { max_batch_size: 1, batch_wait_timeout_s: 10 } });
    const admitted = [submit('a'), submit('b'), submit('c')];
    t.same(r.items, [['a'], ['b']], 'the queue looked full at c: the free replica took a and b first');
    t.equal(s.queued, 1, 'and c was queued');
    admitted.push(submit('d'));
    t.equal(await submit('e'), '503 QUEUE_FULL: deployment "app/model" has 2 requests queued (max_queued_requests)', 'with the replica full, the queue is full');
    r.batches[0].answer();
    r.batches[1].answer();
    (await r.batch(2)).answer();
    (await r.batch(3)).answer();
    t.same(await Promise.all(admitted), ['a:ok', 'b:ok', 'c:ok', 'd:ok']);
});

t.test('a batch whose replica died is retried once, on another replica; a second death fails it with REPLICA_CRASHED', async (t) => {
    const replicas = [new FakeReplica(), new FakeReplica()];
    const { submit } = setup(t, {}, replicas);
    const [r1, r2] = replicas;
    const died = () => new ReplicaDied('replica app/model#0 exited');

    const a = submit('a');
    await turn();
    t.same([r1.items, r2.items], [[['a']], []]);
    r1.state = 'BACKOFF';
    r1.batches[0].fail(died());
    (await r2.batch(0)).answer();
    t.same(r2.items, [['a']], 'retried on the other replica');
    t.equal(await a, 'a:ok', 'and answered: the client sees no error');

    r1.state = 'RUNNING';
    const b = submit('b');
    await turn();
    t.same(r1.items, [['a'], ['b']]);
    r1.state = 'BACKOFF';
    r1.batches[1].fail(died());
    (await r2.batch(1)).fail(died());
    t.equal(await b, '500 REPLICA_CRASHED: replicas of "app/model" died twice while running this request', 'dead twice: it fails, once');

    // A batch of several that died: each request is retried alone, since any of them may have killed the replica.
    [r1.state, r2.state] = ['RUNNING', 'BACKOFF'];
    const [c, d] = [submit('c'), submit('d')];
    await turn();
    t.same(r1.items.at(-1), ['c', 'd']);
    const n = r1.batches.length;
    r1.batches[n - 1].fail(died());
    (await r1.batch(n)).answer();
    (await r1.batch(n + 1)).answer();
    t.same(r1.items.slice(n), [['c'], ['d']]);
    t.same(await Promise.all([c, d]), ['c:ok', 'd:ok']);
});

t.test('a retry goes only to a replica known alive since the death; with none, it waits in the queue for one', async (t) => {
    const replicas = [new FakeReplica(), new FakeReplica()];
    const { s, submit } = setup(t, {}, replicas);
    const [r1, r2] = replicas;
    const died = () => new ReplicaDied('replica app/model#0 exited');
    r1.aliveAt = r2.aliveAt = 0;

    // Both replicas are killed at once; r1's exit is seen first, while r2 still looks RUNNING.
    const a = submit('a');
    await turn();
    t.same([r1.items, r2.items], [[['a']], []]);
    r1.state = 'BACKOFF';
    r1.batches[0].fail(died());
    await settled();
    t.same(r2.items, [], 'r2, not known alive since r1 died, does not get the retry');
    t.ok(r2.probes > 0, 'it is asked for a sign of life');
    t.equal(s.queued, 1, 'and a waits in the queue');
    r2.state = 'BACKOFF';
    s.pump();
    t.equal(s.queued, 1, 'r2 was dead too: with no replica running, a still waits rather than failing');
    // r1 is restarted: a process started after the death is known alive since.
    [r1.state, r1.aliveAt] = ['RUNNING', performance.now()];
    s.pump();
    t.same(r1.items, [['a'], ['a']], 'the restarted replica takes the retry');
    r1.batches[1].answer();
    t.equal(await a, 'a:ok', 'and the client sees no error');

    // r1 dies under b while r2 runs again, restarted before that death: r2 takes b once it has answered a probe.
    [r2.state, r2.aliveAt, r2.probes] = ['RUNNING', performance.now(), 0];
    const b = submit('b');
    await turn();
    t.same(r1.items.at(-1), ['b']);
    r1.state = 'BACKOFF';
    r1.batches[2].fail(died());
    await settled();
    t.same([r2.items, r2.probes], [[], 1], 'r2 is asked for a sign of life first');
    r2.aliveAt = performance.now();
    s.pump();
    (await r2.batch(0)).answer();
    t.equal(await b, 'b:ok', 'then takes the retry');

    // Requests that never died go anywhere running: only a retry waits for a sign of life.
    r2.aliveAt = 0;
    const c = submit('c');
    await turn();
    (await r2.batch(1)).answer();
    t.equal(await c, 'c:ok');
});

t.test('a failed batch of several is split, so only the culprit fails', async (t) => {
    const { host: { replicas: [r] }, submit } = setup(t);
    const modelError: WireError = { code: 'MODEL_ERROR', message: 'index 42 is out of bounds' };
    const answers = ['a', 'bad', 'c'].map((x) => submit(x));
    await turn();
    t.same(r.items, [['a', 'bad', 'c']]);
    const late = submit('late');
    r.batches[0].fail(modelError);
    (await r.batch(1)).answer();
    (await r.batch(2)).fail(modelError);
    (await r.batch(3)).answer();
    (await r.batch(4)).answer();
    t.same(r.items, [['a', 'bad', 'c'], ['a'], ['bad'], ['c'], ['late']], 'each ran alone, in order, before a newer request');
    t.same(await Promise.all([...answers, late]), ['a:ok', '500 MODEL_ERROR: index 42 is out of bounds', 'c:ok', 'late:ok']);
});

t.test('replicas and config are read live: a replica that becomes ready, a reload\'s new limits', async (t) => {
    const { s, host, submit } = setup(t, {}, []);
    const a = submit('a');
    await turn();
    t.equal(s.queued, 1, 'no replica: it waits');
    const r = new FakeReplica();
    r.state = 'STARTING';
    host.replicas = [r];
    s.pump();
    t.same(r.sizes, [], 'a starting replica takes nothing');
    r.state = 'RUNNING';
    s.pump();
    t.same(r.items, [['a']], 'a ready one takes the queue at once');
    host.config = { ...host.config, batching: { max_batch_size: 2, batch_wait_timeout_s: 10 } };
    const rest = ['b', 'c', 'd'].map((x) => submit(x));
    await turn();
    t.same(r.items, [['a'], ['b', 'c']], 'the new max_batch_size applies from the next batch');
    r.batches.forEach((b) => b.answer());
    (await r.batch(2)).answer();
    t.same(await Promise.all([a, ...rest]), ['a:ok', 'b:ok', 'c:ok', 'd:ok']);
});

t.test('drain resolves once the queue is empty, or at its timeout', async (t) => {
    const { s, host: { replicas: [r] }, submit } = setup(t, { max_ongoing_requests: 1 });
    await s.drain(60_000);
    t.pass('nothing queued: at once');
    const a = submit('a');
    await turn();
    const b = submit('b');
    await s.drain(10);
    t.equal(s.queued, 1, 'the timeout passed with b still queued');
    const drained = [s.drain(60_000), s.drain(60_000)];
    r.batches[0].answer();
    (await r.batch(1)).answer();
    await Promise.all(drained);
    t.equal(s.queued, 0, 'b left, and both drains resolved');
    t.same(await Promise.all([a, b]), ['a:ok', 'b:ok']);
});
