// What the front process and a replica process say to each other over the IPC channel (serialization: 'advanced',
// so typed arrays and Buffers cross as they are). Both sides import these types; nothing else crosses.
import type { WireError } from './errors';
import type { Signature } from './signature';
import type { DeploymentConfig } from '../schemas/serve';

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
    | { type: 'batch'; id: number; items: unknown[] }
    /** `sent` (performance.now() in the front process) comes back with the pong: when the worker was known alive */
    | { type: 'ping'; sent: number }
    | { type: 'reconfigure'; user_config: Record<string, unknown> }
    | { type: 'stop' };

export type FromWorker =
    | { type: 'ready'; signature: Signature; backend: string; notice?: string }
    | { type: 'failed'; message: string }
    | { type: 'result'; id: number; bodies?: string[]; error?: WireError }
    | { type: 'pong'; sent: number }
    | { type: 'reconfigured'; error?: string };
