// Options of the text handler (`options:` of a deployment with `handler: text`). Defaults live here.
import Joi from 'joi';
import { labels, topK, type ClassifyOptions } from './classify';

export const text = Joi.object({
    task: Joi.string().valid('classification', 'embedding').default('classification')
        .description('classification: top-k labels from the model\'s logits; embedding: one pooled vector per text'),
    max_length: Joi.number().integer().min(2).max(65536)
        .description('tokens per item after truncation; default: the tokenizer\'s own truncation length, else 512'),
    top_k: topK,
    labels,
    pooling: Joi.string().valid('mean', 'cls').default('mean').description('embedding: mean over the attention mask, or the first token'),
    normalize: Joi.boolean().default(true).description('embedding: scale each vector to unit L2 norm'),
    output: Joi.string().description('the model output to read; default: "logits" (classification) or "last_hidden_state" (embedding), else the first output')
});

export interface TextOptions extends ClassifyOptions {
    task: 'classification' | 'embedding';
    max_length?: number;
    pooling: 'mean' | 'cls';
    normalize: boolean;
    output?: string;
}
