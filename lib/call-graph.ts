// The call graph: which deployments each deployment's handler may call (serve.yaml `calls:`), by deployment id
// (`application/name`). lib/config.ts refuses a config whose calls name no deployment or go round in a cycle; the
// front (lib/calls.ts) lets a replica call only what its deployment declared; status and /openapi.json show it.
import type { ApplicationConfig, ServeConfig } from '../schemas/serve';

/** The id of the deployment that `ref` names from application `app`: `name` is its own application's, `application/name` another's. */
export const callTarget = (app: string, ref: string): string => ref.includes('/') ? ref : `${app}/${ref}`;

/** A problem with the calls, at the path of the `calls` entry it is found at. */
export interface CallIssue {
    at: Array<string | number>;
    message: string;
}

/** What each deployment calls, by id, as declared. */
export function callGraph(apps: readonly ApplicationConfig[]): Map<string, string[]> {
    return new Map(apps.flatMap((app) => app.deployments.map((d) => [`${app.name}/${d.name}`, d.calls.map((ref) => callTarget(app.name, ref))])));
}

/**
 * Every `calls` entry names a deployment of the config other than its own, and no chain of calls comes back to where
 * it started (it would never answer): each cycle is reported once, at the first deployment of it in the file.
 */
export function callIssues(config: Pick<ServeConfig, 'applications'>): CallIssue[] {
    const graph = callGraph(config.applications);
    const issues: CallIssue[] = [];
    config.applications.forEach((app, a) => app.deployments.forEach((d, i) => d.calls.forEach((ref, c) => {
        const id = callTarget(app.name, ref);
        if (id === `${app.name}/${d.name}`) {
            issues.push({ at: ['applications', a, 'deployments', i, 'calls', c], message: `"${ref}" is this deployment itself: a deployment cannot call itself` });
        }
        else if (!graph.has(id)) {
            issues.push({ at: ['applications', a, 'deployments', i, 'calls', c], message: `"${ref}" names no deployment (expected "name" of application "${app.name}", or "application/name"; known: ${[...graph.keys()].join(', ')})` });
        }
    })));
    if (issues.length) {
        return issues;
    }
    // Depth-first, colouring each deployment: on the path now (a cycle if met again), or done.
    const state = new Map<string, 'path' | 'done'>();
    const path: string[] = [];
    const visit = (id: string): string[] | undefined => {
        if (state.get(id) === 'path') {
            return [...path.slice(path.indexOf(id)), id];
        }
        if (state.get(id) === 'done') {
            return undefined;
        }
        state.set(id, 'path');
        path.push(id);
        for (const next of graph.get(id) as string[]) {
            const cycle = visit(next);
            if (cycle) {
                return cycle;
            }
        }
        path.pop();
        state.set(id, 'done');
        return undefined;
    };
    config.applications.forEach((app, a) => app.deployments.forEach((d, i) => {
        const cycle = visit(`${app.name}/${d.name}`);
        if (cycle) {
            issues.push({ at: ['applications', a, 'deployments', i, 'calls'], message: `the calls go round in a cycle, which would never answer: ${cycle.join(' -> ')}` });
            // what the search was in the middle of is done: the cycle is reported once
            for (const id of path) {
                state.set(id, 'done');
            }
            path.length = 0;
        }
    }));
    return issues;
}
