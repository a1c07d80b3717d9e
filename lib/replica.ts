// The supervisor's side of one replica: a worker process, its batches in flight, health checks, restarts.
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { log } from './log';
import { ReplicaDied } from './scheduler';
import type { WireError } from './errors';
import type { Signature } from './signature';
import type { FromWorker, ReplicaSpec, ToWorker } from './messages';
import type { ReplicaStatus } from './status';

export type ReplicaState = 'STARTING' | 'RUNNING' | 'BACKOFF' | 'STOPPING' | 'STOPPED';

interface InFlight {
    items: number;
    resolve(bodies: string[]): void;
    reject(err: WireError | ReplicaDied): void;
}

const workerFile = path.join(__dirname, `worker${path.extname(__filename)}`);
const maxBackoffMs = 30_000;

/** One supervised replica process. Its deployment's scheduler sees it as a SchedulerReplica (lib/scheduler.ts). */
export class Replica extends EventEmitter {
    state: ReplicaState = 'STOPPED';
    pid?: number;
    restarts = 0;
    lastError?: string;
    backend?: string;
    notice?: string;
    signature?: Signature;
    /** a start that failed before ready; cleared once a start succeeds */
    loadFailed = false;
    private child?: ChildProcess;
    private inflight = new Map<number, InFlight>();
    private failures = 0;
    /** set by stop(): whatever the worker says after that, its exit is the end */
    private stopping = false;
    private nextId = 0;
    private timers: { restart?: NodeJS.Timeout; health?: NodeJS.Timeout; pong?: NodeJS.Timeout } = {};

    constructor(public spec: ReplicaSpec, public version: string) {
        super();
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
        const child = fork(workerFile, [], {
            serialization: 'advanced',
            // onnxruntime-node's telemetry shares a SQLite file across processes, and a replica killed while holding
            // it stalls the next one's start; an appliance has no business phoning home anyway. Opt in with 0.
            env: { ORT_DISABLE_TELEMETRY: '1', ...process.env, TSSERVE_REPLICA: JSON.stringify(this.spec) },
            stdio: ['ignore', 'inherit', 'inherit', 'ipc']
        });
        this.child = child;
        this.pid = child.pid;
        child.on('message', (msg: FromWorker) => this.onMessage(msg));
        child.on('exit', (code, signal) => this.onExit(child, code, signal));
        // A send racing the worker's death fails here; its 'exit' follows and settles the batches.
        child.on('error', (err) => log.warn(`replica ${this.spec.id}: ${err.message}`));
    }

    private onMessage(msg: FromWorker): void {
        switch (msg.type) {
            case 'ready':
                this.state = 'RUNNING';
                this.failures = 0;
                this.loadFailed = false;
                Object.assign(this, { signature: msg.signature, backend: msg.backend, notice: msg.notice });
                log.info(`replica ${this.spec.id} RUNNING (pid ${this.pid}, ${msg.backend})`);
                if (msg.notice) {
                    log.warn(`replica ${this.spec.id}: ${msg.notice}`);
                }
                this.scheduleHealthCheck();
                this.emit('ready');
                break;
            case 'failed':
                this.lastError = `model failed to load: ${msg.message}`;
                this.loadFailed = true;
                log.error(`replica ${this.spec.id}: ${this.lastError}`);
                break;
            case 'result': {
                const b = this.inflight.get(msg.id) as InFlight;
                this.inflight.delete(msg.id);
                msg.bodies ? b.resolve(msg.bodies) : b.reject(msg.error as WireError);
                this.emit('idle');
                break;
            }
            case 'pong':
                clearTimeout(this.timers.pong);
                this.scheduleHealthCheck();
                break;
            case 'reconfigured':
                this.emit('reconfigured', msg.error);
                break;
        }
    }

    private scheduleHealthCheck(): void {
        this.timers.health = setTimeout(() => {
            (this.child as ChildProcess).send({ type: 'ping' } satisfies ToWorker);
            this.timers.pong = setTimeout(() => {
                this.lastError = `health check: no answer within ${this.spec.health_check_timeout_s}s`;
                log.error(`replica ${this.spec.id}: ${this.lastError}; killing it`);
                (this.child as ChildProcess).kill('SIGKILL');
            }, this.spec.health_check_timeout_s * 1000);
        }, this.spec.health_check_period_s * 1000);
    }

    private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
        clearTimeout(this.timers.health);
        clearTimeout(this.timers.pong);
        this.child = undefined;
        const lost = [...this.inflight.values()];
        this.inflight.clear();
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
        if (!this.loadFailed) {
            this.lastError = `process exited unexpectedly (code ${code}, signal ${signal})`;
            log.error(`replica ${this.spec.id} (pid ${child.pid}): ${this.lastError}; restarting`);
        }
        this.state = 'BACKOFF';
        const delay = Math.min(maxBackoffMs, 100 * 2 ** (this.failures - 1));
        this.timers.restart = setTimeout(() => this.start(), delay);
        this.emit('exit');
    }

    /** Send a batch; resolves with one JSON body per item. */
    run(items: unknown[]): Promise<string[]> {
        return new Promise((resolve, reject) => {
            const id = this.nextId++;
            this.inflight.set(id, { items: items.length, resolve, reject });
            (this.child as ChildProcess).send({ type: 'batch', id, items } satisfies ToWorker);
        });
    }

    /** Apply a new user_config through the handler's reconfigure(); resolves with its error, if any. */
    reconfigure(userConfig: Record<string, unknown>): Promise<string | undefined> {
        return new Promise((resolve) => {
            this.once('reconfigured', resolve);
            (this.child as ChildProcess).send({ type: 'reconfigure', user_config: userConfig } satisfies ToWorker);
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
            inflight_requests: this.inflightRequests, backend: this.backend, notice: this.notice, last_error: this.lastError
        };
    }
}
