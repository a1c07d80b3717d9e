// One deployment: its replicas and its queue. Requests wait here; a free replica pulls a batch.
import type Boom from '@hapi/boom';
import Joi from 'joi';
import { Batcher, type Queued } from './batcher';
import { Replica, ReplicaDied } from './replica';
import { fail, fromWire, type WireError } from './errors';
import { create as createHandler } from '../handlers';
import { modelFiles } from './model-files';
import { fixedBatch, type Signature } from './signature';
import type { Handler, Parsed, RequestIn } from './handler';
import type { DeploymentConfig } from '../schemas/serve';
import type { DeploymentStatus } from './status';

interface Pending extends Queued {
    item: unknown;
    /** times its replica died under it */
    tries: number;
    queued: boolean;
    done: boolean;
    /** its request timeout, counted from `enqueued` */
    timeoutMs: number;
    resolve(body: string): void;
    reject(err: Boom.Boom): void;
}

/** The front process's instance of a deployment's handler: it parses requests and describes them in OpenAPI. */
function frontHandler(config: DeploymentConfig): Handler {
    try {
        return createHandler(config.handler, { options: config.options, model: modelFiles(config.model) });
    }
    catch (err) {
        // The replicas fail the same way and say so in status; requests get the reason meanwhile.
        const why = `handler "${config.handler}" cannot be set up: ${(err as Error).message}`;
        const refuse = (): never => {
            throw fail('REPLICA_UNAVAILABLE', why);
        };
        // Described as taking anything, so that /openapi.json still lists the route; every request is refused.
        return { requestSchema: () => Joi.any(), responseSchema: () => Joi.any(), example: () => ({}), parse: refuse, preprocess: refuse, postprocess: refuse, reconfigure: refuse };
    }
}

/** The client's side of a request: the HTTP response, which closes early when the client hangs up. */
export interface Client {
    readonly writableEnded: boolean;
    on(event: 'close', listener: () => void): unknown;
}

/** Batches a replica holds at once: the one it runs, and the next, ready the moment it finishes. */
const pipelineDepth = 2;

export class Deployment {
    handler: Handler;
    replicas: Replica[] = [];
    private queue = new Batcher<Pending>();
    private waitTimer?: NodeJS.Timeout;
    private pumpScheduled = false;
    /** requests not answered yet, oldest first; one timer, for the earliest deadline, times them out */
    private open = new Set<Pending>();
    private timeoutTimer?: NodeJS.Timeout;
    private timeoutAt = Infinity;
    private replicaCount = 0;

    constructor(public readonly app: string, public config: DeploymentConfig, public version: string, public modelDigest: string) {
        this.handler = frontHandler(config);
    }

    get id(): string {
        return `${this.app}/${this.config.name}`;
    }

    get signature(): Signature | undefined {
        return this.replicas.find((r) => r.signature)?.signature;
    }

    /** Starts the replicas; resolves once each is RUNNING or has failed its first start. */
    start(): Promise<void> {
        return this.grow(this.config.num_replicas);
    }

    private async grow(n: number): Promise<void> {
        await Promise.all(Array.from({ length: n }, () => this.addReplica(this.config, this.version).started));
    }

    /** A new replica, serving as soon as it is ready; `started` says whether its first start succeeded. */
    private addReplica(config: DeploymentConfig, version: string): { replica: Replica; started: Promise<boolean> } {
        const r = new Replica({ ...config, id: `${this.id}#${this.replicaCount++}` }, version);
        this.replicas.push(r);
        r.on('ready', () => this.pump());
        r.start();
        const started = new Promise<boolean>((resolve) => {
            r.once('ready', () => resolve(true));
            r.once('exit', () => resolve(false));
        });
        return { replica: r, started };
    }

    /** Drains replicas out of service: no new batches reach them, theirs finish, then they stop. */
    private async retire(replicas: Replica[]): Promise<void> {
        this.replicas = this.replicas.filter((r) => !replicas.includes(r));
        await Promise.all(replicas.map((r) => r.stop(this.config.graceful_shutdown_timeout_s * 1000)));
    }

    /**
     * In place, no restart: replica count (scaling down drains the newest), queue limits, batching (from the next
     * batch), and user_config through the handler's reconfigure(). A user_config the handler refuses on the first
     * replica is not applied anywhere; resolves with why.
     */
    async update(config: DeploymentConfig, version: string): Promise<string[]> {
        const errors: string[] = [];
        const [first, ...rest] = this.replicas.filter((r) => r.state === 'RUNNING');
        if (JSON.stringify(config.user_config) !== JSON.stringify(this.config.user_config) && first) {
            const err = await first.reconfigure(config.user_config);
            if (err) {
                errors.push(`${first.spec.id}: ${err}; user_config stays as it was`);
                config = { ...config, user_config: this.config.user_config };
            }
            // The same handler code on the same model: what the first replica took, the others take.
            await Promise.all(rest.map((r) => r.reconfigure(config.user_config)));
        }
        this.config = config;
        this.version = version;
        for (const r of this.replicas) {
            r.spec = { ...config, id: r.spec.id };
            r.version = version;
        }
        const extra = this.replicas.length - config.num_replicas;
        await (extra > 0 ? this.retire(this.replicas.slice(-extra)) : this.grow(-extra));
        this.pump();
        return errors;
    }

    /**
     * Rolling replace, max(1, 20%) of the replicas at a time: start new ones, wait until they are ready (serving as
     * soon as they are), then drain as many old ones. If a new one fails to start, the new ones go and the old
     * version keeps serving; resolves with why.
     */
    async replace(config: DeploymentConfig, version: string, modelDigest: string): Promise<string | undefined> {
        const old = [...this.replicas];
        const step = Math.max(1, Math.floor(config.num_replicas * 0.2));
        const fresh: Replica[] = [];
        while (fresh.length < config.num_replicas) {
            const batch = Array.from({ length: Math.min(step, config.num_replicas - fresh.length) }, () => this.addReplica(config, version));
            fresh.push(...batch.map((b) => b.replica));
            const ok = await Promise.all(batch.map((b) => b.started));
            if (ok.includes(false)) {
                const why = batch.map((b) => b.replica.lastError).find(Boolean);
                await this.retire(fresh);
                await this.grow(this.config.num_replicas - this.replicas.length);
                return `new version ${version} failed to start (${why}); version ${this.version} keeps serving`;
            }
            await this.retire(old.splice(0, step));
        }
        await this.retire(old);
        Object.assign(this, { config, version, modelDigest, handler: frontHandler(config) });
        return undefined;
    }

    /**
     * Front door: check the request against the model, queue it, and resolve with its JSON body. A client whose
     * response closes before its answer is written has hung up: its request leaves the queue.
     */
    handle(req: RequestIn, timeoutMs: number, client?: Client): Promise<string> {
        const sig = this.signature;
        // Wait for a replica that is running, or starting with no failed load behind it; else say why not.
        if (!sig || !this.replicas.some((r) => r.state === 'RUNNING' || (!r.loadFailed && r.state !== 'STOPPING'))) {
            const why = [`deployment "${this.id}" has no replica ready`, ...this.replicas.map((r) => r.lastError).filter(Boolean).slice(0, 1)];
            return Promise.reject(fail('REPLICA_UNAVAILABLE', why.join(': ')));
        }
        return this.submit(this.handler.parse(req, sig), timeoutMs, client);
    }

    private submit(parsed: Parsed<unknown>, timeoutMs: number, client?: Client): Promise<string> {
        if (this.queue.length >= this.config.max_queued_requests) {
            // Dispatch is deferred to the end of the loop turn (pumpSoon); what a free replica can take now is not
            // queued, so it leaves before the queue is called full.
            this.pump();
        }
        if (this.queue.length >= this.config.max_queued_requests) {
            return Promise.reject(fail('QUEUE_FULL', `deployment "${this.id}" has ${this.queue.length} requests queued (max_queued_requests)`));
        }
        return new Promise((resolve, reject) => {
            const now = performance.now();
            const p: Pending = {
                rows: parsed.rows, key: parsed.key, item: parsed.item, solo: false, enqueued: now, timeoutMs, tries: 0, queued: false, done: false, resolve, reject
            };
            this.open.add(p);
            this.armTimeout(now + timeoutMs);
            // A response closes once: when it was written, or when the client hung up first.
            client?.on('close', () => client.writableEnded || this.finish(p, fail('BAD_REQUEST', 'client disconnected')));
            this.enqueue(p);
            this.pumpSoon();
        });
    }

    /**
     * One timer per deployment rather than one per request (it costs the front door less): it is set for the
     * earliest deadline; when it fires, the requests past their deadline get 504 and it is set for the next.
     */
    private armTimeout(at: number): void {
        if (at < this.timeoutAt) {
            clearTimeout(this.timeoutTimer);
            this.timeoutAt = at;
            this.timeoutTimer = setTimeout(() => this.expire(), at - performance.now());
        }
    }

    private expire(): void {
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
        this.open.delete(p);
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
     * Dispatch once the event loop has handled the I/O at hand, not on each arrival: the requests (and answers) that
     * came in together then leave together, rather than one batch of one each while a replica is idle. setImmediate
     * runs right after this poll phase, so a lone request waits for no one.
     */
    private pumpSoon(): void {
        if (!this.pumpScheduled) {
            this.pumpScheduled = true;
            setImmediate(() => {
                this.pumpScheduled = false;
                this.pump();
            });
        }
    }

    /**
     * Dispatch policy: an idle replica takes what is queued at once (the batch wait is a ceiling, not a toll);
     * a busy one gets its next batch when the batch is full or the oldest request has waited batch_wait_timeout_s.
     */
    private pump(): void {
        const { max_batch_size, batch_wait_timeout_s } = this.config.batching;
        while (this.queue.length) {
            const r = this.pick();
            if (!r) {
                return;
            }
            const cap = Math.min(max_batch_size, fixedBatch(r.signature as Signature) ?? Infinity);
            const waited = performance.now() - this.queue.oldest;
            const wait = batch_wait_timeout_s * 1000;
            if (r.inflightBatches > 0 && this.queue.rows < cap && waited < wait) {
                // One timer at a time, set for the oldest request: if that one leaves first, it fires early and looks again.
                this.waitTimer ??= setTimeout(() => {
                    this.waitTimer = undefined;
                    this.pump();
                }, wait - waited);
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
        ).finally(() => this.pumpSoon());
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

    /** Once no route leads here: let the queue empty (within the grace period), then drain and stop the replicas. */
    async stop(): Promise<void> {
        const deadline = Date.now() + this.config.graceful_shutdown_timeout_s * 1000;
        while (this.queue.length && Date.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 10));
        }
        clearTimeout(this.waitTimer);
        this.waitTimer = undefined;
        await this.retire(this.replicas);
    }

    status(): DeploymentStatus {
        const running = this.replicas.filter((r) => r.state === 'RUNNING').length;
        const byVersion: Record<string, number> = {};
        for (const r of this.replicas) {
            byVersion[r.version] = (byVersion[r.version] ?? 0) + 1;
        }
        const status = running === this.config.num_replicas ? 'RUNNING'
            : this.replicas.some((r) => r.state === 'BACKOFF' || r.loadFailed) ? 'UNHEALTHY' : 'DEPLOYING';
        const lastError = this.replicas.map((r) => r.lastError).find(Boolean);
        return {
            name: this.config.name, status, version: this.version, handler: this.config.handler, model: this.config.model,
            target_replicas: this.config.num_replicas, running_replicas: running, replicas_by_version: byVersion, queued_requests: this.queue.length,
            last_error: lastError, replicas: this.replicas.map((r) => r.status())
        };
    }
}
