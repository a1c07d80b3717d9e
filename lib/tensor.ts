// Tensors: the type every handler and runtime exchanges, and its ways in and out of JSON (nested arrays <-> typed
// arrays, dtype checks) and of batches (rows sliced and concatenated).
import { fail } from './errors';

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
        throw fail('INPUT_DTYPE_MISMATCH', `input "${input}" has type ${type}, which tsserve cannot take as JSON`);
    }
    return d;
}

export const size = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

/** Dims of a nested array, read along its first elements. */
function dimsOf(value: unknown): number[] {
    const dims: number[] = [];
    while (Array.isArray(value)) {
        dims.push(value.length);
        value = value[0];
    }
    return dims;
}

/** Nested JSON arrays to a typed tensor, checking that it is rectangular and of the right type. */
export function fromNested(value: unknown, type: string, input: string): Tensor {
    const d = dtype(type, input);
    const dims = dimsOf(value);
    const data = new d.ctor(size(dims));
    const [lo, hi] = d.range ?? [-Infinity, Infinity];
    let at = 0;
    const bad = (v: unknown): never => {
        throw fail('INPUT_DTYPE_MISMATCH', `input "${input}" expects ${type} values, received ${JSON.stringify(v)}`, { input, expected: type });
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
            throw fail('INPUT_SHAPE_MISMATCH', `input "${input}" is ragged: every row must have the same length`, { input });
        }
        for (const x of v) {
            walk(x, depth + 1);
        }
    };
    walk(value, 0);
    return { type, data, dims };
}

/** A flat array (the Open Inference Protocol's JSON form) to a typed tensor. */
export function fromFlat(values: unknown, type: string, dims: number[], input: string): Tensor {
    if (!Array.isArray(values) || values.length !== size(dims) || values.some(Array.isArray)) {
        throw fail('INPUT_SHAPE_MISMATCH', `input "${input}" declares shape [${dims.join(', ')}], so "data" must be a flat array of ${size(dims)} values`, { input });
    }
    const t = fromNested(values, type, input);
    t.dims = dims;
    return t;
}

/** Little-endian bytes to a typed tensor (copied, so the view is aligned). */
export function fromBytes(bytes: Buffer, type: string, dims: number[], input: string): Tensor {
    const d = dtype(type, input);
    if (bytes.length !== size(dims) * d.ctor.BYTES_PER_ELEMENT) {
        throw fail('INPUT_SHAPE_MISMATCH', `input "${input}" has ${bytes.length} bytes, but shape [${dims.join(', ')}] of ${type} needs ${size(dims) * d.ctor.BYTES_PER_ELEMENT}`, { input });
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
