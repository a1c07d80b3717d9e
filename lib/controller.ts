// The controller: moves the running system to the goal state in serve.yaml, and owns the route table.
import { Deployment } from './deployment';
import { joinPath, version } from './config';
import { log } from './log';
import type { ServeConfig } from '../schemas/serve';

export interface Route {
    method: string;
    path: string;
    app: string;
    deployment: Deployment;
}

export class Controller {
    readonly deployments = new Map<string, Deployment>();
    /** by path, then by method */
    readonly routes = new Map<string, Map<string, Route>>();
    readonly startedAt = new Date();

    constructor(public config: ServeConfig) {}

    /** Starts every deployment; resolves once each replica is RUNNING or has failed its first start. */
    async start(): Promise<void> {
        for (const app of this.config.applications) {
            for (const d of app.deployments) {
                const dep = new Deployment(app.name, d, version(d));
                this.deployments.set(dep.id, dep);
            }
            const routes = app.routes ?? [{ path: '/predict', method: 'POST', deployment: (app.deployments.find((d) => d.ingress) ?? app.deployments[0]).name }];
            for (const r of routes) {
                const path = joinPath(app.route_prefix, r.path);
                const byMethod = this.routes.get(path) ?? new Map<string, Route>();
                byMethod.set(r.method, { method: r.method, path, app: app.name, deployment: this.deployments.get(`${app.name}/${r.deployment}`) as Deployment });
                this.routes.set(path, byMethod);
            }
        }
        await Promise.all([...this.deployments.values()].map((d) => d.start()));
        log.info(`${this.deployments.size} deployment(s) started: ${[...this.deployments.values()].map((d) => `${d.id} ${d.status().status}`).join(', ')}`);
    }

    /** Every deployment has a replica ready to serve. */
    get ready(): boolean {
        return [...this.deployments.values()].every((d) => d.replicas.some((r) => r.state === 'RUNNING'));
    }

    async stop(): Promise<void> {
        await Promise.all([...this.deployments.values()].map((d) => d.stop()));
    }

    status(): Record<string, unknown> {
        return {
            started_at: this.startedAt.toISOString(),
            ready: this.ready,
            http_options: this.config.http_options,
            applications: this.config.applications.map((app) => ({
                name: app.name,
                route_prefix: app.route_prefix,
                routes: [...this.routes.values()].flatMap((m) => [...m.values()]).filter((r) => r.app === app.name)
                    .map((r) => ({ method: r.method, path: r.path, deployment: r.deployment.config.name })),
                deployments: app.deployments.map((d) => (this.deployments.get(`${app.name}/${d.name}`) as Deployment).status())
            }))
        };
    }
}
