// The pure pieces, tested directly: the handler registry, tensor conversions, joi -> JSON Schema.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import Joi from 'joi';
import { builtinNames, isModule, registry, takesRaw } from '../handlers/registry';
import * as Schemas from '../schemas/serve';
import { fromNested, toNested, concatRows, dtypes } from '../lib/tensor';
import { toJsonSchema } from '../lib/openapi';
import Boom from '@hapi/boom';
import { fail, shape, toWire } from '../lib/errors';
import { tensor } from '../handlers/tensor';

t.test('the handler registry: each built-in\'s factory, options and docs; serve.yaml and the front door follow it', async (t) => {
    const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
    t.same(builtinNames, ['tensor', 'text', 'image', 'audio']);
    for (const name of builtinNames) {
        t.type(registry[name].factory(), 'function', `${name}: its factory`);
        t.match(readme, `### \`handler: ${name}\``, `${name}: its README section`);
        const options = Object.entries(registry[name].options?.describe().keys ?? {}) as Array<[string, { flags?: { description?: string } }]>;
        t.same(options.filter(([, o]) => !o.flags?.description).map(([key]) => key), [], `${name}: every option is described`);
    }
    t.same([isModule('image'), isModule('./mine.js'), isModule('/abs/mine.js'), isModule('constructor')], [false, true, true, true]);

    // The media types handed over raw: every image/* and audio/* (the handler refuses what it cannot decode), nothing else.
    const raw = ['image/png', 'image/svg+xml', 'audio/wav', 'audio/mpeg', 'audio/vnd.wave'];
    const parsed = ['application/json', 'application/octet-stream', 'multipart/form-data', 'text/plain', 'imagex/png', 'image/', 'video/mp4', 'image/png;x'];
    t.same([...raw, ...parsed].filter(takesRaw), raw);

    // serve.yaml's names and each built-in's options come from the registry.
    const deployment = (handler: string, options: unknown) => Schemas.deployment.validate({ name: 'd', handler, options, model: { path: 'm.onnx' } });
    t.match(deployment('audio', { output: 'scores' }).value.options, { output: 'scores', task: 'classification', top_k: 5 }, 'audio options, defaults filled');
    t.match(deployment('audio', { output: 3 }).error?.message, /"options.output" must be a string/);
    t.match(deployment('text', { pooling: 'max' }).error?.message, /"options.pooling" must be one of \[mean, cls\]/);
    t.same(deployment('tensor', { anything: 1 }).value.options, { anything: 1 }, 'tensor has no options schema');
    t.same(deployment('./mine.js', { mine: true }).value.options, { mine: true }, 'a module of your own takes its own');
    t.match(deployment('imagery', {}).error?.message, /must be one of tensor, text, image, audio, or the path of a handler module/);
});

t.test('tensors from JSON: dtypes, ranges, booleans, scalars', async (t) => {
    t.same([...fromNested([[true, false], [1, 0]], 'bool', 'm').data], [1, 0, 1, 0]);
    t.throws(() => fromNested([[2]], 'bool', 'm'), /expects bool values, received 2/);
    t.throws(() => fromNested([[300]], 'uint8', 'm'), /expects uint8 values, received 300/);
    t.throws(() => fromNested([[1]], 'bfloat16', 'h'), /input "h" has type bfloat16, which tsserve cannot take as JSON/);
    t.same(Object.keys(dtypes).length, 12);
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
