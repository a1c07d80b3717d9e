// Load shedding at the front door: a request for a deployment whose queue is full is refused (503 QUEUE_FULL) as
// soon as its headers arrive, before hapi builds a request or reads its body. Under overload most requests are
// refused; at the cost of a full request's lifecycle each, refusals alone would take the front door's core from the
// requests it admits, and the replicas would wait for work while the front refuses (issue 10, defect 4).
import type http from 'node:http';
import { body, catalogue } from './errors';
import { requestId } from './request-id';
import { countError, countRequest, metrics } from './metrics';
import { bytesIn, logAccess } from './access-log';
import type { Controller, Route } from './controller';
import type { Gate } from './auth';
import type { LoggingConfig } from '../schemas/serve';

type RequestListener = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/**
 * Puts the refusal in front of the listener's request handlers (hapi's): a request it refuses reaches none of them.
 * Node reads and discards the body of a request answered before it was read, and keeps the connection. A request
 * without a key the route needs goes on to hapi, which answers 401: who has no key learns nothing of the queue.
 */
export function shedLoad(listener: http.Server, controller: Controller, gate: Gate): void {
    // A request that sends `Expect: 100-continue` (curl's, with a large body) comes as 'checkContinue': refused, it is
    // answered before the client sends its body at all.
    for (const event of ['request', 'checkContinue'] as const) {
        shedBefore(listener, event, controller, gate);
    }
}

function shedBefore(listener: http.Server, event: 'request' | 'checkContinue', controller: Controller, gate: Gate): void {
    const handlers = listener.listeners(event) as RequestListener[];
    listener.removeAllListeners(event);
    listener.on(event, (req: http.IncomingMessage, res: http.ServerResponse) => {
        const route = routeOf(controller, req);
        const full = route?.deployment.full();
        if (full && !(gate.on && gate.refuse('model', { method: req.method as string, path: req.url as string, headers: req.headers }))) {
            const t0 = performance.now();
            const id = requestId(req.headers['x-request-id']);
            const text = body('QUEUE_FULL', full, id);
            const length = Buffer.byteLength(text);
            const status = catalogue.QUEUE_FULL.status;
            res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': length, 'retry-after': '1', 'x-request-id': id }).end(text);
            refused(route as Route, req, id, length, performance.now() - t0);
            return;
        }
        for (const handler of handlers) {
            handler.call(listener, req, res);
        }
    });
}

/** A refusal's metrics and access-log line, as lib/http.ts writes them for a request hapi answers. */
function refused(route: Route, req: http.IncomingMessage, id: string, bytesOut: number, ms: number): void {
    const deployment = route.deployment.config.name;
    const status = catalogue.QUEUE_FULL.status;
    route.deployment.traffic.record(ms, status);
    if (metrics.on) {
        countRequest(route.path, route.method, status, ms / 1000);
        countError(route.app, deployment, 'QUEUE_FULL');
    }
    logAccess((route.deployment.config.logging_config as LoggingConfig).enable_access_log, id, route.method, route.path, route.app, deployment, status,
        bytesIn(req.headers['content-length']), bytesOut, ms, undefined, undefined);
}

/** The model route a request is for, as hapi would route it; nothing for any other (hapi routes it, refusing what it must). */
function routeOf(controller: Controller, req: http.IncomingMessage): Route | undefined {
    const url = req.url as string;
    const end = url.indexOf('?');
    let path = end < 0 ? url : url.slice(0, end);
    // hapi strips a trailing slash (router.stripTrailingSlash) before it routes; a path it would decode first goes to hapi.
    if (path.length > 1 && path.endsWith('/')) {
        path = path.slice(0, -1);
    }
    return controller.routes.get(path)?.get(req.method as string);
}
