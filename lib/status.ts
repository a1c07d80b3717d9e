// `tsserve status`: /-/status as a table a person can read.
interface ReplicaStatus { id: string; pid: number; state: string; version: string; restarts: number; backend?: string; last_error?: string }
interface DeploymentStatus { name: string; status: string; version: string; target_replicas: number; running_replicas: number; queued_requests: number; last_error?: string; replicas: ReplicaStatus[] }
interface AppStatus { name: string; route_prefix: string; deployments: DeploymentStatus[] }
interface Reload { at: string; trigger: string; result: string; errors?: string[] }
export interface Status { started_at: string; ready: boolean; applications: AppStatus[]; config: { file: string; version: string; reloads: number; last_reload?: Reload } }

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
