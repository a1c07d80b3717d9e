// The folder of a multiplexed deployment's models (serve.yaml `multiplex:`; lib/multiplex.ts): one model an entry, a
// file `<id>.onnx` (runtime onnx) or a folder `<id>/` holding a model as lib/model-files.ts finds one (model.onnx,
// onnx/model.onnx, model.json, ...), the entry's name (less `.onnx`) being the model's id. An entry whose name starts
// with "." (an editor's or a copy's temporary file) and anything else that is no model are not models.
// Its listing carries each model's content hash (lib/digests.ts), and it is watched as lib/watcher.ts watches a model
// folder: a model added, removed or changed there is seen within moments, with no reload of serve.yaml and no replica
// restarted (lib/multiplex.ts applies the change).
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { DigestCache } from './digests';
import { candidates, modelContent, modelFile } from './model-files';
import { relevant, targets, watchFolder } from './watcher';
import type { ModelConfig } from '../schemas/serve';

/** One model of the folder: its id, where it lies (a file, or a model folder), and the hash of its content. */
export interface ModelRef {
    id: string;
    path: string;
    digest: string;
}

/** What a look at the folder found changed since the one before: ids added, ids removed, ids whose content changed. */
export interface FolderChange {
    added: string[];
    removed: string[];
    changed: string[];
}

/** Events are coalesced for this long before a look, as lib/watcher.ts does: a copy of many files is one change. */
const debounceMs = 150;

/**
 * The models a folder holds (id and path), in id order; throws why not when `model.path` is not a folder. Of two
 * entries with one id (`a.onnx` and `a/`), the first in that order is the model.
 */
export function folderModels(model: ModelConfig): Array<{ id: string; path: string }> {
    let entries: string[];
    try {
        entries = fs.readdirSync(model.path).sort();
    }
    catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new Error(code === 'ENOTDIR' ? `${model.path} is a file: a multiplexed deployment's model.path is a folder holding one model an entry`
            : `multiplexed model folder not found: ${model.path}`);
    }
    const found = new Map<string, string>();
    for (const name of entries.filter((n) => !n.startsWith('.'))) {
        const p = path.join(model.path, name);
        const stat = fs.statSync(p, { throwIfNoEntry: false });
        let id: string | undefined;
        if (stat?.isFile()) {
            id = model.runtime === 'onnx' && name.endsWith('.onnx') ? name.slice(0, -5) : undefined;
        }
        else if (stat?.isDirectory()) {
            try {
                modelFile({ ...model, path: p });
                id = name;
            }
            catch {
                // a folder that holds no model
            }
        }
        if (id !== undefined && !found.has(id)) {
            found.set(id, p);
        }
    }
    return [...found].map(([id, p]) => ({ id, path: p }));
}

/** Throws why a multiplexed deployment's folder cannot serve: it is missing, not a folder, or holds no model. */
export function checkModelFolder(model: ModelConfig): void {
    if (!folderModels(model).length) {
        const file = model.runtime === 'onnx' ? 'a file <id>.onnx, or ' : '';
        throw new Error(`multiplexed model folder ${model.path} holds no model (${file}a folder <id>/ holding ${candidates[model.runtime].join(' or ')})`);
    }
}

/** The ids of `after` not in `before`, of `before` not in `after`, and of both whose content differs. */
function diff(before: Map<string, ModelRef>, after: Map<string, ModelRef>): FolderChange {
    return {
        added: [...after.keys()].filter((id) => !before.has(id)),
        removed: [...before.keys()].filter((id) => !after.has(id)),
        changed: [...after.values()].filter((m) => before.has(m.id) && before.get(m.id)?.digest !== m.digest).map((m) => m.id)
    };
}

/** A multiplexed deployment's folder of models: its listing, read again on each change to it. */
export class ModelFolder {
    /** the models of the last look, by id, in id order */
    models = new Map<string, ModelRef>();
    /** each file's hash, read again only when the file changed */
    private readonly digests = new DigestCache();
    private watches: fs.FSWatcher[] = [];
    private timer?: NodeJS.Timeout;
    /** the look under way: looks never overlap */
    private looking: Promise<unknown> = Promise.resolve();
    private closed = false;

    /** `changed` hears of each look after the first that found a change. */
    constructor(private readonly model: ModelConfig, private readonly changed: (change: FolderChange) => void) {}

    /** The model of the lowest id, which a replica loads as it starts (lib/multiplex.ts); none in an empty folder. */
    get first(): ModelRef | undefined {
        return this.models.values().next().value;
    }

    /** Looks at the folder: its listing, each model's content hash; then watches it. Resolves with what changed. */
    look(): Promise<FolderChange> {
        const next = this.looking.then(() => this.read());
        this.looking = next;
        return next;
    }

    private async read(): Promise<FolderChange> {
        let listed: Array<{ id: string; path: string }> = [];
        try {
            listed = folderModels(this.model);
        }
        catch {
            // gone (or a file now): no model; the watch on the folder above sees it come back
        }
        const models = new Map<string, ModelRef>();
        for (const m of listed) {
            try {
                models.set(m.id, { ...m, digest: await this.digest(m.path) });
            }
            /* c8 ignore start - removed between the listing and its reading, a window no test can time: the event of
               its removal makes the next look */
            catch {
                // not a model this look
            }
            /* c8 ignore stop */
        }
        this.digests.sweep();
        const change = diff(this.models, models);
        this.models = models;
        this.watch();
        return change;
    }

    /** A model's content hash: the hash of each of its files (lib/model-files.ts, modelContent), by name. */
    private async digest(p: string): Promise<string> {
        const hash = crypto.createHash('sha256');
        for (const file of modelContent({ ...this.model, path: p })) {
            hash.update(path.relative(p, file)).update('\0').update(await this.digests.digest(file));
        }
        return hash.digest('hex');
    }

    /** Watches what the folder is made of, as lib/watcher.ts watches a model folder: an event there makes a look. */
    private watch(): void {
        if (this.closed) {
            return;
        }
        const t = targets([this.model.path]);
        const watches = [...t.dirs].flatMap((dir) => watchFolder(dir, (name) => {
            if (relevant(t, path.join(dir, name))) {
                clearTimeout(this.timer);
                this.timer = setTimeout(this.event, debounceMs);
            }
        }));
        // the new watches are up before the old ones close: no event falls between them
        for (const old of this.watches.splice(0, this.watches.length, ...watches)) {
            old.close();
        }
    }

    private readonly event = (): void => {
        void this.look().then((change) => {
            if (!this.closed && change.added.length + change.removed.length + change.changed.length) {
                this.changed(change);
            }
        });
    };

    /** Stops watching. */
    close(): void {
        this.closed = true;
        clearTimeout(this.timer);
        for (const w of this.watches.splice(0)) {
            w.close();
        }
    }
}
