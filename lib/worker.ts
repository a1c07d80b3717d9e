// The replica process: loads the model and handler, then runs the batches its supervisor sends, one at a time.
import { load, type Session } from './runtimes';
import { create } from '../handlers';
import { fail, toWire } from './errors';
import { modelFiles } from './model-files';
import { log } from './log';
import { dtype, size } from './tensor';
import type { Feeds } from './tensor';
import type { Handler } from './handler';
import type { ToWorker, FromWorker, ReplicaSpec } from './messages';

const spec = JSON.parse(process.env.TSSERVE_REPLICA as string) as ReplicaSpec;
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

async function start(): Promise<{ session: Session; handler: Handler }> {
    const model = modelFiles(spec.model);
    const session = await load({ ...spec.model, path: model.file }, spec.resources);
    const handler = create(spec.handler, { options: spec.options, model });
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

let chain = start().then((ready) => {
    send({ type: 'ready', signature: ready.session.signature, backend: ready.session.backend, notice: ready.session.notice });
    return ready;
}, (err: Error) => {
    // Exit once the message is handed over, so that the supervisor learns why.
    process.send?.({ type: 'failed', message: err.message } satisfies FromWorker, () => process.exit(1));
    return new Promise<never>(() => {});
});

async function runBatch({ session, handler }: { session: Session; handler: Handler }, items: unknown[]): Promise<string[]> {
    const feeds = await handler.preprocess(items, session.signature);
    const outputs = await session.run(feeds);
    const bodies = await handler.postprocess(outputs, items, session.signature);
    if (!Array.isArray(bodies) || bodies.length !== items.length) {
        throw fail('HANDLER_ERROR', `postprocess returned ${Array.isArray(bodies) ? bodies.length : 'no'} bodies for ${items.length} items`);
    }
    return bodies.map((b) => JSON.stringify(b));
}

process.on('message', (msg: ToWorker) => {
    if (msg.type === 'ping') {
        send({ type: 'pong' });
        return;
    }
    chain = chain.then(async (ready) => {
        if (msg.type === 'batch') {
            send(await runBatch(ready, msg.items).then((bodies) => ({ type: 'result', id: msg.id, bodies }), (err) => ({ type: 'result', id: msg.id, error: toWire(err) })));
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
