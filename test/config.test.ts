// serve.yaml loading: schema defaults and rules, cross-field checks, YAML and file errors, versions.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, contentDigest, load, parse, validate, version, type ConfigIssue } from '../lib/config';
import { fixtures } from './helpers';
import type { DeploymentConfig } from '../schemas/serve';

const dir = fixtures();
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

const mlp = path.join(dir, 'mlp.onnx');

/** A deployment's version, with its model's content digest (as the controller computes it). */
const versionOf = async (d: DeploymentConfig): Promise<string> => version(d, await contentDigest(d));

const minimalYaml = `applications:
  - name: mlp
    deployments:
      - name: model
        model: { path: ./mlp.onnx }
`;

type Doc = Record<string, any>;

/** A fresh minimal document: one app, one deployment, every other field defaulted. */
const minimal = (): Doc => ({ applications: [{ name: 'app', deployments: [{ name: 'model', model: { path: './mlp.onnx' } }] }] });

const deployment = (name: string, extra: Doc = {}): Doc => ({ name, model: { path: './mlp.onnx' }, ...extra });

/** The issues of the ConfigError that fn throws; fails the test when it throws nothing. */
function issuesOf(fn: () => unknown): ConfigIssue[] {
    try {
        fn();
    }
    catch (e) {
        if (e instanceof ConfigError) {
            return e.issues;
        }
        throw e;
    }
    throw new Error('expected a ConfigError, got a valid config');
}

t.test('a minimal file gets every default from the schema', async (t) => {
    const config = parse(minimalYaml, dir);
    t.strictSame(config.http_options, { host: '127.0.0.1', port: 8000, request_timeout_s: 30, max_body_size_mb: 16 });
    t.equal(config.applications.length, 1);
    const app = config.applications[0];
    t.equal(app.name, 'mlp');
    t.equal(app.route_prefix, '/mlp', 'route_prefix defaults to /<app name>');
    t.equal(app.routes, undefined, 'routes have no default');
    t.strictSame(app.deployments[0], {
        name: 'model',
        model: { path: mlp, runtime: 'onnx' },
        handler: 'tensor',
        options: {},
        ingress: false,
        num_replicas: 1,
        max_ongoing_requests: 64,
        max_queued_requests: 256,
        batching: { max_batch_size: 32, batch_wait_timeout_s: 0.002 },
        resources: { cpus: 1, gpus: 0 },
        in_process: false,
        graceful_shutdown_timeout_s: 20,
        health_check_period_s: 10,
        health_check_timeout_s: 30,
        user_config: {},
        calls: [],
        logging_config: { log_level: 'INFO', enable_access_log: true }
    });
    t.strictSame(config.logging_config, { log_level: 'INFO', enable_access_log: true }, 'logging_config: INFO, access log on; encoding by the terminal');
    t.equal(config.metrics, true, 'metrics on');
});

t.test('logging_config: a deployment\'s own fields over the top level\'s; Ray Serve\'s names, any case', async (t) => {
    const doc = minimal();
    doc.logging_config = { encoding: 'text', log_level: 'warning' };
    doc.applications[0].deployments[0].logging_config = { log_level: 'DEBUG', enable_access_log: false };
    const config = validate(doc, dir);
    t.strictSame(config.logging_config, { encoding: 'TEXT', log_level: 'WARNING', enable_access_log: true });
    t.strictSame(config.applications[0].deployments[0].logging_config, { encoding: 'TEXT', log_level: 'DEBUG', enable_access_log: false });
    doc.logging_config = { encoding: 'XML', log_level: 'LOUD' };
    const e = t.throws(() => validate(doc, dir)) as ConfigError;
    t.match(e.issues, [{ path: 'logging_config.encoding' }, { path: 'logging_config.log_level' }]);
});

t.test('route defaults: path /predict, method POST; methods are case-insensitive', async (t) => {
    const doc = minimal();
    doc.applications[0].routes = [{ deployment: 'model' }, { path: '/other', method: 'put', deployment: 'model' }];
    const { routes } = validate(doc, dir).applications[0];
    t.strictSame(routes, [
        { deployment: 'model', path: '/predict', method: 'POST' },
        { path: '/other', method: 'PUT', deployment: 'model' }
    ]);
});

t.test('values at the edges of every range are accepted as written', async (t) => {
    const doc = minimal();
    doc.http_options = { host: 'localhost', port: 0, request_timeout_s: 0.001, max_body_size_mb: 4096 };
    const name = 'a'.repeat(64);
    doc.applications[0] = {
        name: '0a_b.c-d', route_prefix: '/', deployments: [deployment(name, {
            num_replicas: 256, max_ongoing_requests: 100000, max_queued_requests: 0,
            batching: { max_batch_size: 65536, batch_wait_timeout_s: 60 }, resources: { cpus: 256, gpus: 16 },
            graceful_shutdown_timeout_s: 0, health_check_period_s: 0.1, health_check_timeout_s: 3600,
            user_config: { anything: [1, { deep: true }] }
        })]
    };
    doc.applications.push({
        name: 'b', route_prefix: '/x.y/z_~-', deployments: [deployment('m', {
            num_replicas: 1, max_ongoing_requests: 1, max_queued_requests: 1000000,
            batching: { max_batch_size: 1, batch_wait_timeout_s: 0 }, resources: { cpus: 1, gpus: 0 },
            graceful_shutdown_timeout_s: 3600, health_check_period_s: 3600, health_check_timeout_s: 0.1
        })]
    });
    const config = validate(doc, dir);
    t.strictSame(config.http_options, doc.http_options);
    const [a, b] = config.applications;
    t.equal(a.name, '0a_b.c-d');
    t.equal(a.route_prefix, '/');
    t.equal(a.deployments[0].name, name);
    t.has(a.deployments[0], {
        num_replicas: 256, max_ongoing_requests: 100000, max_queued_requests: 0,
        batching: { max_batch_size: 65536, batch_wait_timeout_s: 60 }, resources: { cpus: 256, gpus: 16 },
        graceful_shutdown_timeout_s: 0, health_check_period_s: 0.1, health_check_timeout_s: 3600
    });
    t.strictSame(a.deployments[0].user_config, { anything: [1, { deep: true }] });
    t.equal(b.route_prefix, '/x.y/z_~-');
    t.has(b.deployments[0], {
        num_replicas: 1, max_ongoing_requests: 1, max_queued_requests: 1000000,
        batching: { max_batch_size: 1, batch_wait_timeout_s: 0 }, graceful_shutdown_timeout_s: 3600,
        health_check_period_s: 3600, health_check_timeout_s: 0.1
    });
});

t.test('hosts: names and IP addresses are accepted', async (t) => {
    for (const host of ['0.0.0.0', '::1', 'serve.example.com']) {
        const doc = minimal();
        doc.http_options = { host };
        t.equal(validate(doc, dir).http_options.host, host);
    }
});

t.test('model paths resolve against baseDir; absolute paths stay as they are', async (t) => {
    const doc = minimal();
    doc.applications[0].deployments = [deployment('rel', { model: { path: 'sub/../mlp.onnx' } }), deployment('abs', { model: { path: mlp } })];
    doc.applications[0].routes = [{ deployment: 'rel' }];
    const config = validate(doc, dir);
    t.equal(config.applications[0].deployments[0].model.path, mlp);
    t.equal(config.applications[0].deployments[1].model.path, mlp);
    t.equal(doc.applications[0].deployments[0].model.path, 'sub/../mlp.onnx', 'the input document is left as it was');
    // else resolving against the cwd would pass too
    t.not(process.cwd(), dir);
});

t.test('the result is deep-frozen', async (t) => {
    const doc = minimal();
    doc.applications[0].deployments[0].user_config = { nested: { list: [1, 2] } };
    doc.applications[0].routes = [{ deployment: 'model' }];
    const config = validate(doc, dir);
    const app = config.applications[0];
    const d = app.deployments[0];
    const nested = d.user_config.nested as { list: number[] };
    const objects = {
        config, http_options: config.http_options, applications: config.applications, app, deployments: app.deployments,
        routes: app.routes, route: app.routes?.[0], deployment: d, model: d.model, batching: d.batching, resources: d.resources,
        user_config: d.user_config, nested, list: nested.list
    };
    for (const [name, o] of Object.entries(objects)) {
        t.ok(Object.isFrozen(o), `${name} is frozen`);
    }
    t.throws(() => {
        'use strict';
        (config.http_options as { port: number }).port = 1;
    }, TypeError);
    t.throws(() => {
        'use strict';
        (d.batching as { max_batch_size: number }).max_batch_size = 1;
    }, TypeError);
    t.throws(() => {
        'use strict';
        (config.applications as unknown[]).push({});
    }, TypeError);
    t.equal(config.http_options.port, 8000);
    t.equal(d.batching.max_batch_size, 32);
});

interface Rule {
    name: string;
    mutate(doc: Doc): void;
    path: string;
    message: RegExp;
}

const app0 = (doc: Doc): Doc => doc.applications[0];
const dep0 = (doc: Doc): Doc => doc.applications[0].deployments[0];
const D = 'applications[0].deployments[0]';

// One rule of schemas/serve.ts each; the doc is otherwise valid, so the rule's issue must be the only one.
const rules: Rule[] = [
    // top level
    { name: 'unknown top-level key', mutate: (d) => { d.applicaitons = []; }, path: 'applicaitons', message: /is not allowed/ },
    { name: 'applications required', mutate: (d) => { delete d.applications; }, path: 'applications', message: /"applications" is required/ },
    { name: 'applications is a list', mutate: (d) => { d.applications = { name: 'app' }; }, path: 'applications', message: /must be an array/ },
    { name: 'applications not empty', mutate: (d) => { d.applications = []; }, path: 'applications', message: /must contain at least 1 items/ },
    // http_options
    { name: 'http_options is an object', mutate: (d) => { d.http_options = 8000; }, path: 'http_options', message: /must be of type object/ },
    { name: 'unknown http_options key', mutate: (d) => { d.http_options = { prot: 80 }; }, path: 'http_options.prot', message: /is not allowed/ },
    { name: 'host is a hostname', mutate: (d) => { d.http_options = { host: 'not a host!' }; }, path: 'http_options.host', message: /must be a valid hostname/ },
    { name: 'host with an underscore', mutate: (d) => { d.http_options = { host: 'my_host' }; }, path: 'http_options.host', message: /must be a valid hostname/ },
    { name: 'host not empty', mutate: (d) => { d.http_options = { host: '' }; }, path: 'http_options.host', message: /is not allowed to be empty/ },
    { name: 'port is a number', mutate: (d) => { d.http_options = { port: 'http' }; }, path: 'http_options.port', message: /must be a number/ },
    { name: 'port below 0', mutate: (d) => { d.http_options = { port: -1 }; }, path: 'http_options.port', message: /must be a valid port/ },
    { name: 'port above 65535', mutate: (d) => { d.http_options = { port: 65536 }; }, path: 'http_options.port', message: /must be a valid port/ },
    { name: 'port is an integer', mutate: (d) => { d.http_options = { port: 80.5 }; }, path: 'http_options.port', message: /must be a valid port/ },
    { name: 'request_timeout_s min', mutate: (d) => { d.http_options = { request_timeout_s: 0 }; }, path: 'http_options.request_timeout_s', message: /greater than or equal to 0\.001/ },
    { name: 'request_timeout_s max', mutate: (d) => { d.http_options = { request_timeout_s: 3601 }; }, path: 'http_options.request_timeout_s', message: /less than or equal to 3600/ },
    { name: 'max_body_size_mb min', mutate: (d) => { d.http_options = { max_body_size_mb: 0 }; }, path: 'http_options.max_body_size_mb', message: /greater than or equal to 0\.001/ },
    { name: 'max_body_size_mb max', mutate: (d) => { d.http_options = { max_body_size_mb: 4097 }; }, path: 'http_options.max_body_size_mb', message: /less than or equal to 4096/ },
    // application
    { name: 'application is an object', mutate: (d) => { d.applications[0] = 'app'; }, path: 'applications[0]', message: /must be of type object/ },
    { name: 'unknown application key', mutate: (d) => { app0(d).replicas = 2; }, path: 'applications[0].replicas', message: /is not allowed/ },
    { name: 'application name required', mutate: (d) => { delete app0(d).name; }, path: 'applications[0].name', message: /is required/ },
    { name: 'application name is a string', mutate: (d) => { app0(d).name = 7; }, path: 'applications[0].name', message: /must be a string/ },
    { name: 'application name pattern: leading "-"', mutate: (d) => { app0(d).name = '-app'; }, path: 'applications[0].name', message: /must start with a letter or digit/ },
    { name: 'application name pattern: "/"', mutate: (d) => { app0(d).name = 'a/b'; }, path: 'applications[0].name', message: /hold only letters, digits/ },
    { name: 'application name pattern: space', mutate: (d) => { app0(d).name = 'my app'; }, path: 'applications[0].name', message: /hold only letters, digits/ },
    { name: 'application name max 64', mutate: (d) => { app0(d).name = 'a'.repeat(65); }, path: 'applications[0].name', message: /less than or equal to 64 characters/ },
    { name: 'route_prefix starts with /', mutate: (d) => { app0(d).route_prefix = 'app'; }, path: 'applications[0].route_prefix', message: /must be a URL path such as/ },
    { name: 'route_prefix without a query', mutate: (d) => { app0(d).route_prefix = '/app?x=1'; }, path: 'applications[0].route_prefix', message: /must be a URL path/ },
    { name: 'route_prefix without spaces', mutate: (d) => { app0(d).route_prefix = '/my app'; }, path: 'applications[0].route_prefix', message: /must be a URL path/ },
    { name: 'deployments required', mutate: (d) => { delete app0(d).deployments; }, path: 'applications[0].deployments', message: /is required/ },
    { name: 'deployments not empty', mutate: (d) => { app0(d).deployments = []; }, path: 'applications[0].deployments', message: /must contain at least 1 items/ },
    { name: 'deployments is a list', mutate: (d) => { app0(d).deployments = deployment('model'); }, path: 'applications[0].deployments', message: /must be an array/ },
    { name: 'routes not empty', mutate: (d) => { app0(d).routes = []; }, path: 'applications[0].routes', message: /must contain at least 1 items/ },
    // route
    { name: 'route deployment or pipeline required', mutate: (d) => { app0(d).routes = [{ path: '/p' }]; }, path: 'applications[0].routes[0]', message: /must name a deployment, or a pipeline of deployments/ },
    { name: 'route pipeline of two or more', mutate: (d) => { app0(d).routes = [{ pipeline: ['model'] }]; }, path: 'applications[0].routes[0].pipeline', message: /must contain at least 2 items/ },
    { name: 'deployment calls are names', mutate: (d) => { dep0(d).calls = ['a/b/c']; }, path: `${D}.calls[0]`, message: /must name a deployment: "name" in the same application, or "application\/name"/ },
    { name: 'route deployment is a name', mutate: (d) => { app0(d).routes = [{ deployment: '../model' }]; }, path: 'applications[0].routes[0].deployment', message: /must start with a letter or digit/ },
    { name: 'route path is a URL path', mutate: (d) => { app0(d).routes = [{ path: 'predict', deployment: 'model' }]; }, path: 'applications[0].routes[0].path', message: /must be a URL path such as/ },
    { name: 'route method GET, POST or PUT', mutate: (d) => { app0(d).routes = [{ method: 'PATCH', deployment: 'model' }]; }, path: 'applications[0].routes[0].method', message: /must be one of \[GET, POST, PUT\]/ },
    { name: 'unknown route key', mutate: (d) => { app0(d).routes = [{ deployment: 'model', verb: 'POST' }]; }, path: 'applications[0].routes[0].verb', message: /is not allowed/ },
    // deployment
    { name: 'unknown deployment key', mutate: (d) => { dep0(d).replica = 2; }, path: `${D}.replica`, message: /is not allowed/ },
    { name: 'deployment name required', mutate: (d) => { delete dep0(d).name; }, path: `${D}.name`, message: /is required/ },
    { name: 'deployment name pattern', mutate: (d) => { dep0(d).name = '_model'; }, path: `${D}.name`, message: /must start with a letter or digit/ },
    { name: 'deployment name max 64', mutate: (d) => { dep0(d).name = 'm'.repeat(65); }, path: `${D}.name`, message: /less than or equal to 64 characters/ },
    { name: 'handler valid', mutate: (d) => { dep0(d).handler = 'imagery'; }, path: `${D}.handler`, message: /must be one of tensor, text, image, audio, or the path of a handler module/ },
    { name: 'ingress is a boolean', mutate: (d) => { dep0(d).ingress = 'maybe'; }, path: `${D}.ingress`, message: /must be a boolean/ },
    { name: 'model required', mutate: (d) => { delete dep0(d).model; }, path: `${D}.model`, message: /is required/ },
    { name: 'model is an object', mutate: (d) => { dep0(d).model = './mlp.onnx'; }, path: `${D}.model`, message: /must be of type object/ },
    { name: 'model path required', mutate: (d) => { dep0(d).model = { runtime: 'onnx' }; }, path: `${D}.model.path`, message: /is required/ },
    { name: 'model path is a string', mutate: (d) => { dep0(d).model = { path: 3 }; }, path: `${D}.model.path`, message: /must be a string/ },
    { name: 'model runtime valid', mutate: (d) => { dep0(d).model.runtime = 'torch'; }, path: `${D}.model.runtime`, message: /must be one of \[onnx, tfjs\]/ },
    { name: 'unknown model key', mutate: (d) => { dep0(d).model.file = 'x'; }, path: `${D}.model.file`, message: /is not allowed/ },
    { name: 'num_replicas is a number', mutate: (d) => { dep0(d).num_replicas = 'two'; }, path: `${D}.num_replicas`, message: /must be a number/ },
    { name: 'num_replicas integer', mutate: (d) => { dep0(d).num_replicas = 1.5; }, path: `${D}.num_replicas`, message: /must be an integer/ },
    { name: 'num_replicas min', mutate: (d) => { dep0(d).num_replicas = 0; }, path: `${D}.num_replicas`, message: /greater than or equal to 1/ },
    { name: 'num_replicas max', mutate: (d) => { dep0(d).num_replicas = 257; }, path: `${D}.num_replicas`, message: /less than or equal to 256/ },
    { name: 'max_ongoing_requests integer', mutate: (d) => { dep0(d).max_ongoing_requests = 2.5; }, path: `${D}.max_ongoing_requests`, message: /must be an integer/ },
    { name: 'max_ongoing_requests min', mutate: (d) => { dep0(d).max_ongoing_requests = 0; }, path: `${D}.max_ongoing_requests`, message: /greater than or equal to 1/ },
    { name: 'max_ongoing_requests max', mutate: (d) => { dep0(d).max_ongoing_requests = 100001; }, path: `${D}.max_ongoing_requests`, message: /less than or equal to 100000/ },
    { name: 'max_queued_requests integer', mutate: (d) => { dep0(d).max_queued_requests = 0.5; }, path: `${D}.max_queued_requests`, message: /must be an integer/ },
    { name: 'max_queued_requests min', mutate: (d) => { dep0(d).max_queued_requests = -1; }, path: `${D}.max_queued_requests`, message: /greater than or equal to 0/ },
    { name: 'max_queued_requests max', mutate: (d) => { dep0(d).max_queued_requests = 1000001; }, path: `${D}.max_queued_requests`, message: /less than or equal to 1000000/ },
    { name: 'batching is an object', mutate: (d) => { dep0(d).batching = true; }, path: `${D}.batching`, message: /must be of type object/ },
    { name: 'unknown batching key', mutate: (d) => { dep0(d).batching = { max_batch: 4 }; }, path: `${D}.batching.max_batch`, message: /is not allowed/ },
    { name: 'max_batch_size integer', mutate: (d) => { dep0(d).batching = { max_batch_size: 1.5 }; }, path: `${D}.batching.max_batch_size`, message: /must be an integer/ },
    { name: 'max_batch_size min', mutate: (d) => { dep0(d).batching = { max_batch_size: 0 }; }, path: `${D}.batching.max_batch_size`, message: /greater than or equal to 1/ },
    { name: 'max_batch_size max', mutate: (d) => { dep0(d).batching = { max_batch_size: 65537 }; }, path: `${D}.batching.max_batch_size`, message: /less than or equal to 65536/ },
    { name: 'batch_wait_timeout_s is a number', mutate: (d) => { dep0(d).batching = { batch_wait_timeout_s: '2ms' }; }, path: `${D}.batching.batch_wait_timeout_s`, message: /must be a number/ },
    { name: 'batch_wait_timeout_s min', mutate: (d) => { dep0(d).batching = { batch_wait_timeout_s: -0.001 }; }, path: `${D}.batching.batch_wait_timeout_s`, message: /greater than or equal to 0/ },
    { name: 'batch_wait_timeout_s max', mutate: (d) => { dep0(d).batching = { batch_wait_timeout_s: 61 }; }, path: `${D}.batching.batch_wait_timeout_s`, message: /less than or equal to 60/ },
    { name: 'resources is an object', mutate: (d) => { dep0(d).resources = 4; }, path: `${D}.resources`, message: /must be of type object/ },
    { name: 'unknown resources key', mutate: (d) => { dep0(d).resources = { memory_mb: 512 }; }, path: `${D}.resources.memory_mb`, message: /is not allowed/ },
    { name: 'cpus integer', mutate: (d) => { dep0(d).resources = { cpus: 1.5 }; }, path: `${D}.resources.cpus`, message: /must be an integer/ },
    { name: 'cpus min', mutate: (d) => { dep0(d).resources = { cpus: 0 }; }, path: `${D}.resources.cpus`, message: /greater than or equal to 1/ },
    { name: 'cpus max', mutate: (d) => { dep0(d).resources = { cpus: 257 }; }, path: `${D}.resources.cpus`, message: /less than or equal to 256/ },
    { name: 'gpus integer', mutate: (d) => { dep0(d).resources = { gpus: 1.5 }; }, path: `${D}.resources.gpus`, message: /must be an integer/ },
    { name: 'gpus min', mutate: (d) => { dep0(d).resources = { gpus: -1 }; }, path: `${D}.resources.gpus`, message: /greater than or equal to 0/ },
    { name: 'gpus max', mutate: (d) => { dep0(d).resources = { gpus: 17 }; }, path: `${D}.resources.gpus`, message: /less than or equal to 16/ },
    { name: 'graceful_shutdown_timeout_s min', mutate: (d) => { dep0(d).graceful_shutdown_timeout_s = -1; }, path: `${D}.graceful_shutdown_timeout_s`, message: /greater than or equal to 0/ },
    { name: 'graceful_shutdown_timeout_s max', mutate: (d) => { dep0(d).graceful_shutdown_timeout_s = 3601; }, path: `${D}.graceful_shutdown_timeout_s`, message: /less than or equal to 3600/ },
    { name: 'health_check_period_s min', mutate: (d) => { dep0(d).health_check_period_s = 0.05; }, path: `${D}.health_check_period_s`, message: /greater than or equal to 0\.1/ },
    { name: 'health_check_period_s max', mutate: (d) => { dep0(d).health_check_period_s = 3601; }, path: `${D}.health_check_period_s`, message: /less than or equal to 3600/ },
    { name: 'health_check_timeout_s min', mutate: (d) => { dep0(d).health_check_timeout_s = 0; }, path: `${D}.health_check_timeout_s`, message: /greater than or equal to 0\.1/ },
    { name: 'health_check_timeout_s max', mutate: (d) => { dep0(d).health_check_timeout_s = 3601; }, path: `${D}.health_check_timeout_s`, message: /less than or equal to 3600/ },
    { name: 'user_config is an object', mutate: (d) => { dep0(d).user_config = 'k=v'; }, path: `${D}.user_config`, message: /must be of type object/ }
];

/** Breaks the minimal file by one rule; checks that this gives one issue, at the rule's path, with its message. */
function brokenAlone(t: Test, rule: Rule): ConfigIssue | undefined {
    const doc = minimal();
    rule.mutate(doc);
    const issues = issuesOf(() => validate(doc, dir));
    t.equal(issues.length, 1, `${rule.name}: one issue`, { issues });
    t.equal(issues[0]?.path, rule.path, `${rule.name}: path`);
    t.match(issues[0]?.message, rule.message, `${rule.name}: message`);
    return issues[0];
}

t.test('each schema rule, broken alone, gives one issue with its path', async (t) => {
    for (const rule of rules) {
        const issue = brokenAlone(t, rule);
        // joi labels each message with the same path
        if (rule.path !== '') {
            t.match(issue?.message, `"${rule.path}"`, `${rule.name}: message names the field`);
        }
    }
});

t.test('a name, prefix or route that repeats names its field and the earlier entry', async (t) => {
    const cases: Rule[] = [
        { name: 'application names unique', mutate: (d) => { d.applications.push({ name: 'app', route_prefix: '/other', deployments: [deployment('model')] }); }, path: 'applications[1].name', message: /^"app" is also the name of applications\[0\]$/ },
        { name: 'route_prefix unique', mutate: (d) => { d.applications.push({ name: 'other', route_prefix: '/x', deployments: [deployment('model')] }); app0(d).route_prefix = '/x'; }, path: 'applications[1].route_prefix', message: /^"\/x" is also the route_prefix of applications\[0\]$/ },
        { name: 'route_prefix unique against a default prefix', mutate: (d) => { d.applications.push({ name: 'other', route_prefix: '/app', deployments: [deployment('model')] }); }, path: 'applications[1].route_prefix', message: /^"\/app" is also the route_prefix of applications\[0\]$/ },
        { name: 'deployment names unique within an app', mutate: (d) => { app0(d).deployments.push(deployment('model')); app0(d).routes = [{ deployment: 'model' }]; }, path: 'applications[0].deployments[1].name', message: /^"model" is also the name of applications\[0\]\.deployments\[0\]$/ },
        { name: 'routes unique by path and method', mutate: (d) => { app0(d).routes = [{ deployment: 'model' }, { path: '/predict', method: 'post', deployment: 'model' }]; }, path: 'applications[0].routes[1].path', message: /^POST \/predict is also the route of applications\[0\]\.routes\[0\]$/ },
        {
            name: 'Open Inference Protocol model names unique: a model_name', mutate: (d) => { d.applications.push({ name: 'other', deployments: [{ ...deployment('model'), model_name: 'app' }] }); },
            path: 'applications[1].deployments[0].model_name', message: /^"app" is also the Open Inference Protocol model name of applications\[0\]\.deployments\[0\]$/
        },
        {
            name: 'Open Inference Protocol model names unique: made from the names', mutate: (d) => {
                app0(d).deployments.push(deployment('b'));
                app0(d).routes = [{ deployment: 'model' }];
                d.applications.push({ name: 'app.b', deployments: [deployment('model')] });
            },
            path: 'applications[1].deployments[0].name', message: /^"app\.b" is also the Open Inference Protocol model name of applications\[0\]\.deployments\[1\]$/
        },
    ];
    for (const rule of cases) {
        brokenAlone(t, rule);
    }
});

t.test('the same deployment name in two applications is fine', async (t) => {
    const doc = minimal();
    doc.applications.push({ name: 'other', deployments: [deployment('model')] });
    t.strictSame(validate(doc, dir).applications.map((a) => a.route_prefix), ['/app', '/other']);
});

t.test('two applications cannot serve the same URL', async (t) => {
    const doc = minimal();
    app0(doc).route_prefix = '/x';
    doc.applications.push({ name: 'other', route_prefix: '/x/', deployments: [deployment('model')] });
    t.same(issuesOf(() => validate(doc, dir)).map((i) => i.path), ['applications[1].route_prefix'], 'a trailing slash is refused');

    const clash = minimal();
    app0(clash).route_prefix = '/';
    app0(clash).routes = [{ path: '/b/predict', deployment: 'model' }];
    clash.applications.push({ name: 'other', route_prefix: '/b', deployments: [deployment('model')] });
    t.strictSame(issuesOf(() => validate(clash, dir)), [{ path: 'applications[1].route_prefix', message: 'route POST /b/predict is also served by application "app"' }]);
});

t.test('version() sees inside user_config, arrays included', async (t) => {
    const withList = (list: number[]) => validate({ ...minimal(), applications: [{ ...app0(minimal()), deployments: [{ ...deployment('model'), user_config: { list } }] }] }, dir);
    t.equal(await versionOf(withList([1, 2]).applications[0].deployments[0]), await versionOf(withList([1, 2]).applications[0].deployments[0]));
    t.not(await versionOf(withList([1, 2]).applications[0].deployments[0]), await versionOf(withList([2, 1]).applications[0].deployments[0]));
});

t.test('the same route path with two methods is fine', async (t) => {
    const doc = minimal();
    app0(doc).routes = [{ deployment: 'model' }, { method: 'PUT', deployment: 'model' }];
    t.strictSame(validate(doc, dir).applications[0].routes?.map((r) => r.method), ['POST', 'PUT']);
});

t.test('every schema error is reported at once', async (t) => {
    const doc = minimal();
    doc.http_options = { port: 'http' };
    dep0(doc).num_replicas = 0;
    dep0(doc).batching = { max_batch_size: 0 };
    app0(doc).deployments.push(deployment('second', { handler: 'x' }));
    app0(doc).routes = [{ path: 'predict', deployment: 'model' }];
    doc.applications.push({ name: 'other', route_prefix: '/other', deployments: [deployment('model', { ingress: 'no' })] });
    const issues = issuesOf(() => validate(doc, dir));
    t.strictSame(issues.map((i) => i.path), [
        'http_options.port',
        `${D}.num_replicas`,
        `${D}.batching.max_batch_size`,
        'applications[0].deployments[1].handler',
        'applications[0].routes[0].path',
        'applications[1].deployments[0].ingress'
    ]);
});

t.test('two invalid applications without route_prefix are not duplicates', async (t) => {
    const doc = minimal();
    dep0(doc).num_replicas = 0;
    doc.applications.push({ name: 'other', deployments: [deployment('model', { num_replicas: 0 })] });
    t.strictSame(issuesOf(() => validate(doc, dir)).map((i) => i.path), [`${D}.num_replicas`, 'applications[1].deployments[0].num_replicas']);
});

t.test('a route that names a missing deployment', async (t) => {
    const doc = minimal();
    app0(doc).deployments = [deployment('a'), deployment('b')];
    app0(doc).routes = [{ path: '/a', deployment: 'a' }, { path: '/c', deployment: 'c' }];
    t.strictSame(issuesOf(() => validate(doc, dir)), [{
        path: 'applications[0].routes[1].deployment',
        message: '"c" is not a deployment of application "app" (expected one of: a, b)'
    }]);
});

t.test('an application without routes needs one deployment or one ingress', async (t) => {
    const twoPlain = minimal();
    twoPlain.applications.push({ name: 'two', deployments: [deployment('a'), deployment('b')] });
    const issues = issuesOf(() => validate(twoPlain, dir));
    t.equal(issues.length, 1);
    t.equal(issues[0].path, 'applications[1].deployments');
    t.match(issues[0].message, /without "routes" needs exactly one deployment, or exactly one with "ingress: true"/);

    const twoIngress = minimal();
    app0(twoIngress).deployments = [deployment('a', { ingress: true }), deployment('b', { ingress: true })];
    t.strictSame(issuesOf(() => validate(twoIngress, dir)).map((i) => i.path), ['applications[0].deployments']);

    const oneIngress = minimal();
    app0(oneIngress).deployments = [deployment('a'), deployment('b', { ingress: true }), deployment('c')];
    t.equal(validate(oneIngress, dir).applications[0].deployments[1].ingress, true);

    const routed = minimal();
    app0(routed).deployments = [deployment('a'), deployment('b')];
    app0(routed).routes = [{ path: '/a', deployment: 'a' }, { path: '/b', deployment: 'b' }];
    t.equal(validate(routed, dir).applications[0].routes?.length, 2, 'routes make ingress unnecessary');

    const single = minimal();
    dep0(single).ingress = true;
    t.equal(validate(single, dir).applications[0].deployments[0].ingress, true);
});

t.test('a model file that does not exist', async (t) => {
    const doc = minimal();
    dep0(doc).model.path = './missing.onnx';
    t.strictSame(issuesOf(() => validate(doc, dir)), [{
        path: `${D}.model.path`,
        message: `model file or folder not found: ${path.join(dir, 'missing.onnx')}`
    }]);

    // indexes of app and deployment, and reported alongside a cross-check issue
    const two = minimal();
    two.applications.push({
        name: 'other', deployments: [deployment('a'), deployment('b', { model: { path: 'gone.onnx' } })],
        routes: [{ deployment: 'x' }]
    });
    t.strictSame(issuesOf(() => validate(two, dir)).map((i) => i.path), [
        'applications[1].routes[0].deployment',
        'applications[1].deployments[1].model.path'
    ]);
});

t.test('a model path that names a folder is not a model file', async (t) => {
    const doc = minimal();
    dep0(doc).model.path = '.';
    t.strictSame(issuesOf(() => validate(doc, dir)).map((i) => i.path), [`${D}.model.path`]);
});

t.test('YAML syntax errors', async (t) => {
    const text = 'http_options:\n  port: 1\n    host: x\n';
    const e = t.throws(() => parse(text, dir, 'bad.yaml')) as ConfigError;
    t.type(e, ConfigError);
    t.equal(e.file, 'bad.yaml');
    t.equal(e.issues.length, 1);
    t.equal(e.issues[0].path, '');
    t.match(e.issues[0].message, /^YAML syntax error: bad indentation .*"bad\.yaml" \(3:\d+\)/);
    t.match(e.issues[0].message, / 3 \| {5}host: x/, 'shows the offending line');

    t.strictSame(issuesOf(() => parse('applications:\n\t- x\n', dir)).map((i) => i.path), ['']);
    t.match(issuesOf(() => parse('a: 1\na: 2\n', dir))[0].message, /YAML syntax error: duplicated mapping key .*\(2:1\)/);
});

t.test('an empty file, a comment-only file and a non-mapping document', async (t) => {
    const required = [{ path: 'applications', message: '"applications" is required' }];
    t.strictSame(issuesOf(() => parse('', dir)), required);
    t.strictSame(issuesOf(() => parse('# nothing here\n', dir)), required);
    t.strictSame(issuesOf(() => validate(null, dir)), required);
    for (const text of ['just text\n', '- a\n- b\n', '42\n']) {
        const issues = issuesOf(() => parse(text, dir));
        t.equal(issues.length, 1, text);
        t.equal(issues[0].path, '', text);
        t.match(issues[0].message, /must be of type object/, text);
    }
});

t.test('load reads a file and resolves model paths against its folder', async (t) => {
    const sub = path.join(dir, 'conf');
    fs.mkdirSync(sub, { recursive: true });
    const file = path.join(sub, 'serve.yaml');
    fs.writeFileSync(file, minimalYaml.replace('./mlp.onnx', '../mlp.onnx'));
    const config = load(file);
    t.equal(config.applications[0].deployments[0].model.path, mlp);
    t.ok(Object.isFrozen(config.applications[0].deployments[0]));

    // errors name the absolute file
    const bad = path.join(sub, 'bad.yaml');
    fs.writeFileSync(bad, minimalYaml + '    routes: []\n');
    const e = t.throws(() => load(path.relative(process.cwd(), bad))) as ConfigError;
    t.type(e, ConfigError);
    t.equal(e.file, bad);
    t.strictSame(e.issues.map((i) => i.path), ['applications[0].routes']);
    t.match(e.message, `Invalid config ${bad}:`);
});

t.test('load of a file that cannot be read', async (t) => {
    const missing = path.join(dir, 'nope', 'serve.yaml');
    const e = t.throws(() => load(missing)) as ConfigError;
    t.type(e, ConfigError);
    t.equal(e.file, missing);
    t.equal(e.issues.length, 1);
    t.equal(e.issues[0].path, '');
    t.match(e.issues[0].message, /^cannot read file: ENOENT/);
    t.match(issuesOf(() => load(dir))[0].message, /^cannot read file: EISDIR/, 'a folder is not a file');
});

t.test('ConfigError.message lists every issue with its path', async (t) => {
    const doc = minimal();
    doc.http_options = { port: -5 };
    dep0(doc).num_replicas = 0;
    app0(doc).routes = [{ method: 'PATCH', deployment: 'model' }];
    const e = t.throws(() => validate(doc, dir, '/etc/serve.yaml')) as ConfigError;
    t.type(e, Error);
    t.equal(e.name, 'ConfigError');
    t.equal(e.issues.length, 3);
    t.equal(e.message, ['Invalid config /etc/serve.yaml:', ...e.issues.map((i) => `  - ${i.path}: ${i.message}`)].join('\n'));
    t.match(e.message, '  - http_options.port: "http_options.port" must be a valid port');
    t.match(e.message, `  - ${D}.num_replicas: `);
    t.match(e.message, '  - applications[0].routes[0].method: ');

    // whole-file issues have no path prefix; the default file name is <inline>
    const y = t.throws(() => parse('a: [', dir)) as ConfigError;
    t.match(y.message, /^Invalid config <inline>:\n {2}- YAML syntax error: /);
});

t.test('version() is stable for equal configs and changes with any field', async (t) => {
    const a = parse(minimalYaml, dir).applications[0].deployments[0];
    const b = parse(minimalYaml, dir).applications[0].deployments[0];
    t.match(await versionOf(a), /^[0-9a-f]{12}$/);
    t.equal(await versionOf(a), await versionOf(b));
    t.equal(await versionOf(a), await versionOf(load(writeConfig('v.yaml', minimalYaml)).applications[0].deployments[0]), 'same for load');
    const changed = async (edit: (d: Doc) => void) => {
        const doc = minimal();
        edit(dep0(doc));
        return versionOf(validate(doc, dir).applications[0].deployments[0]);
    };
    const base = await changed(() => {});
    t.equal(base, await changed(() => {}));
    const variants = {
        num_replicas: await changed((d) => { d.num_replicas = 2; }),
        batching: await changed((d) => { d.batching = { max_batch_size: 8 }; }),
        user_config: await changed((d) => { d.user_config = { threshold: 0.5 }; }),
        model: await changed((d) => { d.model.path = 'mlp2.onnx'; }),
        name: await changed((d) => { d.name = 'other'; })
    };
    for (const [field, v] of Object.entries(variants)) {
        t.not(v, base, `${field} changes the version`);
    }
    t.equal(new Set(Object.values(variants)).size, Object.keys(variants).length, 'each change gives its own version');
});

t.test('version() ignores the order fields are written in', async (t) => {
    const reordered = minimalYaml.replace('- name: model\n        model: { path: ./mlp.onnx }', '- model: { path: ./mlp.onnx }\n        name: model');
    t.not(reordered, minimalYaml);
    t.equal(await versionOf(parse(reordered, dir).applications[0].deployments[0]), await versionOf(parse(minimalYaml, dir).applications[0].deployments[0]));
    const explicit = minimalYaml.replace('model: { path: ./mlp.onnx }', 'num_replicas: 1\n        model: { path: ./mlp.onnx }');
    t.equal(await versionOf(parse(explicit, dir).applications[0].deployments[0]), await versionOf(parse(minimalYaml, dir).applications[0].deployments[0]), 'writing a default out');
});

t.test('validate does not freeze the caller\'s document', async (t) => {
    const doc = minimal();
    dep0(doc).user_config = { k: 1 };
    validate(doc, dir);
    t.notOk(Object.isFrozen(dep0(doc).user_config));
});

function writeConfig(name: string, text: string): string {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
}
