// JSON tensors read straight from a body's bytes: the tensor handler's `{"inputs": {"<name>": <nested arrays>}}` (or
// `{"inputs": <nested arrays>}`) scanned into each input's values and dims, with no nested JS arrays built between.
// The scanner reads only a strict subset of JSON, and a body outside it is parsed as hapi parses one (JSON.parse,
// then @hapi/bourne's refusal of "__proto__" keys), so that every answer is what it would be without the scanner:
// the same tensors to the bit when the scanner reads the body, the same error when anything is unusual about it.
import Boom from '@hapi/boom';
import { STRING, dtypes, fitsShape, maxRank, toHalf, type Feeds, type Tensor } from './tensor';
import type { Signature, TensorInfo } from './signature';

/** One input's values as the scanner read them: doubles, row-major, of these dims (none of them 0). */
export interface ScannedTensor {
    /** its name; none in the form `{"inputs": <nested arrays>}` */
    name?: string;
    dims: number[];
    values: Float64Array;
    /** it held true or false (read as 1 and 0), which only a bool input takes */
    booleans: boolean;
}

/**
 * A JSON body the scanner read: valid JSON (every byte of it checked), `{"inputs": ...}` and nothing else, no key
 * twice, no "__proto__" key, every input rectangular nested arrays of numbers, true and false. What it stands for
 * is value(), which the ordinary path takes whenever feeds() cannot give the very tensors it would make.
 */
export class JsonTensors {
    constructor(readonly bytes: Buffer, readonly tensors: readonly ScannedTensor[]) {}

    /** The body as hapi would have parsed it (the scanner has checked that it is valid JSON without "__proto__" keys). */
    value(): unknown {
        return JSON.parse(this.bytes.toString('utf8'));
    }

    /**
     * The model's feeds, exactly as the tensor handler's ordinary path makes them from value() (fromNested(), lib/tensor.ts):
     * undefined when that path would not take them as they are (an input the model lacks, a wrong rank or dim, a
     * value its type refuses, a string input), for it to answer.
     */
    feeds(sig: Signature): Feeds | undefined {
        const feeds: Feeds = {};
        for (const t of this.tensors) {
            // the form without names is the model's one input's
            const info = t.name === undefined ? sig.inputs.length === 1 ? sig.inputs[0] : undefined : sig.inputs.find((i) => i.name === t.name);
            const tensor = info && typed(t, info);
            if (!tensor) {
                return undefined;
            }
            feeds[info.name] = tensor;
        }
        return feeds;
    }
}

/** A scanned input as the typed tensor of a model input, exactly as fromNested() makes it; undefined where it would refuse it. */
function typed(t: ScannedTensor, info: TensorInfo): Tensor | undefined {
    const d = info.type === STRING || !Object.hasOwn(dtypes, info.type) ? undefined : dtypes[info.type];
    if (!d || (t.booleans && !d.bool) || !fitsShape(info.dims, t.dims)) {
        return undefined;
    }
    const v = t.values;
    const n = v.length;
    if (d.range) {
        // numeric()'s check: an integer in range (a bool's 0 or 1)
        const [lo, hi] = d.range;
        for (let k = 0; k < n; k++) {
            const x = v[k];
            if (!Number.isInteger(x) || x < lo || x > hi) {
                return undefined;
            }
        }
    }
    let data;
    if (d.bigint) {
        data = new d.ctor(n);
        for (let k = 0; k < n; k++) {
            data[k] = BigInt(v[k]);
        }
    }
    else if (d.half) {
        data = new d.ctor(n);
        for (let k = 0; k < n; k++) {
            data[k] = toHalf(v[k]);
        }
    }
    else if (d.ctor === Float64Array) {
        // the scanner's own array, of exactly these values
        data = v;
    }
    else {
        // set() stores each double as an assignment does: rounded to float32, or an integer (checked above) as it is
        data = new d.ctor(n);
        (data as Float32Array).set(v);
    }
    return { type: info.type, data, dims: [...t.dims] };
}

/**
 * A JSON body as the tensor handler takes it: the scanner's JsonTensors when the body is in the form it reads, else
 * the body parsed as hapi parses one (null when empty; a 400 "Invalid request payload JSON format" when invalid).
 */
export function readJson(bytes: Buffer | null): unknown {
    if (!bytes?.length) {
        return null;
    }
    return scan(bytes) ?? parseAsHapi(bytes.toString('utf8'));
}

/**
 * A body as any handler but the tensor handler takes it: a scanned JSON body (lib/http.ts keeps a tensor route's
 * raw, and its route may have changed since, on a reload) as parsed JSON; anything else as it is.
 */
export function parsedJson(payload: unknown): unknown {
    return payload instanceof JsonTensors ? payload.value() : payload;
}

/** @hapi/bourne's test for a text that may hold a "__proto__" key, escaped or not. */
const suspect = /"(?:_|\\u005[Ff])(?:_|\\u005[Ff])(?:p|\\u0070)(?:r|\\u0072)(?:o|\\u006[Ff])(?:t|\\u0074)(?:o|\\u006[Ff])(?:_|\\u005[Ff])(?:_|\\u005[Ff])"\s*:/;

/**
 * JSON text parsed as hapi parses a JSON body (@hapi/subtext with @hapi/bourne, protoAction 'error'): JSON.parse, then
 * an object with a "__proto__" key anywhere refused; either failure the same 400 (lib/errors.ts makes it INVALID_JSON).
 */
export function parseAsHapi(text: string): unknown {
    try {
        const value: unknown = JSON.parse(text);
        if (value && typeof value === 'object' && suspect.test(text)) {
            let next = [value as Record<string, unknown>];
            while (next.length) {
                const nodes = next;
                next = [];
                for (const node of nodes) {
                    if (Object.hasOwn(node, '__proto__')) {
                        throw new SyntaxError('Object contains forbidden prototype property');
                    }
                    for (const key in node) {
                        const child = node[key];
                        if (child && typeof child === 'object') {
                            next.push(child as Record<string, unknown>);
                        }
                    }
                }
            }
        }
        return value;
    }
    catch (err) {
        throw Boom.badRequest('Invalid request payload JSON format', err);
    }
}

// The bytes the scanner knows.
const SPACE = 0x20, TAB = 0x09, LF = 0x0a, CR = 0x0d, QUOTE = 0x22, COMMA = 0x2c, MINUS = 0x2d, DOT = 0x2e, ZERO = 0x30,
    ONE = 0x31, NINE = 0x39, COLON = 0x3a, OPEN = 0x5b, BACKSLASH = 0x5c, CLOSE = 0x5d, OPEN_OBJECT = 0x7b, CLOSE_OBJECT = 0x7d,
    PLUS = 0x2b, E = 0x65, UPPER_E = 0x45, T = 0x74, F = 0x66;

/** The powers of ten that are doubles exactly: the fast path's (Clinger's) 10^0 .. 10^22. */
const exact10 = Array.from({ length: 23 }, (_, k) => Number(`1e${k}`));

/** A number's text as JSON.parse reads it: its own conversion, for the numbers that the fast paths leave. */
function slow(b: Buffer, start: number, end: number): number {
    return Number(b.toString('latin1', start, end));
}

/** Veltkamp's splitter for binary64: 2^27 + 1. */
const SPLIT = 134217729;

/** The rounding error of a * b (Dekker's exact product, a * b = fl(a * b) + the result; no overflow nor underflow here). */
function productError(a: number, b: number, p: number): number {
    let t = SPLIT * a;
    const ah = t - (t - a);
    const al = a - ah;
    t = SPLIT * b;
    const bh = t - (t - b);
    const bl = b - bh;
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl;
}

/** a double's bits (big-endian: its sign, exponent and first significand bits in the first word), to read and make them */
const bits = new DataView(new ArrayBuffer(8));

/**
 * (high * 10^extra + low) / p correctly rounded, as JSON.parse reads a number of 16 to 19 significant digits with a
 * negative power of ten (p = 10^22 at most): the quotient of their double approximations, then corrected by its
 * remainder, computed exactly (Dekker's products, Sterbenz's subtraction). The correction is decided only where the
 * exact quotient is far from any midpoint between doubles (2^-30 of a unit in the last place, against an error of
 * 2^-49 at most) and from a power of two; else NaN, and JSON.parse's own conversion reads the number. `high` has 15
 * digits and `low` `extra` (1 to 4).
 */
function quotient(high: number, extra: number, low: number, p: number): number {
    // the digits as an exact sum m = mh + ml (each an integer; ml is below 2^12)
    const scaled = high * exact10[extra];
    const mh = scaled + low;
    const back = mh - scaled;
    const ml = ((scaled - (mh - back)) + (low - back)) + productError(high, exact10[extra], scaled);
    const q = mh / p;
    // the remainder m - q * p, exactly but for roundings far below q's last place: q * p is near mh, so their difference is exact
    const qp = q * p;
    const r = ((mh - qp) + ml) - productError(q, p, qp);
    bits.setFloat64(0, q);
    const hi = bits.getUint32(0);
    const lo = bits.getUint32(4);
    const significand = hi & 0xfffff;
    if ((significand === 0 && lo < 8) || (significand === 0xfffff && lo > 0xfffffff7)) {
        // within a few units of a power of two, where the unit in the last place changes
        return NaN;
    }
    // q's unit in the last place (q is normal: at least 10^-7 here)
    bits.setUint32(0, (hi & 0x7ff00000) - (52 << 20));
    bits.setUint32(4, 0);
    const ulp = bits.getFloat64(0);
    const c = r / p;
    const t = c / ulp;
    const f = t - Math.floor(t);
    if (Math.abs(f - 0.5) < 2 ** -30) {
        return NaN;
    }
    return q + c;
}

/** Where the next byte after JSON whitespace (space, tab, LF, CR: nothing else) is. */
function skip(b: Uint8Array, i: number): number {
    let c = b[i];
    while (c === SPACE || c === LF || c === CR || c === TAB) {
        c = b[++i];
    }
    return i;
}

/** A key at b[i]: its text when it is plain ASCII with no escape, and the position after its closing quote; else undefined. */
function key(b: Buffer, i: number): [string, number] | undefined {
    if (b[i] !== QUOTE) {
        return undefined;
    }
    let j = i + 1;
    for (let c = b[j]; c !== QUOTE; c = b[++j]) {
        // (the 0 after the body's end stops it too)
        if (!(c >= SPACE && c < 0x80 && c !== BACKSLASH)) {
            return undefined;
        }
    }
    return [b.toString('latin1', i + 1, j), j + 1];
}

/** a scanned tensor's values until its end */
const none = new Float64Array(0);

/**
 * The body being scanned, copied with a 0 after it: no read goes past its end (every loop of the scanner stops at a
 * 0, which JSON has nowhere outside strings), and each read is of a byte, which keeps the loops fast.
 */
let text = Buffer.alloc(1 << 16);

/** The values of the tensor being scanned: one array, grown as needed and reused, copied out at each tensor's end. */
let scratch = new Float64Array(1 << 13);

/** Beyond these sizes, the copy of the body and the values are not kept between bodies (4 MB, 8 MB). */
const keepText = 1 << 22;
const keepScratch = 1 << 20;

/**
 * The scanner's form of a body (see JsonTensors), or undefined for any body outside it: then the ordinary path
 * parses it, and answers as it does.
 */
export function scan(body: Buffer): JsonTensors | undefined {
    if (text.length <= body.length) {
        text = Buffer.allocUnsafeSlow(Math.max(body.length + 1, text.length * 2));
    }
    body.copy(text);
    text[body.length] = 0;
    try {
        const tensors = scanBody(text, body.length);
        return tensors && new JsonTensors(body, tensors);
    }
    finally {
        if (text.length > keepText) {
            text = Buffer.alloc(1 << 16);
        }
        if (scratch.length > keepScratch) {
            scratch = new Float64Array(1 << 13);
        }
    }
}

/** The inputs of the body of `length` bytes in `b` (then a 0), or undefined. */
function scanBody(b: Buffer, length: number): ScannedTensor[] | undefined {
    let i = skip(b, 0);
    if (b[i] !== OPEN_OBJECT) {
        return undefined;
    }
    const inputs = key(b, skip(b, i + 1));
    if (!inputs || inputs[0] !== 'inputs') {
        return undefined;
    }
    i = skip(b, inputs[1]);
    if (b[i] !== COLON) {
        return undefined;
    }
    i = skip(b, i + 1);
    const tensors: ScannedTensor[] = [];
    if (b[i] === OPEN) {
        const t: ScannedTensor = { dims: [], values: none, booleans: false };
        tensors.push(t);
        i = nested(b, i, t);
    }
    else if (b[i] === OPEN_OBJECT) {
        i = skip(b, i + 1);
        for (let first = true; b[i] !== CLOSE_OBJECT; first = false) {
            if (!first) {
                if (b[i] !== COMMA) {
                    return undefined;
                }
                i = skip(b, i + 1);
            }
            const name = key(b, i);
            // JSON.parse would keep the last of two keys alike; bourne refuses "__proto__": the ordinary path says what they mean
            if (!name || name[0] === '__proto__' || tensors.some((t) => t.name === name[0])) {
                return undefined;
            }
            i = skip(b, name[1]);
            if (b[i] !== COLON || b[i = skip(b, i + 1)] !== OPEN) {
                return undefined;
            }
            const t: ScannedTensor = { name: name[0], dims: [], values: none, booleans: false };
            tensors.push(t);
            i = nested(b, i, t);
            if (i < 0) {
                return undefined;
            }
            i = skip(b, i);
        }
        i++;
    }
    else {
        return undefined;
    }
    // after the inputs, only the body's closing brace and whitespace
    if (i < 0) {
        return undefined;
    }
    i = skip(b, i);
    return b[i] === CLOSE_OBJECT && skip(b, i + 1) === length ? tensors : undefined;
}

/**
 * Scans the nested arrays at b[i] (an opening bracket) into `t`: its dims, learnt from the first array that closes at
 * each depth and checked against every other; its values, each a number or true or false, all at the same depth; at
 * most maxRank deep, no array empty. Returns the position after the outermost array's closing bracket, or -1 for
 * anything else (then the ordinary path decides).
 */
function nested(b: Buffer, i: number, t: ScannedTensor): number {
    const dims = t.dims;
    /** the count of elements so far of the innermost array open, and of each array around it, by depth */
    let count = 0;
    const counts: number[] = [];
    let values = scratch;
    let n = 0;
    let depth = 0;
    /** the depth of every value: the first value's */
    let leaves = -1;
    let c = b[i];
    for (;;) {
        // a value starts at b[i] (c)
        if (c === OPEN) {
            if (depth === leaves || depth === maxRank) {
                return -1;
            }
            counts[depth++] = count;
            count = 0;
            i = skip(b, i + 1);
            c = b[i];
            continue;
        }
        if (depth !== leaves) {
            if (leaves >= 0) {
                return -1;
            }
            leaves = depth;
        }
        if (n === values.length) {
            const grown = new Float64Array(values.length * 2);
            grown.set(values);
            values = scratch = grown;
        }
        if (c === T) {
            if (b[i + 1] !== 0x72 || b[i + 2] !== 0x75 || b[i + 3] !== 0x65) {
                return -1;
            }
            t.booleans = true;
            values[n++] = 1;
            i += 4;
        }
        else if (c === F) {
            if (b[i + 1] !== 0x61 || b[i + 2] !== 0x6c || b[i + 3] !== 0x73 || b[i + 4] !== 0x65) {
                return -1;
            }
            t.booleans = true;
            values[n++] = 0;
            i += 5;
        }
        else {
            // a number, checked against JSON's grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
            const negative = c === MINUS;
            if (negative) {
                c = b[++i];
            }
            const start = i;
            /** its significant digits (from the first that is not 0) as an integer: the first 15 in `high`, the rest in `low` */
            let high = 0;
            let low = 0;
            let digits = 0;
            /** the power of ten that those digits are multiplied by */
            let scale = 0;
            if (c === ZERO) {
                c = b[++i];
            }
            else if (c >= ONE && c <= NINE) {
                do {
                    if (digits++ < 15) {
                        high = high * 10 + (c - ZERO);
                    }
                    else {
                        low = low * 10 + (c - ZERO);
                    }
                    c = b[++i];
                } while (c >= ZERO && c <= NINE);
            }
            else {
                // (an empty array's closing bracket too)
                return -1;
            }
            if (c === DOT) {
                c = b[++i];
                if (!(c >= ZERO && c <= NINE)) {
                    return -1;
                }
                do {
                    if (digits < 15) {
                        // zeros before the first significant digit count for nothing but the scale
                        if (high || c !== ZERO) {
                            high = high * 10 + (c - ZERO);
                            digits++;
                        }
                        scale--;
                    }
                    else {
                        low = low * 10 + (c - ZERO);
                        digits++;
                        scale--;
                    }
                    c = b[++i];
                } while (c >= ZERO && c <= NINE);
            }
            if (c === E || c === UPPER_E) {
                c = b[++i];
                const down = c === MINUS;
                if (down || c === PLUS) {
                    c = b[++i];
                }
                if (!(c >= ZERO && c <= NINE)) {
                    return -1;
                }
                let e = 0;
                do {
                    // (an exponent this large is beyond any double's: the slow path reads it)
                    if (e < 1e6) {
                        e = e * 10 + (c - ZERO);
                    }
                    c = b[++i];
                } while (c >= ZERO && c <= NINE);
                scale += down ? -e : e;
            }
            // high * 10^scale when there are at most 15 digits; else high * 10^(scale + digits - 15) + low * 10^scale
            let x: number;
            if (digits <= 15) {
                if (scale >= -22 && scale <= 22) {
                    // Clinger's fast path: high and 10^|scale| are exact doubles, so one operation rounds correctly, as JSON.parse does
                    x = scale < 0 ? high / exact10[-scale] : high * exact10[scale];
                }
                else {
                    x = high ? slow(b, start, i) : 0;
                }
            }
            else {
                x = digits <= 19 && scale < 0 && scale >= -22 ? quotient(high, digits - 15, low, exact10[-scale]) : NaN;
                if (x !== x) {
                    x = slow(b, start, i);
                }
            }
            x = negative ? -x : x;
            values[n++] = x;
        }
        // after a value: the next one, or the end of arrays
        for (;;) {
            i = skip(b, i);
            c = b[i];
            count++;
            if (c === COMMA) {
                i = skip(b, i + 1);
                c = b[i];
                break;
            }
            if (c !== CLOSE) {
                return -1;
            }
            // the first array to close at a depth sets its dim, which every other there must have
            const length = count;
            count = counts[--depth];
            const known = dims[depth];
            if (known === undefined) {
                dims[depth] = length;
            }
            else if (known !== length) {
                return -1;
            }
            i++;
            if (depth === 0) {
                t.values = values.slice(0, n);
                return i;
            }
        }
    }
}
