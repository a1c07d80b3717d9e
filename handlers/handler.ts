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
    payload: unknown;
    headers: Record<string, string | undefined>;
}

export interface Handler<Item = unknown> {
    /** joi schemas of the request and response bodies, for validation and OpenAPI */
    requestSchema(sig: Signature): Joi.Schema;
    responseSchema(sig: Signature): Joi.Schema;
    /** a request body that works, for the OpenAPI document */
    example(sig: Signature): unknown;
    /** front door (HTTP process): check a request and count its rows; throws Boom 4xx */
    parse(req: RequestIn, sig: Signature): Parsed<Item>;
    /** replica process: a batch of items to the model's feeds */
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
