// The text handler's settings from the model folder, under serve.yaml's options: how many tokens an item may have
// (the least of what tokenizer.json, tokenizer_config.json and config.json say), which text of a pair truncation cuts
// and from which end, and on which side padding goes. A model is never fed more tokens than it has positions for.
import type { Side, Strategy, TextOptions } from '../schemas/text';

/** How texts become rows of tokens. */
export interface TextSettings {
    /** tokens per item after truncation, special tokens included */
    maxLength: number;
    /** which text of a pair truncation cuts (a single text is always cut to fit) */
    strategy: Strategy;
    /** the end truncation cuts off: right keeps a text's start, left its end */
    truncationSide: Side;
    /** where a row shorter than its batch is padded */
    paddingSide: Side;
}

/** One bound on how many tokens a model takes, and the file and field that gave it. */
export interface Limit {
    tokens: number;
    from: string;
}

/** The parts of tokenizer.json the handler reads itself (@huggingface/tokenizers applies none of them). */
export interface TokenizerJson {
    truncation?: { max_length?: number; direction?: string; strategy?: string } | null;
    padding?: { pad_id?: number; pad_type_id?: number; direction?: string } | null;
}

/** What a model folder holds for the text handler, parsed. */
export interface TextFolder {
    tokenizer: TokenizerJson;
    tokenizerConfig?: Record<string, unknown>;
    config?: Record<string, unknown>;
}

/** max_length when nothing in the folder or serve.yaml bounds it. */
export const DEFAULT_MAX_LENGTH = 512;

/**
 * Model types whose learned positions start after the padding index (RoBERTa's create_position_ids_from_input_ids):
 * their first pad_token_id + 1 rows of max_position_embeddings are never a token's.
 */
const PADDING_OFFSET = new Set([
    'roberta', 'roberta-prelayernorm', 'xlm-roberta', 'xlm-roberta-xl', 'camembert', 'longformer', 'data2vec-text',
    'xmod', 'ibert', 'mpnet', 'luke', 'markuplm', 'layoutlmv3', 'lilt'
]);

/** tokenizer.json's names of the strategies (its Rust enum), as transformers names them. */
const STRATEGIES: Record<string, Strategy> = { LongestFirst: 'longest_first', OnlyFirst: 'only_first', OnlySecond: 'only_second' };

/**
 * A count a file gives: a safe non-negative integer, else undefined. transformers writes model_max_length as int(1e30)
 * when it does not know it, which is not one.
 */
const count = (v: unknown): number | undefined => Number.isSafeInteger(v) && (v as number) >= 0 ? v as number : undefined;

const sideOf = (v: unknown): Side | undefined => typeof v === 'string' && /^(left|right)$/i.test(v) ? v.toLowerCase() as Side : undefined;

/**
 * The model's positions, from config.json: max_position_embeddings (n_positions for GPT-2) less the rows its
 * architecture never uses for a token; undefined when it has none, or its positions are not a limit (DeBERTa's
 * position_biased_input: false, rotary position embeddings).
 */
export function positionLimit(config: Record<string, unknown> = {}): Limit | undefined {
    if (config.position_biased_input === false || config.position_embedding_type === 'rotary') {
        return undefined;
    }
    const field = config.max_position_embeddings !== undefined ? 'max_position_embeddings' : 'n_positions';
    const positions = count(config[field]);
    if (!positions) {
        return undefined;
    }
    const type = String(config.model_type);
    if (!PADDING_OFFSET.has(type)) {
        return { tokens: positions, from: `config.json ${field} ${positions}` };
    }
    const offset = (count(config.pad_token_id) ?? 1) + 1;
    return { tokens: Math.max(positions - offset, 1), from: `config.json max_position_embeddings ${positions} less ${offset} (model_type ${type}: positions start after the padding index)` };
}

/** Every bound the folder gives on a model's tokens, least first. */
export function limits(folder: TextFolder): Limit[] {
    const found: Array<Limit | undefined> = [positionLimit(folder.config)];
    const truncation = count(folder.tokenizer.truncation?.max_length);
    if (truncation) {
        found.push({ tokens: truncation, from: `tokenizer.json truncation.max_length ${truncation}` });
    }
    const modelMax = count(folder.tokenizerConfig?.model_max_length);
    if (modelMax) {
        found.push({ tokens: modelMax, from: `tokenizer_config.json model_max_length ${modelMax}` });
    }
    return found.filter((l): l is Limit => l !== undefined).sort((a, b) => a.tokens - b.tokens);
}

/**
 * The settings of a model folder under serve.yaml's options. options.max_length wins over the files, but may not
 * pass the model's positions (inputs longer than those fail in the model): that throws, and the replica does not start.
 */
export function textSettings(folder: TextFolder, options: Partial<TextOptions> = {}): TextSettings {
    const found = limits(folder);
    const positions = positionLimit(folder.config);
    if (options.max_length !== undefined && positions && options.max_length > positions.tokens) {
        throw new Error(`options.max_length is ${options.max_length}, over the model's ${positions.tokens} positions (${positions.from}): longer inputs would fail in the model`);
    }
    const tokenizerConfig = folder.tokenizerConfig ?? {};
    return {
        maxLength: options.max_length ?? found[0]?.tokens ?? DEFAULT_MAX_LENGTH,
        strategy: options.truncation ?? STRATEGIES[folder.tokenizer.truncation?.strategy as string] ?? 'longest_first',
        truncationSide: options.truncation_side ?? sideOf(tokenizerConfig.truncation_side) ?? sideOf(folder.tokenizer.truncation?.direction) ?? 'right',
        paddingSide: options.padding_side ?? sideOf(tokenizerConfig.padding_side) ?? sideOf(folder.tokenizer.padding?.direction) ?? 'right'
    };
}
