// The generic tensor handler: named nested arrays in, named nested arrays out, rows batched.
import Joi from 'joi';
import { clip, fail, quote } from '../lib/errors';
import { checkShape, dtypes, fromBytes, fromFlat, fromNested, shapeMismatch, showDims, toNested, sliceRows, concatRows } from '../lib/tensor';
import type { Feeds, Tensor } from '../lib/tensor';
import { fixedBatch, type Signature, type TensorInfo } from '../lib/signature';
import type { Handler, HandlerFactory, Parsed, RequestIn } from '../lib/handler';

type Item = Feeds;

function valueSchema(info: TensorInfo): Joi.Schema {
    const leaf = info.type === 'bool' ? Joi.boolean() : /int/.test(info.type) ? Joi.number().integer() : Joi.number();
    let schema: Joi.Schema = leaf;
    for (let i = info.dims.length - 1; i >= 0; i--) {
        const d = info.dims[i];
        let arr: Joi.ArraySchema = Joi.array().items(schema);
        if (typeof d === 'number' && d > 0 && i > 0) {
            arr = arr.length(d);
        }
        schema = arr;
    }
    return schema.description(`${info.type} ${showDims(info.dims)}; the first dimension is the rows of the batch`);
}

function exampleValue(info: TensorInfo): unknown {
    const build = (depth: number): unknown => {
        if (depth === info.dims.length) {
            return info.type === 'bool' ? false : 0;
        }
        const d = info.dims[depth];
        return Array.from({ length: typeof d === 'number' && d > 0 && depth > 0 ? d : 1 }, () => build(depth + 1));
    };
    return build(0);
}

/** Check one request's tensors against the model: names, ranks, fixed dims, shared symbols, rows. */
function inputInfo(sig: Signature, name: string): TensorInfo {
    const info = sig.inputs.find((i) => i.name === name);
    if (!info) {
        throw fail('INVALID_BODY', `unknown input ${quote(name)}; the model's inputs are ${sig.inputs.map((i) => `"${i.name}"`).join(', ')}`);
    }
    return info;
}

export function check(feeds: Feeds, sig: Signature): Parsed<Item> {
    const symbols = new Map<string, number>();
    let rows = -1;
    const key: string[] = [];
    const cap = fixedBatch(sig);
    for (const info of sig.inputs) {
        const t = feeds[info.name];
        if (!t) {
            throw fail('INVALID_BODY', `missing input "${info.name}"`, { input: info.name });
        }
        const mismatch = (why: string): never => {
            throw shapeMismatch(info.name, info.dims, t.dims, why);
        };
        checkShape(info.name, info.dims, t.dims);
        if (rows >= 0 && t.dims[0] !== rows) {
            mismatch(`: every input must have the same number of rows (${rows})`);
        }
        rows = t.dims[0];
        if (cap && rows > cap) {
            mismatch(`: this model takes at most ${cap} rows per request`);
        }
        info.dims.forEach((d, i) => {
            if (typeof d === 'string' && i > 0) {
                const seen = symbols.get(d);
                if (seen !== undefined && seen !== t.dims[i]) {
                    mismatch(`: dimension "${d}" is ${seen} in another input`);
                }
                symbols.set(d, t.dims[i]);
            }
        });
        key.push(t.dims.slice(1).join('x'));
    }
    return { rows, key: key.join(';'), item: feeds };
}

/** The Open Inference Protocol's binary extension: a JSON header, then raw little-endian tensors. */
function parseBinary(body: Buffer, headerLength: number, sig: Signature): Feeds {
    if (!(headerLength > 0 && headerLength <= body.length)) {
        throw fail('INVALID_BODY', `Inference-Header-Content-Length must be between 1 and the body length (${body.length})`);
    }
    let header: unknown;
    try {
        header = JSON.parse(body.subarray(0, headerLength).toString('utf8'));
    }
    catch {
        throw fail('INVALID_JSON', 'the inference header is not valid JSON');
    }
    let at = headerLength;
    return parseOip(header, sig, (n) => {
        const bytes = body.subarray(at, at + n);
        at += n;
        return bytes;
    });
}

const oipTypes = new Map(Object.entries(dtypes).map(([k, v]) => [v.oip, k]));

const oipInput = Joi.object({
    name: Joi.string().required(),
    shape: Joi.array().items(Joi.number().integer().min(0)).required(),
    datatype: Joi.string().valid(...oipTypes.keys()).required(),
    data: Joi.array(),
    parameters: Joi.object({ binary_data_size: Joi.number().integer().min(0) }).unknown(true)
}).unknown(true);

const oipRequest = Joi.object({ inputs: Joi.array().items(oipInput).min(1).required() }).unknown(true);

function parseOip(body: unknown, sig: Signature, bytes?: (n: number) => Buffer): Feeds {
    const { error, value } = oipRequest.validate(body);
    if (error) {
        throw fail('INVALID_BODY', clip(error.message));
    }
    const feeds: Feeds = {};
    for (const input of value.inputs as Array<{ name: string; shape: number[]; datatype: string; data?: unknown; parameters?: { binary_data_size?: number } }>) {
        const type = oipTypes.get(input.datatype) as string;
        const info = inputInfo(sig, input.name);
        if (info.type !== type) {
            throw fail('INPUT_DTYPE_MISMATCH', `input ${quote(input.name)} expects ${info.type}, received datatype ${input.datatype}`, { input: input.name, expected: info.type });
        }
        // The shape against the model first; then (fromBytes, fromFlat) against the data sent, before anything is allocated.
        checkShape(input.name, info.dims, input.shape);
        const n = input.parameters?.binary_data_size;
        feeds[input.name] = bytes && n !== undefined
            ? fromBytes(bytes(n), type, input.shape, input.name)
            : fromFlat(input.data, type, input.shape, input.name);
    }
    return feeds;
}

// user_config: `outputs` limits the response to those model outputs.
const userConfigSchema = Joi.object({ outputs: Joi.array().items(Joi.string()).min(1).unique() });

export const tensor: HandlerFactory<Item> = () => {
    let options: { outputs?: string[] } = {};
    const handler: Handler<Item> = {
        requestSchema(sig) {
            const inputs = Joi.object(Object.fromEntries(sig.inputs.map((i) => [i.name, valueSchema(i).required()])));
            return Joi.object({
                inputs: sig.inputs.length === 1 ? Joi.alternatives(inputs, valueSchema(sig.inputs[0])).required() : inputs.required()
            });
        },

        responseSchema(sig) {
            return Joi.object({ outputs: Joi.object(Object.fromEntries(sig.outputs.map((o) => [o.name, valueSchema(o)]))) });
        },

        example(sig) {
            return { inputs: Object.fromEntries(sig.inputs.map((i) => [i.name, exampleValue(i)])) };
        },

        openapi() {
            return {
                content: {
                    'application/octet-stream': {
                        schema: { type: 'string', format: 'binary', description: 'Open Inference Protocol binary tensors: a JSON header of Inference-Header-Content-Length bytes, then raw little-endian data' }
                    }
                },
                parameters: [{
                    name: 'Inference-Header-Content-Length', in: 'header', required: false, schema: { type: 'integer', minimum: 1 },
                    description: 'with an application/octet-stream body: the length of its JSON header'
                }]
            };
        },

        parse(req: RequestIn, sig) {
            const headerLength = req.headers['inference-header-content-length'];
            if (req.contentType !== 'application/json' && req.contentType !== 'application/octet-stream') {
                throw fail('UNSUPPORTED_MEDIA_TYPE', `the tensor handler takes application/json or application/octet-stream (Open Inference Protocol binary), not ${clip(req.contentType)}`);
            }
            if (Buffer.isBuffer(req.payload)) {
                return check(parseBinary(req.payload, Number(headerLength), sig), sig);
            }
            const inputs = (req.payload as { inputs?: unknown } | null)?.inputs;
            if (Array.isArray(inputs) && inputs.length && !Array.isArray(inputs[0]) && typeof inputs[0] === 'object') {
                return check(parseOip(req.payload, sig), sig);
            }
            if (inputs === undefined || inputs === null) {
                throw fail('INVALID_BODY', 'the body must be {"inputs": {"<input name>": <nested array>}}');
            }
            if (Array.isArray(inputs)) {
                if (sig.inputs.length !== 1) {
                    throw fail('INVALID_BODY', `this model has ${sig.inputs.length} inputs, so "inputs" must be an object naming each of them`);
                }
                const [only] = sig.inputs;
                return check({ [only.name]: fromNested(inputs, only.type, only.name, only.dims) }, sig);
            }
            if (typeof inputs !== 'object') {
                throw fail('INVALID_BODY', '"inputs" must be an object of nested arrays');
            }
            const feeds: Feeds = {};
            for (const [name, value] of Object.entries(inputs)) {
                const info = inputInfo(sig, name);
                feeds[name] = fromNested(value, info.type, name, info.dims);
            }
            return check(feeds, sig);
        },

        preprocess(items, sig) {
            const pad = fixedBatch(sig) ?? 0;
            return Object.fromEntries(sig.inputs.map((i) => [i.name, concatRows(items.map((it) => it[i.name]), pad)]));
        },

        postprocess(all, items, sig) {
            const outputs = options.outputs ? Object.fromEntries(options.outputs.map((name) => [name, all[name]])) : all;
            const rows = items.reduce((n, it) => n + it[sig.inputs[0].name].dims[0], 0);
            const padded = Math.max(rows, fixedBatch(sig) ?? 0);
            let from = 0;
            return items.map((it) => {
                const n = it[sig.inputs[0].name].dims[0];
                const out = Object.fromEntries(Object.entries(outputs).map(([name, t]: [string, Tensor]) =>
                    [name, t.dims[0] === padded ? toNested(sliceRows(t, from, n)) : toNested(t)]));
                from += n;
                return { outputs: out };
            });
        },

        reconfigure(userConfig, sig) {
            const { error, value } = userConfigSchema.validate(userConfig);
            if (error) {
                throw new Error(`user_config of the tensor handler: ${error.message}`);
            }
            const unknown = (value.outputs ?? []).filter((o: string) => !sig.outputs.some((m) => m.name === o));
            if (unknown.length) {
                throw new Error(`user_config of the tensor handler: "outputs" names ${unknown.join(', ')}, not among the model's outputs (${sig.outputs.map((o) => o.name).join(', ')})`);
            }
            options = value;
        }
    };
    return handler;
};
