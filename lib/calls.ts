// Calls between deployments, on the front's side: a replica's handler calls another deployment (lib/handle.ts sends
// the call), and the front runs it through the target's own queue and batcher, as it would a request to the target's
// route, with the calling request's id and what is left of its deadline; the answer, or the error, goes back. Only
// the deployments the caller declares in serve.yaml (`calls:`) may be called (lib/call-graph.ts).
import { fail, toWire, type WireError } from './errors';
import { callTarget } from './call-graph';
import { modelIdHeader } from './multiplex';
import type { Deployment } from './deployment';
import type { FromWorker } from './messages';

type Call = Extract<FromWorker, { type: 'call' }>;

/** What goes back to the replica: the target's JSON body, or its error. */
export interface CallAnswer {
    id: number;
    body?: string;
    error?: WireError;
}

/**
 * Runs `call`, made by a replica of `caller`, on the deployment it names; `find` looks a deployment up by id. Resolves
 * with the answer, never rejects: an error (an undeclared target, the target's own) goes back as the answer.
 */
export async function runCall(caller: Pick<Deployment, 'app' | 'id' | 'config'>, call: Call, find: (id: string) => Deployment | undefined): Promise<CallAnswer> {
    try {
        const id = callTarget(caller.app, call.target);
        if (!caller.config.calls.some((ref) => callTarget(caller.app, ref) === id)) {
            throw fail('HANDLER_ERROR', `deployment "${caller.id}" called "${call.target}", which it does not declare: add it to its calls in serve.yaml (calls: ${JSON.stringify(caller.config.calls)})`);
        }
        const target = find(id);
        /* c8 ignore next 3 - serve.yaml's calls name running deployments (lib/config.ts): one is gone only while a reload removes it with its callers */
        if (!target) {
            throw fail('REPLICA_UNAVAILABLE', `deployment "${id}" is not running`);
        }
        const raw = ArrayBuffer.isView(call.body);
        const req = {
            payload: raw ? Buffer.from((call.body as Uint8Array).buffer, (call.body as Uint8Array).byteOffset, (call.body as Uint8Array).byteLength) : call.body,
            headers: { 'x-request-id': call.request_id, [modelIdHeader]: call.model },
            contentType: raw ? 'application/octet-stream' : 'application/json'
        };
        return { id: call.id, body: await target.handle(req, call.timeout_ms, undefined, { requestId: call.request_id }) };
    }
    catch (err) {
        const error = toWire(err);
        return { id: call.id, error: { ...error, message: `deployment "${call.target}": ${error.message}` } };
    }
}
