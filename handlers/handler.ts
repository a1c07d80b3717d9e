// The Handler interface every built-in or user handler implements, and the tensor types they share.
import type Joi from 'joi';

export type TypedArray = Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
    | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

/** A dense tensor: row-major data and its dimensions. */
export interface Tensor {
    type: string;
    data: TypedArray;
    dims: number[];
}

export type Feeds = Record<string, Tensor>;

/** One model input or output as the runtime reports it; a string dim is symbolic. */
export interface TensorInfo {
    name: string;
    type: string;
    dims: Array<number | string>;
}

export interface Signature {
    inputs: TensorInfo[];
    outputs: TensorInfo[];
}

/** A request after the front door has checked it: its rows, its batching key and what the replica needs. */
export interface Parsed<Item> {
    rows: number;
    /** requests share a batch only when their keys are equal (same non-batch dims, say) */
    key: string;
    item: Item;
}

export interface RequestIn {
    /** parsed JSON, multipart fields (files as Buffers), or the raw Buffer of any other body */
    payload: unknown;
    headers: Record<string, string | undefined>;
    /** the body's media type as the client sent it, without parameters ("image/png"); application/json when none */
    contentType: string;
}

/** What a model folder (or a model file's own folder) provides, read once per handler. */
export interface ModelFiles {
    /** the model file the runtime loads (model.onnx, onnx/model.onnx or model.json) */
    file: string;
    /** the folder holding tokenizer.json, config.json and preprocessor_config.json, when there is one */
    dir?: string;
    /** tokenizer.json, when present */
    tokenizer?: string;
    /** config.json (id2label, ...), parsed */
    config?: Record<string, unknown>;
    /** preprocessor_config.json (image size, mean, std, rescale factor; audio sampling_rate), parsed */
    preprocessor?: Record<string, unknown>;
}

/** Everything a handler is made from: its deployment's options (validated, defaults filled) and the model's files. */
export interface HandlerContext {
    options: Record<string, unknown>;
    model: ModelFiles;
}

/** OpenAPI extras for a route: non-JSON request bodies (by media type) and header parameters. */
export interface OpenApiExtras {
    content?: Record<string, Record<string, unknown>>;
    parameters?: Array<Record<string, unknown>>;
}

/**
 * A handler. One instance is made per deployment in the front process (parse, schemas) and one in each replica
 * process (load, preprocess, postprocess, reconfigure), from the same HandlerContext.
 */
export interface Handler<Item = unknown> {
    /** joi schemas of the JSON request and response bodies, for validation and OpenAPI */
    requestSchema(sig: Signature): Joi.Schema;
    responseSchema(sig: Signature): Joi.Schema;
    /** a request body that works, for the OpenAPI document */
    example(sig: Signature): unknown;
    /** non-JSON bodies and headers the route takes, for OpenAPI */
    openapi?(sig: Signature): OpenApiExtras;
    /** front door (HTTP process): check a request and count its rows; throws Boom 4xx. Keep it cheap: decoding belongs in preprocess */
    parse(req: RequestIn, sig: Signature): Parsed<Item>;
    /** replica process, once before the first batch: load what preprocess needs (a tokenizer, say) */
    load?(sig: Signature): void | Promise<void>;
    /** replica process: a batch of items to the model's feeds; throw a Boom 4xx for an item the client got wrong */
    preprocess(items: Item[], sig: Signature): Feeds | Promise<Feeds>;
    /** replica process: the model's outputs back to one response body per item */
    postprocess(outputs: Feeds, items: Item[], sig: Signature): unknown[] | Promise<unknown[]>;
    /** replica process: apply the deployment's user_config (at start, and live on reload); throw if it is wrong */
    reconfigure(userConfig: Record<string, unknown>, sig: Signature): void | Promise<void>;
}

/** The most rows a model takes in one run: its first input dim when that is fixed, else unbounded. */
export function fixedBatch(sig: Signature): number | undefined {
    const first = sig.inputs[0]?.dims[0];
    return typeof first === 'number' && first > 0 ? first : undefined;
}

/** Makes a handler for one deployment. Built-ins and user modules export one of these. */
export type HandlerFactory<Item = unknown> = (ctx: HandlerContext) => Handler<Item>;
