// What a replica runs, wherever it runs: it loads the model and handler, then runs the batches its supervisor sends,
// one at a time, and answers with messages (lib/messages.ts). A replica process (lib/worker.ts) holds one and speaks to
// it over its IPC channel; an in-process replica (lib/in-process.ts) holds one in the front process itself.
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import Module, { createRequire } from 'node:module';
import { load, type Session } from './runtimes';
import { create } from '../handlers';
import { catalogue, fail, toWire, type WireError } from './errors';
import { modelFiles } from './model-files';
import { zeros } from './tensor';
import type { Feeds } from './tensor';
import { answered, deploymentHandle, inBatch } from './handle';
import { ModelCache } from './model-cache';
import type { Fields } from './log';
import type { Handler } from './handler';
import { BinaryAnswer } from './oip-answer';
import type { Body, ToWorker, FromWorker, ReplicaSpec } from './messages';
import type { ModelRef } from './model-folder';
import type { Signature } from './signature';
import type { ModelConfig } from '../schemas/serve';

/** Where a host's log records go: its replica's (a replica process binds its fields; the front adds them). */
export interface HostLog {
    warn(msg: string, fields?: Fields): void;
    error(msg: string, fields?: Fields): void;
}

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

/** A model in its runtime, and the handler made for it. */
interface Ready {
    session: Session;
    handler: Handler;
}

/** Runs a batch; `stages` gets the seconds each stage took (preprocess, inference, postprocess), as far as it got. */
async function runBatch({ session, handler }: Ready, items: unknown[], stages: [number, number, number]): Promise<Body[]> {
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

export class ModelHost {
    /** the handler module to create handlers by (the snapshot's copy, once preloaded) */
    private handlerFile?: string;
    /** the user_config in force: the one started with, then each that reconfigure applied */
    private userConfig: Record<string, unknown>;
    /** a multiplexed deployment's models (lib/model-cache.ts): the one the replica starts with, then each on its first use */
    private models?: ModelCache<Ready>;
    /** the work so far, in order: the start, then each message's; rejected (and so never run on) when the start failed */
    private chain: Promise<Ready>;

    /**
     * Starts loading at once: says 'ready' or 'failed' through `send`, which takes every message for the supervisor.
     * `stopped`: the supervisor's 'stop' message, once everything before it is done.
     */
    constructor(private readonly spec: ReplicaSpec, private readonly send: (msg: FromWorker) => void, private readonly log: HostLog, private readonly stopped: () => void) {
        this.userConfig = spec.user_config;
        const loading = performance.now();
        this.chain = this.start().then((ready) => {
            const load_s = (performance.now() - loading) / 1000;
            if (spec.start_model) {
                // multiplexed: the model it started with is the first its cache holds, and the kind of every other
                const kind = ready.session.signature;
                this.models = new ModelCache<Ready>((spec.multiplex as { max_num_models_per_replica: number }).max_num_models_per_replica,
                    (ref) => this.openModel(ref, kind), (m) => m.session.release(), (report) => send({ type: 'models', ...report }));
                this.models.seed(spec.start_model, ready);
            }
            send({ type: 'ready', signature: ready.session.signature, backend: ready.session.backend, notice: ready.session.notice, load_s });
            return ready;
        }, (err: Error) => {
            send({ type: 'failed', message: this.named(err.message) });
            return new Promise<never>(() => {});
        });
    }

    /**
     * A message about the deployment's files names them as serve.yaml does, not by their copies in the snapshot (a
     * handler copied or not: split() by undefined splits nothing).
     */
    private named(message: string): string {
        const { spec } = this;
        return spec.snapshot
            ? message.split(spec.model.path).join(spec.snapshot.source).split(spec.snapshot.handler as string).join(spec.handler)
            : message;
    }

    /** Loads a model, then the handler made for its files (each model of a multiplexed deployment has its own). */
    private async open(config: ModelConfig): Promise<Ready> {
        const { spec } = this;
        const model = modelFiles(config);
        const session = await load({ ...config, path: model.file }, spec.resources);
        this.handlerFile ??= spec.snapshot?.handler ? preload(spec.handler, spec.snapshot.handler) : spec.handler;
        const handler = create(this.handlerFile, { options: spec.options, model, deployment: (name) => deploymentHandle(name, this.send) });
        await handler.load?.(session.signature);
        await handler.reconfigure(this.userConfig, session.signature);
        return { session, handler };
    }

    /**
     * Loads a model of a multiplexed deployment on its first use. It must take the inputs that the model the replica
     * started with takes (`kind`): the front checks every request against those. A failure is the batch's, named by the
     * model's id (its path is the server's business).
     */
    private async openModel(ref: ModelRef, kind: Signature): Promise<Ready> {
        const why = (text: string) => fail('MODEL_ERROR', `model "${ref.id}" ${text.split(ref.path).join(path.basename(ref.path))}`);
        let ready: Ready;
        try {
            ready = await this.open({ ...this.spec.model, path: ref.path });
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

    private async start(): Promise<Ready> {
        const ready = await this.open(this.spec.model);
        const { session } = ready;
        try {
            await session.run(warmupFeeds(session));
        }
        catch (err) {
            this.log.warn(`replica ${this.spec.id}: warm-up inference failed (${(err as Error).message}); serving anyway`);
        }
        return ready;
    }

    /** A batch failed: one record, naming its requests, with the error's stack; a client's error (4xx) is a warning. */
    private logFailure(err: unknown, wire: WireError, items: number, ids: string[] | undefined): void {
        const status = wire.status ?? catalogue[wire.code].status;
        (status < 500 ? this.log.warn : this.log.error)(`a batch of ${items} request(s) failed: ${wire.code}: ${wire.message}`, { request_ids: ids, err });
    }

    /**
     * A new user_config, for every model's handler (a multiplexed deployment's) and those of the models loaded from now
     * on. One refused by any handler is applied by none: those that took it get the one before back.
     */
    private async reconfigure(userConfig: Record<string, unknown>, ready: Ready): Promise<void> {
        const took: Ready[] = [];
        try {
            for (const m of this.models?.values() ?? [ready]) {
                await m.handler.reconfigure(userConfig, m.session.signature);
                took.push(m);
            }
        }
        catch (err) {
            for (const m of took) {
                // (each took it once)
                await m.handler.reconfigure(this.userConfig, m.session.signature);
            }
            throw err;
        }
        this.userConfig = userConfig;
    }

    /** A message from the supervisor. Pings and call answers are answered at once; the rest wait their turn. */
    receive(msg: ToWorker): void {
        if (msg.type === 'ping') {
            this.send({ type: 'pong', sent: msg.sent });
            return;
        }
        if (msg.type === 'called') {
            answered(msg);
            return;
        }
        this.chain = this.chain.then(async (ready) => {
            if (msg.type === 'batch') {
                const stages: [number, number, number] = [0, 0, 0];
                // A multiplexed deployment's batch runs on its model, loaded first if the replica does not hold it. (A
                // replica of a version that is not multiplexed runs it on its one model: a rolling replace between the two.)
                const { models } = this;
                this.send(await inBatch(msg.items, msg.request_ids, msg.deadlines_ms, async () => runBatch(msg.model && models ? await models.use(msg.model) : ready, msg.items, stages)).then((bodies) => ({ type: 'result', id: msg.id, bodies, stages }), (err: unknown) => {
                    const error = toWire(err);
                    this.logFailure(err, error, msg.items.length, msg.request_ids);
                    return { type: 'result', id: msg.id, error, stages };
                }));
            }
            else if (msg.type === 'reconfigure') {
                this.send(await this.reconfigure(msg.user_config, ready).then(() => ({ type: 'reconfigured' }), (err: Error) => ({ type: 'reconfigured', error: err.message })));
            }
            else if (msg.type === 'unload') {
                (this.models as ModelCache<Ready>).drop(msg.ids);
            }
            else if (msg.type === 'stop') {
                this.stopped();
            }
            return ready;
        });
    }

    /** Releases what it holds (an in-process replica's models; a process's go with it). */
    release(): void {
        void this.chain.then((ready) => {
            for (const m of this.models?.values() ?? [ready]) {
                m.session.release();
            }
        });
    }
}
