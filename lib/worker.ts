// The replica process: loads the model and handler, then runs the batches its supervisor sends, one at a time.
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import Module, { createRequire } from 'node:module';
import { load, type Session } from './runtimes';
import { create } from '../handlers';
import { catalogue, fail, toWire, type WireError } from './errors';
import { modelFiles } from './model-files';
import { bindLogs, configureLogging, log } from './log';
import { zeros } from './tensor';
import type { Feeds } from './tensor';
import { answered, deploymentHandle, inBatch } from './handle';
import { ModelCache } from './model-cache';
import type { Handler } from './handler';
import { BinaryAnswer } from './oip-answer';
import type { Body, ToWorker, FromWorker, ReplicaSpec } from './messages';
import type { ModelRef } from './model-folder';
import type { Signature } from './signature';
import type { ModelConfig } from '../schemas/serve';

const spec = JSON.parse(process.env.TSSERVE_REPLICA as string) as ReplicaSpec;
// Each line this process logs names its replica.
bindLogs({ application: spec.id.slice(0, spec.id.indexOf('/')), deployment: spec.name, replica: spec.id });
configureLogging(spec.logging_config);
const send = (msg: FromWorker): void => {
    process.send?.(msg);
};

/** One inference on zeros (symbolic dims as 1), so the first real request does not pay for lazy init. */
function warmupFeeds(session: Session): Feeds {
    return Object.fromEntries(session.signature.inputs.map((i) => {
        const dims = i.dims.map((d) => typeof d === 'number' ? d : 1);
        return [i.name, zeros(i.type, i.name, dims)];
    }));
}

/**
 * Loads the snapshot's copy of the deployment's handler module (a CommonJS one) for handlers/custom.ts to require()
 * by the copy's path, from the module cache. It runs as if it were the original: its own require()s resolve from
 * where the original lies, as they always did (never from the temporary folder, where anyone may leave a
 * node_modules), and its __filename and __dirname are the original's. Resolves with the path to create it by.
 */
function preload(original: string, copy: string): string {
    const m = new Module(original, module);
    m.filename = original;
    // Compiled under the original's name, so that stack traces and coverage name the file as serve.yaml does.
    const body = vm.compileFunction(fs.readFileSync(copy, 'utf8'), ['exports', 'require', 'module', '__filename', '__dirname'], { filename: original });
    body.call(m.exports, m.exports, createRequire(original), m, original, path.dirname(original));
    m.loaded = true;
    // require() looks a module up by its real path
    require.cache[fs.realpathSync(copy)] = m;
    return copy;
}

/**
 * A message about the deployment's files names them as serve.yaml does, not by their copies in the snapshot (a
 * handler copied or not: split() by undefined splits nothing).
 */
const named = (message: string): string => spec.snapshot
    ? message.split(spec.model.path).join(spec.snapshot.source).split(spec.snapshot.handler as string).join(spec.handler)
    : message;

/** A model in its runtime, and the handler made for it. */
interface Ready {
    session: Session;
    handler: Handler;
}

/** the handler module to create handlers by (the snapshot's copy, once preloaded) */
let handlerFile: string | undefined;
/** the user_config in force: the one started with, then each that reconfigure applied */
let userConfig = spec.user_config;
/** a multiplexed deployment's models (lib/model-cache.ts): the one the replica starts with, then each on its first use */
let models: ModelCache<Ready> | undefined;

/** Loads a model, then the handler made for its files (each model of a multiplexed deployment has its own). */
async function open(config: ModelConfig): Promise<Ready> {
    const model = modelFiles(config);
    const session = await load({ ...config, path: model.file }, spec.resources);
    handlerFile ??= spec.snapshot?.handler ? preload(spec.handler, spec.snapshot.handler) : spec.handler;
    const handler = create(handlerFile, { options: spec.options, model, deployment: (name) => deploymentHandle(name, send) });
    await handler.load?.(session.signature);
    await handler.reconfigure(userConfig, session.signature);
    return { session, handler };
}

/**
 * Loads a model of a multiplexed deployment on its first use. It must take the inputs that the model the replica
 * started with takes (`kind`): the front checks every request against those. A failure is the batch's, named by the
 * model's id (its path is the server's business).
 */
async function openModel(ref: ModelRef, kind: Signature): Promise<Ready> {
    const why = (text: string) => fail('MODEL_ERROR', `model "${ref.id}" ${text.split(ref.path).join(path.basename(ref.path))}`);
    let ready: Ready;
    try {
        ready = await open({ ...spec.model, path: ref.path });
    }
    catch (err) {
        throw why(`failed to load: ${(err as Error).message.split('\n')[0]}`);
    }
    const inputs = (sig: Signature) => JSON.stringify(sig.inputs);
    if (inputs(ready.session.signature) !== inputs(kind)) {
        ready.session.release();
        throw why(`takes other inputs (${inputs(ready.session.signature)}) than the deployment's other models (${inputs(kind)}): a multiplexed deployment serves models of one kind`);
    }
    return ready;
}

async function start(): Promise<Ready> {
    const ready = await open(spec.model);
    const { session } = ready;
    try {
        await session.run(warmupFeeds(session));
    }
    catch (err) {
        log.warn(`replica ${spec.id}: warm-up inference failed (${(err as Error).message}); serving anyway`);
    }
    return ready;
}

const loading = performance.now();
let chain = start().then((ready) => {
    const load_s = (performance.now() - loading) / 1000;
    if (spec.start_model) {
        // multiplexed: the model it started with is the first its cache holds, and the kind of every other
        const kind = ready.session.signature;
        models = new ModelCache<Ready>((spec.multiplex as { max_num_models_per_replica: number }).max_num_models_per_replica,
            (ref) => openModel(ref, kind), (m) => m.session.release(), (report) => send({ type: 'models', ...report }));
        models.seed(spec.start_model, ready);
    }
    send({ type: 'ready', signature: ready.session.signature, backend: ready.session.backend, notice: ready.session.notice, load_s });
    return ready;
}, (err: Error) => {
    // Exit once the message is handed over, so that the supervisor learns why.
    process.send?.({ type: 'failed', message: named(err.message) } satisfies FromWorker, () => process.exit(1));
    return new Promise<never>(() => {});
});

/** Runs a batch; `stages` gets the seconds each stage took (preprocess, inference, postprocess), as far as it got. */
async function runBatch({ session, handler }: { session: Session; handler: Handler }, items: unknown[], stages: [number, number, number]): Promise<Body[]> {
    let t = performance.now();
    const lap = (i: number): void => {
        const now = performance.now();
        stages[i] = (now - t) / 1000;
        t = now;
    };
    const feeds = await handler.preprocess(items, session.signature);
    lap(0);
    const outputs = await session.run(feeds);
    lap(1);
    const bodies = await handler.postprocess(outputs, items, session.signature);
    lap(2);
    if (!Array.isArray(bodies) || bodies.length !== items.length) {
        throw fail('HANDLER_ERROR', `postprocess returned ${Array.isArray(bodies) ? bodies.length : 'no'} bodies for ${items.length} items`);
    }
    // an answer in the Open Inference Protocol's binary extension goes as it is; any other, as JSON
    return bodies.map((b) => b instanceof BinaryAnswer ? b : JSON.stringify(b));
}

/** A batch failed: one record, naming its requests, with the error's stack; a client's error (4xx) is a warning. */
function logFailure(err: unknown, wire: WireError, items: number, ids: string[] | undefined): void {
    const status = wire.status ?? catalogue[wire.code].status;
    (status < 500 ? log.warn : log.error)(`a batch of ${items} request(s) failed: ${wire.code}: ${wire.message}`, { request_ids: ids, err });
}

process.on('message', (msg: ToWorker) => {
    if (msg.type === 'ping') {
        send({ type: 'pong', sent: msg.sent });
        return;
    }
    if (msg.type === 'logging') {
        configureLogging(msg.logging_config);
        return;
    }
    if (msg.type === 'called') {
        answered(msg);
        return;
    }
    chain = chain.then(async (ready) => {
        if (msg.type === 'batch') {
            const stages: [number, number, number] = [0, 0, 0];
            // A multiplexed deployment's batch runs on its model, loaded first if the replica does not hold it. (A
            // replica of a version that is not multiplexed runs it on its one model: a rolling replace between the two.)
            send(await inBatch(msg.items, msg.request_ids, msg.deadlines_ms, async () => runBatch(msg.model && models ? await models.use(msg.model) : ready, msg.items, stages)).then((bodies) => ({ type: 'result', id: msg.id, bodies, stages }), (err: unknown) => {
                const error = toWire(err);
                logFailure(err, error, msg.items.length, msg.request_ids);
                return { type: 'result', id: msg.id, error, stages };
            }));
        }
        else if (msg.type === 'reconfigure') {
            // every model's handler (a multiplexed deployment's), and those of the models loaded from now on
            send(await Promise.resolve().then(async () => {
                /* c8 ignore next - a user_config change on a multiplexed deployment has no test yet (see the issue note) */
                for (const m of models?.values() ?? [ready]) {
                    await m.handler.reconfigure(msg.user_config, m.session.signature);
                }
                userConfig = msg.user_config;
            }).then(() => ({ type: 'reconfigured' }), (err: Error) => ({ type: 'reconfigured', error: err.message })));
        }
        else if (msg.type === 'unload') {
            (models as ModelCache<Ready>).drop(msg.ids);
        }
        else {
            // Closing the channel flushes the answers already sent; 'disconnect' below then exits.
            process.disconnect();
        }
        return ready;
    });
});

// The supervisor is gone: nobody can receive our answers.
process.on('disconnect', () => process.exit(0));
