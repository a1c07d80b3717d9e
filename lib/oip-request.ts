// The Open Inference Protocol's inference request (REST): its JSON form, or the binary extension's (a JSON header of
// Inference-Header-Content-Length bytes, then each binary input's bytes, in the order of the inputs). Read in the front
// process by what speaks V2: the tensor handler, and lib/oip-media.ts for text, image and audio. What each input must
// be for the model is theirs to check.
import Joi from 'joi';
import { clip, fail, quote } from './errors';
import { oipTypes } from './tensor';

/** An input as the request gives it: its JSON `data`, or (binary_data_size) its bytes. */
export interface InferInput {
    name: string;
    shape: number[];
    datatype: string;
    data?: unknown;
    bytes?: Buffer;
}

/** An output asked for, by name, and whether it comes back as binary data. */
export interface RequestedOutput {
    name: string;
    binary: boolean;
}

export interface InferRequest {
    id?: unknown;
    inputs: InferInput[];
    /** the outputs asked for, in order; absent: every output */
    outputs?: RequestedOutput[];
    /** binary_data_output: the outputs not asked for by name come back as binary data */
    binary: boolean;
}

const schema = Joi.object({
    id: Joi.any(),
    parameters: Joi.object({ binary_data_output: Joi.boolean() }).unknown(true),
    inputs: Joi.array().items(Joi.object({
        name: Joi.string().required(),
        shape: Joi.array().items(Joi.number().integer().min(0)).required(),
        datatype: Joi.string().valid(...oipTypes.keys()).required(),
        data: Joi.array(),
        parameters: Joi.object({ binary_data_size: Joi.number().integer().min(0) }).unknown(true)
    }).unknown(true)).min(1).required(),
    outputs: Joi.array().items(Joi.object({
        name: Joi.string().required(),
        parameters: Joi.object({ binary_data: Joi.boolean() }).unknown(true)
    }).unknown(true))
}).unknown(true);

interface Valid {
    id?: unknown;
    parameters?: { binary_data_output?: boolean };
    inputs: Array<{ name: string; shape: number[]; datatype: string; data?: unknown; parameters?: { binary_data_size?: number } }>;
    outputs?: Array<{ name: string; parameters?: { binary_data?: boolean } }>;
}

/**
 * A request's body: parsed JSON, or the raw body of the binary extension, whose JSON header is `headerLength`
 * (Inference-Header-Content-Length) bytes long. Throws Boom 400.
 */
export function readInfer(payload: unknown, headerLength?: unknown): InferRequest {
    if (!Buffer.isBuffer(payload)) {
        return read(payload);
    }
    const n = Number(headerLength);
    if (!(n > 0 && n <= payload.length)) {
        throw fail('INVALID_BODY', `Inference-Header-Content-Length must be between 1 and the body length (${payload.length})`);
    }
    let header: unknown;
    try {
        header = JSON.parse(payload.subarray(0, n).toString('utf8'));
    }
    catch {
        throw fail('INVALID_JSON', 'the inference header is not valid JSON');
    }
    let at = n;
    return read(header, (input, size) => {
        if (at + size > payload.length) {
            throw fail('INPUT_SHAPE_MISMATCH', `input ${quote(input)} has ${payload.length - at} bytes left in the body, but its binary_data_size is ${size}`, { input });
        }
        at += size;
        return payload.subarray(at - size, at);
    });
}

/** A request's JSON (the header, in the binary extension, whose `bytes` hands out each binary input's bytes in turn). */
function read(body: unknown, bytes?: (input: string, size: number) => Buffer): InferRequest {
    const { error, value } = schema.validate(body);
    if (error) {
        throw fail('INVALID_BODY', clip(error.message));
    }
    const v = value as Valid;
    const binary = v.parameters?.binary_data_output === true;
    const inputs = v.inputs.map(({ name, shape, datatype, data, parameters }) => {
        const size = parameters?.binary_data_size;
        return bytes && size !== undefined ? { name, shape, datatype, bytes: bytes(name, size) } : { name, shape, datatype, data };
    });
    const outputs = v.outputs?.map((o) => ({ name: o.name, binary: o.parameters?.binary_data ?? binary }));
    return { ...(v.id !== undefined && { id: v.id }), inputs, ...(outputs && { outputs }), binary };
}

/** Throws INVALID_BODY when the request asks for an output the model does not have (its outputs: `names`). */
export function checkOutputs(request: InferRequest, names: readonly string[]): void {
    const unknown = request.outputs?.find((o) => !names.includes(o.name));
    if (unknown) {
        throw fail('INVALID_BODY', `the model has no output ${quote(unknown.name)}; its outputs: ${names.join(', ')}`);
    }
}
