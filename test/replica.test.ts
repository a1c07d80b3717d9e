// The replica supervisor on its own: real worker processes, stopped in each state they can be in.
import t from 'tap';
import path from 'node:path';
import { once } from 'node:events';
import * as Schemas from '../schemas/serve';
import { Replica } from '../lib/replica';
import { fixtures, info } from './helpers';
import type { DeploymentConfig } from '../schemas/serve';

const dir = fixtures();
const spec = (model: string, id: string) => ({ ...Schemas.deployment.validate({ name: 'm', model: { path: path.join(dir, model) } }).value as DeploymentConfig, id });

t.test('a replica in backoff after a failed load stops at once', async (t) => {
    const r = new Replica(spec('broken.onnx', 'broken'), 'v1');
    r.start();
    await once(r, 'exit');
    t.equal(r.state, 'BACKOFF');
    t.equal(r.loadFailed, true);
    t.match(r.lastError, /model failed to load/);
    await r.stop(1000);
    t.equal(r.state, 'STOPPED');
});

t.test('a replica still starting is stopped without waiting for it', async (t) => {
    const r = new Replica(spec('mlp.onnx', 'starting'), 'v1');
    let ready = false;
    r.on('ready', () => ready = true);
    r.start();
    t.equal(r.state, 'STARTING');
    await r.stop(60000);
    t.equal(r.state, 'STOPPED');
    // Loading the model takes a second or more; a stop that waited for it (or for the grace period) would see it ready.
    t.equal(ready, false, 'stopped before its model was loaded, not held for the grace period');
    t.equal(r.restarts, 0, 'a stop is not a crash');
});

t.test('a running replica drains, then exits by itself', async (t) => {
    const r = new Replica(spec('mlp.onnx', 'running'), 'v1');
    r.start();
    await once(r, 'ready');
    t.same(r.signature?.inputs, [info('x', 'float32', ['batch', 4])]);
    const answer = r.run([{ feeds: { x: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } } }]);
    await r.stop(60000);
    t.equal((await answer).length, 1, 'the batch in flight was answered');
    t.equal(r.state, 'STOPPED');
});
