// One deployment: its replica set (start, scale, rolling replace, update in place, stop, status) and its front
// handler. Requests are parsed here and handed to the deployment's scheduler (lib/scheduler.ts), which batches them.
import { EventEmitter } from 'node:events';
import Joi from 'joi';
import { Scheduler, type Client, type Trace } from './scheduler';
import { Replica } from './replica';
import { Autoscaler, type Decision } from './autoscaler';
import { CpuBudget } from './cpu-budget';
import { log } from './log';
import { RunTimes } from './run-times';
import { Traffic } from './traffic';
import { snapshots, type Snapshot } from './snapshot';
import { startPriority } from './start-priority';
import { fail } from './errors';
import { create as createHandler } from '../handlers';
import { modelFiles } from './model-files';
import { folderModels } from './model-folder';
import { Multiplexer } from './multiplex';
import type { Signature } from './signature';
import { runCall } from './calls';
import { callTarget } from './call-graph';
import type { Body, FromWorker, ReplicaSpec } from './messages';
import type { V2Model } from './oip-answer';
import type { Handler, RequestIn } from './handler';
import type { DeploymentConfig } from '../schemas/serve';
import type { DeploymentStatus } from './status';

/** The front process's instance of a deployment's handler: it parses requests and describes them in OpenAPI. */
function frontHandler(config: DeploymentConfig): Handler {
    try {
        // a multiplexed deployment's models are of one kind: the front's handler is made for the first of its folder
        const model = config.multiplex ? { ...config.model, path: (folderModels(config.model)[0] as { path: string }).path } : config.model;
        return createHandler(config.handler, { options: config.options, model: modelFiles(model) });
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

/**
 * What one version's replicas share: the copy of its files they load, how long its batches take, and a multiplexed
 * deployment's folder of models and what its replicas hold (lib/multiplex.ts).
 */
interface Running {
    snapshot: Snapshot;
    runTimes: RunTimes;
    multiplexer?: Multiplexer;
}

export class Deployment {
    handler: Handler;
    replicas: Replica[] = [];
    /** the queue and the batching: it reads this deployment's replicas and config live */
    private readonly scheduler = new Scheduler(this);
    private replicaCount = 0;
    /**
     * 'replica' (replica, ready): one of its replicas became ready (true) or failed to start or died (false); 'stopped':
     * stop() is done. Requests waiting for a first replica (handle()) and the start-up's progress lines (lib/server.ts)
     * listen.
     */
    readonly events = new EventEmitter().setMaxListeners(0);
    /** its requests answered over the last minute (lib/http.ts and lib/shed.ts record them), for status */
    readonly traffic = new Traffic();
    /** set by stop(): a start still under way starts no replica */
    private stopped = false;
    private prepared?: Promise<Running>;
    /** the serving version's, set by start() */
    private running!: Running;
    /** with an autoscaling_config: the decision rule (lib/autoscaler.ts), and the timer that samples and decides */
    private autoscaler?: Autoscaler;
    private timer?: { handle: NodeJS.Timeout; ms: number };
    /** replicas the target wants that the CPU budget has no room for yet */
    private pending = 0;
    /** requests that found the deployment scaled to zero and started a replica */
    private fromZero = 0;
    /** seconds the latest replica took from its start to ready */
    private lastStartS?: number;
    /** the model's signature, kept while the deployment is scaled to zero, for the request that wakes it */
    private lastSignature?: Signature;
    /** set while a rolling replace runs: the autoscaler samples, but leaves the replica set alone */
    private replacing = false;

    /** `budget`: the CPUs that the autoscaler may grow into, shared by every deployment (lib/cpu-budget.ts) */
    /** `find`: another deployment by id, for the calls its handler makes (lib/calls.ts) */
    constructor(public readonly app: string, public config: DeploymentConfig, public version: string, public modelDigest: string,
        private readonly budget: CpuBudget, private readonly find: (id: string) => Deployment | undefined) {
        this.handler = frontHandler(config);
        this.autoscaler = config.autoscaling_config && new Autoscaler(config.autoscaling_config);
    }

    /** the replica count wanted now: the autoscaler's target, or num_replicas */
    get targetReplicas(): number {
        return this.autoscaler ? this.autoscaler.target : this.config.num_replicas as number;
    }

    /** replicas the autoscaler wants that the CPU budget (max_cpus) has no room for yet */
    get pendingReplicas(): number {
        return this.pending;
    }

    /** CPUs its replicas take (resources.cpus each), against the budget */
    get cpusTaken(): number {
        return this.replicas.length * this.config.resources.cpus;
    }

    /** It can serve: a replica runs, or it is scaled to zero (a request starts one and waits for it). */
    get ready(): boolean {
        return this.replicas.some((r) => r.state === 'RUNNING') || (!this.targetReplicas && !this.replicas.length);
    }

    get id(): string {
        return `${this.app}/${this.config.name}`;
    }

    /** a multiplexed deployment's running version's models: its folder, its replicas' caches (lib/multiplex.ts) */
    get multiplexer(): Multiplexer | undefined {
        return this.running?.multiplexer;
    }

    get signature(): Signature | undefined {
        return this.replicas.find((r) => r.signature)?.signature ?? this.lastSignature;
    }

    /** Snapshots the version's files, then starts the replicas; resolves once each is RUNNING or has failed its first start. */
    async start(): Promise<void> {
        this.running = await (this.prepared = this.prepare(this.config, this.version));
        if (!this.stopped) {
            this.budget.join(this);
            this.autoscale(this.config);
            await this.grow(this.admitted());
        }
    }

    /** What a version's replicas will share, starting with the snapshot of its files (lib/snapshot.ts). */
    private async prepare(config: DeploymentConfig, version: string): Promise<Running> {
        const multiplexer = config.multiplex && new Multiplexer(this.id, config, () => this.replicas);
        await multiplexer?.open();
        return { snapshot: await snapshots.take(this.id, version, config), runTimes: new RunTimes(), multiplexer };
    }

    /** A version's replicas are all gone: its snapshot goes, and a multiplexed one's folder is no longer watched. */
    private async release({ snapshot, multiplexer }: Running): Promise<void> {
        multiplexer?.close();
        await snapshots.remove(snapshot);
    }

    /**
     * How many replicas to add toward the target now, and how many stay pending: a fixed count starts whole; the
     * autoscaler's replicas start up to min_replicas, and beyond it as far as the CPU budget has room.
     */
    private admitted(): number {
        const have = this.replicas.length;
        const want = this.targetReplicas - have;
        const floor = (this.autoscaler ? this.autoscaler.config.min_replicas : this.targetReplicas) - have;
        const n = Math.max(0, Math.min(want, Math.max(floor, Math.floor(this.budget.room / this.config.resources.cpus))));
        this.pending = Math.max(0, want - n);
        return n;
    }

    /** Starts, reconfigures or ends the autoscaler for `config`; its timer samples every metrics_interval_s. */
    private autoscale(config: DeploymentConfig): void {
        const a = config.autoscaling_config;
        if (!a) {
            clearInterval(this.timer?.handle);
            this.autoscaler = this.timer = undefined;
            return;
        }
        if (this.autoscaler) {
            this.decided(this.autoscaler.reconfigure(a, Date.now()));
        }
        else {
            // a deployment that had a fixed count keeps it, within the bounds
            this.autoscaler = new Autoscaler(a, this.replicas.length);
        }
        const ms = a.metrics_interval_s * 1000;
        if (this.timer?.ms !== ms) {
            clearInterval(this.timer?.handle);
            this.timer = { handle: setInterval(this.tick, ms).unref(), ms };
        }
    }

    /** Every metrics_interval_s: a sample of the ongoing requests (queued, and in flight at the replicas), a decision, a rescale. */
    private readonly tick = (): void => {
        const a = this.autoscaler as Autoscaler;
        const now = Date.now();
        a.record(now, this.scheduler.queued + this.replicas.reduce((n, r) => n + r.inflightRequests, 0));
        if (!this.replacing) {
            this.decided(a.decide(now, this.replicas.filter((r) => r.state === 'RUNNING').length));
            this.rescale();
        }
    };

    private decided(d: Decision | undefined): void {
        if (d) {
            log.info(`autoscaler ${this.id}: ${d.from} -> ${d.to} replica(s): ${d.reason}`);
        }
    }

    /** Moves the replica set toward the target: the newest drain first; new ones start as the budget allows. */
    private rescale(): void {
        const extra = this.replicas.length - this.targetReplicas;
        if (extra > 0) {
            this.lastSignature = this.signature;
            void this.retire(this.replicas.slice(-extra));
        }
        // Before start() has prepared the version (a request woke it first), start() grows to the target itself.
        if (this.running && !this.stopped) {
            void this.grow(this.admitted());
        }
    }

    private async grow(n: number): Promise<void> {
        await Promise.all(Array.from({ length: n }, () => this.addReplica(this.config, this.version, this.running).started));
    }

    /** A replica's spec: the deployment's config, loading from the version's snapshot. */
    private spec(config: DeploymentConfig, id: string, { snapshot, multiplexer }: Running): ReplicaSpec {
        const spec = { ...config, id, model: snapshot.model, snapshot: { dir: snapshot.dir, source: config.model.path, handler: snapshot.handler } };
        // a multiplexed deployment's replica starts with a model of its folder
        return multiplexer ? multiplexer.spec(spec) : spec;
    }

    /** A new replica, serving as soon as it is ready; `started` says whether its first start succeeded. */
    private addReplica(config: DeploymentConfig, version: string, running: Running): { replica: Replica; started: Promise<boolean> } {
        const r = new Replica(this.spec(config, `${this.id}#${this.replicaCount++}`, running), version, running.runTimes);
        running.multiplexer?.attach(r);
        this.replicas.push(r);
        const t0 = performance.now();
        r.once('ready', () => this.lastStartS = (performance.now() - t0) / 1000);
        // A replica ready, or one that has shown it lives (see Scheduler.pick()), may take what is queued.
        r.on('ready', () => this.scheduler.pump());
        r.on('alive', () => this.scheduler.pump());
        r.on('ready', () => this.events.emit('replica', r, true));
        r.on('exit', () => this.events.emit('replica', r, false));
        r.on('call', (call: Extract<FromWorker, { type: 'call' }>) => void runCall(this, call, this.find).then((answer) => r.answer(answer)));
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
            r.spec = this.spec(config, r.spec.id, this.running);
            r.version = version;
        }
        this.autoscale(config);
        const extra = this.replicas.length - this.targetReplicas;
        await (extra > 0 ? this.retire(this.replicas.slice(-extra)) : this.grow(this.admitted()));
        this.scheduler.pump();
        return errors;
    }

    /**
     * Rolling replace, max(1, 20%) of the replicas at a time: start new ones, wait until they are ready (serving as
     * soon as they are), then drain as many old ones. If a new one fails to start, the new ones go and the old
     * version keeps serving; resolves with why.
     */
    async replace(config: DeploymentConfig, version: string, modelDigest: string): Promise<string | undefined> {
        const old = [...this.replicas];
        // An autoscaled deployment keeps its target, within the new bounds; one scaled to zero starts one, to see it load.
        const a = config.autoscaling_config;
        const count = a ? Math.max(1, Math.min(a.max_replicas, Math.max(a.min_replicas, this.targetReplicas))) : config.num_replicas as number;
        const step = Math.max(1, Math.floor(count * 0.2));
        const fresh: Replica[] = [];
        this.replacing = true;
        const running = await this.prepare(config, version);
        while (fresh.length < count) {
            const batch = Array.from({ length: Math.min(step, count - fresh.length) }, () => this.addReplica(config, version, running));
            // They start while the old version serves: at a low CPU priority until ready (lib/start-priority.ts).
            // Replicas that grow() starts do not: those are capacity wanted now, or the first of a deployment.
            batch.forEach((b) => startPriority().untilReady(b.replica));
            fresh.push(...batch.map((b) => b.replica));
            const ok = await Promise.all(batch.map((b) => b.started));
            if (ok.includes(false)) {
                const why = batch.map((b) => b.replica.lastError).find(Boolean);
                await this.retire(fresh);
                await this.release(running);
                await this.grow(this.targetReplicas - this.replicas.length);
                this.replacing = false;
                return `new version ${version} failed to start (${why}); version ${this.version} keeps serving`;
            }
            await this.retire(old.splice(0, step));
        }
        await this.retire(old);
        await this.release(this.running);
        Object.assign(this, { config, version, modelDigest, handler: frontHandler(config), running, lastSignature: undefined, replacing: false });
        this.autoscale(config);
        if (this.autoscaler) {
            this.autoscaler.target = count;
        }
        return undefined;
    }

    /**
     * Front door: check the request against the model (the handler's parse) and hand it to the scheduler; resolves
     * with its JSON body. A request to an Open Inference Protocol route (`oip` set, lib/oip.ts) may be answered in its
     * binary extension instead.
     */
    handle(req: RequestIn & { oip: V2Model }, timeoutMs: number, client?: Client, trace?: Trace): Promise<Body>;
    handle(req: RequestIn, timeoutMs: number, client?: Client, trace?: Trace): Promise<string>;
    handle(req: RequestIn, timeoutMs: number, client?: Client, trace?: Trace): Promise<Body> {
        // Scaled to zero: this request starts a replica, and waits in the queue for it.
        const woke = this.autoscaler?.wake(Date.now());
        if (woke) {
            this.fromZero++;
            this.decided(woke);
            this.rescale();
        }
        const sig = this.signature;
        // No replica has run yet (the deployment is starting): wait, within the request's timeout, for one to be ready
        // (its signature parses the request), or for the last hope of one to fail.
        if (!sig && (this.replicas.length ? this.replicas.some((r) => !r.loadFailed && r.state !== 'STOPPING') : !this.stopped)) {
            return this.replicaEvent(timeoutMs).then((left) => this.handle(req, left, client, trace));
        }
        // Wait for a replica that is running, or starting with no failed load behind it; else say why not.
        if (!sig || !(this.pending || this.replicas.some((r) => r.state === 'RUNNING' || (!r.loadFailed && r.state !== 'STOPPING')))) {
            const why = [`deployment "${this.id}" has no replica ready`, ...this.replicas.map((r) => r.lastError).filter(Boolean).slice(0, 1)];
            return Promise.reject(fail('REPLICA_UNAVAILABLE', why.join(': ')));
        }
        // a multiplexed deployment's request names one of its models (400 or 404 if not), before its body is looked at
        const model = this.running.multiplexer?.model(req.headers);
        return this.scheduler.submit(this.handler.parse(req, sig), timeoutMs, client, trace, model);
    }

    /** Resolves with what is left of timeoutMs at the next event (see `events`); REQUEST_TIMEOUT if none comes within it. */
    private replicaEvent(timeoutMs: number): Promise<number> {
        const since = performance.now();
        return new Promise((resolve, reject) => {
            const next = () => {
                clearTimeout(timer);
                this.events.off('replica', next).off('stopped', next);
                resolve(timeoutMs - (performance.now() - since));
            };
            const timer = setTimeout(() => {
                this.events.off('replica', next).off('stopped', next);
                reject(fail('REQUEST_TIMEOUT', `deployment "${this.id}" had no replica ready within ${timeoutMs / 1000}s`));
            }, timeoutMs);
            this.events.on('replica', next).on('stopped', next);
        });
    }

    /** Requests waiting for a replica (not those in flight). */
    get queued(): number {
        return this.scheduler.queued;
    }

    /** Requests admitted and not answered yet: queued plus running. */
    get ongoing(): number {
        return this.scheduler.ongoing;
    }

    /** Why a request would be refused with QUEUE_FULL now (lib/scheduler.ts), else nothing. */
    full(): string | undefined {
        return this.scheduler.full();
    }

    /** Once no route leads here: let the queue empty (within the grace period), then drain and stop the replicas. */
    async stop(): Promise<void> {
        this.stopped = true;
        clearInterval(this.timer?.handle);
        await this.scheduler.drain(this.config.graceful_shutdown_timeout_s * 1000);
        // stopped while its start prepares: start() then starts no replica
        await this.prepared;
        await this.retire(this.replicas);
        await this.release(this.running);
        this.budget.leave(this);
        this.events.emit('stopped');
    }

    status(): DeploymentStatus {
        const running = this.replicas.filter((r) => r.state === 'RUNNING').length;
        const byVersion: Record<string, number> = {};
        for (const r of this.replicas) {
            byVersion[r.version] = (byVersion[r.version] ?? 0) + 1;
        }
        const target = this.targetReplicas;
        // running as many as the budget lets it (pending ones wait for room): RUNNING
        const status = !target && !this.replicas.length ? 'SCALED_TO_ZERO' : running && running === target - this.pending ? 'RUNNING'
            : this.replicas.some((r) => r.state === 'BACKOFF' || r.loadFailed) ? 'UNHEALTHY' : 'DEPLOYING';
        const lastError = this.replicas.map((r) => r.lastError).find(Boolean);
        const a = this.autoscaler;
        const last = a?.last;
        return {
            name: this.config.name, status, version: this.version, handler: this.config.handler, model: this.config.model,
            target_replicas: target, running_replicas: running, replicas_by_version: byVersion, queued_requests: this.queued, traffic: this.traffic.summary(),
            ...(this.config.calls.length && { calls: this.config.calls.map((ref) => callTarget(this.app, ref)) }),
            ...(a && {
                autoscaling: {
                    target_replicas: target, pending_replicas: this.pendingReplicas, ongoing_requests: +a.ongoing.toFixed(3), scaled_from_zero: this.fromZero,
                    last_replica_start_s: this.lastStartS, last_decision: last && { ...last, at: new Date(last.at).toISOString() }
                }
            }),
            ...(this.running?.multiplexer && { multiplex: this.running.multiplexer.status() }),
            last_error: lastError, replicas: this.replicas.map((r) => r.status())
        };
    }
}
