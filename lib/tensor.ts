// Tensors: the type every handler and runtime exchanges, and its ways in and out of JSON (nested arrays <-> typed
// arrays, dtype checks), of the Open Inference Protocol's flat data and raw bytes (half precision, BYTES elements) and
// of batches (rows sliced and concatenated).
import { isUtf8 } from 'node:buffer';
import type { Boom } from '@hapi/boom';
import { clip, fail, quote } from './errors';

export type TypedArray = Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
    | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

/**
 * A dense tensor: row-major data and its dimensions. A tensor of strings (type "string": ONNX's strings, the Open
 * Inference Protocol's BYTES) holds a string[], as ONNX Runtime does. It is typed as the numeric arrays are, so that
 * the handlers that take numbers need no check: only this file and the tensor handler meet one.
 */
export interface Tensor {
    type: string;
    data: TypedArray;
    dims: number[];
}

export type Feeds = Record<string, Tensor>;

type Ctor = { new(n: number): TypedArray; new(b: ArrayBufferLike, offset?: number, length?: number): TypedArray; BYTES_PER_ELEMENT: number };

interface DType {
    ctor: Ctor;
    /** integer range for integer types; absent for floats */
    range?: [number, number];
    bigint?: boolean;
    bool?: boolean;
    /** IEEE 754 half precision, held as its bits (a Uint16Array: ONNX Runtime's form) */
    half?: boolean;
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
    bool: { ctor: Uint8Array, range: [0, 1], bool: true, oip: 'BOOL' },
    float16: { ctor: Uint16Array, half: true, oip: 'FP16' }
};

/** ONNX's tensors of strings: the Open Inference Protocol's BYTES, each element a UTF-8 string. */
export const STRING = 'string';

/** The Open Inference Protocol's datatype of each type tsserve takes (FP32, ..., BYTES for strings). */
export const oipNames: Readonly<Record<string, string>> = { ...Object.fromEntries(Object.entries(dtypes).map(([k, v]) => [k, v.oip])), [STRING]: 'BYTES' };

/** The type of each of the Open Inference Protocol's datatypes. */
export const oipTypes: ReadonlyMap<string, string> = new Map(Object.entries(oipNames).map(([k, v]) => [v, k]));

/**
 * A number as IEEE 754 half precision (its 16 bits), rounded to the nearest, ties to even: beyond 65504 (from
 * 65520) it is infinite, below 2^-14 subnormal. `v` is a JSON number (never NaN).
 */
export function toHalf(v: number): number {
    const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
    const a = Math.abs(v);
    if (a >= 65520) {
        return sign | 0x7c00;
    }
    if (a < 2 ** -14) {
        // subnormal: a count of 2^-24 (1024 of them round up to the smallest normal number, 0x0400, as they should)
        return sign | roundEven(a * 2 ** 24);
    }
    let e = Math.floor(Math.log2(a));
    // log2 rounds up to a power of two from just below one (1023.9999999999999): then 2^e <= a < 2^(e + 1) again
    if (2 ** e > a) {
        e--;
    }
    // the significand's 10 bits; one that rounds up to 1024 carries into the exponent, as it should
    return sign | (((e + 15) << 10) + roundEven((a / 2 ** e) * 1024) - 1024);
}

/** x rounded to the nearest integer, ties to even (x is exact: a scaling by a power of two). */
function roundEven(x: number): number {
    const f = Math.floor(x);
    const rest = x - f;
    return rest > 0.5 || (rest === 0.5 && f % 2 === 1) ? f + 1 : f;
}

/** The number that half precision bits stand for (exactly: every half is a double). */
export function fromHalf(h: number): number {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 31) {
        return m ? NaN : sign * Infinity;
    }
    return sign * (e ? (1024 + m) * 2 ** (e - 25) : m * 2 ** -24);
}

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

/** Whether `dims` fit a model input's `expected` dims: the same rank, a first row, every fixed dim after the first (the batch). */
export function fitsShape(expected: ReadonlyArray<number | string>, dims: readonly number[]): boolean {
    return dims[0] !== 0 && dims.length === expected.length && !expected.some((d, i) => i > 0 && typeof d === 'number' && d >= 0 && d !== dims[i]);
}

/** Throws shapeMismatch() unless `dims` fit a model input's `expected` dims (fitsShape()). */
export function checkShape(input: string, expected: ReadonlyArray<number | string>, dims: readonly number[]): void {
    if (!fitsShape(expected, dims)) {
        throw shapeMismatch(input, expected, dims, dims[0] === 0 ? ': at least one row is needed' : '');
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
    const d = type === STRING ? undefined : dtype(type, input);
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
    const data = d ? new d.ctor(size(dims)) : new Array<string>(size(dims));
    let at = 0;
    const bad = (v: unknown): never => {
        throw fail('INPUT_DTYPE_MISMATCH', `input ${quote(input)} expects ${type} values, received ${quote(v)}`, { input, expected: type });
    };
    const leaf = d ? numeric(d, bad) : (v: unknown) => typeof v === 'string' ? v : bad(v);
    const walk = (v: unknown, depth: number): void => {
        if (depth === dims.length) {
            data[at++] = leaf(v) as never;
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
    return { type, data: data as TypedArray, dims };
}

/** A JSON value as an element of a numeric type: a number in its range (a boolean for bool), else `bad`. */
function numeric(d: DType, bad: (v: unknown) => never): (v: unknown) => number | bigint {
    const [lo, hi] = d.range ?? [-Infinity, Infinity];
    return (v) => {
        if (d.bool && typeof v === 'boolean') {
            v = Number(v);
        }
        if (typeof v !== 'number' || (d.range && !Number.isInteger(v)) || v < lo || v > hi) {
            bad(v);
        }
        return d.bigint ? BigInt(v as number) : d.half ? toHalf(v as number) : v as number;
    };
}

/**
 * The Open Inference Protocol's JSON `data` to a typed tensor of the shape `dims` it declares: flat, row-major, or
 * nested as the shape is (its "natural" form).
 */
export function fromFlat(values: unknown, type: string, dims: number[], input: string): Tensor {
    if (Array.isArray(values) && values.some(Array.isArray)) {
        const t = fromNested(values, type, input);
        if (showDims(t.dims) !== showDims(dims)) {
            throw fail('INPUT_SHAPE_MISMATCH', `input ${quote(input)} declares shape ${showDims(dims)}, but its nested "data" is ${showDims(t.dims)}`, { input });
        }
        return t;
    }
    if (!Array.isArray(values) || values.length !== size(dims)) {
        throw fail('INPUT_SHAPE_MISMATCH', `input ${quote(input)} declares shape ${showDims(dims)}, so "data" must be a flat array of ${size(dims)} values`, { input });
    }
    const t = fromNested(values, type, input);
    t.dims = dims;
    return t;
}

/**
 * The elements of BYTES binary data (the Open Inference Protocol's binary extension): each a 4-byte little-endian
 * length, then that many bytes; exactly `count` of them, filling `bytes`. Each is made by `make` from its range.
 */
export function bytesElements<T>(bytes: Buffer, count: number, input: string, make: (start: number, end: number) => T): T[] {
    const out: T[] = [];
    let at = 0;
    while (at < bytes.length && out.length < count) {
        const end = at + 4 + (at + 4 <= bytes.length ? bytes.readUInt32LE(at) : 0);
        if (at + 4 > bytes.length || end > bytes.length) {
            throw fail('INVALID_BODY', `input ${quote(input)}: its BYTES element ${out.length + 1} runs past the end of its binary data (each is a 4-byte little-endian length, then its bytes)`, { input });
        }
        out.push(make(at + 4, end));
        at = end;
    }
    if (out.length !== count || at !== bytes.length) {
        throw fail('INPUT_SHAPE_MISMATCH', `input ${quote(input)} has ${out.length} BYTES element(s)${at < bytes.length ? ' and bytes beyond them' : ''}, but its shape needs ${count}`, { input });
    }
    return out;
}

/**
 * Little-endian bytes to a typed tensor: a view of them where they are aligned for its type, else a copy, which is; BYTES
 * elements to strings (UTF-8 text only).
 */
export function fromBytes(bytes: Buffer, type: string, dims: number[], input: string): Tensor {
    if (type === STRING) {
        let n = 0;
        return {
            type, dims, data: bytesElements(bytes, size(dims), input, (start, end) => {
                n++;
                if (!isUtf8(bytes.subarray(start, end))) {
                    throw fail('INPUT_DTYPE_MISMATCH', `input ${quote(input)}: its BYTES element ${n} is not UTF-8 text, which a string of the model must be`, { input, expected: type });
                }
                return bytes.toString('utf8', start, end);
            }) as never
        };
    }
    const d = dtype(type, input);
    if (bytes.length !== size(dims) * d.ctor.BYTES_PER_ELEMENT) {
        throw fail('INPUT_SHAPE_MISMATCH', `input ${quote(input)} has ${bytes.length} bytes, but shape ${showDims(dims)} of ${type} needs ${size(dims) * d.ctor.BYTES_PER_ELEMENT}`, { input });
    }
    const data = bytes.byteOffset % d.ctor.BYTES_PER_ELEMENT === 0
        ? new d.ctor(bytes.buffer, bytes.byteOffset, size(dims))
        : new d.ctor(new Uint8Array(bytes).buffer);
    return { type, data, dims };
}

/** The JSON number (or string) of an element of a tensor of this type: int64 as a number, half precision as its value. */
function jsonOf(type: string, sample: unknown): (x: never) => unknown {
    return type === 'float16' ? fromHalf : typeof sample === 'bigint' ? Number : (x: unknown) => x;
}

/** A typed array (or a row range of it) to nested JSON arrays. */
export function toNested(t: Tensor, fromRow = 0, rows = t.dims[0] ?? 1): unknown {
    const data = t.data;
    const convert = jsonOf(t.type, data[0]);
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

/**
 * A tensor's elements flat, row-major, as the Open Inference Protocol's JSON `data`: numbers (int64 too), booleans
 * for bool, strings for BYTES.
 */
export function toFlat(t: Tensor): unknown[] {
    const convert = t.type === 'bool' ? Boolean : jsonOf(t.type, t.data[0]);
    return Array.from(t.data as unknown as ArrayLike<never>, convert);
}

/**
 * A tensor's elements as the Open Inference Protocol's binary extension sends them: its raw little-endian bytes (a
 * view, not a copy), or for BYTES each element's 4-byte little-endian length, then its UTF-8 bytes.
 */
export function toBytes(t: Tensor): Buffer {
    if (t.type !== STRING) {
        return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    }
    const parts = (t.data as unknown as string[]).map((s) => Buffer.from(s, 'utf8'));
    const out = Buffer.allocUnsafe(parts.reduce((n, p) => n + 4 + p.length, 0));
    let at = 0;
    for (const p of parts) {
        out.writeUInt32LE(p.length, at);
        at += 4 + p.copy(out, at + 4);
    }
    return out;
}

/** A model input's tensor of zeros (empty strings for strings), as `dims` say: a warm-up's feed. */
export function zeros(type: string, input: string, dims: number[]): Tensor {
    return { type, data: type === STRING ? new Array<string>(size(dims)).fill('') as never : new (dtype(type, input).ctor)(size(dims)), dims };
}

/** Rows [from, from + rows) of a tensor along its first dim. */
export function sliceRows(t: Tensor, from: number, rows: number): Tensor {
    const stride = size(t.dims.slice(1));
    const data = t.type === STRING ? (t.data as unknown as string[]).slice(from * stride, (from + rows) * stride) as never : t.data.subarray(from * stride, (from + rows) * stride);
    return { type: t.type, data, dims: [rows, ...t.dims.slice(1)] };
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
    if (first.type === STRING) {
        // padded with empty strings
        const data = parts.flatMap((p) => [...p.data as unknown as string[]]).concat(new Array<string>((total - rows) * stride).fill(''));
        return { type: first.type, data: data as never, dims: [total, ...first.dims.slice(1)] };
    }
    if (total === rows && contiguous(parts)) {
        // one after another in one buffer (a batch's bulk bytes in a replica, lib/bulk.ts): their view is the batch
        return { type: first.type, data: new (first.data.constructor as Ctor)(first.data.buffer, first.data.byteOffset, total * stride), dims: [total, ...first.dims.slice(1)] };
    }
    const data = new (first.data.constructor as Ctor)(total * stride);
    let at = 0;
    for (const p of parts) {
        data.set(p.data as never, at);
        at += p.data.length;
    }
    return { type: first.type, data, dims: [total, ...first.dims.slice(1)] };
}

/** Whether tensors' data lie one after another, in order, in one buffer, each of the first one's kind. */
function contiguous(parts: Tensor[]): boolean {
    for (let i = 1; i < parts.length; i++) {
        const a = parts[i - 1].data;
        const b = parts[i].data;
        if (b.buffer !== a.buffer || b.byteOffset !== a.byteOffset + a.byteLength || b.constructor !== a.constructor) {
            return false;
        }
    }
    return true;
}
