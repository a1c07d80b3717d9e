// What the front process and a replica process say to each other over the IPC channel (serialization: 'advanced',
// so typed arrays and Buffers cross as they are). Both sides import these types; nothing else crosses.
import type { WireError } from './errors';
import type { Signature } from './signature';
import type { DeploymentConfig } from '../schemas/serve';

/** What a replica process is started with (in its environment, as JSON): its deployment's config and its id. */
export interface ReplicaSpec extends DeploymentConfig {
    id: string;
}

export type ToWorker =
    | { type: 'batch'; id: number; items: unknown[] }
    | { type: 'ping' }
    | { type: 'reconfigure'; user_config: Record<string, unknown> }
    | { type: 'stop' };

export type FromWorker =
    | { type: 'ready'; signature: Signature; backend: string; notice?: string }
    | { type: 'failed'; message: string }
    | { type: 'result'; id: number; bodies?: string[]; error?: WireError }
    | { type: 'pong' }
    | { type: 'reconfigured'; error?: string };
