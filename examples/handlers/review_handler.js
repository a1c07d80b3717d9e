// An example of composition: a handler that calls another deployment. serve.yaml's `review` application runs the
// sentiment model in two deployments: `embedder` (the text handler, mean-pooled embeddings) and this one, on the
// model's classifier head alone (examples/models/sentiment-head). For each review, this handler calls the embedder,
// which batches the calls with everyone else's, then runs its own model on the embeddings, and answers a label.
//
// A deployment declares what it calls (`calls: [embedder]` in serve.yaml): a call to anything else is refused, and a
// cycle of calls is refused when serve.yaml is loaded. ctx.deployment(name) is a handle on a deployment of the same
// application (or "application/name" for another's); call(body) sends it what a POST to its route would carry and
// resolves with its JSON answer. The call carries the request's id and what is left of its deadline; the target's
// errors come back as errors with their status.
//   curl -s -X POST localhost:8000/review/predict -H 'content-type: application/json' -d '{"text": "a wonderful film"}'
//   curl -s 'localhost:8000/review/predict?text=a%20wonderful%20film'
const Joi = require('joi');

module.exports = (ctx) => {
    const id2label = ctx.model.config.id2label;
    const embedder = ctx.deployment?.('embedder');   // absent in the front process, which only parses
    const text = Joi.string().min(1).max(10000).required().description('the review');
    return {
        requestSchema: () => Joi.object({ text }),
        querySchema: () => Joi.object({ text }),       // GET /review/predict?text=...
        responseSchema: () => Joi.object({ label: Joi.string(), score: Joi.number() }),
        example: () => ({ text: 'I loved this film, it was wonderful' }),

        // A replica: each item's embedding from the embedder deployment (the calls go out together, and the embedder
        // batches them), then one batch through this deployment's own model.
        async preprocess(items, sig) {
            const answers = await Promise.all(items.map((item) => embedder.call({ text: item.text }, { for: item })));
            const dim = answers[0].embedding.length;
            return { [sig.inputs[0].name]: { type: 'float32', data: Float32Array.from(answers.flatMap((a) => a.embedding)), dims: [items.length, dim] } };
        },

        postprocess(outputs, items, sig) {
            const logits = outputs[sig.outputs[0].name];
            const n = logits.dims[1];
            return items.map((_, i) => {
                const row = Array.from(logits.data.subarray(i * n, (i + 1) * n));
                const max = Math.max(...row);
                const exp = row.map((v) => Math.exp(v - max));
                const best = exp.indexOf(Math.max(...exp));
                return { label: id2label[best], score: exp[best] / exp.reduce((a, b) => a + b, 0) };
            });
        }
    };
};
