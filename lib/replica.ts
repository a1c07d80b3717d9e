// The supervisor's side of one replica: a worker process, its batches in flight, health checks, the deadline of the
// batch it runs, restarts.
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { log, type Fields } from './log';
import { metrics, replicaMetrics, type ReplicaMetrics } from './metrics';
import { ReplicaDied } from './scheduler';
import { RunTimes } from './run-times';
import type { WireError } from './errors';
import type { Signature } from './signature';
import type { Body, FromWorker, ReplicaSpec, ToWorker } from './messages';
import type { ModelRef } from './model-folder';
import type { ReplicaModels } from './multiplex';
import type { ReplicaStatus } from './status';
import { InProcess } from './in-process';
import { splitBulk, writeBulk } from './bulk';
import type { Socket } from 'node:net';

export type ReplicaState = 'STARTING' | 'RUNNING' | 'BACKOFF' | 'STOPPING' | 'STOPPED';

/** What /-/status says of a replica: lib/status.ts's ReplicaStatus, the failure it last recovered from, its snapshot. */
interface InFlight {
    items: number;
    rows: number;
    /** a multiplexed deployment's: the model of the batch */
    model?: string;
    resolve(bodies: Body[]): void;
    reject(err: WireError | ReplicaDied): void;
}

const workerFile = path.join(__dirname, `worker${path.extname(__filename)}`);
const maxBackoffMs = 30_000;

/**
 * What a replica's worker is to its supervisor: a forked process (lib/worker.ts) or, for a deployment `in_process`, a
 * model host in the front process that acts as one (lib/in-process.ts).
 */
export interface ReplicaChild extends EventEmitter {
    readonly pid?: number;
    readonly connected: boolean;
    send(msg: ToWorker): boolean;
    kill(signal: NodeJS.Signals): boolean;
}

/** One supervised replica process. Its deployment's scheduler sees it as a SchedulerReplica (lib/scheduler.ts). */
export class Replica extends EventEmitter {
    state: ReplicaState = 'STOPPED';
    /** what its log lines about it carry: application, deployment, replica */
    readonly fields: Fields;
    pid?: number;
    restarts = 0;
    /** what is wrong now; cleared once it runs again (then kept as lastFailure) */
    lastError?: string;
    lastFailure?: { error: string; at: string };
    backend?: string;
    notice?: string;
    signature?: Signature;
    /** a multiplexed deployment's: the models its worker holds, as the front sees them (lib/multiplex.ts) */
    models?: ReplicaModels;
    /** a start that failed before ready; cleared once a start succeeds */
    loadFailed = false;
    /**
     * The latest moment (performance.now()) its worker is known to have been alive: when the last ping it answered
     * was sent, or when its process was started. A batch sent back by a replica's death goes only to a replica
     * known alive since (lib/scheduler.ts): one killed at the same moment may not have been seen to exit yet.
     */
    aliveAt = -Infinity;
    private child?: ReplicaChild;
    /** a replica process's bulk channel (lib/bulk.ts): the pipe its batches' large arrays go through */
    private bulk?: Socket;
    private inflight = new Map<number, InFlight>();
    private failures = 0;
    /** set by stop(): whatever the worker says after that, its exit is the end */
    private stopping = false;
    /** why the supervisor killed the process, for its exit to report */
    private killedFor?: string;
    private failedAt?: string;
    private nextId = 0;
    /** when the batch at the head of `inflight` began to run: when it was sent to an idle worker, or its predecessor came back */
    private since = 0;
    /** when the stuck-batch timer fires (Infinity: not set) */
    private stuckAt = Infinity;
    /** the send time of the health check's ping awaiting its pong */
    private healthPing?: number;
    /** when its process was started (performance.now()) */
    private startedAt = 0;
    private currentSpec: ReplicaSpec;
    private metricsOf?: ReplicaMetrics;
    /** the send time of a probe()'s ping awaiting its pong */
    private probing?: number;
    private timers: { restart?: NodeJS.Timeout; health?: NodeJS.Timeout; pong?: NodeJS.Timeout; stuck?: NodeJS.Timeout } = {};
    /**
     * Calls its handler has made to other deployments and that are not answered yet (lib/calls.ts), and since when
     * there have been any: a batch waiting for its calls is not stuck, and what it waits is not its run time.
     */
    private calling = 0;
    private callingSince = 0;

    /** `runTimes`: how long its version's batches take, shared by the version's replicas (lib/run-times.ts) */
    constructor(spec: ReplicaSpec, public version: string, private readonly runTimes = new RunTimes()) {
        super();
        this.currentSpec = spec;
        this.fields = { application: spec.id.slice(0, spec.id.indexOf('/')), deployment: spec.name, replica: spec.id };
    }

    get spec(): ReplicaSpec {
        return this.currentSpec;
    }

    /** A new spec (an update in place): its logging_config reaches the worker at once; the rest, at its next start. */
    set spec(spec: ReplicaSpec) {
        const before = JSON.stringify(this.currentSpec.logging_config);
        this.currentSpec = spec;
        if (this.child?.connected && JSON.stringify(spec.logging_config) !== before) {
            this.child.send({ type: 'logging', logging_config: spec.logging_config } satisfies ToWorker);
        }
    }

    /** its deployment's metrics (lib/metrics.ts), labelled with its application and deployment */
    private get counted(): ReplicaMetrics {
        return this.metricsOf ??= replicaMetrics(`${this.fields.application}/${this.fields.deployment}`);
    }

    get inflightBatches(): number {
        return this.inflight.size;
    }

    get inflightRequests(): number {
        let n = 0;
        for (const b of this.inflight.values()) {
            n += b.items;
        }
        return n;
    }

    start(): void {
        this.state = 'STARTING';
        this.killedFor = undefined;
        this.probing = undefined;
        this.healthPing = undefined;
        this.aliveAt = this.startedAt = performance.now();
        const child: ReplicaChild = this.spec.in_process ? new InProcess(this.spec, this.fields) : fork(workerFile, [], {
            serialization: 'advanced',
            // onnxruntime-node's telemetry shares a SQLite file across processes, and a replica killed while holding
            // it stalls the next one's start; an appliance has no business phoning home anyway. Opt in with 0.
            env: { ORT_DISABLE_TELEMETRY: '1', ...process.env, TSSERVE_REPLICA: JSON.stringify(this.spec) },
            // its file descriptor 4: the bulk channel
            stdio: ['ignore', 'inherit', 'inherit', 'ipc', 'pipe']
        });
        this.child = child;
        this.bulk = (child as Partial<ChildProcess>).stdio?.[4] as Socket | undefined;
        // A write racing the worker's death fails here; its 'exit' follows and settles the batches.
        this.bulk?.on('error', () => {});
        this.pid = child.pid;
        child.on('message', (msg: FromWorker) => this.onMessage(msg));
        child.on('exit', (code, signal) => this.onExit(child, code, signal));
        // A send racing the worker's death fails here; its 'exit' follows and settles the batches.
        child.on('error', (err) => log.warn(`replica ${this.spec.id}: ${err.message}`, this.fields));
    }

    private onMessage(msg: FromWorker): void {
        switch (msg.type) {
            case 'ready':
                this.state = 'RUNNING';
                this.failures = 0;
                this.loadFailed = false;
                Object.assign(this, { signature: msg.signature, backend: msg.backend, notice: msg.notice });
                log.info(`replica ${this.spec.id} RUNNING (pid ${this.pid}, ${msg.backend})`, this.fields);
                if (msg.notice) {
                    log.warn(`replica ${this.spec.id}: ${msg.notice}`, this.fields);
                }
                // (counted even with metrics off: it is rare, and a replica started meanwhile is then no gap)
                this.counted.start.observe((performance.now() - this.startedAt) / 1000);
                this.counted.load.observe(msg.load_s);
                // Running again: what went wrong before is history, not its state.
                if (this.lastError) {
                    this.lastFailure = { error: this.lastError, at: this.failedAt as string };
                    this.lastError = undefined;
                }
                this.scheduleHealthCheck();
                this.emit('ready');
                break;
            case 'failed':
                this.fail(`model failed to load: ${msg.message}`);
                this.loadFailed = true;
                log.error(`replica ${this.spec.id}: ${this.lastError}`, this.fields);
                break;
            case 'result': {
                const b = this.inflight.get(msg.id) as InFlight;
                this.inflight.delete(msg.id);
                // The worker runs its batches one after another, in the order sent (ids count up): the next one
                // began as this one came back.
                const now = performance.now();
                this.runTimes.record(now - this.since, b.rows);
                if (metrics.on) {
                    const stages = this.counted.stages;
                    for (let i = 0; i < 3; i++) {
                        stages[i].observe(msg.stages[i]);
                    }
                }
                if (b.model !== undefined) {
                    (this.models as ReplicaModels).answered(b.model, now - this.since);
                }
                this.since = now;
                const next = this.inflight.get(msg.id + 1);
                if (next) {
                    this.watch(now + this.runTimes.deadline(next.rows));
                }
                msg.bodies ? b.resolve(msg.bodies) : b.reject(msg.error as WireError);
                this.emit('idle');
                break;
            }
            case 'pong':
                this.aliveAt = msg.sent;
                if (msg.sent === this.probing) {
                    this.probing = undefined;
                }
                if (this.healthPing !== undefined && msg.sent >= this.healthPing) {
                    this.healthPing = undefined;
                    clearTimeout(this.timers.pong);
                    this.scheduleHealthCheck();
                }
                this.emit('alive');
                break;
            case 'reconfigured':
                this.emit('reconfigured', msg.error);
                break;
            case 'models':
                (this.models as ReplicaModels).report(msg);
                break;
            case 'call':
                if (!this.calling++) {
                    this.callingSince = performance.now();
                }
                this.emit('call', msg);
                break;
        }
    }

    /** What went wrong, as status says until the replica runs again. */
    private fail(error: string): void {
        this.lastError = error;
        this.failedAt = new Date().toISOString();
    }

    /** Kills the process, which is then restarted like one that died by itself. */
    private kill(why: string): void {
        this.killedFor = why;
        this.fail(why);
        log.error(`replica ${this.spec.id}: ${why}; killing it`, this.fields);
        (this.child as ReplicaChild).kill('SIGKILL');
    }

    /** Sends a ping; resolves with its send time, which its pong brings back. */
    private ping(): number {
        const sent = performance.now();
        (this.child as ReplicaChild).send({ type: 'ping', sent } satisfies ToWorker);
        return sent;
    }

    /** Asks the worker for a sign of life, unless a request for one is pending: its pong moves aliveAt and emits 'alive'. */
    probe(): void {
        this.probing ??= this.ping();
    }

    private scheduleHealthCheck(): void {
        this.timers.health = setTimeout(() => {
            this.healthPing = this.ping();
            this.timers.pong = setTimeout(() => this.kill(`health check: no answer within ${this.spec.health_check_timeout_s}s`), this.spec.health_check_timeout_s * 1000);
        }, this.spec.health_check_period_s * 1000);
    }

    /**
     * Makes sure the stuck-batch timer fires by `due`. One timer per replica rather than one per batch: set for the
     * batch at the head, it is moved only when a later batch is due earlier (rarely: once the first deadline, before
     * any history, gives way to one learnt); when it fires after the head has changed, it looks again.
     */
    private watch(due: number): void {
        if (due < this.stuckAt) {
            clearTimeout(this.timers.stuck);
            this.stuckAt = due;
            this.timers.stuck = setTimeout(this.overdue, due - performance.now()).unref();
        }
    }

    /**
     * The batch at the head has run past its deadline (lib/run-times.ts): the worker has hung, or stopped. It is killed,
     * and the supervisor restarts it; its batches come back as ReplicaDied, and the scheduler runs them elsewhere.
     */
    private readonly overdue = (): void => {
        this.stuckAt = Infinity;
        const head = this.inflight.values().next().value;
        if (!head) {
            return;
        }
        // Timers count whole milliseconds, so one may fire a fraction of one early.
        const now = performance.now() + 1;
        const deadline = this.runTimes.deadline(head.rows);
        // waiting for its calls, whose own deadlines bound them: its clock starts again once they are answered
        if (now < this.since + deadline || this.calling) {
            this.watch(this.calling ? now + deadline : this.since + deadline);
            return;
        }
        // A stuck batch counts as one that took its whole deadline: if it was only slow, the next gets longer.
        this.runTimes.record(deadline, head.rows);
        this.kill(`hung: a batch of ${head.rows} row(s) got no answer within ${(deadline / 1000).toFixed(1)}s, its deadline from what this version's batches take`);
    };

    private onExit(child: ReplicaChild, code: number | null, signal: NodeJS.Signals | null): void {
        clearTimeout(this.timers.health);
        clearTimeout(this.timers.pong);
        clearTimeout(this.timers.stuck);
        this.stuckAt = Infinity;
        this.child = undefined;
        const lost = [...this.inflight.values()];
        this.inflight.clear();
        // what its worker held went with it
        this.models?.reset();
        for (const b of lost) {
            b.reject(new ReplicaDied(`replica ${this.spec.id} exited`));
        }
        if (this.stopping) {
            this.state = 'STOPPED';
            this.emit('stopped');
            return;
        }
        this.failures++;
        this.restarts++;
        if (!this.loadFailed && !this.killedFor) {
            this.fail(`process exited unexpectedly (code ${code}, signal ${signal})`);
            log.error(`replica ${this.spec.id} (pid ${child.pid}): ${this.lastError}; restarting`, this.fields);
        }
        this.state = 'BACKOFF';
        const delay = Math.min(maxBackoffMs, 100 * 2 ** (this.failures - 1));
        this.timers.restart = setTimeout(() => this.start(), delay);
        this.emit('exit');
    }

    /**
     * Send a batch of `rows` rows (one per item, unless said); resolves with one JSON body per item. `deadlinesMs`: the
     * ms left of each item's request timeout, which the calls its handler makes carry on. `model`: a multiplexed
     * deployment's model, which the worker loads first if it does not hold it.
     */
    run(items: unknown[], rows = items.length, requestIds?: string[], deadlinesMs?: number[], model?: ModelRef): Promise<Body[]> {
        return new Promise((resolve, reject) => {
            const id = this.nextId++;
            if (!this.inflight.size) {
                this.since = performance.now();
                this.watch(this.since + this.runTimes.deadline(rows));
            }
            this.inflight.set(id, { items: items.length, rows, model: model?.id, resolve, reject });
            if (model) {
                (this.models as ReplicaModels).sent(model.id);
            }
            const batch: ToWorker = { type: 'batch', id, items, request_ids: requestIds, deadlines_ms: deadlinesMs, model };
            const split = this.bulk && splitBulk(items);
            if (split?.arrays.length) {
                writeBulk(this.bulk as Socket, split);
                Object.assign(batch, { items: split.items, bulk: split.arrays, bulk_bytes: split.bytes });
            }
            (this.child as ReplicaChild).send(batch);
        });
    }

    /**
     * The answer to a call its handler made (lib/calls.ts). Once none is left out, the time they took is taken off
     * the running batch's clock.
     */
    answer(reply: { id: number; body?: string; error?: WireError }): void {
        this.child?.send({ type: 'called', ...reply } satisfies ToWorker);
        if (!--this.calling) {
            this.since += performance.now() - this.callingSince;
        }
    }

    /** A multiplexed deployment's models that left its folder: its worker drops those it holds (lib/model-cache.ts). */
    unload(ids: string[]): void {
        this.child?.send({ type: 'unload', ids } satisfies ToWorker);
    }

    /** Apply a new user_config through the handler's reconfigure(); resolves with its error, if any. */
    reconfigure(userConfig: Record<string, unknown>): Promise<string | undefined> {
        return new Promise((resolve) => {
            this.once('reconfigured', resolve);
            (this.child as ReplicaChild).send({ type: 'reconfigure', user_config: userConfig } satisfies ToWorker);
        });
    }

    /** Let the batches in flight finish (up to timeoutMs), then stop the process. */
    async stop(timeoutMs: number): Promise<void> {
        clearTimeout(this.timers.restart);
        clearTimeout(this.timers.health);
        clearTimeout(this.timers.pong);
        const child = this.child;
        if (!child) {
            this.state = 'STOPPED';
            return;
        }
        // A running worker drains its batches first; a starting one holds no work (and may not listen yet).
        const drain = this.state === 'RUNNING';
        this.stopping = true;
        this.state = 'STOPPING';
        const stopped = new Promise<void>((resolve) => this.once('stopped', resolve));
        drain ? child.send({ type: 'stop' } satisfies ToWorker) : child.kill('SIGKILL');
        const kill = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        await stopped;
        clearTimeout(kill);
    }

    status(): ReplicaStatus {
        return {
            id: this.spec.id, pid: this.pid, state: this.state, version: this.version, restarts: this.restarts,
            inflight_requests: this.inflightRequests, backend: this.backend, notice: this.notice, last_error: this.lastError,
            last_failure: this.lastFailure, snapshot: this.spec.snapshot?.dir, ...(this.models && { models: this.models.held })
        };
    }
}
