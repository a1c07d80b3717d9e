// Load shedding at the front door: a request for a deployment whose queue is full is refused (503 QUEUE_FULL) as
// soon as its headers arrive, before hapi builds a request or reads its body. Under overload most requests are
// refused; at the cost of a full request's lifecycle each, refusals alone would take the front door's core from the
// requests it admits, and the replicas would wait for work while the front refuses (issue 10, defect 4).
import type http from 'node:http';
import { body, catalogue } from './errors';
import type { Controller } from './controller';
import type { Gate } from './auth';

type RequestListener = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/**
 * Puts the refusal in front of the listener's request handlers (hapi's): a request it refuses reaches none of them.
 * Node reads and discards the body of a request answered before it was read, and keeps the connection. A request
 * without a key the route needs goes on to hapi, which answers 401: who has no key learns nothing of the queue.
 */
export function shedLoad(listener: http.Server, controller: Controller, gate: Gate): void {
    const handlers = listener.listeners('request') as RequestListener[];
    listener.removeAllListeners('request');
    listener.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
        const full = fullDeployment(controller, req);
        if (full && !(gate.on && gate.refuse('model', { method: req.method as string, path: req.url as string, headers: req.headers }))) {
            const text = body('QUEUE_FULL', full);
            res.writeHead(catalogue.QUEUE_FULL.status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'retry-after': '1' }).end(text);
            return;
        }
        for (const handler of handlers) {
            handler.call(listener, req, res);
        }
    });
}

/** Why the deployment a request is for refuses it now; nothing for any other (hapi routes it, refusing what it must). */
function fullDeployment(controller: Controller, req: http.IncomingMessage): string | undefined {
    const url = req.url as string;
    const end = url.indexOf('?');
    let path = end < 0 ? url : url.slice(0, end);
    // hapi strips a trailing slash (router.stripTrailingSlash) before it routes; a path it would decode first goes to hapi.
    if (path.length > 1 && path.endsWith('/')) {
        path = path.slice(0, -1);
    }
    return controller.routes.get(path)?.get(req.method as string)?.deployment.full();
}
