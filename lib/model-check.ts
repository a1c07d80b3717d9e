// `tsserve validate`'s look inside the models: each one loads in its runtime, here in this process, with no replica
// started. A file that is not the runtime's format (a README.md given as an ONNX model, say) is an error at its path.
// Each deployment's handler is made for each model's files too, as the front and the replicas make it: what it cannot
// apply (an unknown feature_extractor_type in a preprocessor_config.json, say) is an error at the handler.
import path from 'node:path';
import { formatPath, type ConfigIssue } from './config';
import { modelFile, modelFiles } from './model-files';
import { create } from '../handlers';
import { folderModels } from './model-folder';
import { load } from './runtimes';
import type { ServeConfig } from '../schemas/serve';

// As in replicas (lib/replica.ts): onnxruntime-node phones home unless told not to.
process.env.ORT_DISABLE_TELEMETRY ??= '1';

/**
 * Loads every model the config names (each file once; each of a multiplexed deployment's folder), on CPU, and makes
 * each deployment's handler for it; resolves with an issue for each model that does not load and each handler that
 * cannot be made.
 */
export async function checkModels(config: ServeConfig, base: string): Promise<ConfigIssue[]> {
    const seen = new Map<string, Promise<string | undefined>>();
    const issues: ConfigIssue[] = [];
    for (const [a, app] of config.applications.entries()) {
        for (const [i, d] of app.deployments.entries()) {
            for (const model of d.multiplex ? folderModels(d.model).map((m) => ({ ...d.model, path: m.path })) : [d.model]) {
                const file = modelFile(model);
                const key = `${d.model.runtime}\0${file}`;
                if (!seen.has(key)) {
                    seen.set(key, load({ ...d.model, path: file }, { cpus: 1, gpus: 0 }).then(() => undefined, (err: Error) => err.message.split('\n')[0]));
                }
                const why = await seen.get(key);
                if (why !== undefined) {
                    const runtime = d.model.runtime === 'onnx' ? 'an ONNX model' : 'a TensorFlow.js model';
                    const shown = path.relative(base, file);
                    issues.push({
                        path: formatPath(['applications', a, 'deployments', i, 'model', 'path']),
                        message: `${shown} does not load as ${runtime}: ${why.split(file).join(shown)}`
                    });
                }
                try {
                    create(d.handler, { options: d.options, model: modelFiles(model) });
                }
                catch (err) {
                    issues.push({
                        path: formatPath(['applications', a, 'deployments', i, 'handler']),
                        message: `handler "${d.handler}" cannot be set up: ${(err as Error).message.split(base + path.sep).join('')}`
                    });
                }
            }
        }
    }
    return issues;
}
