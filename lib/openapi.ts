// The OpenAPI 3 document, generated from the route table and each deployment's real model signature.
import { oipPaths } from './oip';
import { modelIdParameter } from './multiplex';
import { basename } from 'node:path';
import type Joi from 'joi';
import { catalogue } from './errors';
import { version } from './version';
import { callTarget } from './call-graph';
import type { Controller } from './controller';

type JsonSchema = Record<string, unknown>;

interface Description {
    type: string;
    flags?: { presence?: string; description?: string; only?: boolean };
    keys?: Record<string, Description>;
    items?: Description[];
    matches?: Array<{ schema: Description }>;
    rules?: Array<{ name: string; args?: { limit?: number } }>;
    allow?: unknown[];
}

/** Converts a joi description to JSON Schema, for the subset that handler schemas use. */
export function toJsonSchema(d: Description): JsonSchema {
    const out: JsonSchema = {};
    const rule = (name: string) => d.rules?.find((r) => r.name === name);
    switch (d.type) {
        case 'object': {
            out.type = 'object';
            out.properties = Object.fromEntries(Object.entries(d.keys ?? {}).map(([k, v]) => [k, toJsonSchema(v)]));
            const required = Object.entries(d.keys ?? {}).filter(([, v]) => v.flags?.presence === 'required').map(([k]) => k);
            if (required.length) {
                out.required = required;
            }
            break;
        }
        case 'array': {
            out.type = 'array';
            out.items = d.items?.[0] ? toJsonSchema(d.items[0]) : {};
            const length = rule('length')?.args?.limit;
            if (length !== undefined) {
                out.minItems = out.maxItems = length;
            }
            break;
        }
        case 'number':
            out.type = rule('integer') ? 'integer' : 'number';
            break;
        case 'alternatives':
            out.oneOf = d.matches?.map((m) => toJsonSchema(m.schema));
            break;
        case 'string':
        case 'boolean':
            out.type = d.type;
            if (d.flags?.only) {
                out.enum = d.allow;
            }
            break;
    }
    if (d.flags?.description) {
        out.description = d.flags.description;
    }
    return out;
}

const fromJoi = (schema: Joi.Schema): JsonSchema => toJsonSchema(schema.describe() as Description);

/** A GET route's query parameters, from its handler's querySchema() (an object schema: one parameter per key). */
function queryParameters(schema: Joi.ObjectSchema | undefined): Array<Record<string, unknown>> {
    const d = schema ? toJsonSchema(schema.describe() as Description) : { properties: {} };
    const required = (d.required ?? []) as string[];
    return Object.entries(d.properties as Record<string, JsonSchema>).map(([name, s]) => {
        const { description, ...rest } = s;
        return { name, in: 'query', required: required.includes(name), schema: rest, ...(description !== undefined && { description }) };
    });
}

const errorSchema: JsonSchema = {
    type: 'object',
    required: ['statusCode', 'error', 'message', 'code'],
    properties: {
        statusCode: { type: 'integer' },
        error: { type: 'string' },
        message: { type: 'string' },
        code: { type: 'string', enum: Object.keys(catalogue) },
        details: { type: 'object' }
    }
};

const errorResponse = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } });

/** How a model route takes its key (lib/auth.ts), for Swagger UI's Authorize button: either one does. */
const securitySchemes = {
    bearer: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <key>' },
    apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' }
};

/** `keyed`: the model routes need a key (serve.yaml's auth.api_keys), which the document then declares. */
export function document(controller: Controller, serverUrl: string, keyed: boolean): JsonSchema {
    const paths: Record<string, Record<string, unknown>> = {};
    for (const [path, byMethod] of controller.routes) {
        for (const route of byMethod.values()) {
            const dep = route.deployment;
            const sig = dep.signature;
            const h = dep.handler;
            // a pipeline answers with its last step's answer
            const last = route.steps?.[route.steps.length - 1].deployment ?? dep;
            const lastSig = last.signature;
            const op: Record<string, unknown> = {
                operationId: `${route.app}.${dep.config.name}.${route.method.toLowerCase()}${path.replace(/[^A-Za-z0-9]+/g, '_')}`,
                summary: route.steps
                    ? `pipeline of application "${route.app}": ${route.steps.map((s) => s.deployment.config.name).join(' -> ')}`
                    : `${basename(dep.config.handler)} handler for deployment "${dep.config.name}" of application "${route.app}"`,
                tags: [route.app],
                responses: {
                    200: { description: 'Model outputs', content: { 'application/json': { schema: lastSig ? fromJoi(last.handler.responseSchema(lastSig)) : { type: 'object' } } } },
                    400: errorResponse('Malformed body, or inputs of the wrong shape or type'),
                    ...(keyed && { 401: errorResponse('No key, or not a valid one') }),
                    404: errorResponse('No such route'),
                    413: errorResponse('Body too large'),
                    500: errorResponse('The model failed'),
                    503: errorResponse('Queue full or no replica ready (see Retry-After)'),
                    504: errorResponse('No answer within request_timeout_s')
                }
            };
            const extras = sig ? h.openapi?.(sig) ?? {} : {};
            if (route.method === 'GET') {
                // its input is the query string
                op.parameters = queryParameters(h.querySchema?.());
            }
            else {
                // a multiplexed deployment's request names its model (lib/multiplex.ts)
                const parameters = [...extras.parameters ?? [], ...dep.multiplexer ? [modelIdParameter(dep.multiplexer)] : []];
                if (parameters.length) {
                    op.parameters = parameters;
                }
                op.requestBody = {
                    required: true,
                    content: {
                        'application/json': sig ? { schema: fromJoi(h.requestSchema(sig)), example: h.example(sig) } : { schema: { type: 'object' } },
                        ...extras.content
                    }
                };
            }
            // the call graph: the deployments this route's steps call (serve.yaml calls:)
            const calls = [...new Set((route.steps?.map((s) => s.deployment) ?? [dep]).flatMap((d) => d.config.calls.map((ref) => callTarget(d.app, ref))))];
            if (calls.length) {
                op['x-tsserve-calls'] = calls;
            }
            if (route.steps) {
                op['x-tsserve-pipeline'] = route.steps.map((s) => s.deployment.id);
            }
            if (keyed) {
                op.security = [{ bearer: [] }, { apiKey: [] }];
            }
            if (!sig) {
                op.description = 'The model signature is unknown until a replica of this deployment is ready.';
            }
            paths[path] = { ...paths[path], [route.method.toLowerCase()]: op };
        }
    }
    return {
        openapi: '3.0.3',
        info: { title: 'tsserve', version, description: 'Model endpoints declared in serve.yaml, and the Open Inference Protocol (V2) for the deployments of the tensor handler. Admin routes live under /-/.' },
        servers: [{ url: serverUrl }],
        paths: { ...paths, ...oipPaths(controller, keyed) },
        components: { schemas: { Error: errorSchema }, ...(keyed && { securitySchemes }) }
    };
}
