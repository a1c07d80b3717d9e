// Shared by the handlers that end in classification: softmax, top-k, and label names from serve.yaml or config.json.
import type { ClassifyOptions } from '../schemas/classify';
import type { Tensor } from '../lib/tensor';
import type { ModelFiles } from '../lib/model-files';

export interface Prediction {
    label: string;
    score: number;
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
