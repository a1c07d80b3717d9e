// The Open Inference Protocol (KServe V2), REST: /v2 routes for every deployment of a built-in handler. A deployment's
// model name is serve.yaml's model_name, else its application's name when the application has one deployment, else
// `application.deployment`; its version is the deployment's running version. An inference goes through the
// deployment's own queue and batcher, as a request to its application route does. The tensor handler parses the V2
// request (JSON or binary) and its replica writes the answer in the protocol's form, which the front only forwards;
// text, image and audio deployments take BYTES inputs (lib/oip-media.ts). Errors are `{"error": "..."}`, with the
// code and the request id beside it.
import type Hapi from '@hapi/hapi';
import { clip, fail } from './errors';
import { oipNames } from './tensor';
import { version as tsserveVersion } from './version';
import { readInfer } from './oip-request';
import { isMedia, mediaInfer, mediaMetadata } from './oip-media';
import { isBuiltin } from '../handlers/registry';
import type { Body } from './messages';
import { v2Headers, v2Model } from './multiplex';
import type { Controller, Route } from './controller';
import type { Deployment } from './deployment';
import type { TensorInfo } from './signature';

/** where V2 routes start: an error answer there takes the protocol's form (lib/http.ts) */
export const v2Prefix = '/v2';

/**
 * A deployment's model name: serve.yaml's `model_name`, else its application's name when the application has one
 * deployment, else `application.deployment`. lib/config.ts refuses a config where two deployments' names are the same.
 */
export function modelName(app: string, deployment: { name: string; model_name?: string }, deploymentsOfApp: number): string {
    return deployment.model_name ?? (deploymentsOfApp === 1 ? app : `${app}.${deployment.name}`);
}

/** The deployments by model name, for the config in force (worked out once per config). */
const names = new WeakMap<object, Map<string, Deployment>>();

function models(controller: Controller): Map<string, Deployment> {
    const config = controller.config;
    /* c8 ignore next 3 - before the first config's model files are read (milliseconds at start-up), no model is known */
    if (!config) {
        return new Map();
    }
    let byName = names.get(config);
    if (!byName) {
        byName = new Map();
        const deployments = [...controller.deployments.values()];
        for (const d of deployments) {
            byName.set(modelName(d.app, d.config, deployments.filter((o) => o.app === d.app).length), d);
        }
        names.set(config, byName);
    }
    return byName;
}

/** The names of the models V2 serves: the deployments of the built-in handlers (a handler of your own has no V2 form). */
const v2Models = (controller: Controller): string[] => [...models(controller)].filter(([, d]) => isBuiltin(d.config.handler)).map(([name]) => name);

/** The model a V2 path names (and its version, when it names one), among the deployments of the built-in handlers. */
function model(controller: Controller, name: string, version?: string): Deployment {
    // a multiplexed deployment's model is `<model name>.<id>` (lib/multiplex.ts)
    const d = models(controller).get(name) ?? v2Model(models(controller), name)?.deployment;
    if (!d || !isBuiltin(d.config.handler)) {
        throw fail('NOT_FOUND', `no model ${JSON.stringify(clip(name))}; GET /v2 lists the models: the deployments of the built-in handlers`);
    }
    if (version !== undefined && version !== d.version) {
        throw fail('NOT_FOUND', `model ${JSON.stringify(clip(name))} has no version ${JSON.stringify(clip(version))}; it runs ${d.version}`);
    }
    return d;
}

/** a runtime's platform name, as Triton names it */
const platforms: Record<string, string> = { onnx: 'onnxruntime_onnx', tfjs: 'tensorflow_js' };

/** A tensor as V2 metadata names it: a symbolic dimension is -1. */
const meta = (t: TensorInfo) => ({ name: t.name, datatype: oipNames[t.type], shape: t.dims.map((d) => typeof d === 'number' && d >= 0 ? d : -1) });

/** An answer as the replica (or lib/oip-media.ts) wrote it: JSON, or the binary extension's, forwarded as it is. */
function reply(h: Hapi.ResponseToolkit, body: Body): Hapi.ResponseObject {
    if (typeof body === 'string') {
        return h.response(body).type('application/json');
    }
    const { buffer, byteOffset, byteLength } = body.bytes;
    return h.response(Buffer.from(buffer, byteOffset, byteLength)).type('application/octet-stream').header('inference-header-content-length', String(body.header_length));
}

/** The routes; `route` marks a request as one for a deployment (its metrics, access log and traffic count it). */
export function oipRoutes(controller: Controller, requestTimeoutMs: number, payload: Hapi.RouteOptionsPayload, onModel: (request: Hapi.Request, route: Route) => void): Hapi.ServerRoute[] {
    const infer = '/v2/models/{model}/infer';
    const handler = async (request: Hapi.Request, h: Hapi.ResponseToolkit) => {
        const d = model(controller, String(request.params.model), request.params.version as string | undefined);
        onModel(request, { method: 'POST', path: request.params.version === undefined ? infer : '/v2/models/{model}/versions/{version}/infer', app: d.app, deployment: d });
        const raw = request.payload as Buffer;
        // The binary extension's header says where the JSON ends; without it, the whole body is JSON. A Content-Type
        // is not looked at: V2 clients commonly send none.
        const header = request.headers['inference-header-content-length'];
        let payload: unknown = raw;
        if (header === undefined) {
            try {
                payload = JSON.parse(raw.toString('utf8')) ?? {};
            }
            catch {
                throw fail('INVALID_JSON', 'the body is not valid JSON (a binary body needs the Inference-Header-Content-Length header)');
            }
        }
        const headers = v2Headers(models(controller), String(request.params.model), request.raw.req.headers);
        const v2 = { model_name: String(request.params.model), model_version: d.version };
        return reply(h, isMedia(d.config.handler)
            ? await mediaInfer(d, readInfer(payload, header), v2, headers, requestTimeoutMs, request.raw.res, request.app)
            : await d.handle({ payload, headers, contentType: header === undefined ? 'application/json' : 'application/octet-stream', oip: v2 }, requestTimeoutMs, request.raw.res, request.app));
    };
    const metadata = (request: Hapi.Request) => {
        const d = model(controller, String(request.params.model), request.params.version as string | undefined);
        const about = { name: request.params.model, versions: [d.version], platform: platforms[d.config.model.runtime] };
        if (isMedia(d.config.handler)) {
            return { ...about, ...mediaMetadata(d) };
        }
        const sig = d.signature;
        if (!sig) {
            throw fail('REPLICA_UNAVAILABLE', `model ${JSON.stringify(clip(String(request.params.model)))} is starting: its metadata comes from its first replica`);
        }
        return { ...about, inputs: sig.inputs.map(meta), outputs: sig.outputs.map(meta) };
    };
    const ready = (request: Hapi.Request, h: Hapi.ResponseToolkit) => {
        const d = model(controller, String(request.params.model), request.params.version as string | undefined);
        return h.response({ name: request.params.model, ready: d.ready }).code(d.ready ? 200 : 503);
    };
    return [
        {
            method: 'GET', path: '/v2', handler: () => ({
                name: 'tsserve', version: tsserveVersion,
                extensions: ['binary_tensor_data'],
                models: v2Models(controller)
            })
        },
        { method: 'GET', path: '/v2/health/live', handler: () => ({ live: true }) },
        {
            method: 'GET', path: '/v2/health/ready', handler: (_request, h) => {
                const ready = controller.ready;
                return h.response({ ready }).code(ready ? 200 : 503);
            }
        },
        { method: 'GET', path: '/v2/models/{model}', handler: metadata },
        { method: 'GET', path: '/v2/models/{model}/versions/{version}', handler: metadata },
        { method: 'GET', path: '/v2/models/{model}/ready', handler: ready },
        { method: 'GET', path: '/v2/models/{model}/versions/{version}/ready', handler: ready },
        { method: 'POST', path: infer, options: { payload: { ...payload, parse: false, output: 'data' } }, handler },
        { method: 'POST', path: '/v2/models/{model}/versions/{version}/infer', options: { payload: { ...payload, parse: false, output: 'data' } }, handler }
    ];
}

const v2Tensor = {
    type: 'object', required: ['name', 'shape', 'datatype'],
    properties: {
        name: { type: 'string' }, shape: { type: 'array', items: { type: 'integer' } },
        datatype: { type: 'string', enum: Object.values(oipNames) },
        parameters: { type: 'object', properties: { binary_data_size: { type: 'integer' }, binary_data: { type: 'boolean' } } },
        data: { type: 'array', items: {}, description: 'the elements, flat (or nested), row-major' }
    }
};
const v2Error = { description: 'An error: {"error": "..."}, with tsserve\'s code and the request id', content: { 'application/json': { schema: { type: 'object', required: ['error'], properties: { error: { type: 'string' }, code: { type: 'string' }, request_id: { type: 'string' } } } } } };
const ok = (description: string, schema: Record<string, unknown> = { type: 'object' }) => ({ description, content: { 'application/json': { schema } } });

/**
 * The V2 routes as /openapi.json describes them, when a deployment speaks V2: `{model}` names one (its description
 * lists them).
 * `keyed`: the inference routes need a key, as model routes do.
 */
export function oipPaths(controller: Controller, keyed: boolean): Record<string, Record<string, unknown>> {
    const names = v2Models(controller);
    if (!names.length) {
        // no deployment speaks V2: the document lists what is served, and nothing is
        return {};
    }
    const model = { name: 'model', in: 'path', required: true, schema: { type: 'string' }, description: `the model's name, one of: ${names.join(', ')}` };
    const version = { name: 'version', in: 'path', required: true, schema: { type: 'string' }, description: 'the deployment\'s running version (as /-/status shows it)' };
    const tags = ['Open Inference Protocol (V2)'];
    const get = (summary: string, parameters: unknown[], description: string) => ({ get: { tags, summary, parameters, responses: { 200: ok(description), 404: v2Error, 503: v2Error } } });
    const infer = (parameters: unknown[]) => ({
        post: {
            tags, summary: 'An inference, through the deployment\'s queue and batcher', parameters: [...parameters, {
                name: 'Inference-Header-Content-Length', in: 'header', required: false, schema: { type: 'integer', minimum: 1 },
                description: 'the binary extension: the length of the JSON header, which raw little-endian tensors follow'
            }],
            requestBody: {
                required: true, content: {
                    'application/json': { schema: { type: 'object', required: ['inputs'], properties: { id: { type: 'string' }, parameters: { type: 'object', properties: { binary_data_output: { type: 'boolean' } } }, inputs: { type: 'array', items: v2Tensor }, outputs: { type: 'array', items: { type: 'object', properties: { name: { type: 'string' }, parameters: { type: 'object' } } } } } } },
                    'application/octet-stream': { schema: { type: 'string', format: 'binary' } }
                }
            },
            responses: {
                200: { description: 'The outputs (binary ones after the JSON header when asked for)', content: { 'application/json': { schema: { type: 'object', properties: { model_name: { type: 'string' }, model_version: { type: 'string' }, id: { type: 'string' }, outputs: { type: 'array', items: v2Tensor } } } }, 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
                400: v2Error, ...(keyed && { 401: v2Error }), 404: v2Error, 413: v2Error, 500: v2Error, 503: v2Error, 504: v2Error
            },
            ...(keyed && { security: [{ bearer: [] }, { apiKey: [] }] })
        }
    });
    return {
        '/v2': get('Server metadata', [], 'name, version, extensions and models'),
        '/v2/health/live': get('Liveness', [], '{"live": true}'),
        '/v2/health/ready': get('Readiness: every deployment has a replica running', [], '{"ready": true}'),
        '/v2/models/{model}': get('Model metadata, from its signature', [model], 'name, versions, platform, inputs and outputs'),
        '/v2/models/{model}/versions/{version}': get('Model metadata, from its signature', [model, version], 'name, versions, platform, inputs and outputs'),
        '/v2/models/{model}/ready': get('Model readiness', [model], '{"name", "ready": true}'),
        '/v2/models/{model}/versions/{version}/ready': get('Model readiness', [model, version], '{"name", "ready": true}'),
        '/v2/models/{model}/infer': infer([model]),
        '/v2/models/{model}/versions/{version}/infer': infer([model, version])
    };
}
