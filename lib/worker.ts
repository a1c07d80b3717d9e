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
import { dtype, size } from './tensor';
import type { Feeds } from './tensor';
import type { Handler } from './handler';
import type { ToWorker, FromWorker, ReplicaSpec } from './messages';

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
        return [i.name, { type: i.type, data: new (dtype(i.type, i.name).ctor)(size(dims)), dims }];
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

async function start(): Promise<{ session: Session; handler: Handler }> {
    const model = modelFiles(spec.model);
    const session = await load({ ...spec.model, path: model.file }, spec.resources);
    const file = spec.snapshot?.handler ? preload(spec.handler, spec.snapshot.handler) : spec.handler;
    const handler = create(file, { options: spec.options, model });
    await handler.load?.(session.signature);
    await handler.reconfigure(spec.user_config, session.signature);
    try {
        await session.run(warmupFeeds(session));
    }
    catch (err) {
        log.warn(`replica ${spec.id}: warm-up inference failed (${(err as Error).message}); serving anyway`);
    }
    return { session, handler };
}

const loading = performance.now();
let chain = start().then((ready) => {
    const load_s = (performance.now() - loading) / 1000;
    send({ type: 'ready', signature: ready.session.signature, backend: ready.session.backend, notice: ready.session.notice, load_s });
    return ready;
}, (err: Error) => {
    // Exit once the message is handed over, so that the supervisor learns why.
    process.send?.({ type: 'failed', message: named(err.message) } satisfies FromWorker, () => process.exit(1));
    return new Promise<never>(() => {});
});

/** Runs a batch; `stages` gets the seconds each stage took (preprocess, inference, postprocess), as far as it got. */
async function runBatch({ session, handler }: { session: Session; handler: Handler }, items: unknown[], stages: [number, number, number]): Promise<string[]> {
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
    return bodies.map((b) => JSON.stringify(b));
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
    chain = chain.then(async (ready) => {
        if (msg.type === 'batch') {
            const stages: [number, number, number] = [0, 0, 0];
            send(await runBatch(ready, msg.items, stages).then((bodies) => ({ type: 'result', id: msg.id, bodies, stages }), (err: unknown) => {
                const error = toWire(err);
                logFailure(err, error, msg.items.length, msg.request_ids);
                return { type: 'result', id: msg.id, error, stages };
            }));
        }
        else if (msg.type === 'reconfigure') {
            send(await Promise.resolve().then(() => ready.handler.reconfigure(msg.user_config, ready.session.signature))
                .then(() => ({ type: 'reconfigured' }), (err: Error) => ({ type: 'reconfigured', error: err.message })));
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
