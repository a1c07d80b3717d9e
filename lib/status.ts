// What /-/status answers, declared once for the server that builds it and the `tsserve status` that reads it; that
// answer as a table a person can read; and its files named as serve.yaml names them, not by where they lie.
import path from 'node:path';
import { isModule } from '../handlers/registry';
import type { ReloadResult } from './watcher';
import type { TrafficSummary } from './traffic';
import type { ModelConfig, ServeConfig } from '../schemas/serve';

export interface ReplicaStatus {
    id: string;
    pid?: number;
    state: string;
    version: string;
    restarts: number;
    inflight_requests: number;
    backend?: string;
    notice?: string;
    last_error?: string;
    /** last_error once the replica runs again: kept, with its time, but no longer current */
    last_failure?: { error: string; at: string };
    /** the name of the snapshot folder it loads its model (and handler module) from (lib/snapshot.ts) */
    snapshot?: string;
    /** a multiplexed deployment's: the models it holds, the most recently used first (lib/multiplex.ts) */
    models?: string[];
}

/** A multiplexed deployment's models (lib/multiplex.ts): those of its folder, and its replicas' loads and evictions. */
export interface MultiplexStatus {
    max_num_models_per_replica: number;
    /** the ids of the models its folder holds now */
    models: string[];
    /** models its replicas loaded on first use (not the one each starts with), and evicted to make room for another */
    model_loads: number;
    model_evictions: number;
    /** seconds a load took: the last, the mean and the longest (zeros before the first) */
    model_load_s: { last: number; mean: number; max: number };
}

/** A deployment's autoscaler (lib/autoscaler.ts): its target, what waits for CPUs, its signal and its last decision. */
export interface AutoscalingStatus {
    target_replicas: number;
    /** replicas the target wants beyond the CPU budget (max_cpus): they start once there is room */
    pending_replicas: number;
    /** the ongoing requests (queued and in flight) aggregated over look_back_period_s, at the last decision */
    ongoing_requests: number;
    /** requests that found it scaled to zero and started a replica */
    scaled_from_zero: number;
    /** seconds its latest replica took from start to ready */
    last_replica_start_s?: number;
    last_decision?: { at: string; from: number; to: number; reason: string };
}

export interface DeploymentStatus {
    name: string;
    /** SCALED_TO_ZERO: no replica, by the autoscaler's decision; ready, and a request starts one */
    status: 'RUNNING' | 'DEPLOYING' | 'UNHEALTHY' | 'SCALED_TO_ZERO';
    version: string;
    handler: string;
    model: ModelConfig;
    target_replicas: number;
    running_replicas: number;
    replicas_by_version: Record<string, number>;
    queued_requests: number;
    /** the deployments its handler may call, by id (serve.yaml `calls:`) */
    calls?: string[];
    /** its requests answered over the last minute: rate, errors, latency */
    traffic: TrafficSummary;
    /** with an autoscaling_config */
    autoscaling?: AutoscalingStatus;
    /** with `multiplex:` */
    multiplex?: MultiplexStatus;
    last_error?: string;
    replicas: ReplicaStatus[];
}

export interface AppStatus {
    name: string;
    route_prefix: string;
    /** `deployment` takes the request; a pipeline route names its steps in turn, `deployment` the first */
    routes: Array<{ method: string; path: string; deployment: string; pipeline?: string[] }>;
    deployments: DeploymentStatus[];
}

export interface ConfigStatus {
    /** the path of serve.yaml; /-/status shows its name */
    file: string;
    version: string;
    reloads: number;
    last_reload?: ReloadResult;
}

export interface ControllerStatus {
    started_at: string;
    /** the CPUs replicas may take together (max_cpus, or its default), and what they take now */
    cpu_budget?: { max_cpus: number; used: number };
    ready: boolean;
    applications: AppStatus[];
}

/** Where a set of keys comes from, and how many it holds (never a key nor a digest). */
export interface KeysStatus {
    env?: string;
    file?: string;
    keys: number;
}

/** The body of GET /-/status. */
export interface Status extends ControllerStatus {
    /** what the listener uses: serve.yaml's, with --host and --port applied (a change waits for a restart) */
    http_options: ServeConfig['http_options'];
    config: ConfigStatus;
    /** the keys in force (lib/auth.ts); absent when every route is open */
    auth?: { api_keys?: KeysStatus; admin_keys?: KeysStatus };
}

/** A path as serve.yaml would name it, relative to its folder: `./model.onnx`, `../models/a.onnx`. */
export function shown(file: string, folder: string): string {
    const rel = path.relative(folder, file);
    return rel === '..' || rel.startsWith(`..${path.sep}`) ? rel : `./${rel}`;
}

/** A text (an error) with each path of a file in `folder` or below made relative to it, as shown() does. */
function texts(folder: string): (text: string | undefined) => string | undefined {
    // Below the root only: with serve.yaml at /, every slash of a text would be taken for the folder.
    const prefix = folder === path.parse(folder).root ? undefined : folder + path.sep;
    return (text) => prefix && text ? text.split(prefix).join('./') : text;
}

/** A reload's answer with paths relative to serve.yaml's folder, as relative() makes a status. */
export function reloaded(result: ReloadResult, folder: string): ReloadResult {
    const text = texts(folder);
    const all = (list: string[]) => list.map((e) => text(e) as string);
    return {
        ...result,
        ...(result.errors && { errors: all(result.errors) }),
        ...(result.changes && { changes: { ...result.changes, errors: all(result.changes.errors), notices: all(result.changes.notices) } })
    };
}

/**
 * The status with no path of this machine in it: what it names, it names as an operator writes it in serve.yaml,
 * relative to its folder (a model's path, a handler module's, a key file's, and a file of that folder or below that an
 * error names); serve.yaml by its name; a replica's snapshot by its folder's name (lib/snapshot.ts: the version it
 * holds, and a random part), which tells apart the copies of two versions, and where they lie is the README's to say.
 */
export function relative(s: Status, folder: string): Status {
    const text = texts(folder);
    const keys = (k: KeysStatus | undefined) => k && (k.file === undefined ? k : { ...k, file: shown(k.file, folder) });
    return {
        ...s,
        applications: s.applications.map((a) => ({
            ...a,
            deployments: a.deployments.map((d) => ({
                ...d,
                model: { ...d.model, path: shown(d.model.path, folder) },
                handler: isModule(d.handler) ? shown(d.handler, folder) : d.handler,
                last_error: text(d.last_error),
                replicas: d.replicas.map((r) => ({
                    ...r,
                    notice: text(r.notice),
                    last_error: text(r.last_error),
                    last_failure: r.last_failure && { ...r.last_failure, error: text(r.last_failure.error) as string },
                    snapshot: r.snapshot && path.basename(r.snapshot)
                }))
            }))
        })),
        config: { ...s.config, file: path.basename(s.config.file), ...(s.config.last_reload && { last_reload: reloaded(s.config.last_reload, folder) }) },
        ...(s.auth && { auth: { api_keys: keys(s.auth.api_keys), admin_keys: keys(s.auth.admin_keys) } })
    };
}

function table(rows: string[][]): string {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

/** `API keys: 2 from $TSSERVE_API_KEYS`, or what a route takes instead. */
function keysLine(what: string, k: KeysStatus | undefined): string {
    return k ? `${what}: ${k.keys} from ${k.env === undefined ? k.file : `$${k.env}`}` : `${what}: none`;
}

export function render(s: Status): string {
    const last = s.config.last_reload;
    const lines = [
        `tsserve: ${s.ready ? 'READY' : 'NOT READY'} (since ${s.started_at})`,
        `config: ${s.config.file} (version ${s.config.version}, ${s.config.reloads} reload(s)${last ? `; last ${last.at} by ${last.trigger}: ${last.result}` : ''})`,
        ...(last?.errors ?? []).map((e) => `  ! ${e}`),
        `auth: ${s.auth ? [keysLine('API keys', s.auth.api_keys), keysLine('admin keys', s.auth.admin_keys)].join('; ') : 'none, every route is open'}`,
        ''
    ];
    const rows = [['APPLICATION', 'DEPLOYMENT', 'STATUS', 'REPLICAS', 'QUEUED', 'REQ/S', 'P50', 'P99', 'VERSION']];
    const scaling = [['AUTOSCALING', 'TARGET', 'PENDING', 'ONGOING', 'LAST DECISION']];
    const replicas = [['REPLICA', 'STATE', 'PID', 'VERSION', 'RESTARTS', 'BACKEND', 'LAST ERROR']];
    const multiplexed = [['MULTIPLEXED', 'MODELS', 'PER REPLICA', 'LOADS', 'EVICTIONS', 'LOAD MEAN', 'LOAD MAX']];
    const held = [['REPLICA', 'MODELS HELD (MOST RECENTLY USED FIRST)']];
    const ms = (v: number | undefined) => v === undefined ? '-' : v < 10 ? `${v.toFixed(2)}ms` : v < 1000 ? `${v.toFixed(0)}ms` : `${(v / 1000).toFixed(1)}s`;
    for (const app of s.applications) {
        for (const d of app.deployments) {
            const t = d.traffic;
            rows.push([`${app.name} (${app.route_prefix})`, d.name, d.status, `${d.running_replicas}/${d.target_replicas}`, String(d.queued_requests),
                String(t.requests_per_s), ms(t.p50_ms), ms(t.p99_ms), d.version]);
            const a = d.autoscaling;
            if (a) {
                const last = a.last_decision;
                scaling.push([`${app.name}/${d.name}`, String(a.target_replicas), String(a.pending_replicas), String(a.ongoing_requests),
                    last ? `${last.at}: ${last.from} -> ${last.to} (${last.reason})` : '-']);
            }
            for (const r of d.replicas) {
                replicas.push([r.id, r.state, String(r.pid), r.version, String(r.restarts), r.backend ?? '-', r.last_error ?? '']);
            }
            const m = d.multiplex;
            if (m) {
                multiplexed.push([`${app.name}/${d.name}`, String(m.models.length), String(m.max_num_models_per_replica), String(m.model_loads),
                    String(m.model_evictions), ms(m.model_load_s.mean * 1000), ms(m.model_load_s.max * 1000)]);
                held.push(...d.replicas.map((r) => [r.id, r.models?.join(', ') || '-']));
            }
        }
    }
    return [...lines, table(rows), '(REQ/S, P50 and P99: over the last minute, or since the deployment started)', '', ...(scaling.length > 1 ? [table(scaling), ''] : []), table(replicas),
        ...(multiplexed.length > 1 ? ['', table(multiplexed), '', table(held)] : [])].join('\n') + '\n';
}
