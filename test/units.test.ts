// The pure pieces, tested directly: the queue's batch selection, tensor conversions, joi -> JSON Schema.
import t from 'tap';
import Joi from 'joi';
import { Batcher, type Queued } from '../lib/batcher';
import { fromNested, toNested, concatRows, dtypes } from '../lib/tensor';
import { toJsonSchema } from '../lib/openapi';
import Boom from '@hapi/boom';
import { fail, shape, toWire } from '../lib/errors';
import { tensor } from '../handlers/tensor';

const q = (rows: number, key = 'k', solo = false): Queued & { id: number } => ({ rows, key, solo, enqueued: performance.now(), id: Math.random() });

t.test('the queue takes the oldest request, then later ones that share its key and fit', async (t) => {
    const b = new Batcher<ReturnType<typeof q>>();
    t.equal(b.oldest, Infinity, 'an empty queue has no oldest');
    const [a, other, c, big, d] = [q(2), q(1, 'other'), q(3), q(10), q(1)];
    for (const x of [a, other, c, big, d]) {
        b.push(x);
    }
    t.equal(b.rows, 17);
    t.equal(b.oldest, a.enqueued);
    t.same(b.take(6, 10), [a, c, d], 'skips another key and what does not fit, keeps order');
    t.equal(b.rows, 11);
    t.same(b.take(4, 10), [other], 'the next oldest starts its own batch');
    t.same(b.take(4, 10), [big], 'an oversized request runs alone');
    t.equal(b.length, 0);

    const [e, f, g] = [q(1), q(1), q(1)];
    [e, f, g].forEach((x) => b.push(x));
    t.same(b.take(10, 2), [e, f], 'at most maxItems requests');
    t.ok(b.remove(g));
    t.notOk(b.remove(g), 'removing what is not queued changes nothing');
    t.equal(b.rows, 0);

    const [h, i, j] = [q(1), q(1, 'k', true), q(1)];
    [h, i, j].forEach((x) => b.push(x));
    b.push(q(1), true);
    t.equal(b.take(10, 10).length, 3, 'a solo request is never taken as a follower');
    t.same(b.take(10, 10), [i], 'and runs alone when it is the oldest');
});

t.test('tensors from JSON: dtypes, ranges, booleans, scalars', async (t) => {
    t.same([...fromNested([[true, false], [1, 0]], 'bool', 'm').data], [1, 0, 1, 0]);
    t.throws(() => fromNested([[2]], 'bool', 'm'), /expects bool values, received 2/);
    t.throws(() => fromNested([[300]], 'uint8', 'm'), /expects uint8 values, received 300/);
    t.throws(() => fromNested([[1]], 'float16', 'h'), /input "h" has type float16, which tsserve cannot take as JSON/);
    t.same(Object.keys(dtypes).length, 11);
    const scalar = fromNested(2.5, 'float64', 's');
    t.same(scalar.dims, []);
    t.equal(toNested(scalar), 2.5, 'a rank-0 tensor is a plain number');
    t.same(toNested({ type: 'int64', data: BigInt64Array.of(1n, -2n), dims: [2, 1] }), [[1], [-2]], 'int64 comes back as numbers');
    const one = fromNested([[1, 2]], 'float32', 'x');
    t.equal(concatRows([one]), one, 'one part needs no copy');
    t.same(concatRows([one], 3).dims, [3, 2], 'padded to a fixed batch');
});

t.test('joi to JSON Schema covers the types handler schemas use', async (t) => {
    const schema = Joi.object({
        label: Joi.string().valid('a', 'b').required().description('which'),
        flag: Joi.boolean(),
        n: Joi.number().integer(),
        any: Joi.any(),
        list: Joi.array()
    });
    t.same(toJsonSchema(schema.describe() as never), {
        type: 'object',
        required: ['label'],
        properties: {
            label: { type: 'string', enum: ['a', 'b'], description: 'which' },
            flag: { type: 'boolean' },
            n: { type: 'integer' },
            any: {},
            list: { type: 'array', items: {} }
        }
    });
    t.same(toJsonSchema(Joi.object().describe() as never), { type: 'object', properties: {} });
});

t.test('the tensor handler describes boolean inputs, and errors default to their catalogue message', async (t) => {
    const sig = { inputs: [{ name: 'mask', type: 'bool', dims: ['batch', 2] }], outputs: [] };
    const h = tensor({ options: {}, model: { file: 'x.onnx' } });
    t.same(h.example(sig), { inputs: { mask: [[false, false]] } });
    t.same(toJsonSchema(h.requestSchema(sig).describe() as never).properties, {
        inputs: {
            oneOf: [
                { type: 'object', required: ['mask'], properties: { mask: { type: 'array', items: { type: 'array', items: { type: 'boolean' }, minItems: 2, maxItems: 2 }, description: 'bool [batch, 2]; the first dimension is the rows of the batch' } } },
                { type: 'array', items: { type: 'array', items: { type: 'boolean' }, minItems: 2, maxItems: 2 }, description: 'bool [batch, 2]; the first dimension is the rows of the batch' }
            ]
        }
    });
    const internal = Boom.badImplementation('boom');
    shape(internal);
    t.same(internal.output.payload, { statusCode: 500, error: 'Internal Server Error', message: 'An internal server error occurred', code: 'INTERNAL' }, 'an unexpected error shows nothing of itself');
    t.same(toWire('a bare string'), { code: 'MODEL_ERROR', message: 'a bare string' }, 'a thrown non-Error still says what it was');
    const err = fail('QUEUE_FULL');
    t.equal(err.message, 'Deployment queue is full');
    t.equal(err.output.statusCode, 503);
});
