// Live config: watch serve.yaml and its model files, and apply each real change once, as a rolling update.
// Folders are watched, not files: editors save by renaming a temp file over the old one, and Kubernetes updates a
// ConfigMap by swapping a `..data` symlink, neither of which a watch on the file itself sees. Any event in a
// watched folder schedules a look; what decides is the content (hashes), never timestamps.
import path from 'node:path';
import crypto from 'node:crypto';
import fs from 'node:fs';
import chokidar, { type FSWatcher } from 'chokidar';
import { ConfigError, contentDigest, digestKey, load } from './config';
import { modelContent } from './model-files';
import { isModule } from '../handlers/registry';
import { log } from './log';
import type { Changes, Controller } from './controller';
import type { ServeConfig } from '../schemas/serve';
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

export class ConfigWatcher {
    /** what the running version was made from: the file's text and its models' content */
    private fingerprint = '';
    private watcher?: FSWatcher;
    private timer?: NodeJS.Timeout;
    private running?: Promise<ReloadResult>;
    private next?: Promise<ReloadResult>;
    reloads = 0;
    last?: ReloadResult;

    constructor(readonly file: string, private readonly controller: Controller) {}

    /** Applies the file for the first time; a ConfigError here is the caller's to report. */
    async start(config: ServeConfig): Promise<Changes> {
        const digests = modelDigests(config);
        this.fingerprint = fingerprint(this.file, digests);
        const changes = await this.controller.apply(config, digests);
        this.watch(config);
        return changes;
    }

    private watch(config: ServeConfig): void {
        // Each file's own folder and, where it is a link, its target's folder (resolved afresh on every reload).
        // A model folder's files are watched through their own folders (it is read two levels deep).
        const files = [this.file, ...config.applications.flatMap((a) => a.deployments.flatMap((d) =>
            [d.model.path, ...modelContent(d.model), ...(isModule(d.handler) ? [d.handler] : [])]))];
        const dirs = [...new Set(files.flatMap((f) => [f, fs.realpathSync(f)]).map((f) => path.dirname(f)))];
        this.watcher?.close();
        this.watcher = chokidar.watch(dirs, { ignoreInitial: true, depth: 0, followSymlinks: false })
            .on('all', () => {
                clearTimeout(this.timer);
                this.timer = setTimeout(() => this.reload('file change'), debounceMs);
            });
    }

    /**
     * Reloads now (SIGHUP, POST /-/reload, a file change). Reloads never overlap: a call during one gets the next
     * run, which sees whatever changed meanwhile; calls during the same run share it.
     */
    reload(trigger: string): Promise<ReloadResult> {
        if (!this.running) {
            this.running = this.once(trigger).finally(() => {
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
            config = load(this.file);
            digests = modelDigests(config);
            print = fingerprint(this.file, digests);
        }
        catch (err) {
            /* c8 ignore next - only a file vanishing between validation and hashing throws anything but a ConfigError */
            const issues = err instanceof ConfigError ? err.issues : [{ path: '', message: (err as Error).message }];
            const errors = issues.map(ConfigError.line);
            log.error(`reload (${trigger}) refused, the running version keeps serving:\n  - ${errors.join('\n  - ')}`);
            return this.record({ at, trigger, result: 'invalid', config_version: this.version, errors });
        }
        if (print === this.fingerprint) {
            log.info(`reload (${trigger}): no change`);
            return { at, trigger, result: 'unchanged', config_version: this.version };
        }
        log.info(`reload (${trigger}): applying ${this.file}`);
        const changes = await this.controller.apply(config, digests);
        this.fingerprint = print;
        this.watch(config);
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
        clearTimeout(this.timer);
        await this.watcher?.close();
    }
}

/** Each model file's content hash, read once per look and shared with the controller. */
function modelDigests(config: ServeConfig): Map<string, string> {
    const deployments = config.applications.flatMap((a) => a.deployments);
    return new Map(deployments.map((d) => [digestKey(d), contentDigest(d)]));
}

/** What a running version is made of: the file's text and its models' content. */
function fingerprint(file: string, digests: Map<string, string>): string {
    return crypto.createHash('sha256').update(fs.readFileSync(file)).update([...digests.values()].join()).digest('hex');
}
