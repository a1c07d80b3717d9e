// One deployment: its replica set (start, scale, rolling replace, update in place, stop, status) and its front
// handler. Requests are parsed here and handed to the deployment's scheduler (lib/scheduler.ts), which batches them.
import Joi from 'joi';
import { Scheduler, type Client } from './scheduler';
import { Replica } from './replica';
import { RunTimes } from './run-times';
import { snapshots, type Snapshot } from './snapshot';
import { fail } from './errors';
import { create as createHandler } from '../handlers';
import { modelFiles } from './model-files';
import type { Signature } from './signature';
import type { ReplicaSpec } from './messages';
import type { Handler, RequestIn } from './handler';
import type { DeploymentConfig } from '../schemas/serve';
import type { DeploymentStatus } from './status';

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

/** What one version's replicas share: the copy of its files they load, and how long its batches take. */
interface Running {
    snapshot: Snapshot;
    runTimes: RunTimes;
}

export class Deployment {
    handler: Handler;
    replicas: Replica[] = [];
    /** the queue and the batching: it reads this deployment's replicas and config live */
    private readonly scheduler = new Scheduler(this);
    private replicaCount = 0;
    /** the serving version's, set by start() */
    private running!: Running;

    constructor(public readonly app: string, public config: DeploymentConfig, public version: string, public modelDigest: string) {
        this.handler = frontHandler(config);
    }

    get id(): string {
        return `${this.app}/${this.config.name}`;
    }

    get signature(): Signature | undefined {
        return this.replicas.find((r) => r.signature)?.signature;
    }

    /** Snapshots the version's files, then starts the replicas; resolves once each is RUNNING or has failed its first start. */
    async start(): Promise<void> {
        this.running = await this.prepare(this.config, this.version);
        return this.grow(this.config.num_replicas);
    }

    /** What a version's replicas will share, starting with the snapshot of its files (lib/snapshot.ts). */
    private async prepare(config: DeploymentConfig, version: string): Promise<Running> {
        return { snapshot: await snapshots.take(this.id, version, config), runTimes: new RunTimes() };
    }

    private async grow(n: number): Promise<void> {
        await Promise.all(Array.from({ length: n }, () => this.addReplica(this.config, this.version, this.running).started));
    }

    /** A replica's spec: the deployment's config, loading from the version's snapshot. */
    private spec(config: DeploymentConfig, id: string, { snapshot }: Running): ReplicaSpec {
        return { ...config, id, model: snapshot.model, snapshot: { dir: snapshot.dir, source: config.model.path, handler: snapshot.handler } };
    }

    /** A new replica, serving as soon as it is ready; `started` says whether its first start succeeded. */
    private addReplica(config: DeploymentConfig, version: string, running: Running): { replica: Replica; started: Promise<boolean> } {
        const r = new Replica(this.spec(config, `${this.id}#${this.replicaCount++}`, running), version, running.runTimes);
        this.replicas.push(r);
        // A replica ready, or one that has shown it lives (see Scheduler.pick()), may take what is queued.
        r.on('ready', () => this.scheduler.pump());
        r.on('alive', () => this.scheduler.pump());
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
        const extra = this.replicas.length - config.num_replicas;
        await (extra > 0 ? this.retire(this.replicas.slice(-extra)) : this.grow(-extra));
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
        const step = Math.max(1, Math.floor(config.num_replicas * 0.2));
        const fresh: Replica[] = [];
        const running = await this.prepare(config, version);
        while (fresh.length < config.num_replicas) {
            const batch = Array.from({ length: Math.min(step, config.num_replicas - fresh.length) }, () => this.addReplica(config, version, running));
            fresh.push(...batch.map((b) => b.replica));
            const ok = await Promise.all(batch.map((b) => b.started));
            if (ok.includes(false)) {
                const why = batch.map((b) => b.replica.lastError).find(Boolean);
                await this.retire(fresh);
                await snapshots.remove(running.snapshot);
                await this.grow(this.config.num_replicas - this.replicas.length);
                return `new version ${version} failed to start (${why}); version ${this.version} keeps serving`;
            }
            await this.retire(old.splice(0, step));
        }
        await this.retire(old);
        await snapshots.remove(this.running.snapshot);
        Object.assign(this, { config, version, modelDigest, handler: frontHandler(config), running });
        return undefined;
    }

    /**
     * Front door: check the request against the model (the handler's parse) and hand it to the scheduler; resolves
     * with its JSON body.
     */
    handle(req: RequestIn, timeoutMs: number, client?: Client): Promise<string> {
        const sig = this.signature;
        // Wait for a replica that is running, or starting with no failed load behind it; else say why not.
        if (!sig || !this.replicas.some((r) => r.state === 'RUNNING' || (!r.loadFailed && r.state !== 'STOPPING'))) {
            const why = [`deployment "${this.id}" has no replica ready`, ...this.replicas.map((r) => r.lastError).filter(Boolean).slice(0, 1)];
            return Promise.reject(fail('REPLICA_UNAVAILABLE', why.join(': ')));
        }
        return this.scheduler.submit(this.handler.parse(req, sig), timeoutMs, client);
    }

    /** Why a request would be refused with QUEUE_FULL now (lib/scheduler.ts), else nothing. */
    full(): string | undefined {
        return this.scheduler.full();
    }

    /** Once no route leads here: let the queue empty (within the grace period), then drain and stop the replicas. */
    async stop(): Promise<void> {
        await this.scheduler.drain(this.config.graceful_shutdown_timeout_s * 1000);
        await this.retire(this.replicas);
        await snapshots.remove(this.running.snapshot);
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
            target_replicas: this.config.num_replicas, running_replicas: running, replicas_by_version: byVersion, queued_requests: this.scheduler.queued,
            last_error: lastError, replicas: this.replicas.map((r) => r.status())
        };
    }
}
