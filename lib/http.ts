// The HTTP front door (hapi): model routes dispatched through the controller's route table, admin routes, docs.
// Model routes go through one catch-all route, because hapi cannot remove a route and serve.yaml can. API keys
// (lib/auth.ts) are checked before anything else is done with a request, its body included.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import Hapi from '@hapi/hapi';
import Boom from '@hapi/boom';
import { clip, fail, shape } from './errors';
import { document } from './openapi';
import { Gate, access, crossSite } from './auth';
import { relative, reloaded } from './status';
import { takesRaw } from '../handlers/registry';
import { shedLoad } from './shed';
import { BodyDeadlines, closingAnswer } from './body-deadlines';
import { requestId } from './request-id';
import { countError, countRequest, inFlight, metrics, registry, watchSources } from './metrics';
import { bytesIn, logAccess } from './access-log';
import { oipRoutes, v2Prefix } from './oip';
import { runPipeline } from './pipeline';
import { parsedJson, readJson } from './json-tensor';
import type { Controller, Route } from './controller';
import type { Deployment } from './deployment';
import type { ConfigWatcher } from './watcher';
import type { Status } from './status';
import type { AuthConfig, KeySource, LoggingConfig } from '../schemas/serve';

declare module '@hapi/hapi' {
    interface RequestApplicationState {
        /** the body's media type as the client sent it, without parameters; application/json when none */
        contentType: string;
        /** lib/request-id.ts: in the x-request-id header, error bodies and log lines */
        requestId: string;
        /** when it arrived (performance.now()) */
        t0: number;
        /** the model route it was for, once found */
        route?: Route;
        /** the catalogue code of its error answer */
        code?: string;
        /** its JSON body is read raw, for the tensor handler's scanner (lib/json-tensor.ts), rather than parsed by hapi */
        rawJson?: boolean;
        /** from the scheduler (lib/scheduler.ts, Trace): ms in the queue and rows in the batch that answered it */
        queueMs?: number;
        batchRows?: number;
    }
}

/** How long a client may take to send a request's headers (Node's server.headersTimeout), unless createServer is told otherwise. */
export const HEADERS_TIMEOUT_MS = 10_000;

/**
 * How long a request's body may take to arrive once its headers have, unless createServer is told otherwise: hapi's own
 * payload timeout, answered at once rather than after waiting for the rest of a body that stalls or trickles.
 */
export const BODY_TIMEOUT_MS = 10_000;

/** How long an idle keep-alive connection is kept open (Node's server.keepAliveTimeout; Node's own is 5 s). */
export const KEEP_ALIVE_TIMEOUT_MS = 65_000;

export interface HttpOptions {
    host: string;
    port: number;
    requestTimeoutMs: number;
    maxBytes: number;
    /** default HEADERS_TIMEOUT_MS */
    headersTimeoutMs?: number;
    /** default BODY_TIMEOUT_MS */
    bodyTimeoutMs?: number;
}

const swaggerDir = path.dirname(require.resolve('swagger-ui-dist/package.json'));
// A Map, not an object: a name such as "constructor" must not find Object.prototype's.
const swaggerFiles = new Map([
    ['swagger-ui.css', 'text/css'],
    ['swagger-ui-bundle.js', 'application/javascript'],
    ['favicon-32x32.png', 'image/png']
]);

/**
 * hapi's payload errors in the catalogue's terms: a multipart body over the limit is 413 (hapi's multipart reader says
 * so only inside a 400), and the framework's own error objects are never shown (shape() shows no data but ours).
 */
function payloadError(err: Boom.Boom, maxBytes: number): Boom.Boom {
    const inner = err.data as unknown;
    if (Boom.isBoom(inner) && inner.output.statusCode === 413) {
        return fail('PAYLOAD_TOO_LARGE', `Payload content length greater than maximum allowed: ${maxBytes}`);
    }
    return err;
}

const docsPage = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>tsserve API</title><link rel="icon" href="/docs/favicon-32x32.png"><link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div><script src="/docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui' });</script></body>
</html>`;

/**
 * Why a request may not go on: a state-changing admin request from another site's page, or a route that needs a key
 * it lacks (lib/auth.ts). Its route is looked up as hapi is about to (the same router, path and host), so that what a
 * route needs goes by the route that answers, whatever the path's spelling (a trailing slash, say).
 */
function guard(gate: Gate, request: Hapi.Request): Boom.Boom | undefined {
    let kind: ReturnType<typeof access> = 'model';
    try {
        kind = access((request.server.match(request.method, request.path, request.info.hostname) as Hapi.RequestRoute).path);
    }
    catch {
        // a path hapi's router refuses (a bad escape): a model route's rule, then hapi's own 400
    }
    const asked = { method: request.method, path: request.path, headers: request.raw.req.headers };
    return (kind === 'admin' ? crossSite(asked) : undefined) ?? gate.refuse(kind, asked);
}

/**
 * Answers a refused request (guard()) once its body, if it has one, has been read and dropped, unparsed, within the
 * body's deadline (BodyDeadlines): a client still sending it then reads the answer, on a connection that stays open
 * (hapi closes one whose body it has not read, and the client's next write fails).
 */
async function refuse(request: Hapi.Request, err: Boom.Boom, bodies: BodyDeadlines): Promise<never> {
    const req = request.raw.req;
    if ((req.headers['content-length'] || req.headers['transfer-encoding']) && request.method !== 'get' && request.method !== 'head') {
        bodies.watch(request);
        await new Promise<void>((resolve) => {
            req.once('end', resolve).once('close', resolve).resume();
        });
    }
    throw err;
}

/** What /-/status says of the keys: where each set comes from and how many it holds, never a key nor a digest. */
function authStatus(auth: AuthConfig | undefined): Status['auth'] {
    const of = (s: KeySource | undefined) => s && { ...(s.env === undefined ? { file: s.file } : { env: s.env }), keys: s.digests.length };
    return auth && { api_keys: of(auth.api_keys), admin_keys: of(auth.admin_keys) };
}

/**
 * GET /-/ready (and /-/ready/{application}, for one application's deployments): 200 {ready: true} while each deployment
 * has a replica running, else 503 REPLICA_UNAVAILABLE with why not, by deployment, in details.not_ready (lib/controller.ts,
 * unready()); 503 as soon as tsserve begins to shut down. An application that is not in the config is 404.
 */
function readiness(controller: Controller, app?: string): { ready: true } {
    if (app !== undefined && controller.config && !controller.config.applications.some((a) => a.name === app)) {
        throw fail('NOT_FOUND', `no application ${JSON.stringify(clip(app))}`);
    }
    const why = controller.unready(app);
    if (Object.keys(why).length) {
        const what = app === undefined ? 'every deployment' : `every deployment of application ${JSON.stringify(clip(app))}`;
        throw fail('REPLICA_UNAVAILABLE', why.tsserve === 'shutting down' ? 'tsserve is shutting down' : `not ${what} has a replica running; see /-/status`, { not_ready: why });
    }
    return { ready: true };
}

/**
 * A Content-Type under which hapi parses a body as JSON, which it would accept whole (no duplicate parameter, say):
 * none, or application/json with at most a UTF-8 charset (hapi reads JSON as UTF-8 whatever the charset).
 */
const plainJson = /^(application\/json(\s*;\s*charset=(utf-8|"utf-8"))?)?$/i;

/**
 * Before hapi reads a model route's body: a JSON body for a route whose deployment has the tensor handler (not a
 * pipeline's) is to reach it raw, for its scanner to read straight into typed arrays (lib/json-tensor.ts), so hapi is
 * told it is application/octet-stream; request.app.contentType still says application/json. The handler's own
 * answer to it (lib/json-tensor.ts, readJson()) is hapi's, invalid JSON included. Other bodies are left to hapi.
 */
function rawTensorJson(controller: Controller, request: Hapi.Request): void {
    if (request.app.contentType === 'application/json' && plainJson.test(request.raw.req.headers['content-type'] ?? '')) {
        const route = controller.routes.get(request.path)?.get(request.method.toUpperCase());
        if (route && !route.steps && route.deployment.config.handler === 'tensor') {
            request.headers['content-type'] = 'application/octet-stream';
            request.app.rawJson = true;
        }
    }
}

/** A GET request's input: its query string, checked against the handler's querySchema(); what that makes of it is the body. */
function queryInput(deployment: Deployment, query: Record<string, unknown>): unknown {
    const schema = deployment.handler.querySchema?.();
    if (!schema) {
        throw fail('METHOD_NOT_ALLOWED', `the handler of deployment "${deployment.id}" takes no input from a query string: send a POST`);
    }
    const { error, value } = schema.validate(query);
    if (error) {
        throw fail('INVALID_BODY', `query string: ${clip(error.message, 300)}`);
    }
    return value;
}

export function createServer(controller: Controller, watcher: ConfigWatcher, options: HttpOptions): Hapi.Server {
    const server = Hapi.server({ host: options.host, port: options.port, router: { stripTrailingSlash: true } });
    /** status and reload answers name files relative to serve.yaml's folder, as serve.yaml does */
    const folder = path.dirname(watcher.file);
    const headersTimeoutMs = options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
    const bodyTimeoutMs = options.bodyTimeoutMs ?? BODY_TIMEOUT_MS;

    // Node's own limits on the listener: the headers within headersTimeoutMs; the whole request within Node's
    // requestTimeout, a backstop behind the body's deadline, which answers first. Checked every second (Node: 30 s).
    const listener = server.listener;
    const gate = new Gate(() => watcher.auth);
    shedLoad(listener, controller, gate);
    listener.headersTimeout = headersTimeoutMs;
    // An idle keep-alive connection is kept longer than clients and load balancers keep theirs (Node's 5 s is shorter
    // than most: an AWS load balancer keeps 60 s), so that it is the client that closes it. A server that closes
    // first races the client's next request on it, which then fails with "socket hang up" before reaching us.
    listener.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
    listener.requestTimeout = headersTimeoutMs + bodyTimeoutMs + 1000;
    // (Node reads it when the listener starts; @types/node does not declare it)
    Object.assign(listener, { connectionsCheckingInterval: Math.min(1000, headersTimeoutMs) });
    // Headers that do not arrive in time get the catalogue's 408 rather than hapi's bare 400. hapi's own handler runs
    // next; it finds the socket ended, and what it writes goes nowhere. With a request under way, hapi answers itself.
    listener.prependListener('clientError', (err: NodeJS.ErrnoException, socket: Duplex & { _httpMessage?: unknown }) => {
        if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && !socket._httpMessage) {
            const { status, headers, body } = closingAnswer(fail('CLIENT_TIMEOUT', `the request's headers did not arrive within ${headersTimeoutMs / 1000} s`), requestId(undefined));
            socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n${body}`);
        }
    });

    // hapi parses JSON and multipart bodies itself; an image or audio body reaches the handler as raw bytes, and
    // the handler sees the media type the client sent.
    const bodies = new BodyDeadlines(bodyTimeoutMs, options.maxBytes);
    watchSources(controller, () => watcher.version);
    server.ext('onRequest', (request, h) => {
        request.app.requestId = requestId(request.headers['x-request-id']);
        request.app.t0 = performance.now();
        inFlight.n++;
        // With no key set and no Origin on a request that may change something, this test is all it costs.
        if (gate.on || (request.headers.origin !== undefined && request.method !== 'get' && request.method !== 'head')) {
            const refused = guard(gate, request);
            if (refused) {
                return refuse(request, refused, bodies);
            }
        }
        const type = String(request.headers['content-type'] ?? '');
        // No type at all is JSON: hapi's default (route payload.defaultContentType).
        const mime = type.split(';')[0].trim().toLowerCase() || 'application/json';
        request.app.contentType = mime;
        if (takesRaw(mime)) {
            request.headers['content-type'] = 'application/octet-stream';
        }
        // hapi reads no body for GET and HEAD (Node discards one, within its requestTimeout).
        if ((request.headers['content-length'] || request.headers['transfer-encoding']) && request.method !== 'get' && request.method !== 'head') {
            bodies.watch(request);
        }
        return h.continue;
    });

    server.ext('onPreResponse', (request, h) => {
        const response = request.response;
        const id = request.app.requestId;
        if (Boom.isBoom(response)) {
            shape(response, id);
            if (request.path.startsWith(v2Prefix)) {
                // the Open Inference Protocol's error form, the code and the request id beside it
                const { message, code, details, request_id } = response.output.payload as unknown as Record<string, unknown>;
                response.output.payload = { error: message, code, ...(details !== undefined && { details }), request_id } as unknown as Boom.Payload;
            }
            request.app.code = (response.output.payload as unknown as { code: string }).code;
            response.output.headers['x-request-id'] = id;
        }
        else {
            (response as Hapi.ResponseObject).header('x-request-id', id);
        }
        return h.continue;
    });

    // Once a request is answered (or its client gone): its metrics and its access-log line.
    server.events.on('response', (request) => {
        inFlight.n--;
        const res = request.raw.res;
        const { t0, code } = request.app;
        // a model route's request refused before its handler ran (its body, say) is still its route's
        const route = request.app.route ?? (request.route.path === '/{path*}' ? controller.routes.get(request.path)?.get(request.raw.req.method as string) : undefined);
        const ms = performance.now() - t0;
        const method = request.raw.req.method as string;
        const status = res.statusCode;
        const deployment = route?.deployment.config.name;
        route?.deployment.traffic.record(ms, status);
        if (metrics.on) {
            countRequest(route ? route.path : request.route.path, method, status, ms / 1000);
            if (route && code) {
                countError(route.app, deployment as string, code);
            }
        }
        logAccess(route && (route.deployment.config.logging_config as LoggingConfig).enable_access_log, request.app.requestId, method, request.path, route?.app, deployment, status,
            bytesIn(request.raw.req.headers['content-length']), Number(res.getHeader('content-length') ?? 0), ms, request.app.queueMs, request.app.batchRows);
    });

    /** what a body may be: its size, and its time (BodyDeadlines bounds it, not hapi) */
    const bodyLimits: Hapi.RouteOptionsPayload = {
        maxBytes: options.maxBytes, timeout: false,
        failAction: (_request, _h, err) => {
            throw payloadError(err as Boom.Boom, options.maxBytes);
        }
    };
    server.route([
        { method: 'GET', path: '/-/healthz', handler: () => ({ status: 'ok' }) },
        { method: 'GET', path: '/-/ready', handler: () => readiness(controller) },
        { method: 'GET', path: '/-/ready/{application}', handler: (request) => readiness(controller, String(request.params.application)) },
        {
            method: 'GET', path: '/-/status', handler: (request): Status => {
                // The listener's own settings: --port and --host override serve.yaml's, and a changed http_options waits for a restart.
                const http_options = { host: options.host, port: Number(request.server.info.port), request_timeout_s: options.requestTimeoutMs / 1000, max_body_size_mb: options.maxBytes / 2 ** 20 };
                return relative({ ...controller.status(), http_options, config: watcher.status(), auth: authStatus(watcher.auth) }, folder);
            }
        },
        { method: 'POST', path: '/-/reload', handler: async () => reloaded(await watcher.reload('POST /-/reload'), folder) },
        {
            method: 'GET', path: '/metrics', handler: async (_request, h) => {
                if (!metrics.on) {
                    throw fail('NOT_FOUND', 'metrics are off (serve.yaml: metrics: false)');
                }
                return h.response(await registry.metrics()).type(registry.contentType);
            }
        },
        { method: 'GET', path: '/openapi.json', handler: (request) => document(controller, `${request.server.info.protocol}://${request.info.host}`, gate.models) },
        { method: 'GET', path: '/docs', handler: (_request, h) => h.response(docsPage).type('text/html') },
        {
            method: 'GET', path: '/docs/{file}', handler: (request, h) => {
                const file = String(request.params.file);
                const type = swaggerFiles.get(file);
                if (!type) {
                    throw fail('NOT_FOUND', `no file /docs/${clip(file)}`);
                }
                return h.response(fs.readFileSync(path.join(swaggerDir, file))).type(type).header('cache-control', 'public, max-age=86400');
            }
        },
        ...oipRoutes(controller, options.requestTimeoutMs, bodyLimits, (request, route) => {
            request.app.route = route;
        }),
        {
            method: '*',
            path: '/{path*}',
            options: {
                payload: {
                    ...bodyLimits, parse: true, output: 'data', multipart: { output: 'data' },
                    allow: ['application/json', 'application/octet-stream', 'multipart/form-data']
                },
                // (this route's alone: the others' bodies are not the tensor handler's)
                ext: {
                    onPreAuth: {
                        method: (request, h) => {
                            rawTensorJson(controller, request);
                            return h.continue;
                        }
                    }
                }
            },
            handler: async (request, h) => {
                // a raw JSON body is read first, as hapi reads one before the handler: invalid JSON is refused as it was
                const payload = request.app.rawJson ? readJson(request.payload as Buffer | null) : request.payload;
                if (!controller.config) {
                    // the first config's model files are being read: its routes are known once they are, which a
                    // request waits for within its timeout
                    let timer: NodeJS.Timeout | undefined;
                    const published = await Promise.race([
                        controller.published.then(() => true),
                        new Promise<boolean>((resolve) => timer = setTimeout(resolve, options.requestTimeoutMs, false))
                    ]);
                    clearTimeout(timer);
                    if (!published) {
                        throw fail('REQUEST_TIMEOUT', `no route is known yet: tsserve was still reading its config's model files after ${options.requestTimeoutMs / 1000}s`);
                    }
                }
                const byMethod = controller.routes.get(request.path);
                const method = request.method.toUpperCase();
                if (!byMethod) {
                    throw fail('NOT_FOUND', `no route ${clip(method)} ${clip(request.path)}; see /openapi.json`);
                }
                const route = byMethod.get(method);
                if (!route) {
                    const allow = [...byMethod.keys()].join(', ');
                    const err = fail('METHOD_NOT_ALLOWED', `${request.path} takes ${allow}`);
                    err.output.headers.Allow = allow;
                    throw err;
                }
                // hapi's 'disconnect' fires only while the body is still arriving; a client that hangs up
                // while its request waits in the queue closes the response before it is written.
                request.app.route = route;
                // a GET route's input is its query string, as the handler declares it (lib/handler.ts, querySchema)
                const req = method === 'GET'
                    ? { payload: queryInput(route.deployment, request.query), headers: request.raw.req.headers, contentType: 'application/json' }
                    : { payload: route.steps || route.deployment.config.handler !== 'tensor' ? parsedJson(payload) : payload, headers: request.raw.req.headers, contentType: request.app.contentType };
                const body = route.steps
                    ? await runPipeline(route.steps, req, options.requestTimeoutMs, request.raw.res, request.app)
                    : await route.deployment.handle(req, options.requestTimeoutMs, request.raw.res, request.app);
                return h.response(body).type('application/json');
            }
        }
    ]);
    return server;
}
