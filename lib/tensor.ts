// Tensors: the type every handler and runtime exchanges, and its ways in and out of JSON (nested arrays <-> typed
// arrays, dtype checks) and of batches (rows sliced and concatenated).
import type { Boom } from '@hapi/boom';
import { clip, fail, quote } from './errors';

export type TypedArray = Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
    | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

/** A dense tensor: row-major data and its dimensions. */
export interface Tensor {
    type: string;
    data: TypedArray;
    dims: number[];
}

export type Feeds = Record<string, Tensor>;

type Ctor = { new(n: number): TypedArray; new(b: ArrayBuffer): TypedArray; BYTES_PER_ELEMENT: number };

interface DType {
    ctor: Ctor;
    /** integer range for integer types; absent for floats */
    range?: [number, number];
    bigint?: boolean;
    bool?: boolean;
    /** the Open Inference Protocol's name */
    oip: string;
}

export const dtypes: Record<string, DType> = {
    float32: { ctor: Float32Array, oip: 'FP32' },
    float64: { ctor: Float64Array, oip: 'FP64' },
    int8: { ctor: Int8Array, range: [-128, 127], oip: 'INT8' },
    uint8: { ctor: Uint8Array, range: [0, 255], oip: 'UINT8' },
    int16: { ctor: Int16Array, range: [-32768, 32767], oip: 'INT16' },
    uint16: { ctor: Uint16Array, range: [0, 65535], oip: 'UINT16' },
    int32: { ctor: Int32Array, range: [-2147483648, 2147483647], oip: 'INT32' },
    uint32: { ctor: Uint32Array, range: [0, 4294967295], oip: 'UINT32' },
    int64: { ctor: BigInt64Array, range: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER], bigint: true, oip: 'INT64' },
    uint64: { ctor: BigUint64Array, range: [0, Number.MAX_SAFE_INTEGER], bigint: true, oip: 'UINT64' },
    bool: { ctor: Uint8Array, range: [0, 1], bool: true, oip: 'BOOL' }
};

export function dtype(type: string, input: string): DType {
    const d = dtypes[type];
    if (!d) {
        throw fail('INPUT_DTYPE_MISMATCH', `input ${quote(input)} has type ${type}, which tsserve cannot take as JSON`);
    }
    return d;
}

export const size = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/** Dims as messages show them: `[batch, 4]`, cut short when a client sent absurdly many. */
export const showDims = (dims: ReadonlyArray<number | string>): string => clip(`[${dims.join(', ')}]`);

/** Ranks beyond any model's: nested arrays deeper than this are refused, whatever their input. */
export const maxRank = 64;

/** Tensors of more values than this are checked to be rectangular before their memory is allocated. */
const allocCheckAbove = 1 << 16;

/**
 * INPUT_SHAPE_MISMATCH for an input of the model whose `expected` dims the `received` ones do not fit, for `reason`
 * (": ...", or nothing). Only as many received dims as the model has, and one more, are shown: a client's may be many.
 */
export function shapeMismatch(input: string, expected: ReadonlyArray<number | string>, received: readonly number[], reason = ''): Boom {
    const shown = received.slice(0, expected.length + 1);
    return fail('INPUT_SHAPE_MISMATCH', `input ${quote(input)} expects shape ${showDims(expected)}, received ${showDims(shown)}${received.length > shown.length ? ' and more dims' : ''}${reason}`,
        { input, expected, received: shown });
}

/** Throws shapeMismatch() unless `dims` fit a model input's `expected` dims: the same rank, a first row, every fixed dim after the first (the batch). */
export function checkShape(input: string, expected: ReadonlyArray<number | string>, dims: readonly number[]): void {
    if (dims[0] === 0) {
        throw shapeMismatch(input, expected, dims, ': at least one row is needed');
    }
    if (dims.length !== expected.length || expected.some((d, i) => i > 0 && typeof d === 'number' && d >= 0 && d !== dims[i])) {
        throw shapeMismatch(input, expected, dims);
    }
}

/** Dims of a nested array, read along its first elements, at most `rank` levels deep; undefined when it goes deeper. */
function dimsOf(value: unknown, rank: number): number[] | undefined {
    const dims: number[] = [];
    while (Array.isArray(value)) {
        if (dims.length === rank) {
            return undefined;
        }
        dims.push(value.length);
        value = value[0];
    }
    return dims;
}

/** Whether every array above the leaves has its dim's length: then a tensor of these dims has as many values as were sent. */
function rectangular(value: unknown, dims: readonly number[], depth = 0): boolean {
    if (depth === dims.length - 1) {
        return true;
    }
    return (value as unknown[]).every((row) => Array.isArray(row) && row.length === dims[depth + 1] && rectangular(row, dims, depth + 1));
}

/**
 * Nested JSON arrays to a typed tensor, checking that it is rectangular and of the right type. With `expected` (the
 * model input's dims), its shape is checked against them first (checkShape()), reading no deeper than their rank.
 * Nothing is allocated before the shape is known to be what was sent: a body can name dims whose product is huge
 * (one long first row, then short ones), but not send that many values.
 */
export function fromNested(value: unknown, type: string, input: string, expected?: ReadonlyArray<number | string>): Tensor {
    const d = dtype(type, input);
    const dims = dimsOf(value, expected?.length ?? maxRank);
    if (!dims) {
        throw fail('INPUT_SHAPE_MISMATCH', expected ? `input ${quote(input)} expects shape ${showDims(expected)}, received arrays nested more than ${expected.length} deep`
            : `input ${quote(input)} is arrays nested more than ${maxRank} deep`, { input, ...expected && { expected } });
    }
    const ragged = (): never => {
        throw fail('INPUT_SHAPE_MISMATCH', `input ${quote(input)} is ragged: every row must have the same length`, { input });
    };
    if (expected) {
        checkShape(input, expected, dims);
    }
    if (size(dims) > allocCheckAbove && !rectangular(value, dims)) {
        ragged();
    }
    const data = new d.ctor(size(dims));
    const [lo, hi] = d.range ?? [-Infinity, Infinity];
    let at = 0;
    const bad = (v: unknown): never => {
        throw fail('INPUT_DTYPE_MISMATCH', `input ${quote(input)} expects ${type} values, received ${quote(v)}`, { input, expected: type });
    };
    const walk = (v: unknown, depth: number): void => {
        if (depth === dims.length) {
            if (d.bool && typeof v === 'boolean') {
                v = Number(v);
            }
            if (typeof v !== 'number' || (d.range && !Number.isInteger(v)) || v < lo || v > hi) {
                bad(v);
            }
            data[at++] = (d.bigint ? BigInt(v as number) : v) as never;
            return;
        }
        if (!Array.isArray(v) || v.length !== dims[depth]) {
            ragged();
        }
        for (const x of v as unknown[]) {
            walk(x, depth + 1);
        }
    };
    walk(value, 0);
    return { type, data, dims };
}

/** A flat array (the Open Inference Protocol's JSON form) to a typed tensor. */
export function fromFlat(values: unknown, type: string, dims: number[], input: string): Tensor {
    if (!Array.isArray(values) || values.length !== size(dims) || values.some(Array.isArray)) {
        throw fail('INPUT_SHAPE_MISMATCH', `input ${quote(input)} declares shape ${showDims(dims)}, so "data" must be a flat array of ${size(dims)} values`, { input });
    }
    const t = fromNested(values, type, input);
    t.dims = dims;
    return t;
}

/** Little-endian bytes to a typed tensor (copied, so the view is aligned). */
export function fromBytes(bytes: Buffer, type: string, dims: number[], input: string): Tensor {
    const d = dtype(type, input);
    if (bytes.length !== size(dims) * d.ctor.BYTES_PER_ELEMENT) {
        throw fail('INPUT_SHAPE_MISMATCH', `input ${quote(input)} has ${bytes.length} bytes, but shape ${showDims(dims)} of ${type} needs ${size(dims) * d.ctor.BYTES_PER_ELEMENT}`, { input });
    }
    const copy = new Uint8Array(bytes).buffer;
    return { type, data: new d.ctor(copy), dims };
}

/** A typed array (or a row range of it) to nested JSON arrays. */
export function toNested(t: Tensor, fromRow = 0, rows = t.dims[0] ?? 1): unknown {
    const data = t.data;
    const convert = typeof data[0] === 'bigint' ? Number : (x: number) => x;
    const inner = t.dims.slice(1);
    const stride = size(inner);
    if (t.dims.length === 0) {
        return convert(data[0] as never);
    }
    let at = fromRow * stride;
    const build = (depth: number): unknown[] => {
        const n = depth === 0 ? rows : inner[depth - 1];
        const out = new Array(n);
        for (let i = 0; i < n; i++) {
            out[i] = depth === inner.length ? convert(data[at++] as never) : build(depth + 1);
        }
        return out;
    };
    return build(0);
}

/** Rows [from, from + rows) of a tensor along its first dim. */
export function sliceRows(t: Tensor, from: number, rows: number): Tensor {
    const stride = size(t.dims.slice(1));
    return { type: t.type, data: t.data.subarray(from * stride, (from + rows) * stride), dims: [rows, ...t.dims.slice(1)] };
}

/** Concatenate tensors along the first dim, zero-padding to `padTo` rows when the model needs a fixed batch. */
export function concatRows(parts: Tensor[], padTo = 0): Tensor {
    const first = parts[0];
    const rows = parts.reduce((n, p) => n + p.dims[0], 0);
    const total = Math.max(rows, padTo);
    if (parts.length === 1 && total === rows) {
        return first;
    }
    const stride = size(first.dims.slice(1));
    const data = new (first.data.constructor as Ctor)(total * stride);
    let at = 0;
    for (const p of parts) {
        data.set(p.data as never, at);
        at += p.data.length;
    }
    return { type: first.type, data, dims: [total, ...first.dims.slice(1)] };
}
