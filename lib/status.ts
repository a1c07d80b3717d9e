// What /-/status answers, declared once for the server that builds it and the `tsserve status` that reads it; and
// that answer as a table a person can read.
import type { ReloadResult } from './watcher';
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
    /** the snapshot folder it loads its model (and handler module) from (lib/snapshot.ts) */
    snapshot?: string;
}

export interface DeploymentStatus {
    name: string;
    status: 'RUNNING' | 'DEPLOYING' | 'UNHEALTHY';
    version: string;
    handler: string;
    model: ModelConfig;
    target_replicas: number;
    running_replicas: number;
    replicas_by_version: Record<string, number>;
    queued_requests: number;
    last_error?: string;
    replicas: ReplicaStatus[];
}

export interface AppStatus {
    name: string;
    route_prefix: string;
    routes: Array<{ method: string; path: string; deployment: string }>;
    deployments: DeploymentStatus[];
}

export interface ConfigStatus {
    file: string;
    version: string;
    reloads: number;
    last_reload?: ReloadResult;
}

export interface ControllerStatus {
    started_at: string;
    ready: boolean;
    applications: AppStatus[];
}

/** The body of GET /-/status. */
export interface Status extends ControllerStatus {
    /** what the listener uses: serve.yaml's, with --host and --port applied (a change waits for a restart) */
    http_options: ServeConfig['http_options'];
    config: ConfigStatus;
}

function table(rows: string[][]): string {
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

export function render(s: Status): string {
    const last = s.config.last_reload;
    const lines = [
        `tsserve: ${s.ready ? 'READY' : 'NOT READY'} (since ${s.started_at})`,
        `config: ${s.config.file} (version ${s.config.version}, ${s.config.reloads} reload(s)${last ? `; last ${last.at} by ${last.trigger}: ${last.result}` : ''})`,
        ...(last?.errors ?? []).map((e) => `  ! ${e}`),
        ''
    ];
    const rows = [['APPLICATION', 'DEPLOYMENT', 'STATUS', 'REPLICAS', 'QUEUED', 'VERSION']];
    const replicas = [['REPLICA', 'STATE', 'PID', 'VERSION', 'RESTARTS', 'BACKEND', 'LAST ERROR']];
    for (const app of s.applications) {
        for (const d of app.deployments) {
            rows.push([`${app.name} (${app.route_prefix})`, d.name, d.status, `${d.running_replicas}/${d.target_replicas}`, String(d.queued_requests), d.version]);
            for (const r of d.replicas) {
                replicas.push([r.id, r.state, String(r.pid), r.version, String(r.restarts), r.backend ?? '-', r.last_error ?? '']);
            }
        }
    }
    return [...lines, table(rows), '', table(replicas)].join('\n') + '\n';
}
