// The controller: moves the running system to the goal state in serve.yaml, and owns the route table.
import { Deployment } from './deployment';
import { digestKey, joinPath, version } from './config';
import { CpuBudget, cpuBudget } from './cpu-budget';
import { stepName, template, type Step } from './pipeline';
import type { DeploymentConfig, ServeConfig } from '../schemas/serve';
import type { ControllerStatus } from './status';

export interface Route {
    method: string;
    path: string;
    app: string;
    /** the deployment that takes the request (a pipeline's first step) */
    deployment: Deployment;
    /** a pipeline route's steps, the first of them `deployment` (lib/pipeline.ts) */
    steps?: Step[];
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
const rollingFields = ['model', 'handler', 'options', 'resources', 'multiplex', 'in_process'] as const;

const needsRestart = (a: DeploymentConfig, b: DeploymentConfig): boolean =>
    rollingFields.some((f) => JSON.stringify(a[f]) !== JSON.stringify(b[f]));

export class Controller {
    readonly deployments = new Map<string, Deployment>();
    /** by path, then by method; replaced whole on each apply, never edited in place */
    routes = new Map<string, Map<string, Route>>();
    readonly startedAt = new Date();
    config?: ServeConfig;
    /** the CPUs that replicas may take together (max_cpus); the autoscalers grow within it (lib/cpu-budget.ts) */
    readonly budget = new CpuBudget();
    /** set when tsserve begins to shut down (lib/server.ts): not ready from then on, while what is in flight drains */
    draining = false;
    private onPublished!: () => void;
    /** resolves once the first config's routes lead to its deployments (which may still be starting) */
    readonly published = new Promise<void>((resolve) => {
        this.onPublished = resolve;
    });

    /**
     * Moves to `next`: new deployments start before routes reach them; removed ones leave the routes, then drain.
     * `digests` holds each model file's content hash (by path), already computed by the caller.
     */
    async apply(next: ServeConfig, digests: Map<string, string>): Promise<Changes> {
        const changes: Changes = { added: [], removed: [], updated: [], replaced: [], unchanged: [], errors: [], notices: [] };
        this.budget.limit = cpuBudget(next);
        if (this.config && JSON.stringify(next.http_options) !== JSON.stringify(this.config.http_options)) {
            changes.notices.push('http_options changed: the listener keeps its address and limits until tsserve is restarted');
        }
        const wanted = new Map<string, Deployment>();
        const applied = Promise.all(next.applications.flatMap((app) => app.deployments.map(async (d) => {
            const id = `${app.name}/${d.name}`;
            const digest = digests.get(digestKey(d)) as string;
            const v = version(d, digest);
            const current = this.deployments.get(id);
            if (!current) {
                const dep = new Deployment(app.name, d, v, digest, this.budget, (target) => this.deployments.get(target));
                wanted.set(id, dep);
                await dep.start();
                changes.added.push(id);
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
        if (!this.config) {
            // The first config: its routes lead to its deployments at once, while their replicas start (a request
            // waits for one, lib/deployment.ts's handle()); a later config's new routes appear once they are ready.
            this.publish(next, wanted);
        }
        await applied;
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

    /** The routes, the config and the deployments of `config`, at once. */
    private publish(config: ServeConfig, deployments: Map<string, Deployment>): void {
        this.routes = routesOf(config, deployments);
        this.config = config;
        for (const [id, dep] of deployments) {
            this.deployments.set(id, dep);
        }
        this.onPublished();
    }

    /**
     * Why not every deployment (of application `app`, else of all) can serve now, one reason by deployment id ("tsserve"
     * for the whole server): a deployment is ready while one of its replicas runs. One whose replicas are starting is not,
     * nor one whose model failed to load; nothing is while the model files are first read, or once shutting down.
     * Empty: ready.
     */
    unready(app?: string): Record<string, string> {
        const why: Record<string, string> = {};
        if (this.draining || !this.config) {
            why.tsserve = this.draining ? 'shutting down' : 'starting: reading the model files';
        }
        for (const d of this.deployments.values()) {
            if ((app === undefined || d.app === app) && !d.ready) {
                const error = d.replicas.map((r) => r.lastError).find(Boolean);
                why[d.id] = error ? `no replica running: ${error}` : `starting: 0/${d.targetReplicas} replica(s) running`;
            }
        }
        return why;
    }

    /** Every deployment has a replica ready to serve, and tsserve is not shutting down. */
    get ready(): boolean {
        return !Object.keys(this.unready()).length;
    }

    async stop(): Promise<void> {
        await Promise.all([...this.deployments.values()].map((d) => d.stop()));
    }

    status(): ControllerStatus {
        // none yet while the first config's model files are read (lib/server.ts binds the listener before)
        const config = this.config ?? { applications: [] };
        return {
            started_at: this.startedAt.toISOString(),
            cpu_budget: { max_cpus: this.budget.limit, used: this.budget.used },
            ready: this.ready,
            applications: config.applications.map((app) => ({
                name: app.name,
                route_prefix: app.route_prefix,
                routes: [...this.routes.values()].flatMap((m) => [...m.values()]).filter((r) => r.app === app.name)
                    .map((r) => ({ method: r.method, path: r.path, deployment: r.deployment.config.name, ...r.steps && { pipeline: r.steps.map((s) => s.deployment.config.name) } })),
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
            const of = (name: string) => deployments.get(`${app.name}/${name}`) as Deployment;
            const steps = r.pipeline?.map((step): Step => typeof step === 'string' || step.input === undefined
                ? { deployment: of(stepName(step)) } : { deployment: of(step.deployment), input: template(step.input) });
            byMethod.set(r.method, { method: r.method, path, app: app.name, deployment: steps ? steps[0].deployment : of(r.deployment as string), steps });
            routes.set(path, byMethod);
        }
    }
    return routes;
}
