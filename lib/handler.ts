// The Handler contract every built-in or user handler implements: the front process parses and describes requests,
// the replica processes turn batches of them into the model's feeds and its outputs into answers.
import type { IncomingHttpHeaders } from 'node:http';
import type Joi from 'joi';
import type { Feeds } from './tensor';
import type { Signature } from './signature';
import type { ModelFiles } from './model-files';
import type { V2Model } from './oip-answer';
import type { DeploymentHandle } from './handle';

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
    headers: IncomingHttpHeaders;
    /** the body's media type as the client sent it, without parameters ("image/png"); application/json when none */
    contentType: string;
    /**
     * Set on a request to an Open Inference Protocol route (lib/oip.ts): the model it names, and the handler answers
     * in the protocol's form (the tensor handler does; lib/oip-answer.ts)
     */
    oip?: V2Model;
}

/** Everything a handler is made from: its deployment's options (validated, defaults filled) and the model's files. */
export interface HandlerContext {
    options: Record<string, unknown>;
    model: ModelFiles;
    /**
     * In a replica: a handle on another deployment, which this one declares in serve.yaml (`calls:`), by name (its
     * own application's) or as application/name; its call() goes through the target's own queue (lib/handle.ts).
     * Absent in the front process, where handlers only parse.
     */
    deployment?(name: string): DeploymentHandle;
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
    /**
     * A GET route's input: the schema of its query string, whose validated value is then the request's body (the text
     * handler's: {text, text_pair}). Without it, the handler takes no GET route.
     */
    querySchema?(): Joi.ObjectSchema;
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

/** Makes a handler for one deployment. Built-ins and user modules export one of these. */
export type HandlerFactory<Item = unknown> = (ctx: HandlerContext) => Handler<Item>;
