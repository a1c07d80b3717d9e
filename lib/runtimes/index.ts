// Runtime adapters: load a model and run feeds. Handlers never import a runtime package.
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

// require(), not import(): a replica loads only its own runtime, and tests run TypeScript through loader hooks,
// where a dynamic import() is slow and fragile.
/* eslint-disable @typescript-eslint/no-require-imports */
const loaders: Record<ModelConfig['runtime'], () => Loader> = {
    onnx: () => (require('./onnx') as typeof import('./onnx')).load,
    tfjs: () => (require('./tfjs') as typeof import('./tfjs')).load
};

export function load(model: ModelConfig, resources: DeploymentConfig['resources']): Promise<Session> {
    return loaders[model.runtime]()(model, resources);
}
