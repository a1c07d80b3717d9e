// The Open Inference Protocol (KServe V2), REST: /v2 routes for every deployment whose handler takes tensors (the
// tensor handler). A deployment's model name is its application's name when the application has one deployment, else
// `application.deployment`; its version is the deployment's running version. An inference goes through the
// deployment's own queue and batcher, as a request to its application route does (the tensor handler parses the V2
// request, JSON or binary); the front turns the answer into the protocol's. Errors are `{"error": "..."}`, with the
// code and the request id beside it.
import type Hapi from '@hapi/hapi';
import { clip, fail } from './errors';
import { dtypes } from './tensor';
import { version as tsserveVersion } from './version';
import type { Controller, Route } from './controller';
import type { Deployment } from './deployment';
import type { TensorInfo } from './signature';

/** where V2 routes start: an error answer there takes the protocol's form (lib/http.ts) */
export const v2Prefix = '/v2';

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
            const alone = deployments.filter((o) => o.app === d.app).length === 1;
            byName.set(alone ? d.app : `${d.app}.${d.config.name}`, d);
        }
        names.set(config, byName);
    }
    return byName;
}

/** The model a V2 path names (and its version, when it names one), among the deployments that take tensors. */
function model(controller: Controller, name: string, version?: string): Deployment {
    const d = models(controller).get(name);
    if (!d || d.config.handler !== 'tensor') {
        throw fail('NOT_FOUND', `no model ${JSON.stringify(clip(name))}; GET /v2/models/{model} names each deployment of the tensor handler (see /-/status)`);
    }
    if (version !== undefined && version !== d.version) {
        throw fail('NOT_FOUND', `model ${JSON.stringify(clip(name))} has no version ${JSON.stringify(clip(version))}; it runs ${d.version}`);
    }
    return d;
}

/** a runtime's platform name, as Triton names it */
const platforms: Record<string, string> = { onnx: 'onnxruntime_onnx', tfjs: 'tensorflow_js' };

/** A tensor as V2 metadata names it: a symbolic dimension is -1. */
const meta = (t: TensorInfo) => ({ name: t.name, datatype: dtypes[t.type].oip, shape: t.dims.map((d) => typeof d === 'number' && d >= 0 ? d : -1) });

/** A nested array's shape (rectangular: the tensor handler's answers are) and its elements, row-major. */
function flatten(value: unknown): { shape: number[]; data: unknown[] } {
    const shape: number[] = [];
    let level: unknown = value;
    while (Array.isArray(level)) {
        shape.push(level.length);
        level = level[0];
    }
    return { shape, data: [value].flat(shape.length) };
}

interface InferBody {
    id?: unknown;
    outputs?: Array<{ name?: unknown }>;
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
        const binary = request.headers['inference-header-content-length'] !== undefined;
        let payload: unknown = raw;
        let body: InferBody = {};
        if (!binary) {
            try {
                payload = body = JSON.parse(raw.toString('utf8')) ?? {};
            }
            catch {
                throw fail('INVALID_JSON', 'the body is not valid JSON (a binary body needs the Inference-Header-Content-Length header)');
            }
        }
        const answer = JSON.parse(await d.handle({ payload, headers: request.raw.req.headers, contentType: binary ? 'application/octet-stream' : 'application/json' }, requestTimeoutMs, request.raw.res, request.app)) as { outputs: Record<string, unknown> };
        const sig = d.signature;
        const wanted = Array.isArray(body.outputs) ? body.outputs.map((o) => String(o?.name)) : Object.keys(answer.outputs);
        const outputs = wanted.map((name) => {
            const info = sig?.outputs.find((o) => o.name === name);
            if (!info || !(name in answer.outputs)) {
                throw fail('INVALID_BODY', `the model has no output ${JSON.stringify(clip(name))}; its outputs: ${Object.keys(answer.outputs).join(', ')}`);
            }
            return { name, datatype: dtypes[info.type].oip, ...flatten(answer.outputs[name]) };
        });
        return h.response({ model_name: request.params.model, model_version: d.version, ...(body.id !== undefined && { id: body.id }), outputs });
    };
    const metadata = (request: Hapi.Request) => {
        const d = model(controller, String(request.params.model), request.params.version as string | undefined);
        const sig = d.signature;
        if (!sig) {
            throw fail('REPLICA_UNAVAILABLE', `model ${JSON.stringify(clip(String(request.params.model)))} is starting: its metadata comes from its first replica`);
        }
        return { name: request.params.model, versions: [d.version], platform: platforms[d.config.model.runtime], inputs: sig.inputs.map(meta), outputs: sig.outputs.map(meta) };
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
                models: [...models(controller)].filter(([, d]) => d.config.handler === 'tensor').map(([name]) => name)
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
