// An example of a handler of your own: serve.yaml names it with `handler: ./examples/handlers/iris_handler.js`.
//
// A handler module exports a handler object, or a function that makes one from its context
// ({ options, model }: the deployment's `options:` from serve.yaml and the model's files), as `module.exports`,
// `exports.handler` or `exports.default`. Compile a TypeScript handler to .js first, or point serve.yaml at the .js.
//
// Where each method runs:
//   requestSchema, responseSchema, example, parse   the HTTP front process (keep parse cheap)
//   load, preprocess, postprocess, reconfigure      each replica process
// Only preprocess and postprocess are required. Without parse, the JSON body (checked against requestSchema) is one
// item. Whatever a method throws comes back as a clean error: throw a Boom error (`@hapi/boom`, or any error with
// `isBoom`) to choose the status; anything else is 400 from parse and 500 HANDLER_ERROR from a replica, and the replica
// goes on serving.
//
// This one serves models/mlp.onnx (4 features in, 3 scores out) as a classifier of iris flowers:
//   curl -s -X POST localhost:8000/iris/predict -H 'content-type: application/json' \
//        -d '{"flowers": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}'
const Joi = require('joi');
const Boom = require('@hapi/boom');

const species = ['setosa', 'versicolor', 'virginica'];

module.exports = ({ options }) => {
    const maxFlowers = options.max_flowers ?? 64;   // options: from serve.yaml, fixed for the deployment's life
    let digits = 3;   // user_config.digits, applied by reconfigure
    return {
        requestSchema: () => Joi.object({
            flowers: Joi.array().items(Joi.array().items(Joi.number()).length(4)).min(1).required()
                .description('sepal length, sepal width, petal length, petal width (cm), one row per flower')
        }),
        responseSchema: () => Joi.object({ species: Joi.array().items(Joi.string()), scores: Joi.array().items(Joi.array().items(Joi.number())) }),
        example: () => ({ flowers: [[5.1, 3.5, 1.4, 0.2]] }),

        // The front door: the body is already checked against requestSchema. One request, many rows.
        parse(req, sig) {
            const { error, value } = this.requestSchema(sig).validate(req.payload);
            if (error) {
                throw Boom.badRequest(error.message);
            }
            if (value.flowers.length > maxFlowers) {
                throw Boom.entityTooLarge(`at most ${maxFlowers} flowers per request`);
            }
            return { rows: value.flowers.length, key: '', item: value.flowers };
        },

        // A replica: the items of a batch (one per request) to the model's feeds.
        preprocess(items, sig) {
            const rows = items.flat();
            if (rows.some((r) => r.some((v) => v < 0))) {
                throw Boom.badData('a measurement cannot be negative');
            }
            return { [sig.inputs[0].name]: { type: 'float32', data: Float32Array.from(rows.flat()), dims: [rows.length, 4] } };
        },

        // A replica: the model's outputs back to one body per request item.
        postprocess(outputs, items, sig) {
            const y = outputs[sig.outputs[0].name];
            let row = 0;
            return items.map((flowers) => {
                const scores = flowers.map(() => Array.from(y.data.subarray(row * 3, ++row * 3), (v) => Number(v.toFixed(digits))));
                return { species: scores.map((s) => species[s.indexOf(Math.max(...s))]), scores };
            });
        },

        // user_config from serve.yaml, at start and on every reload; throwing refuses the new value.
        reconfigure(userConfig) {
            if (userConfig.digits !== undefined && !(Number.isInteger(userConfig.digits) && userConfig.digits >= 0 && userConfig.digits <= 8)) {
                throw new Error('user_config.digits must be an integer from 0 to 8');
            }
            digits = userConfig.digits ?? 3;
        }
    };
};
