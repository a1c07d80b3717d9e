// The dynamic batch scheduler of one deployment (Triton's name for it): its queue, admission (max_queued_requests),
// request deadlines, when to cut a batch and which replica takes it, pipelining, and the retry of failed batches.
// It sees replicas only through SchedulerReplica, and its deployment only through SchedulerHost. A multiplexed
// deployment's batch (lib/multiplex.ts) holds requests for one model, and goes to a replica that holds the model,
// or to another, which loads it, once waiting for those has taken longer than a load (placed()).
import type Boom from '@hapi/boom';
import { fail, fromWire, type WireError } from './errors';
import { fixedBatch, type Signature } from './signature';
import type { Parsed } from './handler';
import type { Body } from './messages';
import { deploymentMetrics, metrics, type DeploymentMetrics } from './metrics';
import type { DeploymentConfig } from '../schemas/serve';
import type { ModelRef } from './model-folder';

/** Why a batch came back without answers when the worker did not say why: its replica died under it. */
export class ReplicaDied extends Error {}

/** What the scheduler needs of a replica. lib/replica.ts's Replica is one; the tests use fakes. */
export interface SchedulerReplica {
    /** it takes batches only while 'RUNNING' */
    readonly state: string;
    /** the model's, known once the replica runs: a fixed first dimension caps the batch */
    readonly signature?: Signature;
    /** batches sent to it and not answered yet */
    readonly inflightBatches: number;
    /** the requests in those batches */
    readonly inflightRequests: number;
    /** the latest moment (performance.now()) its process is known to have been alive */
    readonly aliveAt: number;
    /** Asks its process for a sign of life; when it answers, aliveAt moves on and the deployment pumps. */
    probe(): void;
    /** a multiplexed deployment's: which models it holds, or is loading for the batches sent to it (lib/multiplex.ts) */
    readonly models?: { holds(id: string): boolean; readonly size: number };
    /**
     * Runs a batch of `rows` rows; resolves with one JSON body per item, rejects with the worker's WireError or a
     * ReplicaDied (its process died, or hung past the batch's deadline and was killed). `deadlinesMs`: what is left of
     * each item's request timeout, for the calls its handler makes (given to a deployment that declares `calls`).
     * `model`: a multiplexed deployment's model, which every request of the batch names.
     */
    run(items: unknown[], rows: number, requestIds?: string[], deadlinesMs?: number[], model?: ModelRef): Promise<Body[]>;
}

/** The part of a deployment's config the scheduler reads: read at each use, since a reload changes it in place. */
export type SchedulerConfig = Pick<DeploymentConfig, 'batching' | 'max_ongoing_requests' | 'max_queued_requests'> & { calls?: readonly string[] };

/** Whose requests are scheduled: a deployment, read live (its replica list and config are replaced on reload). */
export interface SchedulerHost {
    /** names the deployment in error messages */
    readonly id: string;
    readonly replicas: readonly SchedulerReplica[];
    readonly config: SchedulerConfig;
    /**
     * a multiplexed deployment's: how long a model takes to load, and a batch to run (ms), which pick() weighs against
     * each other (lib/multiplex.ts)
     */
    readonly multiplexer?: { readonly loadMs: number; readonly batchMs: number };
}

/** The client's side of a request: the HTTP response, which closes early when the client hangs up. */
export interface Client {
    readonly writableEnded: boolean;
    on(event: 'close', listener: () => void): unknown;
}

/**
 * What the front door learns of a request from the scheduler, for its access log: the request's id comes in (the
 * replica logs it), its queue time and batch size go out once its batch has answered. The front door passes an object
 * it holds anyway (hapi's request.app), so that carrying them costs no allocation.
 */
export interface Trace {
    requestId?: string;
    /** ms from admission to the departure of the batch that answered it */
    queueMs?: number;
    /** rows in that batch */
    batchRows?: number;
}

/** A request from its admission to its answer. */
interface Pending {
    rows: number;
    key: string;
    item: unknown;
    /** a multiplexed deployment's: the model it names (its key names it too, so that a batch never mixes models) */
    model?: ModelRef;
    /** run alone: its last batch failed and it must not take others down with it */
    solo: boolean;
    /** when it was admitted (performance.now()) */
    enqueued: number;
    /** when its batch last left (performance.now()) */
    dispatched: number;
    trace?: Trace;
    /** its request timeout, counted from `enqueued` */
    timeoutMs: number;
    /** times its replica died under it */
    tries: number;
    queued: boolean;
    done: boolean;
    resolve(body: Body): void;
    reject(err: Boom.Boom): void;
}

/** A multiplexed deployment's replica: the models it holds (lib/multiplex.ts). */
const held = (r: SchedulerReplica) => r.models as NonNullable<SchedulerReplica['models']>;

/** Batches a replica holds at once: the one it runs, and the next, ready the moment it finishes. */
const pipelineDepth = 2;

export class Scheduler {
    /** FIFO, but for failed batches' requests, which go back to the front */
    private queue: Pending[] = [];
    private queuedRows = 0;
    private waitTimer?: NodeJS.Timeout;
    private pumpScheduled = false;
    /** requests not answered yet, oldest first; one timer, for the earliest deadline, times them out */
    private open = new Set<Pending>();
    private timeoutTimer?: NodeJS.Timeout;
    private timeoutAt = Infinity;
    /** drain()s waiting for the queue to empty */
    private emptied: Array<() => void> = [];
    /** when a replica last died under a batch (performance.now()): its requests go only to replicas known alive since */
    private diedAt = -Infinity;
    private counted?: DeploymentMetrics;
    /**
     * A multiplexed deployment's models whose last batches found every replica holding them busy: how long (ms, by
     * estimate) they have waited for them, one batch after another (wait(), placed())
     */
    private readonly waits = new Map<string, number>();

    constructor(private readonly host: SchedulerHost) {}

    /** requests waiting for a replica (not those in flight) */
    get queued(): number {
        return this.queue.length;
    }

    /** requests admitted and not answered yet: queued plus running (the autoscaling signal) */
    get ongoing(): number {
        return this.open.size;
    }

    /**
     * Admits a request, or refuses it with QUEUE_FULL; resolves with its JSON body. A client whose response closes
     * before its answer is written has hung up: its request leaves the queue.
     */
    submit(parsed: Parsed<unknown>, timeoutMs: number, client?: Client, trace?: Trace, model?: ModelRef): Promise<Body> {
        const full = this.full();
        if (full) {
            return Promise.reject(fail('QUEUE_FULL', full));
        }
        return new Promise((resolve, reject) => {
            const now = performance.now();
            const p: Pending = {
                rows: parsed.rows, key: model ? `${model.id}\0${parsed.key}` : parsed.key, item: parsed.item, model, solo: false, enqueued: now, dispatched: now, trace,
                timeoutMs, tries: 0, queued: false, done: false, resolve, reject
            };
            this.open.add(p);
            this.armTimeout(now + timeoutMs);
            // A response closes once: when it was written, or when the client hung up first.
            client?.on('close', () => client.writableEnded || p.done || this.finish(p, fail('CLIENT_CLOSED_REQUEST')));
            this.enqueue(p);
            this.pumpSoon();
        });
    }

    /**
     * Why a request would be refused with QUEUE_FULL now: the queue holds max_queued_requests; else nothing. The front
     * door asks before it reads a body (lib/shed.ts), so that a refusal costs it little, and submit() asks again.
     */
    full(): string | undefined {
        const max = this.host.config.max_queued_requests;
        if (this.queue.length >= max) {
            // Dispatch is deferred to the end of the loop turn (pumpSoon); what a free replica can take now is not
            // queued, so it leaves before the queue is called full.
            this.pump();
        }
        return this.queue.length >= max ? `deployment "${this.host.id}" has ${this.queue.length} requests queued (max_queued_requests)` : undefined;
    }

    /**
     * Resolves once nothing is queued, or after timeoutMs (the batches in flight are their replicas' to finish).
     * Then no batch waits for company any more, and with no request left open, no deadline timer is left either.
     */
    async drain(timeoutMs: number): Promise<void> {
        if (this.queue.length) {
            let timer: NodeJS.Timeout | undefined;
            await new Promise<void>((resolve) => {
                this.emptied.push(resolve);
                timer = setTimeout(() => {
                    this.emptied.splice(this.emptied.indexOf(resolve), 1);
                    resolve();
                }, timeoutMs);
            });
            clearTimeout(timer);
        }
        clearTimeout(this.waitTimer);
        this.waitTimer = undefined;
        if (!this.open.size) {
            clearTimeout(this.timeoutTimer);
            this.timeoutAt = Infinity;
        }
    }

    /**
     * One timer per deployment rather than one per request (it costs the front door less): it is set for the
     * earliest deadline; when it fires, the requests past their deadline get 504 and it is set for the next.
     */
    private armTimeout(at: number): void {
        if (at < this.timeoutAt) {
            clearTimeout(this.timeoutTimer);
            this.timeoutAt = at;
            this.timeoutTimer = setTimeout(this.expire, at - performance.now());
        }
    }

    private readonly expire = (): void => {
        this.timeoutAt = Infinity;
        // Timers count whole milliseconds, so one may fire a fraction of one early.
        const now = performance.now() + 1;
        let next = Infinity;
        for (const p of this.open) {
            const deadline = p.enqueued + p.timeoutMs;
            if (deadline <= now) {
                this.finish(p, fail('REQUEST_TIMEOUT', `no answer within ${p.timeoutMs / 1000}s`));
            }
            else {
                next = Math.min(next, deadline);
            }
        }
        if (next < Infinity) {
            this.armTimeout(next);
        }
    };

    private enqueue(p: Pending, front = false): void {
        p.queued = true;
        front ? this.queue.unshift(p) : this.queue.push(p);
        this.queuedRows += p.rows;
    }

    private finish(p: Pending, err: Boom.Boom | undefined, body?: Body): void {
        if (p.done) {
            return;
        }
        p.done = true;
        this.open.delete(p);
        if (p.queued) {
            this.queue.splice(this.queue.indexOf(p), 1);
            this.queuedRows -= p.rows;
            this.checkEmpty();
        }
        err ? p.reject(err) : p.resolve(body as Body);
    }

    private checkEmpty(): void {
        if (!this.queue.length && this.emptied.length) {
            const waiting = this.emptied;
            this.emptied = [];
            waiting.forEach((resolve) => resolve());
        }
    }

    /**
     * The free replica with the least work: under its pipeline depth and its max_ongoing_requests. For a request
     * whose replica died under it, only one known alive since that death: replicas killed together (a node's
     * processes, say) exit one by one, and one not yet seen to exit would take the retry down with it. Any other is
     * asked for a sign of life, and the queue waits for it (or for a replica started since), within its deadlines.
     * A multiplexed deployment's batch goes where placed() says.
     */
    private pick(): SchedulerReplica | undefined {
        const maxOngoing = this.host.config.max_ongoing_requests;
        const head = this.queue[0];
        const retried = head.tries > 0;
        /** a multiplexed deployment's free replicas, to choose from by the batch's model */
        const free: SchedulerReplica[] | undefined = head.model && [];
        let best: SchedulerReplica | undefined;
        for (const r of this.host.replicas) {
            if (r.state === 'RUNNING' && r.inflightBatches < pipelineDepth && r.inflightRequests < maxOngoing) {
                if (retried && r.aliveAt < this.diedAt) {
                    r.probe();
                }
                else if (free) {
                    free.push(r);
                }
                else if (!best || r.inflightBatches < best.inflightBatches) {
                    best = r;
                }
            }
        }
        return free ? this.placed((head.model as ModelRef).id, free) : best;
    }

    /**
     * Where a multiplexed deployment's batch of model `id` goes, among the free replicas. An idle one that holds the
     * model takes it. While those holding it are all busy, the least busy of them takes it (behind what it runs),
     * until waiting for them has taken longer than a load: the waits of the batches that found them all busy, one
     * after another, add up (wait()), and once they reach loadMs an idle replica takes the batch and loads the
     * model. A load is paid once, and a wait by every batch for as long as the holders stay saturated: so a hot model
     * spreads to an idle replica rather than stay pinned to one (ray-project/ray#48741), while a model whose holder is
     * busy only now and then stays where it is. When no free replica holds it (those that do are over-subscribed, Ray
     * Serve's rule, or none does), the least busy free replica loads it; among equals, the one holding fewer models,
     * whose load evicts less or nothing.
     */
    private placed(id: string, free: SchedulerReplica[]): SchedulerReplica | undefined {
        const least = (list: SchedulerReplica[]) => list.reduce((a, b) =>
            b.inflightBatches < a.inflightBatches || (b.inflightBatches === a.inflightBatches && held(b).size < held(a).size) ? b : a);
        const holders = free.filter((r) => held(r).holds(id));
        const others = free.filter((r) => !held(r).holds(id));
        if (!holders.length) {
            return others.length ? least(others) : undefined;
        }
        const holder = least(holders);
        const idle = others.filter((r) => !r.inflightBatches);
        const { loadMs } = this.host.multiplexer as { loadMs: number };
        return holder.inflightBatches && idle.length && (this.waits.get(id) ?? 0) >= loadMs ? least(idle) : holder;
    }

    /**
     * A multiplexed deployment's batch of model `id` leaves for `r`. Sent behind a busy replica that holds the model,
     * it waits about that replica's batches in flight times batchMs, which adds to the model's waits; one that starts at
     * once, or goes elsewhere to be loaded, starts the count again.
     */
    private wait(r: SchedulerReplica, id: string): void {
        const { batchMs } = this.host.multiplexer as { batchMs: number };
        r.inflightBatches && held(r).holds(id) ? this.waits.set(id, (this.waits.get(id) ?? 0) + r.inflightBatches * batchMs) : this.waits.delete(id);
    }

    /**
     * Dispatch once the event loop has handled the I/O at hand, not on each arrival: the requests (and answers) that
     * came in together then leave together, rather than one batch of one each while a replica is idle. setImmediate
     * runs right after this poll phase, so a lone request waits for no one.
     */
    private readonly pumpSoon = (): void => {
        if (!this.pumpScheduled) {
            this.pumpScheduled = true;
            setImmediate(this.pumpNow);
        }
    };

    private readonly pumpNow = (): void => {
        this.pumpScheduled = false;
        this.pump();
    };

    private readonly waited = (): void => {
        this.waitTimer = undefined;
        this.pump();
    };

    /**
     * Dispatches what can leave now; the deployment calls it too, when a replica becomes ready or the config changes.
     * An idle replica takes what is queued at once (the batch wait is a ceiling, not a toll); a busy one gets its
     * next batch when the batch is full or the oldest request has waited batch_wait_timeout_s.
     */
    pump(): void {
        const { max_batch_size, batch_wait_timeout_s } = this.host.config.batching;
        while (this.queue.length) {
            const r = this.pick();
            if (!r) {
                return;
            }
            const cap = Math.min(max_batch_size, fixedBatch(r.signature as Signature) ?? Infinity);
            const waited = performance.now() - this.queue[0].enqueued;
            const wait = batch_wait_timeout_s * 1000;
            if (r.inflightBatches > 0 && this.queuedRows < cap && waited < wait) {
                // One timer at a time, set for the oldest request: if that one leaves first, it fires early and looks again.
                this.waitTimer ??= setTimeout(this.waited, wait - waited);
                return;
            }
            this.dispatch(r, this.take(cap, this.host.config.max_ongoing_requests - r.inflightRequests));
        }
    }

    /**
     * Cuts a batch: the oldest request and then, in order, every later one that shares its key and still fits:
     * at most maxRows rows (an oversized request runs alone) and maxItems requests. A solo request runs alone.
     */
    private take(maxRows: number, maxItems: number): Pending[] {
        const head = this.queue.shift() as Pending;
        const batch = [head];
        let rows = head.rows;
        if (!head.solo) {
            for (let i = 0; i < this.queue.length && rows < maxRows && batch.length < maxItems; i++) {
                const p = this.queue[i];
                if (p.key === head.key && !p.solo && rows + p.rows <= maxRows) {
                    batch.push(p);
                    rows += p.rows;
                    this.queue.splice(i--, 1);
                }
            }
        }
        this.queuedRows -= rows;
        this.checkEmpty();
        return batch;
    }

    private dispatch(r: SchedulerReplica, batch: Pending[]): void {
        let rows = 0;
        const now = performance.now();
        for (const p of batch) {
            p.queued = false;
            p.dispatched = now;
            rows += p.rows;
        }
        // a handler that calls other deployments passes each request's deadline on (lib/calls.ts)
        const deadlines = this.host.config.calls?.length ? batch.map((p) => p.enqueued + p.timeoutMs - now) : undefined;
        const model = batch[0].model;
        if (model) {
            this.wait(r, model.id);
        }
        r.run(batch.map((p) => p.item), rows, batch.map((p) => p.trace?.requestId ?? ''), deadlines, model).then(
            (bodies) => {
                this.count(batch, rows);
                batch.forEach((p, i) => this.finish(p, undefined, bodies[i]));
            },
            (err: WireError | ReplicaDied) => this.retry(batch, err)
        ).finally(this.answered);
    }

    /** A batch answered: its metrics, and each request's queue time and batch size for its access log. */
    private count(batch: Pending[], rows: number): void {
        const m = metrics.on ? this.counted ??= deploymentMetrics(this.host.id) : undefined;
        m?.executions.inc();
        m?.inferences.inc(batch.length);
        m?.batchRows.observe(rows);
        for (const p of batch) {
            const queueMs = p.dispatched - p.enqueued;
            m?.queueWait.observe(queueMs / 1000);
            if (p.trace) {
                p.trace.queueMs = queueMs;
                p.trace.batchRows = rows;
            }
        }
    }

    /**
     * A replica answered, so it has room: what is queued leaves now rather than after this poll phase, which, while
     * the front door is busy (refusing an overload, say), can take long enough for the replica to sit idle.
     */
    private readonly answered = (): void => {
        this.pump();
    };

    /**
     * A batch failed. Inference is pure, so it is safe to run again: when its replica died, each request is
     * retried once, on a replica known alive since (see pick()); when the model or handler failed on a batch of
     * several, each runs alone to find the culprit.
     */
    private retry(batch: Pending[], err: WireError | ReplicaDied): void {
        const died = err instanceof ReplicaDied;
        if (died) {
            this.diedAt = performance.now();
        }
        for (const p of batch.filter((q) => !q.done).reverse()) {
            if (died && p.tries++ >= 1) {
                this.finish(p, fail('REPLICA_CRASHED', `replicas of "${this.host.id}" died twice while running this request`));
            }
            else if (died || batch.length > 1) {
                p.solo = batch.length > 1;
                this.enqueue(p, true);
            }
            else {
                this.finish(p, fromWire(err as WireError));
            }
        }
    }
}
