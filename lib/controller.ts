// The controller: moves the running system to the goal state in serve.yaml, and owns the route table.
import { Deployment } from './deployment';
import { digestKey, joinPath, version } from './config';
import type { DeploymentConfig, ServeConfig } from '../schemas/serve';
import type { ControllerStatus } from './status';

export interface Route {
    method: string;
    path: string;
    app: string;
    deployment: Deployment;
}

/** What one apply() did, by deployment id. */
export interface Changes {
    added: string[];
    removed: string[];
    updated: string[];
    replaced: string[];
    unchanged: string[];
    errors: string[];
    notices: string[];
}

/** Fields whose change needs new replica processes; any other field is applied in place. */
const rollingFields = ['model', 'handler', 'options', 'resources'] as const;

const needsRestart = (a: DeploymentConfig, b: DeploymentConfig): boolean =>
    rollingFields.some((f) => JSON.stringify(a[f]) !== JSON.stringify(b[f]));

export class Controller {
    readonly deployments = new Map<string, Deployment>();
    /** by path, then by method; replaced whole on each apply, never edited in place */
    routes = new Map<string, Map<string, Route>>();
    readonly startedAt = new Date();
    config?: ServeConfig;

    /**
     * Moves to `next`: new deployments start before routes reach them; removed ones leave the routes, then drain.
     * `digests` holds each model file's content hash (by path), already computed by the caller.
     */
    async apply(next: ServeConfig, digests: Map<string, string>): Promise<Changes> {
        const changes: Changes = { added: [], removed: [], updated: [], replaced: [], unchanged: [], errors: [], notices: [] };
        if (this.config && JSON.stringify(next.http_options) !== JSON.stringify(this.config.http_options)) {
            changes.notices.push('http_options changed: the listener keeps its address and limits until tsserve is restarted');
        }
        const wanted = new Map<string, Deployment>();
        await Promise.all(next.applications.flatMap((app) => app.deployments.map(async (d) => {
            const id = `${app.name}/${d.name}`;
            const digest = digests.get(digestKey(d)) as string;
            const v = version(d, digest);
            const current = this.deployments.get(id);
            if (!current) {
                const dep = new Deployment(app.name, d, v, digest);
                await dep.start();
                changes.added.push(id);
                wanted.set(id, dep);
                return;
            }
            wanted.set(id, current);
            if (current.version === v) {
                changes.unchanged.push(id);
            }
            else if (needsRestart(current.config, d) || current.modelDigest !== digest) {
                const err = await current.replace(d, v, digest);
                if (err) {
                    changes.errors.push(`${id}: ${err}`);
                }
                else {
                    changes.replaced.push(id);
                }
            }
            else {
                changes.errors.push(...await current.update(d, v));
                changes.updated.push(id);
            }
        })));
        this.routes = routesOf(next, wanted);
        this.config = next;
        const removed = [...this.deployments].filter(([id]) => !wanted.has(id));
        for (const [id, dep] of wanted) {
            this.deployments.set(id, dep);
        }
        await Promise.all(removed.map(async ([id, dep]) => {
            this.deployments.delete(id);
            await dep.stop();
            changes.removed.push(id);
        }));
        return changes;
    }

    /** Every deployment has a replica ready to serve. */
    get ready(): boolean {
        return [...this.deployments.values()].every((d) => d.replicas.some((r) => r.state === 'RUNNING'));
    }

    async stop(): Promise<void> {
        await Promise.all([...this.deployments.values()].map((d) => d.stop()));
    }

    status(): ControllerStatus {
        const config = this.config as ServeConfig;
        return {
            started_at: this.startedAt.toISOString(),
            ready: this.ready,
            applications: config.applications.map((app) => ({
                name: app.name,
                route_prefix: app.route_prefix,
                routes: [...this.routes.values()].flatMap((m) => [...m.values()]).filter((r) => r.app === app.name)
                    .map((r) => ({ method: r.method, path: r.path, deployment: r.deployment.config.name })),
                deployments: app.deployments.map((d) => (this.deployments.get(`${app.name}/${d.name}`) as Deployment).status())
            }))
        };
    }
}

function routesOf(config: ServeConfig, deployments: Map<string, Deployment>): Map<string, Map<string, Route>> {
    const routes = new Map<string, Map<string, Route>>();
    for (const app of config.applications) {
        const declared = app.routes ?? [{ path: '/predict', method: 'POST', deployment: (app.deployments.find((d) => d.ingress) ?? app.deployments[0]).name }];
        for (const r of declared) {
            const path = joinPath(app.route_prefix, r.path);
            const byMethod = routes.get(path) ?? new Map<string, Route>();
            byMethod.set(r.method, { method: r.method, path, app: app.name, deployment: deployments.get(`${app.name}/${r.deployment}`) as Deployment });
            routes.set(path, byMethod);
        }
    }
    return routes;
}
