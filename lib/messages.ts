// What the front process and a replica process say to each other over the IPC channel (serialization: 'advanced',
// so typed arrays and Buffers cross as they are; large ones cross beside it, on the bulk channel: lib/bulk.ts). Both
// sides import these types; nothing else crosses.
import type { WireError } from './errors';
import type { Signature } from './signature';
import type { CacheReport } from './model-cache';
import type { ModelRef } from './model-folder';
import type { DeploymentConfig, LoggingConfig } from '../schemas/serve';
import type { BulkArray } from './bulk';

/**
 * What a replica process is started with (in its environment, as JSON): its deployment's config, its id, and where its
 * files come from: a deployment's replicas load its version's snapshot (lib/snapshot.ts), `model.path` pointing into it.
 */
export interface ReplicaSpec extends DeploymentConfig {
    id: string;
    snapshot?: {
        /** the snapshot's folder; absent when none was taken and the files are loaded where they are */
        dir?: string;
        /** the model's path as serve.yaml gives it: what messages name, rather than the copy's */
        source: string;
        /** the copy of its handler module (`handler` names the original), when it has one of its own */
        handler?: string;
    };
    /** a multiplexed deployment's: the model of its folder that the replica starts with, `model.path` (lib/multiplex.ts) */
    start_model?: ModelRef;
}

/**
 * An answer's body as a replica writes it: JSON text, or an answer in the Open Inference Protocol's binary extension
 * (lib/oip-answer.ts).
 */
export type Body = string | BinaryBody;

/** The binary extension's answer: its JSON header (`header_length` bytes), then the outputs' bytes, as one. */
export interface BinaryBody {
    header_length: number;
    bytes: Uint8Array;
}

export type ToWorker =
    /**
     * `request_ids`: the id of each item's request, for the replica's log lines about the batch and for the calls its
     * handler makes; `deadlines_ms`: what is left of each item's request timeout as the batch leaves (sent to a
     * deployment that declares `calls`, whose calls carry it); `model`: a multiplexed deployment's model, which every
     * request of the batch names (lib/multiplex.ts); `bulk`: the items' large arrays, whose `bulk_bytes` bytes were
     * written to the replica's bulk channel just before (lib/bulk.ts), null in `items` until they are read
     */
    | { type: 'batch'; id: number; items: unknown[]; request_ids?: string[]; deadlines_ms?: number[]; model?: ModelRef; bulk?: BulkArray[]; bulk_bytes?: number }
    /** a multiplexed deployment's models that left its folder: the replica drops those it holds */
    | { type: 'unload'; ids: string[] }
    /** the answer to the replica's call `id` (lib/calls.ts): the target's JSON body, or its error */
    | { type: 'called'; id: number; body?: string; error?: WireError }
    /** `sent` (performance.now() in the front process) comes back with the pong: when the worker was known alive */
    | { type: 'ping'; sent: number }
    | { type: 'reconfigure'; user_config: Record<string, unknown> }
    /** a new logging_config, applied at once (no restart) */
    | { type: 'logging'; logging_config?: LoggingConfig }
    | { type: 'stop' };

export type FromWorker =
    /** `load_s`: how long the model and handler took to load and warm up */
    | { type: 'ready'; signature: Signature; backend: string; notice?: string; load_s: number }
    | { type: 'failed'; message: string }
    /** `stages`: seconds the batch took in preprocess, inference and postprocess (as far as it got) */
    | { type: 'result'; id: number; bodies?: Body[]; error?: WireError; stages: [number, number, number] }
    | { type: 'pong'; sent: number }
    /** a multiplexed deployment's replica: the models it holds now, after a load, evictions or a drop (lib/model-cache.ts) */
    | ({ type: 'models' } & CacheReport)
    /**
     * A call from the replica's handler to another deployment (lib/handle.ts): `target` as the handler named it, its
     * JSON body (or raw bytes), the request id(s) it is for and the ms left of their deadline; `model`: the model of a
     * multiplexed target (its serve_multiplexed_model_id)
     */
    | { type: 'call'; id: number; target: string; body: unknown; request_id?: string; timeout_ms: number; model?: string }
    | { type: 'reconfigured'; error?: string };
