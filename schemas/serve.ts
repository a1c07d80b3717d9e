// The serve.yaml schema: the single source of truth for its fields and their defaults.
// Field names follow Ray Serve's config file wherever the concept is the same.
import Joi from 'joi';
import { builtinNames, registry, type BuiltinName } from '../handlers/registry';

const name = Joi.string().pattern(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/).max(64)
    .messages({ 'string.pattern.base': '{{#label}} must start with a letter or digit and hold only letters, digits, "_", "." and "-"' });

const urlPath = Joi.string().pattern(/^\/([A-Za-z0-9_.~-]+(\/[A-Za-z0-9_.~-]+)*)?$/)
    .messages({ 'string.pattern.base': '{{#label}} must be a URL path such as "/" or "/a/b" (letters, digits, "_", ".", "~", "-"; no trailing or double "/")' });

export const runtimes = ['onnx', 'tfjs'] as const;

export const model = Joi.object({
    runtime: Joi.string().valid(...runtimes).default('onnx'),
    path: Joi.string().required()
        .description('model file, or a folder holding model.onnx, onnx/model.onnx or (tfjs) model.json with tokenizer.json, config.json and preprocessor_config.json; relative to serve.yaml')
});

const handler = Joi.string().pattern(new RegExp(`^(${builtinNames.join('|')}|(\\.{1,2})?/.*\\.(js|cjs|ts))$`))
    .description('a built-in handler, or a module of your own (relative to serve.yaml)')
    .messages({ 'string.pattern.base': `{{#label}} must be one of ${builtinNames.join(', ')}, or the path of a handler module (./my_handler.js)` });

/** Each built-in handler's options schema, by its name; one without (tensor) and a module of your own take any object. */
const handlerOptions = Joi.when('handler', {
    switch: builtinNames.flatMap((is) => {
        const then = registry[is].options;
        return then ? [{ is, then: then.default() }] : [];
    }),
    otherwise: Joi.object().unknown(true).default({})
});

export const batching = Joi.object({
    max_batch_size: Joi.number().integer().min(1).max(65536).default(32)
        .description('rows per batch (the first dimension of every input)'),
    batch_wait_timeout_s: Joi.number().min(0).max(60).default(0.002)
        .description('longest a queued request waits for its batch to fill while every replica is busy')
});

export const resources = Joi.object({
    cpus: Joi.number().integer().min(1).max(256).default(1).description('ONNX Runtime intra-op threads per replica'),
    gpus: Joi.number().integer().min(0).max(16).default(0).description('> 0 asks for the CUDA execution provider')
});

export const deployment = Joi.object({
    name: name.required(),
    handler: handler.default('tensor'),
    options: handlerOptions.description('the handler\'s options; see schemas/<handler>.ts'),
    ingress: Joi.boolean().default(false),
    model: model.required(),
    num_replicas: Joi.number().integer().min(1).max(256).default(1),
    max_ongoing_requests: Joi.number().integer().min(1).max(100000).default(64)
        .description('requests (not rows) a replica may hold at once, across its batches'),
    max_queued_requests: Joi.number().integer().min(0).max(1000000).default(256)
        .description('requests waiting in the deployment queue; beyond this: 503 with Retry-After'),
    batching: batching.default(),
    resources: resources.default(),
    graceful_shutdown_timeout_s: Joi.number().min(0).max(3600).default(20),
    health_check_period_s: Joi.number().min(0.1).max(3600).default(10),
    health_check_timeout_s: Joi.number().min(0.1).max(3600).default(30),
    user_config: Joi.object().unknown(true).default({})
});

export const route = Joi.object({
    path: urlPath.default('/predict'),
    method: Joi.string().valid('POST', 'PUT').insensitive().uppercase().default('POST'),
    deployment: name.required()
});

export const application = Joi.object({
    name: name.required(),
    route_prefix: urlPath.default((parent: { name: string }) => `/${parent.name}`),
    // Names, prefixes and routes that must not repeat are checked across entries in lib/config.ts, which names both.
    deployments: Joi.array().items(deployment).min(1).required(),
    routes: Joi.array().items(route).min(1)
});

export const httpOptions = Joi.object({
    host: Joi.string().hostname().default('127.0.0.1'),
    port: Joi.number().port().default(8000),
    request_timeout_s: Joi.number().min(0.001).max(3600).default(30),
    max_body_size_mb: Joi.number().min(0.001).max(4096).default(16)
});

/** Where API keys come from: never serve.yaml itself (lib/auth.ts reads them). */
export const keySource = Joi.object({
    env: Joi.string().pattern(/^[A-Za-z_][A-Za-z0-9_]*$/)
        .description('an environment variable holding the keys, separated by commas or whitespace')
        .messages({ 'string.pattern.base': '{{#label}} must be the name of an environment variable (letters, digits, "_")' }),
    file: Joi.string().min(1)
        .description('a file holding the keys, one a line (sha256:<hex> for a hashed key; # comments); relative to serve.yaml')
}).xor('env', 'file').messages({
    'object.base': '{{#label}} must name an environment variable (env: VARIABLE) or a file (file: ./keys.txt) that holds the keys: keys are never written in serve.yaml itself',
    'object.missing': '{{#label}} must name an environment variable (env: VARIABLE) or a file (file: ./keys.txt)',
    'object.xor': '{{#label}} takes env or file, not both'
});

export const auth = Joi.object({
    api_keys: keySource.description('keys for the model routes (admin keys are taken there too), and for the admin routes unless admin_keys is set'),
    admin_keys: keySource.description('keys for the admin routes (/-/reload, /-/status)')
}).or('api_keys', 'admin_keys').messages({
    'object.missing': '{{#label}} must set api_keys, admin_keys or both (leave auth out for none)'
});

export const serve = Joi.object({
    http_options: httpOptions.default(),
    auth,
    applications: Joi.array().items(application).min(1).required()
});

export type Runtime = typeof runtimes[number];
/** a built-in handler, or the absolute path of a handler module once loaded */
export type HandlerName = BuiltinName | string;

export interface ModelConfig {
    runtime: Runtime;
    /** absolute once loaded */
    path: string;
}

export interface DeploymentConfig {
    name: string;
    handler: HandlerName;
    options: Record<string, unknown>;
    ingress: boolean;
    model: ModelConfig;
    num_replicas: number;
    max_ongoing_requests: number;
    max_queued_requests: number;
    batching: { max_batch_size: number; batch_wait_timeout_s: number };
    resources: { cpus: number; gpus: number };
    graceful_shutdown_timeout_s: number;
    health_check_period_s: number;
    health_check_timeout_s: number;
    user_config: Record<string, unknown>;
}

export interface RouteConfig {
    path: string;
    method: 'POST' | 'PUT';
    deployment: string;
}

export interface ApplicationConfig {
    name: string;
    route_prefix: string;
    deployments: DeploymentConfig[];
    routes?: RouteConfig[];
}

/** Where a set of keys comes from: exactly one of env and file. */
export interface KeySource {
    env?: string;
    /** absolute once loaded */
    file?: string;
    /** filled in once loaded: the SHA-256 of each key, as hex (lib/auth.ts); the keys themselves are never kept */
    digests: string[];
}

export interface AuthConfig {
    api_keys?: KeySource;
    admin_keys?: KeySource;
}

export interface ServeConfig {
    http_options: { host: string; port: number; request_timeout_s: number; max_body_size_mb: number };
    /** absent: every route is open */
    auth?: AuthConfig;
    applications: ApplicationConfig[];
}
