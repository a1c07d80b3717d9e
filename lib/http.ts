// The HTTP front door (hapi): model routes dispatched through the controller's route table, admin routes, docs.
// Model routes go through one catch-all route, because hapi cannot remove a route and serve.yaml can.
import fs from 'node:fs';
import path from 'node:path';
import Hapi from '@hapi/hapi';
import Boom from '@hapi/boom';
import { fail, shape } from './errors';
import { document } from './openapi';
import { takesRaw } from '../handlers/registry';
import type { Controller } from './controller';
import type { ConfigWatcher } from './watcher';
import type { Status } from './status';

declare module '@hapi/hapi' {
    interface RequestApplicationState {
        /** the body's media type as the client sent it, without parameters; application/json when none */
        contentType: string;
    }
}

export interface HttpOptions {
    host: string;
    port: number;
    requestTimeoutMs: number;
    maxBytes: number;
}

const swaggerDir = path.dirname(require.resolve('swagger-ui-dist/package.json'));
const swaggerFiles: Record<string, string> = {
    'swagger-ui.css': 'text/css',
    'swagger-ui-bundle.js': 'application/javascript',
    'favicon-32x32.png': 'image/png'
};

const docsPage = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>tsserve API</title><link rel="icon" href="/docs/favicon-32x32.png"><link rel="stylesheet" href="/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div><script src="/docs/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui' });</script></body>
</html>`;

export function createServer(controller: Controller, watcher: ConfigWatcher, options: HttpOptions): Hapi.Server {
    const server = Hapi.server({ host: options.host, port: options.port, router: { stripTrailingSlash: true } });

    // hapi parses JSON and multipart bodies itself; an image or audio body reaches the handler as raw bytes, and
    // the handler sees the media type the client sent.
    server.ext('onRequest', (request, h) => {
        const type = String(request.headers['content-type'] ?? '');
        // No type at all is JSON: hapi's default (route payload.defaultContentType).
        const mime = type.split(';')[0].trim().toLowerCase() || 'application/json';
        request.app.contentType = mime;
        if (takesRaw(mime)) {
            request.headers['content-type'] = 'application/octet-stream';
        }
        return h.continue;
    });

    server.ext('onPreResponse', (request, h) => {
        const response = request.response;
        if (Boom.isBoom(response)) {
            shape(response);
        }
        return h.continue;
    });

    server.route([
        { method: 'GET', path: '/-/healthz', handler: () => ({ status: 'ok' }) },
        {
            method: 'GET', path: '/-/ready', handler: () => {
                if (!controller.ready) {
                    throw fail('REPLICA_UNAVAILABLE', 'not every deployment has a ready replica; see /-/status');
                }
                return { ready: true };
            }
        },
        {
            method: 'GET', path: '/-/status', handler: (request): Status => {
                // The listener's own settings: --port and --host override serve.yaml's, and a changed http_options waits for a restart.
                const http_options = { host: options.host, port: Number(request.server.info.port), request_timeout_s: options.requestTimeoutMs / 1000, max_body_size_mb: options.maxBytes / 2 ** 20 };
                return { ...controller.status(), http_options, config: watcher.status() };
            }
        },
        { method: 'POST', path: '/-/reload', handler: () => watcher.reload('POST /-/reload') },
        { method: 'GET', path: '/openapi.json', handler: (request) => document(controller, `${request.server.info.protocol}://${request.info.host}`) },
        { method: 'GET', path: '/docs', handler: (_request, h) => h.response(docsPage).type('text/html') },
        {
            method: 'GET', path: '/docs/{file}', handler: (request, h) => {
                const file = String(request.params.file);
                const type = swaggerFiles[file];
                if (!type) {
                    throw fail('NOT_FOUND', `no file /docs/${file}`);
                }
                return h.response(fs.readFileSync(path.join(swaggerDir, file))).type(type).header('cache-control', 'public, max-age=86400');
            }
        },
        {
            method: '*',
            path: '/{path*}',
            options: {
                payload: {
                    parse: true, output: 'data', maxBytes: options.maxBytes, multipart: { output: 'data' },
                    allow: ['application/json', 'application/octet-stream', 'multipart/form-data']
                }
            },
            handler: async (request, h) => {
                const byMethod = controller.routes.get(request.path);
                const method = request.method.toUpperCase();
                if (!byMethod) {
                    throw fail('NOT_FOUND', `no route ${method} ${request.path}; see /openapi.json`);
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
                const req = { payload: request.payload, headers: request.raw.req.headers, contentType: request.app.contentType };
                const body = await route.deployment.handle(req, options.requestTimeoutMs, request.raw.res);
                return h.response(body).type('application/json');
            }
        }
    ]);
    return server;
}
