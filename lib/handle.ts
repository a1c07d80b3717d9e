// Calls between deployments, on the replica's side: the handle a handler calls another deployment through,
// `ctx.deployment(name).call(body)`. The call goes to the front (lib/calls.ts), which runs it through the target's own
// queue and batcher; it carries the id of the request it is made for and what is left of that request's deadline,
// known from the batch being run (AsyncLocalStorage follows it through the handler's awaits).
import { AsyncLocalStorage } from 'node:async_hooks';
import { fromWire } from './errors';
import type { FromWorker, ToWorker } from './messages';

/** A handle on another deployment, as a handler's context gives it. */
export interface DeploymentHandle {
    /**
     * Sends `body` to the deployment, as a JSON body sent to its route would be (a Buffer or typed array goes as raw
     * application/octet-stream bytes); resolves with its JSON answer, parsed. Rejects with the target's error (a Boom
     * error, with its status), which, thrown on, answers the request. `options.for`: the batch item the call is made for,
     * whose request id and deadline it carries; by default the batch's (every id, and the earliest deadline).
     * `options.model`: the model a multiplexed target is to run (as the serve_multiplexed_model_id header names it).
     */
    call(body: unknown, options?: { for?: unknown; model?: string }): Promise<unknown>;
}

/** The batch a handler is running: its items, their request ids, their deadlines (performance.now()). */
interface Batch {
    items: unknown[];
    /** '' for a request without one */
    ids: string[];
    deadlines?: number[];
}

const current = new AsyncLocalStorage<Batch>();

/** Runs `fn` as the handler's work on a batch: the calls it makes carry the batch's ids and deadlines. */
export function inBatch<T>(items: unknown[], ids: string[] | undefined, deadlinesMs: number[] | undefined, fn: () => T): T {
    const now = performance.now();
    return current.run({ items, ids: ids ?? [], deadlines: deadlinesMs?.map((ms) => now + ms) }, fn);
}

const waiting = new Map<number, { resolve(body: unknown): void; reject(err: Error): void }>();
let next = 0;

/** The front's answer to a call (from lib/calls.ts): its promise settles. */
export function answered(msg: Extract<ToWorker, { type: 'called' }>): void {
    const w = waiting.get(msg.id);
    // (an answer meant for an earlier process of this replica finds none)
    if (w) {
        waiting.delete(msg.id);
        msg.error ? w.reject(fromWire(msg.error)) : w.resolve(JSON.parse(msg.body as string));
    }
}

/** The timeout of a call made outside a batch (from load() or reconfigure()) or for a request without a deadline: a request's default. */
export const defaultCallTimeoutMs = 30_000;

/** The request id and the ms left of the deadline that a call made now carries. */
function carried(target: unknown): { request_id?: string; timeout_ms: number } {
    const batch = current.getStore();
    if (!batch) {
        return { timeout_ms: defaultCallTimeoutMs };
    }
    const i = target === undefined ? -1 : batch.items.indexOf(target);
    const ids = (i < 0 ? batch.ids : [batch.ids[i]]).filter(Boolean);
    const deadline = i < 0 ? batch.deadlines && Math.min(...batch.deadlines) : batch.deadlines?.[i];
    return {
        request_id: ids.length ? ids.join(',') : undefined,
        timeout_ms: deadline === undefined ? defaultCallTimeoutMs : Math.max(1, deadline - performance.now())
    };
}

/** The handle on deployment `name` (`name` of the same application, or `application/name`); `send` reaches the front. */
export function deploymentHandle(name: string, send: (msg: FromWorker) => void): DeploymentHandle {
    return {
        call(body, options) {
            return new Promise((resolve, reject) => {
                const id = next++;
                waiting.set(id, { resolve, reject });
                send({ type: 'call', id, target: name, body, ...carried(options?.for), ...options?.model !== undefined && { model: options.model } });
            });
        }
    };
}
