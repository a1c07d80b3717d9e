// Live config: watch serve.yaml, its model files and its key files, and apply each real change once, as a rolling
// update. Folders are watched, not files: editors save by renaming a temp file over the old one, and Kubernetes updates
// a ConfigMap by swapping a `..data` symlink, neither of which a watch on the file itself sees. Only an event on a path
// the config is made of schedules a look: serve.yaml, each link on the way to it or to a model, each model file, what
// a model folder holds (as deep as it is read), each handler module, each key file (auth:). A log or an editor's swap
// file written beside serve.yaml does nothing. In a look, what decides is the content (hashes), never timestamps.
import path from 'node:path';
import crypto from 'node:crypto';
import fs from 'node:fs';
import yaml from 'js-yaml';
import { ConfigError, contentDigest, digestKey, loadFile } from './config';
import { DigestCache } from './digests';
import { isModule } from '../handlers/registry';
import { configureLogging, log } from './log';
import { countReload, metrics } from './metrics';
import type { Changes, Controller } from './controller';
import type { AuthConfig, ServeConfig } from '../schemas/serve';
import type { ConfigStatus } from './status';

export interface ReloadResult {
    at: string;
    trigger: string;
    /** applied: the new file runs (see changes); invalid: it was refused and nothing changed; unchanged: same content */
    result: 'applied' | 'invalid' | 'unchanged';
    config_version: string;
    changes?: Changes;
    errors?: string[];
}

const debounceMs = 150;

/** How deep a model folder is read, below the folder itself (lib/model-files.ts, modelContent). */
const modelDepth = 2;

/** Links followed in a row before a path is taken as it is (Linux's own limit): a loop of links ends. */
const maxLinks = 40;

/** What the watcher looks out for, worked out afresh after each look (a link may point elsewhere since). */
export interface Targets {
    /** the files and links the config is made of, each at the real path of its folder (as events name them) */
    files: Set<string>;
    /** model folders (real paths): what changes inside them, as deep as they are read, changes a model */
    trees: string[];
    /** the folders to watch (real paths) */
    dirs: Set<string>;
}

export class ConfigWatcher {
    /** what the running version was made from: the file's text and its models' content */
    private fingerprint = '';
    /** the running config */
    private serving?: ServeConfig;
    private targets: Targets = { files: new Set(), trees: [], dirs: new Set() };
    /** one per folder of targets.dirs */
    private readonly watches: fs.FSWatcher[] = [];
    private closed = false;
    private timer?: NodeJS.Timeout;
    private running?: Promise<ReloadResult>;
    private next?: Promise<ReloadResult>;
    /** the first apply (start()), while it runs */
    private starting?: Promise<void>;
    reloads = 0;
    last?: ReloadResult;
    /**
     * The keys in force (lib/auth.ts): the last valid config's, from the moment it is accepted, before its deployments
     * roll out, so that a key rotation applies at once. A refused config leaves them as they were.
     */
    auth?: AuthConfig;

    /** `digests` reads the model files, each again only when it changed (lib/digests.ts). */
    constructor(readonly file: string, private readonly controller: Controller, readonly digests = new DigestCache()) {}

    /**
     * Applies the file for the first time: config, parsed from the file's bytes `text` (lib/config.ts, loadFile()). A
     * ConfigError here is the caller's to report. A reload asked for meanwhile (SIGHUP, POST /-/reload: the listener is
     * up before the models are) runs once it is over.
     */
    start(config: ServeConfig, text: Buffer = fs.readFileSync(this.file)): Promise<Changes> {
        const first = this.first(config, text);
        const over = () => {
            this.starting = undefined;
        };
        this.starting = first.then(over, over);
        return first;
    }

    private async first(config: ServeConfig, text: Buffer): Promise<Changes> {
        const digests = await modelDigests(config, this.digests);
        this.digests.sweep();
        this.fingerprint = fingerprint(text, digests, config);
        this.auth = config.auth;
        observe(config);
        const changes = await this.controller.apply(config, digests);
        this.serving = config;
        this.watch(config);
        // A save while the replicas started came before the watch: no event tells of it, so a look is made now.
        let now: Buffer | undefined;
        try {
            now = fs.readFileSync(this.file);
        }
        catch {
            // gone meanwhile: the look says so
        }
        if (!now?.equals(text)) {
            void this.reload('file change');
        }
        return changes;
    }

    /**
     * Watches the file and what a config is made of (its model paths, handler modules and key files), and the `extra` paths:
     * nothing without a valid config seen yet, nor after close().
     */
    private watch(config: ServeConfig | undefined, extra: string[] = []): void {
        if (this.closed || !config) {
            return;
        }
        const next = targets([this.file, ...sources(config), ...extra]);
        const same = sameTargets(next, this.targets);
        this.targets = next;
        if (same) {
            return;
        }
        // Node's own watch on each folder (inotify): an event names the entry, and one on no path of the config (a log
        // the server's output goes to, beside serve.yaml) costs a lookup. chokidar, used before, read and lstat-ed the
        // whole folder again on every such event: ~100 µs of the front's time per access-log line written there.
        const watches = [...next.dirs].flatMap((dir) => watchFolder(dir, (name) => {
            if (relevant(next, path.join(dir, name))) {
                clearTimeout(this.timer);
                this.timer = setTimeout(() => this.reload('file change'), debounceMs);
            }
        }));
        // the new watches are up before the old ones close: no event falls between them
        for (const old of this.watches.splice(0, this.watches.length, ...watches)) {
            old.close();
        }
    }

    /**
     * Reloads now (SIGHUP, POST /-/reload, a file change). Reloads never overlap: a call during one gets the next
     * run, which sees whatever changed meanwhile; calls during the same run share it.
     */
    reload(trigger: string): Promise<ReloadResult> {
        if (this.starting) {
            return this.starting.then(() => this.reload(trigger));
        }
        if (!this.running) {
            this.running = this.once(trigger).then((r) => {
                countReload(r.result);
                return r;
            }).finally(() => {
                this.running = undefined;
            });
            return this.running;
        }
        this.next ??= this.running.then(() => {
            this.next = undefined;
            return this.reload(trigger);
        });
        return this.next;
    }

    private async once(trigger: string): Promise<ReloadResult> {
        const at = new Date().toISOString();
        let config: ServeConfig;
        let digests: Map<string, string>;
        let print: string;
        try {
            // the bytes validated are the bytes fingerprinted: a save while the models are hashed is the next look's
            let text: Buffer;
            ({ config, text } = loadFile(this.file));
            digests = await modelDigests(config, this.digests);
            print = fingerprint(text, digests, config);
        }
        catch (err) {
            // a ConfigError, or a file gone between validation and hashing
            const issues = err instanceof ConfigError ? err.issues : [{ path: '', message: (err as Error).message }];
            const errors = issues.map(ConfigError.line);
            log.error(`reload (${trigger}) refused, the running version keeps serving:\n  - ${errors.join('\n  - ')}`);
            // The file's links may point elsewhere now, and a model it names may be yet to come: its arrival is a change.
            this.watch(this.serving, named(this.file));
            return this.record({ at, trigger, result: 'invalid', config_version: this.version, errors });
        }
        this.digests.sweep();
        this.watch(config);
        if (print === this.fingerprint) {
            if (this.last?.result !== 'invalid') {
                log.info(`reload (${trigger}): no change`);
                return { at, trigger, result: 'unchanged', config_version: this.version };
            }
            // The running version's file is back after a refused one: it is the file in force, and the refusal is over.
            log.info(`reload (${trigger}): the file is the running version again, nothing to change`);
            const unchanged = config.applications.flatMap((a) => a.deployments.map((d) => `${a.name}/${d.name}`));
            const changes: Changes = { added: [], removed: [], updated: [], replaced: [], unchanged, errors: [], notices: [] };
            return this.record({ at, trigger, result: 'applied', config_version: this.version, changes, errors: [] });
        }
        log.info(`reload (${trigger}): applying ${this.file}`);
        this.auth = config.auth;
        observe(config);
        const changes = await this.controller.apply(config, digests);
        this.fingerprint = print;
        this.serving = config;
        const summary = (['added', 'removed', 'replaced', 'updated'] as const).map((k) => `${k}: ${changes[k].join(', ') || '-'}`).join('; ');
        log.info(`reload applied (${summary})`);
        for (const line of [...changes.errors, ...changes.notices]) {
            log.warn(`reload: ${line}`);
        }
        return this.record({ at, trigger, result: 'applied', config_version: this.version, changes, errors: changes.errors });
    }

    private record(result: ReloadResult): ReloadResult {
        this.reloads++;
        this.last = result;
        return result;
    }

    get version(): string {
        return this.fingerprint.slice(0, 12);
    }

    status(): ConfigStatus {
        return { file: this.file, version: this.version, reloads: this.reloads, last_reload: this.last };
    }

    async close(): Promise<void> {
        this.closed = true;
        clearTimeout(this.timer);
        for (const w of this.watches.splice(0)) {
            w.close();
        }
    }
}

/** Applies a config's logging_config and metrics switch, from the moment it is accepted: a change needs no restart. */
function observe(config: ServeConfig): void {
    configureLogging(config.logging_config);
    metrics.on = config.metrics !== false;
}

/** Each deployment's content digest (by digestKey), read through the watcher's cache and shared with the controller. */
async function modelDigests(config: ServeConfig, files: DigestCache): Promise<Map<string, string>> {
    const digests = new Map<string, string>();
    for (const d of config.applications.flatMap((a) => a.deployments)) {
        digests.set(digestKey(d), await contentDigest(d, files));
    }
    return digests;
}

/**
 * What a running version is made of: the file's text (the bytes its config was parsed from), its models' content and
 * its keys (their digests).
 */
function fingerprint(text: Buffer, digests: Map<string, string>, config: ServeConfig): string {
    return crypto.createHash('sha256').update(text).update([...digests.values()].join())
        .update(JSON.stringify(config.auth ?? null)).digest('hex');
}

/** The key files of an auth section. */
const keyFiles = (auth: { api_keys?: { file?: unknown }; admin_keys?: { file?: unknown } } | undefined): unknown[] =>
    [auth?.api_keys?.file, auth?.admin_keys?.file];

/**
 * The model paths, handler modules and key files of a valid config (absolute: validation resolved them). A multiplexed
 * deployment's folder of models is its own to watch (lib/model-folder.ts): a model added there is no new config.
 */
const sources = (config: ServeConfig): string[] => [
    ...config.applications.flatMap((a) => a.deployments).flatMap((d) => [...d.multiplex ? [] : [d.model.path], d.handler]).filter(isModule),
    ...keyFiles(config.auth).filter((p): p is string => p !== undefined)
];

/**
 * The model paths, handler modules and key files a refused file names, read leniently (a built-in handler's name is
 * no path).
 */
function named(file: string): string[] {
    try {
        const doc = yaml.load(fs.readFileSync(file, 'utf8')) as {
            applications: Array<{ deployments: Array<{ model: { path: unknown }; handler: unknown }> }>;
            auth?: { api_keys?: { file?: unknown }; admin_keys?: { file?: unknown } };
        };
        const keys = keyFiles(doc.auth).filter((p): p is string => typeof p === 'string');
        return [...doc.applications.flatMap((a) => a.deployments).flatMap((d) => [d.model.path, d.handler])
            .filter((p): p is string => typeof p === 'string' && isModule(p)), ...keys].map((p) => path.resolve(path.dirname(file), p));
    }
    catch {
        // no YAML, or not of the form above: the running version's paths are watched still
        return [];
    }
}

/** The paths to look out for and the folders to watch, for these files and model folders (lib/model-folder.ts too). */
export function targets(paths: string[]): Targets {
    const t: Targets = { files: new Set(), trees: [], dirs: new Set() };
    const memo = new Map<string, string>();
    const tree = (dir: string, depth: number): void => {
        t.dirs.add(dir);
        let entries: fs.Dirent[] = [];
        try {
            entries = fs.readdirSync(dir, { withFileTypes: true });
        }
        catch {
            // gone since the look: its folder is watched, and what comes there next makes another look
        }
        for (const e of entries) {
            const p = path.join(dir, e.name);
            if (e.isDirectory()) {
                if (depth) {
                    tree(p, depth - 1);
                }
            }
            else if (e.isSymbolicLink()) {
                // a link out of the folder (to a Hugging Face cache's blobs, say): its target's folder is watched too
                t.files.add(resolve(p, t.files, memo));
            }
        }
    };
    for (const p of paths) {
        const real = resolve(p, t.files, memo);
        t.files.add(real);
        if (isDir(real)) {
            t.trees.push(real);
            tree(real, modelDepth);
        }
    }
    // a folder that is not there (yet), or that a loop of links hides, cannot be watched
    for (const d of [...t.files].map((f) => path.dirname(f)).filter(isDir)) {
        t.dirs.add(d);
    }
    return t;
}

/** Whether two looks found the same files, model folders and folders to watch: a watch made for one serves the other. */
function sameTargets(a: Targets, b: Targets): boolean {
    const same = (x: Set<string>, y: Set<string>) => x.size === y.size && [...x].every((v) => y.has(v));
    return same(a.dirs, b.dirs) && same(a.files, b.files) && same(new Set(a.trees), new Set(b.trees));
}

/** Whether p is a folder, links followed: not when it is missing or a loop of links. */
function isDir(p: string): boolean {
    try {
        return fs.statSync(p).isDirectory();
    }
    catch {
        return false;
    }
}

/**
 * The real path of p (absolute). Each link met on the way, in any component, is added to links at the real path of
 * its folder: swapping one of them (Kubernetes' `..data`) changes what p names. A missing component ends the walk.
 */
function resolve(p: string, links: Set<string>, memo: Map<string, string>, hops = 0): string {
    const parent = path.dirname(p);
    const known = memo.get(p);
    if (parent === p || known !== undefined) {
        return known ?? p;
    }
    const dir = resolve(parent, links, memo, hops);
    const here = path.join(dir, path.basename(p));
    let target: string | undefined;
    try {
        target = fs.readlinkSync(here);
    }
    catch {
        // not a link, or not there
    }
    let real = here;
    if (target !== undefined && hops < maxLinks) {
        links.add(here);
        real = resolve(path.resolve(dir, target), links, memo, hops + 1);
    }
    memo.set(p, real);
    return real;
}

/** A watch on a folder that calls `event` with the entry each event names: none when the folder cannot be watched. */
export function watchFolder(dir: string, event: (name: string) => void): fs.FSWatcher[] {
    /* c8 ignore next - see below */
    const warn = (err: Error) => log.warn(`watching ${dir} for changes: ${err.message}`);
    try {
        // inotify names the entry of every event (Node's null is for platforms without one)
        return [fs.watch(dir, (_type, name) => event(String(name))).on('error', warn)];
    }
    /* c8 ignore next 5 - the file system's own failures (the folder gone since the look, no inotify watch left), which
       no test can time or cause: what can be watched still is */
    catch (err) {
        warn(err as Error);
        return [];
    }
}

/**
 * Whether p is on what the config is made of: one of its files (a model folder is one: its deletion is seen from the
 * folder above), or what a model folder holds, as deep as it is read.
 */
export function relevant(t: Targets, p: string): boolean {
    return t.files.has(p) || t.trees.some((root) => {
        const rel = path.relative(root, p);
        const below = rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
        // a file as deep as the folder is read, a folder one level less (what it holds is not read)
        return below && rel.split(path.sep).length + (isDir(p) ? 1 : 0) <= modelDepth + 1;
    });
}
