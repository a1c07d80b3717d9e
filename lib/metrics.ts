// Prometheus metrics (GET /metrics, through prom-client): prefix tsserve_, times in seconds, a histogram for every
// latency. What the hot path counts goes through label children cached per route or deployment (no label object per
// request); what a scrape can read (queues, replicas, their processes, the config) is read then, by collect().
import fs from 'node:fs';
import client from 'prom-client';
import type { Controller } from './controller';
import type { Deployment } from './deployment';

export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry, prefix: 'tsserve_' });

/** Off (serve.yaml `metrics: false`): nothing is counted, and /metrics answers 404. */
export const metrics = { on: true };

/** What a scrape reads: the running deployments, and the config's version. */
const sources: { controller?: Controller; version?: () => string } = {};

/** Sets what a scrape reads. */
export function watchSources(controller: Controller, version: () => string): void {
    sources.controller = controller;
    sources.version = version;
}

const registers = [registry];
/** seconds: from well under a millisecond (a small model's batch) to a request's longest timeout */
const latency = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** seconds a replica takes to start or load its model */
const slow = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const rows = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536];
const dep = ['application', 'deployment'] as const;

const httpRequests = new client.Counter({ name: 'tsserve_http_requests_total', help: 'HTTP requests answered, by route, method and status code', labelNames: ['route', 'method', 'status_code'], registers });
const httpDuration = new client.Histogram({ name: 'tsserve_http_request_duration_seconds', help: 'HTTP request latency, from its arrival to its answer', labelNames: ['route', 'method', 'status_code'], buckets: latency, registers });
/** requests the front door holds now (read by a scrape) */
export const inFlight = { n: 0 };
new client.Gauge({
    name: 'tsserve_http_requests_in_flight', help: 'HTTP requests being handled now', registers, collect() {
        this.set(inFlight.n);
    }
});

const queueWait = new client.Histogram({ name: 'tsserve_deployment_queue_wait_seconds', help: 'Time a request waited in its deployment\'s queue before its batch left', labelNames: dep, buckets: latency, registers });
const batchRows = new client.Histogram({ name: 'tsserve_deployment_batch_size_rows', help: 'Rows in each batch answered', labelNames: dep, buckets: rows, registers });
const executions = new client.Counter({ name: 'tsserve_deployment_inference_executions_total', help: 'Batches answered (Triton\'s inference executions)', labelNames: dep, registers });
const inferences = new client.Counter({ name: 'tsserve_deployment_inferences_total', help: 'Requests answered in those batches (Triton\'s inferences)', labelNames: dep, registers });
const stageTime = new client.Histogram({ name: 'tsserve_deployment_replica_stage_seconds', help: 'Time a replica spent on a batch, by stage (preprocess, inference, postprocess)', labelNames: [...dep, 'stage'], buckets: latency, registers });
const errors = new client.Counter({ name: 'tsserve_deployment_errors_total', help: 'Requests to a deployment answered with an error, by its code', labelNames: [...dep, 'code'], registers });
const replicaStart = new client.Histogram({ name: 'tsserve_replica_start_seconds', help: 'Time from a replica process\'s start to its readiness', labelNames: dep, buckets: slow, registers });
const modelLoad = new client.Histogram({ name: 'tsserve_replica_model_load_seconds', help: 'Time a replica took to load its model and handler, and warm up', labelNames: dep, buckets: slow, registers });
const modelLoads = new client.Counter({ name: 'tsserve_multiplexed_model_loads_total', help: 'Models of a multiplexed deployment that its replicas loaded on first use', labelNames: dep, registers });
const modelEvictions = new client.Counter({ name: 'tsserve_multiplexed_model_evictions_total', help: 'Models a replica of a multiplexed deployment evicted to make room for another (the least recently used)', labelNames: dep, registers });
const modelLoadTime = new client.Histogram({ name: 'tsserve_multiplexed_model_load_seconds', help: 'Time a replica of a multiplexed deployment took to load a model', labelNames: dep, buckets: latency, registers });
const reloads = new client.Counter({ name: 'tsserve_config_reloads_total', help: 'Config reloads, by result (applied, invalid, unchanged)', labelNames: ['result'], registers });

/** Splits a deployment's id (`app/name`) into its labels. */
const labelsOf = (id: string): { application: string; deployment: string } => {
    const cut = id.indexOf('/');
    return { application: id.slice(0, cut), deployment: id.slice(cut + 1) };
};

/** What a deployment's scheduler counts, as children of the metrics above. */
export interface DeploymentMetrics {
    queueWait: client.Histogram.Internal<string>;
    batchRows: client.Histogram.Internal<string>;
    executions: client.Counter.Internal;
    inferences: client.Counter.Internal;
}

const byDeployment = new Map<string, DeploymentMetrics>();

/** The metrics of a deployment (its id, `app/name`); the same object each time. */
export function deploymentMetrics(id: string): DeploymentMetrics {
    let m = byDeployment.get(id);
    if (!m) {
        const labels = labelsOf(id);
        m = { queueWait: queueWait.labels(labels), batchRows: batchRows.labels(labels), executions: executions.labels(labels), inferences: inferences.labels(labels) };
        byDeployment.set(id, m);
    }
    return m;
}

/** What a replica counts: its batches' stages, its start. */
export interface ReplicaMetrics {
    stages: [client.Histogram.Internal<string>, client.Histogram.Internal<string>, client.Histogram.Internal<string>];
    start: client.Histogram.Internal<string>;
    load: client.Histogram.Internal<string>;
}

const byReplicaDeployment = new Map<string, ReplicaMetrics>();

/** The metrics of a deployment's replicas (by the deployment's id); the same object each time. */
export function replicaMetrics(id: string): ReplicaMetrics {
    let m = byReplicaDeployment.get(id);
    if (!m) {
        const labels = labelsOf(id);
        const stage = (name: string) => stageTime.labels({ ...labels, stage: name });
        m = { stages: [stage('preprocess'), stage('inference'), stage('postprocess')], start: replicaStart.labels(labels), load: modelLoad.labels(labels) };
        byReplicaDeployment.set(id, m);
    }
    return m;
}

/** What a multiplexed deployment counts (lib/multiplex.ts): its replicas' model loads, their times, and evictions. */
export interface MultiplexMetrics {
    loads: client.Counter.Internal;
    evictions: client.Counter.Internal;
    load: client.Histogram.Internal<string>;
}

/** The multiplexing metrics of a deployment (by its id). */
export function multiplexMetrics(id: string): MultiplexMetrics {
    const labels = labelsOf(id);
    return { loads: modelLoads.labels(labels), evictions: modelEvictions.labels(labels), load: modelLoadTime.labels(labels) };
}

interface RouteChildren {
    requests: client.Counter.Internal;
    duration: client.Histogram.Internal<string>;
}

/** by route, then method, then status code */
const byRoute = new Map<string, Map<string, Map<number, RouteChildren>>>();
/** by application, then deployment, then code */
const errorChildren = new Map<string, Map<string, Map<string, client.Counter.Internal>>>();

/**
 * Counts a request the front door answered: `route` is its route's path (a model route's, or an admin one's; never the
 * path the client sent), `seconds` its time from arrival to answer.
 */
export function countRequest(route: string, method: string, status: number, seconds: number): void {
    const c = made(made(made(byRoute, route, newMap), method, newMap), status, () => {
        const labels = { route, method, status_code: String(status) };
        return { requests: httpRequests.labels(labels), duration: httpDuration.labels(labels) };
    });
    c.requests.inc();
    c.duration.observe(seconds);
}

/** Counts a request to a deployment answered with an error code. */
export function countError(application: string, deployment: string, code: string): void {
    made(made(made(errorChildren, application, newMap), deployment, newMap), code, () => errors.labels({ application, deployment, code })).inc();
}

/** The value at `key`, made by `make` the first time it is asked for: label children are looked up, not made, per request. */
function made<K, V>(map: Map<K, V>, key: K, make: () => V): V {
    let v = map.get(key);
    if (v === undefined) {
        map.set(key, v = make());
    }
    return v;
}

/** a map for the next level of labels (any: each level's types come from the map it goes into) */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const newMap = (): Map<any, any> => new Map();

/** Counts a config reload by its result. */
export function countReload(result: string): void {
    if (metrics.on) {
        reloads.inc({ result });
    }
}

/** Linux's clock ticks a second (sysconf(_SC_CLK_TCK)), in which /proc/<pid>/stat counts CPU time */
const ticks = 100;

/** A process's resident memory (bytes) and CPU time (seconds, user and system), from /proc; nothing where it cannot be read. */
export function processUsage(pid: number): { rss: number; cpu: number } | undefined {
    try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        // after the command's name, in parentheses (which may hold spaces): field 3 (state) on; utime and stime are 14 and 15
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const rss = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8')) as RegExpExecArray;
        return { rss: Number(rss[1]) * 1024, cpu: (Number(fields[11]) + Number(fields[12])) / ticks };
    }
    catch {
        // gone since, a zombie (no VmRSS), or no /proc here
        return undefined;
    }
}

/** The running deployments, for a scrape. */
const deployments = () => [...sources.controller?.deployments.values() ?? []];

/** A gauge of one number per running deployment, read from it at each scrape. */
function perDeployment(name: string, help: string, value: (d: Deployment) => number): void {
    new client.Gauge({
        name, help, labelNames: dep, registers, collect() {
            this.reset();
            for (const d of deployments()) {
                this.set({ application: d.app, deployment: d.config.name }, value(d));
            }
        }
    });
}
perDeployment('tsserve_deployment_queued_requests', 'Requests waiting in a deployment\'s queue', (d) => d.queued);
perDeployment('tsserve_deployment_ongoing_requests', 'Requests a deployment holds: queued plus running (the autoscaling signal)', (d) => d.ongoing);
perDeployment('tsserve_deployment_target_replicas', 'Replicas a deployment is meant to have (its config, or the autoscaler\'s target)', (d) => d.targetReplicas);
new client.Gauge({
    name: 'tsserve_replicas', help: 'Replicas, by state', labelNames: [...dep, 'state'], registers, collect() {
        this.reset();
        for (const d of deployments()) {
            const labels = { application: d.app, deployment: d.config.name };
            for (const state of ['STARTING', 'RUNNING', 'BACKOFF', 'STOPPING', 'STOPPED']) {
                this.set({ ...labels, state }, d.replicas.filter((r) => r.state === state).length);
            }
        }
    }
});

/** A replica metric read at scrape time, one series a replica. */
function perReplica(kind: 'Gauge' | 'Counter', name: string, help: string, value: (r: { restarts: number; pid?: number; models?: { size: number } }) => number | undefined): void {
    const Metric = kind === 'Gauge' ? client.Gauge : client.Counter;
    new Metric({
        name, help, labelNames: [...dep, 'replica'], registers, collect(this: client.Gauge | client.Counter) {
            this.reset();
            for (const d of deployments()) {
                for (const r of d.replicas) {
                    const v = value(r);
                    if (v !== undefined) {
                        this.inc({ application: d.app, deployment: d.config.name, replica: r.spec.id }, v);
                    }
                }
            }
        }
    });
}
perReplica('Counter', 'tsserve_replica_restarts_total', 'Times a replica\'s process was restarted', (r) => r.restarts);
perReplica('Gauge', 'tsserve_replica_resident_memory_bytes', 'A replica process\'s resident memory (RSS)', (r) => processUsage(r.pid as number)?.rss);
perReplica('Counter', 'tsserve_replica_cpu_seconds_total', 'A replica process\'s CPU time, user and system', (r) => processUsage(r.pid as number)?.cpu);
perReplica('Gauge', 'tsserve_multiplexed_models', 'Models a replica of a multiplexed deployment holds', (r) => r.models?.size);

new client.Gauge({
    name: 'tsserve_config_info', help: 'The running config\'s version (always 1)', labelNames: ['version'], registers, collect() {
        this.reset();
        this.set({ version: sources.version?.() ?? '' }, 1);
    }
});
