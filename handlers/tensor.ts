// The generic tensor handler: named nested arrays in, named nested arrays out, rows batched. It speaks the Open
// Inference Protocol too: its requests' forms (JSON and the binary extension) on any route, and on the V2 routes its
// answers' forms, written here in the replica (lib/oip-answer.ts) so that the front only forwards them.
import Joi from 'joi';
import { clip, fail, quote } from '../lib/errors';
import { STRING, checkShape, fromBytes, fromFlat, fromNested, oipTypes, shapeMismatch, showDims, toNested, sliceRows, concatRows } from '../lib/tensor';
import type { Feeds, Tensor } from '../lib/tensor';
import { fixedBatch, type Signature, type TensorInfo } from '../lib/signature';
import { checkOutputs, readInfer, type InferRequest } from '../lib/oip-request';
import { answered, writeAnswer, type AnswerTo } from '../lib/oip-answer';
import { JsonTensors, readJson } from '../lib/json-tensor';
import type { Handler, HandlerFactory, Parsed, RequestIn } from '../lib/handler';

/** A request's tensors, and for a request to a V2 route, what its answer is written for. */
interface Item {
    feeds: Feeds;
    oip?: AnswerTo;
}

/**
 * Whether a model has no batch dimension: its inputs' first dimensions are fixed and not all the same (the Open
 * Inference Protocol's example model takes [2, 2] and [3]). Each of its requests then runs alone, fed as it is, and
 * gets its outputs whole.
 */
function batchless(sig: Signature): boolean {
    const firsts = new Set(sig.inputs.map((i) => i.dims[0]));
    return firsts.size > 1 && [...firsts].every((d) => typeof d === 'number' && d >= 0);
}

/** a batchless model's requests: each its own batching key, so that none shares a batch */
let alone = 0;

function valueSchema(info: TensorInfo): Joi.Schema {
    const leaf = info.type === 'bool' ? Joi.boolean() : info.type === STRING ? Joi.string() : /int/.test(info.type) ? Joi.number().integer() : Joi.number();
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
            return info.type === 'bool' ? false : info.type === STRING ? '' : 0;
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
    const single = batchless(sig);
    const cap = single ? undefined : fixedBatch(sig);
    for (const info of sig.inputs) {
        const t = feeds[info.name];
        if (!t) {
            throw fail('INVALID_BODY', `missing input "${info.name}"`, { input: info.name });
        }
        const mismatch = (why: string): never => {
            throw shapeMismatch(info.name, info.dims, t.dims, why);
        };
        checkShape(info.name, info.dims, t.dims);
        if (info.type === STRING && (t.data as unknown as string[]).some((x) => x.includes('\0'))) {
            throw fail('INPUT_DTYPE_MISMATCH', `input ${quote(info.name)} holds a NUL character, which would end its string in ONNX Runtime`, { input: info.name, expected: info.type });
        }
        if (rows >= 0 && t.dims[0] !== rows && !single) {
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
    return single ? { rows: 1, key: `alone#${alone++}`, item: { feeds } } : { rows, key: key.join(';'), item: { feeds } };
}

/** An Open Inference Protocol request's inputs (lib/oip-request.ts) as the model's feeds: names, datatypes, shapes. */
function oipFeeds(request: InferRequest, sig: Signature): Feeds {
    const feeds: Feeds = {};
    for (const input of request.inputs) {
        const type = oipTypes.get(input.datatype) as string;
        const info = inputInfo(sig, input.name);
        if (info.type !== type) {
            throw fail('INPUT_DTYPE_MISMATCH', `input ${quote(input.name)} expects ${info.type}, received datatype ${input.datatype}`, { input: input.name, expected: info.type });
        }
        // The shape against the model first; then (fromBytes, fromFlat) against the data sent, before anything is allocated.
        checkShape(input.name, info.dims, input.shape);
        feeds[input.name] = input.bytes ? fromBytes(input.bytes, type, input.shape, input.name) : fromFlat(input.data, type, input.shape, input.name);
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
            if (req.oip) {
                // a V2 route's: answered in the protocol's form, with the outputs it asks for
                const request = readInfer(req.payload, headerLength);
                checkOutputs(request, sig.outputs.map((o) => o.name));
                const parsed = check(oipFeeds(request, sig), sig);
                const { id, outputs, binary } = request;
                return { ...parsed, item: { feeds: parsed.item.feeds, oip: { ...req.oip, id, outputs, binary } } };
            }
            // A JSON body the front door kept raw (lib/http.ts) is scanned straight into typed arrays (lib/json-tensor.ts);
            // one that is not in the scanner's form, or whose tensors the model would not take as they are, goes the
            // ordinary way, as parsed JSON, and is answered as it always is.
            let payload = Buffer.isBuffer(req.payload) && req.contentType === 'application/json' ? readJson(req.payload) : req.payload;
            if (payload instanceof JsonTensors) {
                const feeds = payload.feeds(sig);
                if (feeds) {
                    return check(feeds, sig);
                }
                payload = payload.value();
            }
            const inputs = (payload as { inputs?: unknown } | null)?.inputs;
            if (Buffer.isBuffer(payload) || (Array.isArray(inputs) && inputs.length && !Array.isArray(inputs[0]) && typeof inputs[0] === 'object')) {
                return check(oipFeeds(readInfer(payload, headerLength), sig), sig);
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
            // a batchless model's request runs alone, as it is
            const pad = batchless(sig) ? 0 : fixedBatch(sig) ?? 0;
            return Object.fromEntries(sig.inputs.map((i) => [i.name, concatRows(items.map((it) => it.feeds[i.name]), pad)]));
        },

        postprocess(all, items, sig) {
            const names = options.outputs ?? Object.keys(all);
            const rowsOf = (it: Item) => it.feeds[sig.inputs[0].name].dims[0];
            // outputs whose first dimension is the batch's are split by rows; any other goes whole to every request
            const padded = batchless(sig) ? -1 : Math.max(items.reduce((n, it) => n + rowsOf(it), 0), fixedBatch(sig) ?? 0);
            let from = 0;
            return items.map((it) => {
                const n = rowsOf(it);
                const mine = (t: Tensor) => t.dims[0] === padded ? sliceRows(t, from, n) : t;
                const answer = it.oip
                    ? writeAnswer(it.oip, answered(it.oip, names).map(({ name, binary }) => ({ name, tensor: mine(all[name]), binary })))
                    : { outputs: Object.fromEntries(names.map((name) => [name, toNested(mine(all[name]))])) };
                from += n;
                return answer;
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
