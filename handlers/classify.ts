// Shared by the handlers that end in classification: which model output holds the logits, softmax, top-k, label
// names from serve.yaml or config.json, and the answer ({label, score, predictions}) with its response schema.
import Joi from 'joi';
import type { ClassifyOptions } from '../schemas/classify';
import type { Tensor } from '../lib/tensor';
import type { Signature } from '../lib/signature';
import type { ModelFiles } from '../lib/model-files';

export interface Prediction {
    label: string;
    score: number;
}

/** One item's answer: the best label and its score, and the top-k predictions, best first. */
export interface Classification extends Prediction {
    predictions: Prediction[];
}

/**
 * The model output a handler reads: `options.output` when given, else `preferred` when the model has it, else its
 * first output. Throws (the replica does not start) when options.output names none of the model's outputs.
 */
export function outputOf(sig: Signature, asked: string | undefined, preferred: string): string {
    const name = asked ?? (sig.outputs.some((o) => o.name === preferred) ? preferred : sig.outputs[0].name);
    if (!sig.outputs.some((o) => o.name === name)) {
        throw new Error(`options.output is "${name}", not among the model's outputs (${sig.outputs.map((o) => o.name).join(', ')})`);
    }
    return name;
}

/** Class names by index: `labels:` in serve.yaml, else config.json's id2label, else LABEL_<i>. */
export function labelNames(options: ClassifyOptions, model: ModelFiles, classes: number): string[] {
    const id2label = (model.config?.id2label ?? {}) as Record<string, string>;
    return Array.from({ length: classes }, (_, i) => options.labels?.[i] ?? id2label[String(i)] ?? `LABEL_${i}`);
}

/** Softmax of one row of logits (stable: the max is subtracted first). */
export function softmax(row: ArrayLike<number>): number[] {
    let max = -Infinity;
    for (let i = 0; i < row.length; i++) {
        max = Math.max(max, row[i]);
    }
    const exps = Array.from(row, (v) => Math.exp(v - max));
    const sum = exps.reduce((a, b) => a + b, 0);
    return exps.map((e) => e / sum);
}

/** Per row of a [rows, classes] logits tensor: the top-k labels with softmax scores, best first. */
export function classify(logits: Tensor, names: string[], topK: number): Prediction[][] {
    const [rows, classes] = [logits.dims[0], logits.dims[logits.dims.length - 1]];
    const out: Prediction[][] = [];
    for (let r = 0; r < rows; r++) {
        const scores = softmax(Array.from(logits.data.subarray(r * classes, (r + 1) * classes) as ArrayLike<number>, Number));
        out.push(scores.map((score, i) => ({ label: names[i], score }))
            .sort((a, b) => b.score - a.score)
            .slice(0, topK));
    }
    return out;
}

/**
 * The answers of the first `rows` rows of a [batch, classes] logits tensor (the rows after them pad a fixed batch):
 * labels from `labels:`, config.json or LABEL_<i>, top_k of them.
 */
export function classifications(logits: Tensor, rows: number, options: ClassifyOptions, model: ModelFiles, topK = options.top_k): Classification[] {
    const classes = logits.dims[logits.dims.length - 1];
    const mine = { ...logits, data: logits.data.subarray(0, rows * classes), dims: [rows, classes] };
    return classify(mine, labelNames(options, model, classes), topK).map((predictions) => ({ ...predictions[0], predictions }));
}

const prediction = Joi.object({ label: Joi.string(), score: Joi.number() });

/** The response schema of one classification answer. */
export const classificationSchema = Joi.object({
    label: Joi.string().description('the most likely label'),
    score: Joi.number().description('its probability (softmax of the logits)'),
    predictions: Joi.array().items(prediction).description('the top_k labels, best first')
});
