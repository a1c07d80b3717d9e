// Model multiplexing (Ray Serve's), the front's side. A deployment with `multiplex:` serves the models of a folder
// (lib/model-folder.ts), all of one kind (the same inputs) and all through its handler; a request names its model in
// Ray's `serve_multiplexed_model_id` header, or over the Open Inference Protocol by the model name
// `<model name>.<id>`. The model's id is part of the request's batching key, so a batch never mixes models, and goes
// with the batch to the replica, which loads the model on its first use and evicts the least recently used beyond
// max_num_models_per_replica (lib/model-cache.ts, in lib/worker.ts). Each replica tells the front what it holds, so
// that the scheduler (lib/scheduler.ts) sends a model's batch to a replica holding it, or to another, which loads it,
// once waiting for those has taken longer than a load. A model added to the folder is served at once; one removed is refused, and the
// replicas drop it; one changed is loaded again on its next use. Status and metrics count loads, evictions, load times.
import { clip, fail } from './errors';
import { log } from './log';
import { multiplexMetrics, type MultiplexMetrics } from './metrics';
import { ModelFolder, type FolderChange, type ModelRef } from './model-folder';
import type { IncomingHttpHeaders } from 'node:http';
import type { CacheReport } from './model-cache';
import type { Deployment } from './deployment';
import type { ReplicaSpec } from './messages';
import type { Replica } from './replica';
import type { DeploymentConfig } from '../schemas/serve';
import type { MultiplexStatus } from './status';

/** The request header that names the model (Ray Serve's name), lower-cased as Node gives headers. */
export const modelIdHeader = 'serve_multiplexed_model_id';

/** Each batch's run time weighs this much in the running mean that the scheduler reads (batchMs). */
const weight = 0.2;

/** The ids a message names: the first 20, and how many more. */
function listed(ids: string[]): string {
    return ids.length ? `${ids.slice(0, 20).join(', ')}${ids.length > 20 ? ` and ${ids.length - 20} more` : ''}` : 'none';
}

/** The front's view of one replica's cache: the models it holds (its own reports), and those its batches in flight are loading. */
export class ReplicaModels {
    /** the ids its worker holds, the most recently used first: as it last reported, and as the batches sent since use them */
    held: string[] = [];
    /** batches sent and not answered yet, by model: the replica holds their model by the time the next one runs */
    private readonly pending = new Map<string, number>();
    /** its last report was a load: the batch that caused it took longer than a batch takes */
    private loaded = false;

    constructor(readonly multiplexer: Multiplexer) {}

    /** how many models it holds */
    get size(): number {
        return this.held.length;
    }

    /** It holds model `id`, or will once the batches already sent to it run. */
    holds(id: string): boolean {
        return this.pending.has(id) || this.held.includes(id);
    }

    /**
     * A batch of model `id` leaves for it. A model it holds is now its most recently used, as its worker, which runs
     * its batches in the order sent, will find (it reports only what changes what it holds).
     */
    sent(id: string): void {
        this.pending.set(id, (this.pending.get(id) ?? 0) + 1);
        const at = this.held.indexOf(id);
        if (at > 0) {
            this.held = [id, ...this.held.slice(0, at), ...this.held.slice(at + 1)];
        }
    }

    /** A batch of model `id` came back after `ms` (its time at the replica): the estimate of a batch's time learns it. */
    answered(id: string, ms: number): void {
        const left = (this.pending.get(id) as number) - 1;
        left ? this.pending.set(id, left) : this.pending.delete(id);
        if (this.loaded) {
            this.loaded = false;
        }
        else {
            this.multiplexer.ran(ms);
        }
    }

    /** Its worker reports what it holds now, and what it loaded or evicted for that. */
    report(r: CacheReport): void {
        this.held = r.held;
        this.loaded = r.loaded !== undefined;
        this.multiplexer.counted(r);
    }

    /** Its process is gone, and the models it held with it. */
    reset(): void {
        this.held = [];
        this.pending.clear();
    }
}

/** One deployment version's multiplexing: its folder of models, its replicas' caches as the front sees them, its counts. */
export class Multiplexer {
    readonly folder: ModelFolder;
    private loads = 0;
    private evictions = 0;
    private loadS = { last: 0, sum: 0, max: 0 };
    /** a batch's usual time at a replica (ms): a running mean */
    private meanBatchMs = 0;
    private readonly counters: MultiplexMetrics;

    /** `replicas`: the deployment's, read live; those of this version are told of models that leave the folder. */
    constructor(private readonly id: string, private readonly config: DeploymentConfig, private readonly replicas: () => readonly Replica[]) {
        this.folder = new ModelFolder(config.model, (change) => this.changed(change));
        this.counters = multiplexMetrics(id);
    }

    /** Reads the folder and watches it; resolves once its models are known. */
    async open(): Promise<void> {
        await this.folder.look();
    }

    close(): void {
        this.folder.close();
    }

    /** A replica of this version: the front's view of its cache, which the scheduler reads. */
    attach(r: Replica): void {
        r.models = new ReplicaModels(this);
    }

    /**
     * A replica's spec for this version: it starts with the folder's first model (its signature is the deployment's,
     * and its warm-up the replica's), which its cache then holds. An empty folder leaves the spec as it is: a replica
     * that starts then fails to load, and says why, until a model comes.
     */
    spec(spec: ReplicaSpec): ReplicaSpec {
        const first = this.folder.first;
        return first ? { ...spec, model: { ...spec.model, path: first.path }, snapshot: spec.snapshot && { ...spec.snapshot, source: first.path }, start_model: first } : spec;
    }

    /**
     * The model a request names in its serve_multiplexed_model_id header; a 400 without one, a 404 for an id that is
     * not in the folder, each naming the models that are.
     */
    model(headers: IncomingHttpHeaders): ModelRef {
        const id = headers[modelIdHeader];
        const ids = [...this.folder.models.keys()];
        if (typeof id !== 'string' || !id) {
            throw fail('BAD_REQUEST', `deployment "${this.id}" serves several models: name one in the ${modelIdHeader} header (its models: ${listed(ids)})`, { models: ids.slice(0, 100) });
        }
        const ref = this.folder.models.get(id);
        if (!ref) {
            throw fail('NOT_FOUND', `deployment "${this.id}" has no model ${JSON.stringify(clip(id))} (its models: ${listed(ids)})`, { models: ids.slice(0, 100) });
        }
        return ref;
    }

    /** How long a model takes to load (ms), by the mean of this version's loads: what the scheduler weighs waiting against. */
    get loadMs(): number {
        return this.loads ? this.loadS.sum / this.loads * 1000 : 0;
    }

    /** How long a batch takes at a replica (ms), loads aside: a running mean. */
    get batchMs(): number {
        return this.meanBatchMs;
    }

    /** A batch that loaded nothing took `ms` at its replica. */
    ran(ms: number): void {
        this.meanBatchMs = this.meanBatchMs ? this.meanBatchMs + weight * (ms - this.meanBatchMs) : ms;
    }

    /** A replica's report: its loads and evictions counted, here and in the metrics. */
    counted(r: CacheReport): void {
        if (r.loaded) {
            const s = r.loaded.seconds;
            this.loads++;
            this.loadS = { last: s, sum: this.loadS.sum + s, max: Math.max(this.loadS.max, s) };
        }
        this.evictions += r.evicted.length;
        // (counted even with metrics off, as a replica's start is: it is rare)
        this.counters.loads.inc(r.loaded ? 1 : 0);
        this.counters.evictions.inc(r.evicted.length);
        if (r.loaded) {
            this.counters.load.observe(r.loaded.seconds);
        }
    }

    /**
     * The folder changed: what was added is served from now on; what was removed is refused, and the replicas that
     * run drop it (what it changed is loaded again on its next use: the batch brings the new digest). Replicas that
     * start from now on start with the folder's first model as it is now.
     */
    private changed(change: FolderChange): void {
        const said = (['added', 'removed', 'changed'] as const).filter((k) => change[k].length).map((k) => `${k}: ${change[k].join(', ')}`);
        log.info(`deployment ${this.id}: its model folder changed (${said.join('; ')}); ${this.folder.models.size} model(s) served`);
        for (const r of this.replicas().filter((x) => x.models?.multiplexer === this)) {
            r.spec = this.spec(r.spec);
            if (change.removed.length) {
                r.unload(change.removed);
            }
        }
    }

    /** What /-/status says of it; each replica says which models it holds (lib/replica.ts). */
    status(): MultiplexStatus {
        return {
            max_num_models_per_replica: (this.config.multiplex as { max_num_models_per_replica: number }).max_num_models_per_replica,
            models: [...this.folder.models.keys()],
            model_loads: this.loads,
            model_evictions: this.evictions,
            model_load_s: { last: +this.loadS.last.toFixed(4), mean: +(this.loadMs / 1000).toFixed(4), max: +this.loadS.max.toFixed(4) }
        };
    }
}

/** The header that names the model, as /openapi.json describes it for a multiplexed deployment's routes. */
export function modelIdParameter(m: Multiplexer): Record<string, unknown> {
    return {
        name: modelIdHeader, in: 'header', required: true, schema: { type: 'string' },
        description: `the model (Ray Serve's header): one of the deployment's folder, ${listed([...m.folder.models.keys()])}`
    };
}

/**
 * A model of a multiplexed deployment by its Open Inference Protocol name, `<model name>.<id>` (lib/oip.ts): the
 * deployment, and the id, which must be one of its folder's. `byName`: the deployments by V2 model name.
 */
export function v2Model(byName: Map<string, Deployment>, name: string): { deployment: Deployment; id: string } | undefined {
    for (const [n, d] of byName) {
        const id = name.slice(n.length + 1);
        if (name.startsWith(`${n}.`) && d.multiplexer?.folder.models.has(id)) {
            return { deployment: d, id };
        }
    }
    return undefined;
}

/** A V2 request's headers: with the model id that its model name carries (v2Model()), when it names one so. */
export function v2Headers(byName: Map<string, Deployment>, name: string, headers: IncomingHttpHeaders): IncomingHttpHeaders {
    const id = v2Model(byName, name)?.id;
    return id === undefined ? headers : { ...headers, [modelIdHeader]: id };
}
