// Options of the text handler (`options:` of a deployment with `handler: text`). Defaults live here; what is left
// unset here is read from the model folder (handlers/text-limits.ts), else has the fallback named below.
import Joi from 'joi';
import { labels, topK, type ClassifyOptions } from './classify';

/** Which text of a pair truncation cuts, by transformers' names. */
export type Strategy = 'longest_first' | 'only_first' | 'only_second';
export type Side = 'left' | 'right';

const side = Joi.string().valid('left', 'right');

export const text = Joi.object({
    task: Joi.string().valid('classification', 'embedding').default('classification')
        .description('classification: top-k labels from the model\'s logits; embedding: one pooled vector per text'),
    max_length: Joi.number().integer().min(2).max(65536)
        .description('tokens per item after truncation, special tokens included; default: the least of config.json\'s positions '
            + '(max_position_embeddings, less the padding offset of RoBERTa-like models), tokenizer_config.json model_max_length and '
            + 'tokenizer.json truncation.max_length, else 512. It may not pass the model\'s positions'),
    truncation: Joi.string().valid('longest_first', 'only_first', 'only_second')
        .description('which text of a pair is cut: longest_first trims the longer first; only_first and only_second cut only that text, '
            + 'and a pair the other text leaves no room in is refused (400). A single text is always cut. Default: tokenizer.json '
            + 'truncation.strategy, else longest_first'),
    truncation_side: side.description('the end a long text loses: right keeps its start, left its end; default: tokenizer_config.json '
        + 'truncation_side, else tokenizer.json truncation.direction, else right'),
    padding_side: side.description('where a row shorter than its batch is padded; default: tokenizer_config.json padding_side, else '
        + 'tokenizer.json padding.direction, else right'),
    top_k: topK,
    labels,
    pooling: Joi.string().valid('mean', 'cls').default('mean').description('embedding: mean over the attention mask, or the first token'),
    normalize: Joi.boolean().default(true).description('embedding: scale each vector to unit L2 norm'),
    output: Joi.string().description('the model output to read; default: "logits" (classification) or "last_hidden_state" (embedding), else the first output')
});

export interface TextOptions extends ClassifyOptions {
    task: 'classification' | 'embedding';
    max_length?: number;
    truncation?: Strategy;
    truncation_side?: Side;
    padding_side?: Side;
    pooling: 'mean' | 'cls';
    normalize: boolean;
    output?: string;
}
