// Snapshots: a copy of what a deployment version was started from (its model file or folder, and its own handler
// module), which its replicas load, at their first start and at every restart. A model file overwritten on disk (a
// failed update, say) then reaches no running version: the old one keeps serving from its copy, however many of its
// replicas restart. One folder per server process under the system's temporary folder, one inside it per deployment
// version; a version's goes when its last replica is retired, and the whole folder when the process exits.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { alive } from './alive';
import { modelContent } from './model-files';
import { isModule } from '../handlers/registry';
import { log } from './log';
import type { DeploymentConfig, ModelConfig } from '../schemas/serve';

/** One version's copies, or, when they could not be made, what it loads instead: its files where they are. */
export interface Snapshot {
    /** the version's folder; absent when the copy failed */
    dir?: string;
    /** the model as the version's replicas load it: its path points into the snapshot */
    model: ModelConfig;
    /** the copy of the deployment's own handler module, when it has one that is CommonJS (.js, .cjs) */
    handler?: string;
}

/** What the process folders are called: `tsserve-snapshots-<pid>-<random>`; the pid tells whose one is. */
const prefix = 'tsserve-snapshots-';
const processFolder = new RegExp(`^${prefix}(\\d+)-`);

/** Copy-on-write where the filesystem can (btrfs, XFS, APFS): the copy then shares the original's blocks. */
const copy = (from: string, to: string): Promise<void> => fs.promises.copyFile(from, to, fs.constants.COPYFILE_FICLONE);

/** Removes a folder and what it holds, if there is one. */
async function rmDir(dir: string | undefined): Promise<void> {
    if (dir) {
        await fs.promises.rm(dir, { recursive: true, force: true });
    }
}

/** The snapshots of one server process, in a folder of `parent` (the system's temporary folder unless a test says). */
export class Snapshots {
    /** this process's folder, made with the first snapshot and removed with the last */
    private root?: string;
    /** snapshots being taken or held */
    private live = 0;

    constructor(private readonly parent = os.tmpdir()) {}

    /**
     * Copies what a version of deployment `id` is made of into a folder of its own. A model file is copied, and what
     * lies beside it is linked (not copied): whatever it refers to there (ONNX external data, TF.js weight shards)
     * still resolves. A model folder is copied file by file, as modelContent() lists it. If the copy fails (a full
     * disk, say), it says so, and the snapshot it resolves with names the files where they are. Each snapshot taken
     * is remove()d once, when its version's last replica is gone.
     */
    async take(id: string, version: string, config: DeploymentConfig): Promise<Snapshot> {
        this.live++;
        let dir: string | undefined;
        try {
            const root = this.root ??= this.open();
            await fs.promises.mkdir(path.join(root, id), { recursive: true });
            dir = await fs.promises.mkdtemp(path.join(root, id, `${version}-`));
            const into = path.join(dir, 'model');
            await fs.promises.mkdir(into);
            // A multiplexed deployment's folder of models is not copied (lib/model-folder.ts): its models come and go.
            const model = config.multiplex ? config.model : { ...config.model, path: await this.copyModel(config.model, into) };
            let handler: string | undefined;
            // A module loaded by require() only: a TypeScript one needs the loader it was written for, where it is.
            if (isModule(config.handler) && /\.c?js$/.test(config.handler)) {
                handler = path.join(dir, 'handler', path.basename(config.handler));
                await fs.promises.mkdir(path.dirname(handler));
                await copy(config.handler, handler);
            }
            return { dir, model, handler };
        }
        catch (err) {
            log.warn(`deployment ${id}: no snapshot of version ${version} (${(err as Error).message}); its replicas load ${config.model.path} itself, so a change there reaches them when they restart`);
            await rmDir(dir);
            return { model: config.model };
        }
    }

    /** Copies a model file or folder into `into`; resolves with the path its copy is loaded by. */
    private async copyModel(model: ModelConfig, into: string): Promise<string> {
        const from = model.path;
        if ((await fs.promises.stat(from)).isFile()) {
            const name = path.basename(from);
            const beside = (await fs.promises.readdir(path.dirname(from))).filter((n) => n !== name);
            await Promise.all([copy(from, path.join(into, name)), ...beside.map((n) => fs.promises.symlink(path.join(path.dirname(from), n), path.join(into, n)))]);
            return path.join(into, name);
        }
        for (const file of modelContent(model)) {
            const to = path.join(into, path.relative(from, file));
            await fs.promises.mkdir(path.dirname(to), { recursive: true });
            await copy(file, to);
        }
        return into;
    }

    /** Drops a snapshot (its version's last replica is gone); with the last one, this process's folder goes too. */
    async remove(snapshot: Snapshot): Promise<void> {
        await rmDir(snapshot.dir);
        if (--this.live === 0 && this.root) {
            this.cleanUp();
        }
    }

    /**
     * Makes this process's folder, and removes those that processes of this user left when they went without removing
     * theirs (killed with -9, say): copies of models left behind would fill the disk (or, on a tmpfs, memory) one
     * crash at a time.
     */
    private open(): string {
        for (const name of fs.readdirSync(this.parent)) {
            const pid = processFolder.exec(name)?.[1];
            const stale = path.join(this.parent, name);
            if (pid && !alive(Number(pid)) && fs.statSync(stale, { throwIfNoEntry: false })?.uid === process.getuid?.()) {
                fs.rmSync(stale, { recursive: true, force: true });
            }
        }
        const root = fs.mkdtempSync(path.join(this.parent, `${prefix}${process.pid}-`));
        process.once('exit', this.cleanUp);
        return root;
    }

    /** Removes this process's folder, at the last snapshot's removal or at exit (whatever a stop left behind). */
    private readonly cleanUp = (): void => {
        process.off('exit', this.cleanUp);
        fs.rmSync(this.root as string, { recursive: true, force: true });
        this.root = undefined;
    };
}

/** The snapshots of this server process. */
export const snapshots = new Snapshots();
