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

/** Ray Serve's logging_config: at the top level (defaults below) and per deployment (each field it sets wins). */
export const logLevels = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'] as const;
const loggingFields = {
    encoding: Joi.string().valid('TEXT', 'JSON').insensitive().uppercase()
        .description('TEXT (human-readable) or JSON (one object a line); default: TEXT when stdout is a terminal, else JSON'),
    log_level: Joi.string().valid(...logLevels).insensitive().uppercase().description('the least severe level logged'),
    enable_access_log: Joi.boolean().description('one line per request')
};
export const loggingConfig = Joi.object(loggingFields);

/**
 * Ray Serve's autoscaling_config, its field names and defaults (lib/autoscaler.ts applies it). `maxReplicas` is
 * max_replicas' default: 1 as in Ray, 100 under `num_replicas: auto` (Ray's shorthand).
 */
export const aggregationFunctions = ['mean', 'max', 'min'] as const;
const seconds = (min: number) => Joi.number().min(min).max(86400);
export const autoscalingConfig = (maxReplicas: number) => Joi.object({
    min_replicas: Joi.number().integer().min(0).max(Joi.ref('max_replicas')).default(1)
        .description('the fewest replicas; 0 lets the deployment scale to zero')
        .messages({ 'number.max': '{{#label}} must be less than or equal to max_replicas' }),
    max_replicas: Joi.number().integer().min(1).max(256).default(maxReplicas),
    initial_replicas: Joi.number().integer().min(Joi.ref('min_replicas')).max(Joi.ref('max_replicas'))
        .description('replicas started with the deployment; default: min_replicas')
        .messages({ 'number.min': '{{#label}} must be between min_replicas and max_replicas', 'number.max': '{{#label}} must be between min_replicas and max_replicas' }),
    target_ongoing_requests: Joi.number().greater(0).max(100000).default(2)
        .description('ongoing requests per replica (queued at the deployment and in flight) that the autoscaler aims at'),
    upscale_delay_s: seconds(0).default(30),
    downscale_delay_s: seconds(0).default(600),
    downscale_to_zero_delay_s: seconds(0).description('the delay from 1 replica to 0; default: downscale_delay_s'),
    upscaling_factor: Joi.number().greater(0).max(100).default(1),
    downscaling_factor: Joi.number().greater(0).max(100).default(1),
    metrics_interval_s: seconds(0.01).default(10).description('how often the ongoing requests are sampled and a decision made'),
    look_back_period_s: seconds(0.01).default(30).description('the window the samples are aggregated over'),
    aggregation_function: Joi.string().valid(...aggregationFunctions).default('mean')
});

/** Ray Serve's model multiplexing: how many of the folder's models a replica holds at once (Ray's name and default). */
export const multiplex = Joi.object({
    max_num_models_per_replica: Joi.number().integer().min(1).max(1024).default(3)
        .description('models a replica holds at once; loading one more evicts its least recently used (max_models_per_replica is taken for it too)')
}).rename('max_models_per_replica', 'max_num_models_per_replica');

/** num_replicas: a number and autoscaling_config exclude each other; with autoscaling_config it reads auto, else defaults to 1. */
function replicaCount(d: { num_replicas?: number | 'auto'; autoscaling_config?: object }, helpers: Joi.CustomHelpers): unknown {
    if (typeof d.num_replicas === 'number' && d.autoscaling_config) {
        return helpers.error('deployment.replicas', {}, (helpers.state.localize as (path: Array<string | number>) => Joi.State)([...helpers.state.path as Array<string | number>, 'num_replicas']));
    }
    d.num_replicas = d.autoscaling_config ? 'auto' : d.num_replicas ?? 1;
    return d;
}

/** A deployment named from another: `name` in the same application, or `application/name`. */
const deploymentRef = Joi.string().pattern(/^([A-Za-z0-9][A-Za-z0-9_.-]{0,63}\/)?[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/)
    .messages({ 'string.pattern.base': '{{#label}} must name a deployment: "name" in the same application, or "application/name"' });

export const deployment = Joi.object({
    name: name.required(),
    handler: handler.default('tensor'),
    options: handlerOptions.description('the handler\'s options; see schemas/<handler>.ts'),
    ingress: Joi.boolean().default(false),
    model_name: name.description('its name in the Open Inference Protocol (/v2/models/{model_name}); by default the application\'s name when the application has one deployment, else application.deployment'),
    model: model.required(),
    multiplex: multiplex.description('many models of one kind in this deployment: model.path is then a folder holding one model an entry (<id>.onnx, or a folder <id>/), each request naming its model id (lib/multiplex.ts)'),
    // Its default (1) is set below, where an autoscaling_config is known to be absent.
    num_replicas: Joi.number().integer().min(1).max(256).allow('auto').description('a fixed count, or auto (autoscaling with Ray\'s defaults for auto)'),
    autoscaling_config: Joi.when('num_replicas', { is: 'auto', then: autoscalingConfig(100).default(), otherwise: autoscalingConfig(1) }),
    max_ongoing_requests: Joi.number().integer().min(1).max(100000).default(64)
        .description('requests (not rows) a replica may hold at once, across its batches'),
    max_queued_requests: Joi.number().integer().min(0).max(1000000).default(256)
        .description('requests waiting in the deployment queue; beyond this: 503 with Retry-After'),
    batching: batching.default(),
    resources: resources.default(),
    in_process: Joi.boolean().default(false)
        .description('run the replicas in the front process rather than each in its own (lib/in-process.ts): no hop to a process, for small trusted models; a crash of the model or handler then takes tsserve down, and a hung batch cannot be killed'),
    graceful_shutdown_timeout_s: Joi.number().min(0).max(3600).default(20),
    health_check_period_s: Joi.number().min(0.1).max(3600).default(10),
    health_check_timeout_s: Joi.number().min(0.1).max(3600).default(30),
    user_config: Joi.object().unknown(true).default({}),
    calls: Joi.array().items(deploymentRef).unique().default([])
        .description('the deployments its handler calls (ctx.deployment(name).call(body)): a deployment of its own application by name, or another application\'s as application/deployment; a cycle is refused'),
    logging_config: loggingConfig.description('overrides the top level\'s logging_config, field by field; applied in place')
}).custom(replicaCount).messages({
    'deployment.replicas': '{{#label}} and autoscaling_config cannot both be set: num_replicas fixes the count, autoscaling_config lets it change (num_replicas: auto with autoscaling_config is allowed)'
});

/**
 * One step of a pipeline route: a deployment of the application, and optionally the body it is sent, written as a
 * template over the previous step's answer ("$" is the whole answer, "$.a.b[0]" a part of it; lib/pipeline.ts).
 */
export const pipelineStep = Joi.alternatives(name, Joi.object({
    deployment: name.required(),
    input: Joi.any().description('the body sent to this step: a template over the previous step\'s answer; default: that answer as it is')
}));

export const route = Joi.object({
    path: urlPath.default('/predict'),
    method: Joi.string().valid('GET', 'POST', 'PUT').insensitive().uppercase().default('POST')
        .description('GET takes its input from the query string, for a handler that declares how (the text handler: ?text=...)'),
    deployment: name,
    pipeline: Joi.array().items(pipelineStep).min(2)
        .description('deployments of the application run in turn, each step\'s answer the next step\'s body (Triton\'s ensemble)')
}).xor('deployment', 'pipeline').messages({
    'object.missing': '{{#label}} must name a deployment, or a pipeline of deployments',
    'object.xor': '{{#label}} takes deployment or pipeline, not both'
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
    logging_config: Joi.object({ ...loggingFields, log_level: loggingFields.log_level.default('INFO'), enable_access_log: loggingFields.enable_access_log.default(true) }).default(),
    metrics: Joi.boolean().default(true).description('GET /metrics and the counting behind it; false turns both off'),
    max_cpus: Joi.number().integer().min(1).max(65536)
        .description('the CPUs (resources.cpus) that replicas may take together; the autoscaler grows no further. Default: the machine\'s cores, or what the configured replicas take if more'),
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
    /** its name in the Open Inference Protocol, when set (lib/oip.ts, modelName) */
    model_name?: string;
    model: ModelConfig;
    /** set: model.path is a folder of models of one kind, each request naming one (lib/multiplex.ts) */
    multiplex?: MultiplexConfig;
    /** 'auto' exactly when autoscaling_config is set */
    num_replicas: number | 'auto';
    autoscaling_config?: AutoscalingConfig;
    max_ongoing_requests: number;
    max_queued_requests: number;
    batching: { max_batch_size: number; batch_wait_timeout_s: number };
    resources: { cpus: number; gpus: number };
    /** its replicas run in the front process (lib/in-process.ts) */
    in_process: boolean;
    graceful_shutdown_timeout_s: number;
    health_check_period_s: number;
    health_check_timeout_s: number;
    user_config: Record<string, unknown>;
    /** the deployments its handler may call: `name` (its own application's) or `application/name` */
    calls: string[];
    /** once loaded: the top level's, with the deployment's own fields over it (lib/config.ts) */
    logging_config?: LoggingConfig;
}

/** Ray Serve's model multiplexing settings, defaults filled in (schemas: multiplex). */
export interface MultiplexConfig {
    max_num_models_per_replica: number;
}

export interface LoggingConfig {
    /** absent: TEXT when stdout is a terminal, else JSON */
    encoding?: 'TEXT' | 'JSON';
    log_level?: typeof logLevels[number];
    enable_access_log?: boolean;
}

/** Ray Serve's autoscaling_config, defaults filled in (schemas: autoscalingConfig). */
export interface AutoscalingConfig {
    min_replicas: number;
    max_replicas: number;
    initial_replicas?: number;
    target_ongoing_requests: number;
    upscale_delay_s: number;
    downscale_delay_s: number;
    downscale_to_zero_delay_s?: number;
    upscaling_factor: number;
    downscaling_factor: number;
    metrics_interval_s: number;
    look_back_period_s: number;
    aggregation_function: typeof aggregationFunctions[number];
}

/** A pipeline step, its template (if any) over the previous step's answer. */
export type PipelineStep = string | { deployment: string; input?: unknown };

/** A route: to one deployment, or to a pipeline of them (exactly one of the two). */
export interface RouteConfig {
    path: string;
    method: 'GET' | 'POST' | 'PUT';
    deployment?: string;
    pipeline?: PipelineStep[];
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
    /** once loaded, log_level and enable_access_log are set */
    logging_config?: LoggingConfig;
    /** false: no /metrics and nothing counted */
    metrics?: boolean;
    /** absent: the machine's cores, or what the configured replicas take if more (lib/cpu-budget.ts) */
    max_cpus?: number;
    applications: ApplicationConfig[];
}
