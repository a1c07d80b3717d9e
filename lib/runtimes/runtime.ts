// The Runtime contract every runtime adapter implements: load a model, then run feeds. Handlers never import a
// runtime package; they see the Session's signature and its feeds and outputs.
import type { Feeds } from '../tensor';
import type { Signature } from '../signature';
import type { DeploymentConfig, ModelConfig } from '../../schemas/serve';

export interface Session {
    signature: Signature;
    /** the execution backend actually chosen, e.g. "onnxruntime cpu" */
    backend: string;
    /** why the backend differs from what was asked for, if it does */
    notice?: string;
    run(feeds: Feeds): Promise<Feeds>;
    /** Frees what the model holds (its weights, native or on a device): a multiplexed deployment's replica evicted it. */
    release(): void;
}

export type Loader = (model: ModelConfig, resources: DeploymentConfig['resources']) => Promise<Session>;
