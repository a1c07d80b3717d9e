// One deployment: its replicas and its queue. Requests wait here; a free replica pulls a batch.
import type Boom from '@hapi/boom';
import { Batcher, type Queued } from './batcher';
import { Replica, ReplicaDied } from './replica';
import { fail, fromWire, type WireError } from './errors';
import { resolve as resolveHandler } from '../handlers';
import { fixedBatch, type Handler, type Parsed, type RequestIn, type Signature } from '../handlers/handler';
import type { DeploymentConfig } from '../schemas/serve';

interface Pending extends Queued {
    item: unknown;
    /** times its replica died under it */
    tries: number;
    queued: boolean;
    done: boolean;
    timer?: NodeJS.Timeout;
    resolve(body: string): void;
    reject(err: Boom.Boom): void;
}

/** Batches a replica holds at once: the one it runs, and the next, ready the moment it finishes. */
const pipelineDepth = 2;

export class Deployment {
    readonly handler: Handler;
    replicas: Replica[] = [];
    private queue = new Batcher<Pending>();
    private waitTimer?: NodeJS.Timeout;
    private replicaCount = 0;

    constructor(public readonly app: string, public readonly config: DeploymentConfig, public readonly version: string) {
        this.handler = resolveHandler(config.handler);
    }

    get id(): string {
        return `${this.app}/${this.config.name}`;
    }

    get signature(): Signature | undefined {
        return this.replicas.find((r) => r.signature)?.signature;
    }

    /** Starts the replicas; resolves once each is RUNNING or has failed its first start. */
    start(): Promise<void> {
        const started = Array.from({ length: this.config.num_replicas }, () => this.addReplica());
        return Promise.all(started).then(() => undefined);
    }

    private addReplica(): Promise<void> {
        const r = new Replica({ ...this.config, id: `${this.id}#${this.replicaCount++}` }, this.version);
        this.replicas.push(r);
        r.on('ready', () => this.pump());
        r.start();
        return new Promise((resolve) => {
            r.once('ready', resolve);
            r.once('exit', resolve);
        });
    }

    /** Front door: check the request against the model, queue it, and resolve with its JSON body. */
    handle(req: RequestIn, timeoutMs: number, signal?: AbortSignal): Promise<string> {
        const sig = this.signature;
        // Wait for a replica that is running, or starting with no failed load behind it; else say why not.
        if (!sig || !this.replicas.some((r) => r.state === 'RUNNING' || (!r.loadFailed && r.state !== 'STOPPING'))) {
            const why = [`deployment "${this.id}" has no replica ready`, ...this.replicas.map((r) => r.lastError).filter(Boolean).slice(0, 1)];
            return Promise.reject(fail('REPLICA_UNAVAILABLE', why.join(': ')));
        }
        return this.submit(this.handler.parse(req, sig), timeoutMs, signal);
    }

    private submit(parsed: Parsed<unknown>, timeoutMs: number, signal?: AbortSignal): Promise<string> {
        if (this.queue.length >= this.config.max_queued_requests) {
            return Promise.reject(fail('QUEUE_FULL', `deployment "${this.id}" has ${this.queue.length} requests queued (max_queued_requests)`));
        }
        return new Promise((resolve, reject) => {
            const p: Pending = { ...parsed, tries: 0, solo: false, enqueued: performance.now(), queued: false, done: false, resolve, reject };
            p.timer = setTimeout(() => this.finish(p, fail('REQUEST_TIMEOUT', `no answer within ${timeoutMs / 1000}s`)), timeoutMs);
            signal?.addEventListener('abort', () => this.finish(p, fail('BAD_REQUEST', 'client disconnected')), { once: true });
            this.enqueue(p);
            this.pump();
        });
    }

    private enqueue(p: Pending, front = false): void {
        p.queued = true;
        this.queue.push(p, front);
    }

    private finish(p: Pending, err: Boom.Boom | undefined, body?: string): void {
        if (p.done) {
            return;
        }
        p.done = true;
        clearTimeout(p.timer);
        if (p.queued) {
            this.queue.remove(p);
        }
        err ? p.reject(err) : p.resolve(body as string);
    }

    /** The free replica with the least work: under its pipeline depth and its max_ongoing_requests. */
    private pick(): Replica | undefined {
        let best: Replica | undefined;
        for (const r of this.replicas) {
            if (r.state === 'RUNNING' && r.inflightBatches < pipelineDepth && r.inflightRequests < this.config.max_ongoing_requests
                && (!best || r.inflightBatches < best.inflightBatches)) {
                best = r;
            }
        }
        return best;
    }

    /**
     * Dispatch policy: an idle replica takes what is queued at once (the batch wait is a ceiling, not a toll);
     * a busy one gets its next batch when the batch is full or the oldest request has waited batch_wait_timeout_s.
     */
    private pump(): void {
        clearTimeout(this.waitTimer);
        const { max_batch_size, batch_wait_timeout_s } = this.config.batching;
        const cap = Math.min(max_batch_size, fixedBatch(this.signature as Signature) ?? Infinity);
        while (this.queue.length) {
            const r = this.pick();
            if (!r) {
                return;
            }
            const waited = performance.now() - this.queue.oldest;
            const wait = batch_wait_timeout_s * 1000;
            if (r.inflightBatches > 0 && this.queue.rows < cap && waited < wait) {
                this.waitTimer = setTimeout(() => this.pump(), wait - waited);
                return;
            }
            this.dispatch(r, this.queue.take(cap, this.config.max_ongoing_requests - r.inflightRequests));
        }
    }

    private dispatch(r: Replica, batch: Pending[]): void {
        for (const p of batch) {
            p.queued = false;
        }
        r.run(batch.map((p) => p.item)).then(
            (bodies) => batch.forEach((p, i) => this.finish(p, undefined, bodies[i])),
            (err: WireError | ReplicaDied) => this.retry(batch, err)
        ).finally(() => this.pump());
    }

    /**
     * A batch failed. Inference is pure, so it is safe to run again: when its replica died, each request is
     * retried once; when the model or handler failed on a batch of several, each runs alone to find the culprit.
     */
    private retry(batch: Pending[], err: WireError | ReplicaDied): void {
        const died = err instanceof ReplicaDied;
        for (const p of batch.filter((q) => !q.done).reverse()) {
            if (died && p.tries++ >= 1) {
                this.finish(p, fail('REPLICA_CRASHED', `replicas of "${this.id}" died twice while running this request`));
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

    /** Fail what is still queued (the listener has stopped, so nothing more arrives), drain the replicas. */
    async stop(): Promise<void> {
        clearTimeout(this.waitTimer);
        await Promise.all(this.replicas.map((r) => r.stop(this.config.graceful_shutdown_timeout_s * 1000)));
    }

    status(): Record<string, unknown> {
        const running = this.replicas.filter((r) => r.state === 'RUNNING').length;
        const status = running === this.config.num_replicas ? 'RUNNING'
            : this.replicas.some((r) => r.state === 'BACKOFF' || r.loadFailed) ? 'UNHEALTHY' : 'DEPLOYING';
        const lastError = this.replicas.map((r) => r.lastError).find(Boolean);
        return {
            name: this.config.name, status, version: this.version, handler: this.config.handler, model: this.config.model,
            target_replicas: this.config.num_replicas, running_replicas: running, queued_requests: this.queue.length,
            last_error: lastError, replicas: this.replicas.map((r) => r.status())
        };
    }
}
