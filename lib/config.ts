// Loads serve.yaml: parse (js-yaml), validate (schemas/serve), resolve paths, deep-freeze.
import { modelName } from './oip';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import yaml from 'js-yaml';
import * as Schemas from '../schemas/serve';
import { isBuiltin, isModule, registry } from '../handlers/registry';
import { callIssues } from './call-graph';
import { stepName, template } from './pipeline';
import { modelContent, modelFile } from './model-files';
import { checkModelFolder } from './model-folder';
import { DigestCache } from './digests';
import { substitute } from './env';
import { readKeys } from './auth';
import { configuredCpus } from './cpu-budget';
import type { ServeConfig, DeploymentConfig } from '../schemas/serve';

export interface ConfigIssue {
    /** `applications[0].deployments[1].batching.max_batch_size`, or '' for the whole file */
    path: string;
    message: string;
}

export class ConfigError extends Error {
    constructor(public readonly file: string, public readonly issues: ConfigIssue[]) {
        super(`Invalid config ${file}:\n` + issues.map((i) => `  - ${ConfigError.line(i)}`).join('\n'));
        this.name = 'ConfigError';
    }

    /** `path: message`, or the message alone for the whole file */
    static line(i: ConfigIssue): string {
        return `${i.path ? i.path + ': ' : ''}${i.message}`;
    }
}

/** The URL of a route: its application's prefix, then its own path. */
export function joinPath(prefix: string, path: string): string {
    return prefix === '/' ? path : prefix + path;
}

export function formatPath(parts: ReadonlyArray<string | number>): string {
    return parts.map((p, i) => typeof p === 'number' ? `[${p}]` : (i ? '.' : '') + p).join('');
}

function deepFreeze<T>(value: T): T {
    if (value && typeof value === 'object') {
        for (const v of Object.values(value)) {
            deepFreeze(v);
        }
        Object.freeze(value);
    }
    return value;
}

/**
 * Entries of a list that repeat an earlier entry's key. Each is reported at its own path, naming the earlier entry,
 * so that both are found in the file: `applications[2].name: "mlp" is also the name of applications[0]`.
 */
function repeats<T>(items: T[], key: (item: T) => string, at: (i: number) => Array<string | number>, what: string): ConfigIssue[] {
    const first = new Map<string, number>();
    const issues: ConfigIssue[] = [];
    items.forEach((item, i) => {
        const k = key(item);
        const earlier = first.get(k);
        if (earlier === undefined) {
            first.set(k, i);
        }
        else {
            issues.push({ path: formatPath(at(i)), message: `${k} is also ${what} of ${formatPath(at(earlier).slice(0, -1))}` });
        }
    });
    return issues;
}

/** Rules that span fields: names, prefixes and routes do not repeat; routes name existing deployments; an app has one ingress. */
function crossCheck(config: ServeConfig): ConfigIssue[] {
    const apps = config.applications;
    const issues: ConfigIssue[] = [
        ...repeats(apps, (app) => JSON.stringify(app.name), (a) => ['applications', a, 'name'], 'the name'),
        ...repeats(apps, (app) => JSON.stringify(app.route_prefix), (a) => ['applications', a, 'route_prefix'], 'the route_prefix'),
        ...apps.flatMap((app, a) => [
            ...repeats(app.deployments, (d) => JSON.stringify(d.name), (i) => ['applications', a, 'deployments', i, 'name'], 'the name'),
            ...repeats(app.routes ?? [], (r) => `${r.method} ${r.path}`, (i) => ['applications', a, 'routes', i, 'path'], 'the route')
        ])
    ];
    // Each deployment's name in the Open Inference Protocol (an explicit model_name, or the one made from the names),
    // once the names themselves are unique: a repeated name is the error to fix first.
    if (!issues.length) {
        const deployments = apps.flatMap((app, a) => app.deployments.map((d, i) => ({ v2: modelName(app.name, d, app.deployments.length), at: ['applications', a, 'deployments', i, d.model_name === undefined ? 'name' : 'model_name'] })));
        issues.push(...repeats(deployments, (d) => JSON.stringify(d.v2), (i) => deployments[i].at, 'the Open Inference Protocol model name'));
    }
    issues.push(...callIssues(config).map((i) => ({ path: formatPath(i.at), message: i.message })));
    const prefixes = new Set<string>();
    const urls = new Map<string, number>();
    apps.forEach((app, a) => {
        const names = new Set(app.deployments.map((d) => d.name));
        // An application whose prefix repeats another's is reported once, above, not again for each of its routes.
        const repeated = prefixes.has(app.route_prefix);
        prefixes.add(app.route_prefix);
        for (const r of app.routes ?? [{ path: '/predict', method: 'POST' }]) {
            const url = `${r.method} ${joinPath(app.route_prefix, r.path)}`;
            const other = urls.get(url) ?? a;
            if (other !== a && !repeated) {
                issues.push({ path: formatPath(['applications', a, 'route_prefix']), message: `route ${url} is also served by application "${apps[other].name}"` });
            }
            urls.set(url, a);
        }
        const ingress = app.deployments.filter((d) => d.ingress);
        if (app.routes) {
            app.routes.forEach((r, i) => {
                const steps = r.pipeline ? r.pipeline.map((step, k) => ({ name: stepName(step), at: ['pipeline', k, ...typeof step === 'string' ? [] : ['deployment']] })) : [{ name: r.deployment as string, at: ['deployment'] }];
                for (const step of steps) {
                    if (!names.has(step.name)) {
                        issues.push({ path: formatPath(['applications', a, 'routes', i, ...step.at]), message: `"${step.name}" is not a deployment of application "${app.name}" (expected one of: ${[...names].join(', ')})` });
                    }
                }
                r.pipeline?.forEach((step, k) => {
                    try {
                        template(typeof step === 'string' ? undefined : step.input);
                    }
                    catch (err) {
                        issues.push({ path: formatPath(['applications', a, 'routes', i, 'pipeline', k, 'input']), message: (err as Error).message });
                    }
                });
                const first = app.deployments.find((d) => d.name === steps[0].name);
                if (r.method === 'GET' && first && isBuiltin(first.handler) && !registry[first.handler].query) {
                    issues.push({ path: formatPath(['applications', a, 'routes', i, 'method']), message: `a GET route takes its input from the query string, and the ${first.handler} handler of "${first.name}" takes none (the text handler does: ?text=...)` });
                }
            });
        }
        else if (ingress.length > 1 || (ingress.length === 0 && app.deployments.length > 1)) {
            issues.push({ path: formatPath(['applications', a, 'deployments']), message: 'an application without "routes" needs exactly one deployment, or exactly one with "ingress: true"' });
        }
    });
    return issues;
}

/** How a config is loaded: `keys: false` leaves auth's key sources unread (their digests empty), for `tsserve k8s`. */
export interface LoadOptions {
    keys?: boolean;
}

/** Validates an already-parsed document; `base` is the folder that relative model paths resolve against. */
export function validate(doc: unknown, base: string, file = '<inline>', options: LoadOptions = {}): ServeConfig {
    // A copy: validation fills defaults and freezes, and the caller's document stays theirs.
    const { error, value } = Schemas.serve.validate(structuredClone(doc ?? {}), { abortEarly: false, convert: true });
    if (error) {
        throw new ConfigError(file, error.details.map((d) => ({ path: formatPath(d.path), message: d.message })));
    }
    const config = value as ServeConfig;
    const issues = crossCheck(config);
    config.applications.forEach((app, a) => app.deployments.forEach((d, i) => {
        d.logging_config = { ...config.logging_config, ...d.logging_config };
        d.model.path = path.resolve(base, d.model.path);
        try {
            // a multiplexed deployment's model.path is a folder of models (lib/model-folder.ts)
            if (d.multiplex) {
                checkModelFolder(d.model);
            }
            else {
                modelFile(d.model);
            }
        }
        catch (err) {
            issues.push({ path: formatPath(['applications', a, 'deployments', i, 'model', 'path']), message: (err as Error).message });
        }
        if (isModule(d.handler)) {
            d.handler = path.resolve(base, d.handler);
            if (!fs.statSync(d.handler, { throwIfNoEntry: false })?.isFile()) {
                issues.push({ path: formatPath(['applications', a, 'deployments', i, 'handler']), message: `handler module not found: ${d.handler}` });
            }
        }
    }));
    if (options.keys !== false) {
        issues.push(...readAuth(config, base));
    }
    if (config.max_cpus !== undefined && configuredCpus(config) > config.max_cpus) {
        issues.push({ path: 'max_cpus', message: `${config.max_cpus} CPUs are fewer than the ${configuredCpus(config)} that the configured replicas take (num_replicas, or initial_replicas, times resources.cpus)` });
    }
    if (issues.length) {
        throw new ConfigError(file, issues);
    }
    return deepFreeze(config);
}

/** Reads the keys that `auth:` names (its files relative to base) into their digests; an issue for each problem. */
function readAuth(config: ServeConfig, base: string): ConfigIssue[] {
    const issues: ConfigIssue[] = [];
    for (const which of ['api_keys', 'admin_keys'] as const) {
        const source = config.auth?.[which];
        if (source) {
            const written = source.file;
            if (written !== undefined) {
                source.file = path.resolve(base, written);
            }
            const { digests, problems } = readKeys(source, written);
            source.digests = digests;
            issues.push(...problems.map((message) => ({ path: formatPath(['auth', which, source.env === undefined ? 'file' : 'env']), message })));
        }
    }
    return issues;
}

export function parse(text: string, base: string, file = '<inline>', options: LoadOptions = {}): ServeConfig {
    let doc: unknown;
    try {
        doc = yaml.load(text, { filename: file });
    }
    catch (err) {
        throw new ConfigError(file, [{ path: '', message: `YAML syntax error: ${(err as Error).message}` }]);
    }
    const { value, issues } = substitute(doc);
    if (issues.length) {
        throw new ConfigError(file, issues.map((i) => ({ path: formatPath(i.at), message: i.message })));
    }
    return validate(value, base, file, options);
}

export function load(file: string, options: LoadOptions = {}): ServeConfig {
    return loadFile(file, options).config;
}

/**
 * load(), with the bytes the config was parsed from, read once: what a watcher takes for the running file is then
 * what was validated, not the file read again a moment later (a save in between would pass for applied).
 */
export function loadFile(file: string, options: LoadOptions = {}): { config: ServeConfig; text: Buffer } {
    const abs = path.resolve(file);
    let text: Buffer;
    try {
        text = fs.readFileSync(abs);
    }
    catch (err) {
        throw new ConfigError(abs, [{ path: '', message: `cannot read file: ${(err as Error).message}` }]);
    }
    return { config: parse(text.toString('utf8'), path.dirname(abs), abs, options), text };
}

/** JSON with sorted keys, so that the order fields were written in does not matter. */
function canonical(value: unknown): string {
    if (Array.isArray(value)) {
        return `[${value.map(canonical).join(',')}]`;
    }
    if (value && typeof value === 'object') {
        return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(',')}}`;
    }
    return JSON.stringify(value);
}

const sha256 = (data: string | Buffer): string => crypto.createHash('sha256').update(data).digest('hex');

/**
 * The content of a deployment's model (its file, or every file of its folder) and of its handler module when it
 * has its own, so that a file replaced in place is a new version. Each file is read through `files` (lib/digests.ts):
 * asynchronously, and only when it changed since that cache last read it. A multiplexed deployment's folder of models
 * is not part of its version: a model added, removed or changed there is served as it is (lib/model-folder.ts).
 */
export async function contentDigest(d: DeploymentConfig, files = new DigestCache()): Promise<string> {
    const hash = crypto.createHash('sha256');
    for (const file of [...d.multiplex ? [] : modelContent(d.model), ...(isModule(d.handler) ? [d.handler] : [])]) {
        hash.update(path.relative(d.model.path, file)).update('\0').update(await files.digest(file));
    }
    return hash.digest('hex');
}

/** The key of a deployment's content digest: what it is made of, not what it is called. */
export const digestKey = (d: DeploymentConfig): string => `${d.model.path}\0${d.handler}`;

/** A stable hash of one deployment's config and its content digest (contentDigest()): its version in status and in reloads. */
export function version(d: DeploymentConfig, modelDigest: string): string {
    return sha256(canonical(d) + modelDigest).slice(0, 12);
}
