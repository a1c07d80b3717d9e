// The Open Inference Protocol (KServe V2), REST: /v2 routes for every deployment whose handler takes tensors (the
// tensor handler). A deployment's model name is serve.yaml's model_name, else its application's name when the
// application has one deployment, else `application.deployment`; its version is the deployment's running version.
// An inference goes through the deployment's own queue and batcher, as a request to its application route does (the
// tensor handler parses the V2 request, JSON or binary); the front turns the answer into the protocol's. Errors are
// `{"error": "..."}`, with the code and the request id beside it.
import type Hapi from '@hapi/hapi';
import { clip, fail } from './errors';
import { dtypes } from './tensor';
import { version as tsserveVersion } from './version';
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

/** The names of the models V2 serves: the deployments of the tensor handler. */
const v2Models = (controller: Controller): string[] => [...models(controller)].filter(([, d]) => d.config.handler === 'tensor').map(([name]) => name);

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
    /** the binary extension: every output as binary data, unless an output asks otherwise */
    parameters?: { binary_data_output?: unknown };
    outputs?: Array<{ name?: unknown; parameters?: { binary_data?: unknown } }>;
}

/** A tensor's elements as raw little-endian bytes (the binary extension's form). */
function toBytes(data: unknown[], type: string): Buffer {
    const d = dtypes[type];
    const array = new d.ctor(data.length) as unknown as Array<number | bigint>;
    data.forEach((v, i) => {
        array[i] = d.bigint ? BigInt(v as number) : Number(v);
    });
    const { buffer, byteOffset, byteLength } = array as unknown as Uint8Array;
    return Buffer.from(buffer, byteOffset, byteLength);
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
        const wanted = Array.isArray(body.outputs) ? body.outputs.map((o) => ({ name: String(o?.name), binary: o?.parameters?.binary_data }))
            : Object.keys(answer.outputs).map((name) => ({ name, binary: undefined }));
        const allBinary = body.parameters?.binary_data_output === true;
        const chunks: Buffer[] = [];
        const outputs = wanted.map(({ name, binary }) => {
            const info = sig?.outputs.find((o) => o.name === name);
            if (!info || !(name in answer.outputs)) {
                throw fail('INVALID_BODY', `the model has no output ${JSON.stringify(clip(name))}; its outputs: ${Object.keys(answer.outputs).join(', ')}`);
            }
            const { shape, data } = flatten(answer.outputs[name]);
            const datatype = dtypes[info.type].oip;
            if (binary === true || (binary === undefined && allBinary)) {
                const bytes = toBytes(data, info.type);
                chunks.push(bytes);
                return { name, datatype, shape, parameters: { binary_data_size: bytes.length } };
            }
            return { name, datatype, shape, data };
        });
        const reply = { model_name: request.params.model, model_version: d.version, ...(body.id !== undefined && { id: body.id }), outputs };
        if (!chunks.length) {
            return h.response(reply);
        }
        // the binary extension: the JSON header, then each binary output's bytes in order
        const header = Buffer.from(JSON.stringify(reply));
        return h.response(Buffer.concat([header, ...chunks])).type('application/octet-stream').header('inference-header-content-length', String(header.length));
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
        datatype: { type: 'string', enum: Object.values(dtypes).map((d) => d.oip) },
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
