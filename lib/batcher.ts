// The deployment queue: FIFO, bounded, and able to pull a batch of compatible requests from it.
export interface Queued {
    rows: number;
    key: string;
    /** run alone: its last batch failed and it must not take others down with it */
    solo: boolean;
    enqueued: number;
}

export class Batcher<T extends Queued> {
    private items: T[] = [];
    private queuedRows = 0;

    get length(): number {
        return this.items.length;
    }

    get rows(): number {
        return this.queuedRows;
    }

    /** when the oldest request was queued */
    get oldest(): number {
        return this.items[0]?.enqueued ?? Infinity;
    }

    push(item: T, front = false): void {
        front ? this.items.unshift(item) : this.items.push(item);
        this.queuedRows += item.rows;
    }

    remove(item: T): boolean {
        const i = this.items.indexOf(item);
        if (i < 0) {
            return false;
        }
        this.items.splice(i, 1);
        this.queuedRows -= item.rows;
        return true;
    }

    /**
     * Takes the oldest request and then, in order, every later one that shares its key and still fits:
     * at most maxRows rows (an oversized request runs alone) and maxItems requests.
     */
    take(maxRows: number, maxItems: number): T[] {
        const head = this.items.shift() as T;
        const batch = [head];
        let rows = head.rows;
        if (!head.solo) {
            for (let i = 0; i < this.items.length && rows < maxRows && batch.length < maxItems; i++) {
                const it = this.items[i];
                if (it.key === head.key && !it.solo && rows + it.rows <= maxRows) {
                    batch.push(it);
                    rows += it.rows;
                    this.items.splice(i--, 1);
                }
            }
        }
        for (const it of batch) {
            this.queuedRows -= it.rows;
        }
        return batch;
    }
}
