// The runtime registry: each runtime serve.yaml names (model.runtime), and its adapter, loaded on first use.
import type { Loader, Session } from './runtime';
import type { DeploymentConfig, ModelConfig } from '../../schemas/serve';

export type { Loader, Session } from './runtime';

// require(), not import(): a replica loads only its own runtime, and tests run TypeScript through loader hooks,
// where a dynamic import() is slow and fragile.
const loaders: Record<ModelConfig['runtime'], () => Loader> = {
    onnx: () => (require('./onnx') as typeof import('./onnx')).load,
    tfjs: () => (require('./tfjs') as typeof import('./tfjs')).load
};

export function load(model: ModelConfig, resources: DeploymentConfig['resources']): Promise<Session> {
    return loaders[model.runtime]()(model, resources);
}
