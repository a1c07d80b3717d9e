// A replica's cache of a multiplexed deployment's models (lib/multiplex.ts): each is loaded on its first use, and at
// most max_num_models_per_replica are held at once. Loading one more first evicts the least recently used, as Ray
// Serve does: the bound then holds while the new one loads, which is what bounds a replica's memory (a GPU's, say). A
// model whose content changed since it was loaded (its digest, lib/model-folder.ts) is loaded again on its next use.
// The worker (lib/worker.ts) runs one batch at a time, so loads never overlap.
import type { ModelRef } from './model-folder';

/** What the cache tells its supervisor after each change: what it holds now, most recently used first, and why. */
export interface CacheReport {
    held: string[];
    /** the model just loaded, and the seconds its load took */
    loaded?: { id: string; seconds: number };
    /** the models evicted to make room for it */
    evicted: string[];
}

interface Entry<T> {
    digest: string;
    value: T;
}

export class ModelCache<T> {
    /** in use order, the least recently used first: a Map keeps its insertion order, and a use moves an entry last */
    private readonly entries = new Map<string, Entry<T>>();

    /**
     * `load` loads a model, `release` frees one that leaves, `report` hears of each change. At most `max` models are
     * held.
     */
    constructor(private readonly max: number, private readonly load: (ref: ModelRef) => Promise<T>,
        private readonly release: (value: T) => void, private readonly report: (report: CacheReport) => void) {}

    /** the ids held, the most recently used first */
    get held(): string[] {
        return [...this.entries.keys()].reverse();
    }

    /** the models held */
    values(): T[] {
        return [...this.entries.values()].map((e) => e.value);
    }

    /**
     * Holds `value`, loaded as `ref` by someone else: the model a replica starts with, whose load is part of the
     * replica's start (not counted as one of the cache's).
     */
    seed(ref: ModelRef, value: T): void {
        this.entries.set(ref.id, { digest: ref.digest, value });
        this.report({ held: this.held, evicted: [] });
    }

    /**
     * The model `ref` names: the one held, now the most recently used, or else loaded (evicting the least recently
     * used first when the cache is full). Rejects with the load's error; what was evicted for it stays evicted.
     */
    async use(ref: ModelRef): Promise<T> {
        const held = this.entries.get(ref.id);
        this.entries.delete(ref.id);
        if (held?.digest === ref.digest) {
            this.entries.set(ref.id, held);
            return held.value;
        }
        if (held) {
            // its content changed since: the old one goes, not counted as an eviction
            this.release(held.value);
        }
        const evicted: string[] = [];
        for (const [id, e] of this.entries) {
            if (this.entries.size < this.max) {
                break;
            }
            this.entries.delete(id);
            this.release(e.value);
            evicted.push(id);
        }
        const t0 = performance.now();
        let value: T;
        try {
            value = await this.load(ref);
        }
        catch (err) {
            this.report({ held: this.held, evicted });
            throw err;
        }
        this.entries.set(ref.id, { digest: ref.digest, value });
        this.report({ held: this.held, loaded: { id: ref.id, seconds: (performance.now() - t0) / 1000 }, evicted });
        return value;
    }

    /** Drops these models, where held (they left the folder); the others stay. */
    drop(ids: string[]): void {
        const gone = ids.filter((id) => this.entries.has(id));
        for (const id of gone) {
            this.release((this.entries.get(id) as Entry<T>).value);
            this.entries.delete(id);
        }
        if (gone.length) {
            this.report({ held: this.held, evicted: [] });
        }
    }
}
