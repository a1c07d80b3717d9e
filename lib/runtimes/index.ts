// Runtime adapters: load a model and run feeds. Handlers never import a runtime package.
import * as onnx from './onnx';
import type { Feeds, Signature } from '../../handlers/handler';
import type { DeploymentConfig, ModelConfig } from '../../schemas/serve';

export interface Session {
    signature: Signature;
    /** the execution backend actually chosen, e.g. "onnxruntime cpu" */
    backend: string;
    /** why the backend differs from what was asked for, if it does */
    notice?: string;
    run(feeds: Feeds): Promise<Feeds>;
}

export type Loader = (model: ModelConfig, resources: DeploymentConfig['resources']) => Promise<Session>;

// Static imports on purpose: tests run TypeScript through off-thread loader hooks, where a dynamic import() is slow and fragile.
const loaders: Record<ModelConfig['runtime'], Loader> = { onnx: onnx.load };

export function load(model: ModelConfig, resources: DeploymentConfig['resources']): Promise<Session> {
    return loaders[model.runtime](model, resources);
}
