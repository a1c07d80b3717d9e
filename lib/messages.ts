// What the front process and a replica process say to each other over the IPC channel (serialization: 'advanced',
// so typed arrays and Buffers cross as they are). Both sides import these types; nothing else crosses.
import type { WireError } from './errors';
import type { Signature } from './signature';
import type { DeploymentConfig, LoggingConfig } from '../schemas/serve';

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
}

export type ToWorker =
    /** `request_ids`: the id of each item's request, for the replica's log lines about the batch */
    | { type: 'batch'; id: number; items: unknown[]; request_ids?: string[] }
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
    | { type: 'result'; id: number; bodies?: string[]; error?: WireError; stages: [number, number, number] }
    | { type: 'pong'; sent: number }
    | { type: 'reconfigured'; error?: string };
