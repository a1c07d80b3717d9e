// Bulk bytes: the large typed arrays and Buffers of a batch (an image's tensor, an image file) go to a replica process
// on a second channel, a pipe beside its IPC channel, rather than inside the batch's IPC message. The IPC channel would
// copy each one into a serialized message, then the replica would gather the message's chunks into one buffer and copy
// the array out of it again; through the pipe, the kernel's copy is the only one: the front writes the arrays' own
// memory, and the replica reads it straight into a buffer it reuses, whose views its handler gets. Small arrays stay
// in the message, which costs less for them than a second write would.

import fs from 'node:fs';

/** Typed arrays and Buffers of this many bytes and more go as bulk bytes. */
export const bulkMinBytes = 32 * 1024;

/** Each array starts at a multiple of 8 in the replica's buffer, so that a view of any element type is aligned. */
const align = 8;
const zeros = Buffer.alloc(align);

type View = NodeJS.TypedArray;

type ViewCtor = new (buf: ArrayBuffer, offset: number, length: number) => View;

/** The constructors a bulk array is made again by, by name (a Buffer stays a Buffer). */
const ctors: Record<string, (buf: ArrayBuffer, offset: number, length: number) => View> = {
    Buffer: (b, o, n) => Buffer.from(b, o, n),
    ...Object.fromEntries(([Uint8Array, Uint8ClampedArray, Int8Array, Uint16Array, Int16Array, Uint32Array, Int32Array, Float32Array, Float64Array,
        BigInt64Array, BigUint64Array] as ViewCtor[]).map((C) => [C.name, (b: ArrayBuffer, o: number, n: number) => new C(b, o, n)]))
};

/** One array of a batch sent as bulk bytes: where it goes in the items, its kind, and where its bytes lie. */
export interface BulkArray {
    path: Array<string | number>;
    ctor: string;
    /** bytes from the start of the batch's bulk bytes */
    offset: number;
    /** elements */
    length: number;
}

/** A batch's items with their bulk arrays taken out (null in their place), and those arrays. */
export interface Split {
    items: unknown[];
    arrays: BulkArray[];
    views: View[];
    /** the batch's bulk bytes, padding included */
    bytes: number;
}

/** Items are walked no deeper than this, and through arrays no longer: a handler's item is a few named fields. */
const maxDepth = 5;
const maxWalk = 16;

/**
 * Takes a batch's large typed arrays and Buffers out of its items, leaving the items themselves as they are: what
 * leads to one is copied (plain objects and arrays, shallowly), the rest is shared.
 */
export function splitBulk(items: unknown[]): Split {
    const split: Split = { items, arrays: [], views: [], bytes: 0 };
    const walk = (v: unknown, path: Array<string | number>): unknown => {
        if (ArrayBuffer.isView(v)) {
            const ctor = Buffer.isBuffer(v) ? 'Buffer' : v.constructor.name;
            if (v.byteLength < bulkMinBytes || !(ctor in ctors)) {
                return v;
            }
            split.arrays.push({ path, ctor, offset: split.bytes, length: (v as View).length });
            split.views.push(v as View);
            split.bytes += Math.ceil(v.byteLength / align) * align;
            return null;
        }
        if (path.length >= maxDepth || v === null || typeof v !== 'object') {
            return v;
        }
        const array = Array.isArray(v);
        if (array ? v.length > maxWalk : Object.getPrototypeOf(v) !== Object.prototype) {
            return v;
        }
        let copy: Record<string | number, unknown> | undefined;
        for (const key of array ? v.keys() : Object.keys(v)) {
            const x = (v as Record<string | number, unknown>)[key];
            const y = walk(x, [...path, key]);
            if (y !== x) {
                copy ??= (array ? [...v] : { ...v }) as Record<string | number, unknown>;
                copy[key] = y;
            }
        }
        return copy ?? v;
    };
    split.items = items.map((item, i) => walk(item, [i]));
    return split;
}

/** Writes a split batch's bulk bytes, in order, each array padded to the alignment. */
export function writeBulk(out: NodeJS.WritableStream & { cork(): void; uncork(): void }, split: Split): void {
    out.cork();
    for (const v of split.views) {
        out.write(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
        const pad = -v.byteLength & (align - 1);
        if (pad) {
            out.write(zeros.subarray(0, pad));
        }
    }
    out.uncork();
}

/**
 * The replica's side: reads each batch's bulk bytes from the pipe (file descriptor `fd`) into a buffer of its own and
 * puts views of them back into the batch's items. Buffers are reused once their batch is answered: a handler must not
 * keep its items' arrays beyond its batch.
 */
export class BulkReader {
    private free: Buffer[] = [];
    private held = new Map<number, Buffer>();

    constructor(private readonly fd: number) {}

    /**
     * Reads a batch's `bytes` bulk bytes (they were written before its message was sent, so they are there or on
     * their way: the read waits for them) and puts its arrays back into `items`.
     */
    restore(batch: number, items: unknown[], arrays: BulkArray[], bytes: number): void {
        let buf = this.free.pop();
        if (!buf || buf.length < bytes) {
            buf = Buffer.allocUnsafeSlow(bytes);
        }
        this.held.set(batch, buf);
        for (let got = 0; got < bytes;) {
            const n = fs.readSync(this.fd, buf, got, bytes - got, null);
            if (n === 0) {
                throw new Error('the bulk channel closed');
            }
            got += n;
        }
        for (const a of arrays) {
            let at = items as unknown as Record<string | number, unknown>;
            for (const key of a.path.slice(0, -1)) {
                at = at[key] as Record<string | number, unknown>;
            }
            at[a.path[a.path.length - 1]] = ctors[a.ctor](buf.buffer as ArrayBuffer, buf.byteOffset + a.offset, a.length);
        }
    }

    /** A batch is answered: its buffer may take another's bytes (a few are kept). */
    release(batch: number): void {
        const buf = this.held.get(batch);
        if (buf) {
            this.held.delete(batch);
            if (this.free.length < 2) {
                this.free.push(buf);
            }
        }
    }
}
