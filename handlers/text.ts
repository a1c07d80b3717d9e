// The text handler: texts (or text pairs) as JSON in; the model folder's Hugging Face tokenizer.json, truncation to
// the model's limit (handlers/text-limits.ts) and per-batch padding in the replica; class labels (softmax over the
// logits) or pooled embeddings out.
import fs from 'node:fs';
import path from 'node:path';
import Joi from 'joi';
import { Tokenizer } from '@huggingface/tokenizers';
import { clip, fail, quote } from '../lib/errors';
import { classificationSchema, classifications, outputOf } from './classify';
import { checkCap, perRequest, perRequestSchema } from './items';
import type { Feeds, Tensor } from '../lib/tensor';
import { fixedBatch } from '../lib/signature';
import type { Handler, HandlerFactory } from '../lib/handler';
import type { TextOptions } from '../schemas/text';
import { textSettings, type TextFolder, type TextSettings, type TokenizerJson } from './text-limits';

/** One text, or a text pair as [text, text_pair]. */
export type TextInput = string | [string, string];

/** One request: its texts, and whether it sent a list ("texts") or a single text. */
export interface TextItem {
    texts: TextInput[];
    list: boolean;
}

/** A tokenized text: its ids and token type ids, special tokens included, truncated; not padded. */
export interface Encoded {
    ids: number[];
    types: number[];
}

/** The tokens of a text, or of its cut (TextTokenizer's cut()): `whole` says which. */
interface Tokens {
    tokens: string[];
    whole: boolean;
}

/**
 * Tokens a cut of a long text holds beyond those truncation keeps: how a cut ends (the last word, where a tokenizer
 * without a pre-tokenizer could merge across it) cannot reach the kept tokens.
 */
const CUT_MARGIN = 16;

/** Where the start of a text may be cut off: after a non-space, before a space. Every pre-tokenizer splits there. */
const SPACE_END = /(?<=\S)(?=\s)/gu;
/** Where the end of a text may be cut off: at a space before a non-space, so the end begins as a word does in the text. */
const SPACE_START = /(?=\s\S)/gu;
/**
 * Where a text without spaces may be cut: between a letter or digit and punctuation (or a symbol), or between two
 * CJK ideographs. BERT's and GPT-2's pre-tokenizers split there too; a tokenizer that merges across it changes only
 * the tokens next to the cut, which CUT_MARGIN keeps away from those truncation keeps.
 */
const OTHER = /(?<=[\p{L}\p{N}])(?=[^\p{L}\p{N}\p{M}\s])|(?<=[^\p{L}\p{N}\p{M}\s])(?=[\p{L}\p{N}])|(?<=\p{Ideographic})(?=\p{Ideographic})/gu;

/** The inputs the text handler can feed, by the names Hugging Face models give them. */
const FED = ['input_ids', 'attention_mask', 'token_type_ids'];

/**
 * What preprocess learned about a batch that postprocess needs: each row's real token count (for mean pooling). Keyed by
 * the batch's items array, which the replica hands to preprocess and then postprocess, so batches never mix.
 */
const batchLengths = new WeakMap<object, number[]>();

const USAGE = 'the body must be {"text": "..."}, {"text": "...", "text_pair": "..."} or {"texts": ["...", ["text", "text pair"], ...]}';

function checkText(value: unknown, where: string): string {
    if (typeof value !== 'string') {
        throw fail('INVALID_BODY', `"${where}" must be a string`);
    }
    if (!value.trim()) {
        throw fail('INVALID_BODY', `"${where}" is empty`);
    }
    return value;
}

/**
 * A loaded tokenizer that truncates and encodes as its settings say (handlers/text-limits.ts): by default those of its
 * tokenizer.json alone; load() reads the rest of the model folder and serve.yaml's options too.
 */
export class TextTokenizer {
    readonly padId: number;
    readonly padTypeId: number;
    readonly maxLength: number;
    readonly settings: TextSettings;
    private readonly left: boolean;
    private readonly unk?: number;
    private readonly specials = new Map<boolean, number>();
    /**
     * Characters per token of the first cut of a long text (English averages about 4; a cut with too few tokens is
     * made longer and tokenised again). Infinity tokenises every text whole.
     */
    charsPerToken = 8;

    constructor(readonly tokenizer: Tokenizer, json: TokenizerJson, maxLength?: number, settings: Partial<TextSettings> = {}) {
        const id = (t: string) => tokenizer.token_to_id(t);
        this.padId = json.padding?.pad_id ?? id('[PAD]') ?? id('<pad>') ?? 0;
        this.padTypeId = json.padding?.pad_type_id ?? 0;
        this.settings = { ...textSettings({ tokenizer: json }), ...settings, ...maxLength !== undefined && { maxLength } };
        this.maxLength = this.settings.maxLength;
        this.left = this.settings.truncationSide === 'left';
        this.unk = tokenizer.model?.unk_token_id;
    }

    /**
     * Reads tokenizer.json and tokenizer_config.json beside it (when there is one), and settles the settings with
     * the model's config.json and serve.yaml's options. Throws why it cannot.
     */
    static load(file: string, options: Partial<TextOptions> = {}, config?: Record<string, unknown>): TextTokenizer {
        let folder: TextFolder;
        let tokenizer: Tokenizer;
        try {
            const json = JSON.parse(fs.readFileSync(file, 'utf8')) as TokenizerJson;
            const configFile = path.join(path.dirname(file), 'tokenizer_config.json');
            const tokenizerConfig = fs.existsSync(configFile) ? JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown> : undefined;
            folder = { tokenizer: json, tokenizerConfig, config };
            tokenizer = new Tokenizer(json, tokenizerConfig ?? {});
        }
        catch (err) {
            throw new Error(`cannot load the tokenizer ${file}: ${(err as Error).message}`);
        }
        const settings = textSettings(folder, options);
        return new TextTokenizer(tokenizer, folder.tokenizer, settings.maxLength, settings);
    }

    /** The tokenizer's post-processor (special tokens, type ids) on already tokenized sequences. */
    private post(a: string[], b: string[] | null): { tokens: string[]; types: number[] } {
        const out = this.tokenizer.post_processor?.(a, b, true) ?? { tokens: a, tokens_pair: b ?? undefined };
        // Some post-processors (ByteLevel) hand the pair back apart, and give no type ids.
        const tokens = [...out.tokens, ...out.tokens_pair ?? []];
        return { tokens, types: out.token_type_ids ?? tokens.map((_, i) => i < out.tokens.length ? 0 : 1) };
    }

    /** How many special tokens the post-processor adds to a single text or a pair. */
    private special(pair: boolean): number {
        let n = this.specials.get(pair);
        if (n === undefined) {
            n = this.post([], pair ? [] : null).tokens.length;
            this.specials.set(pair, n);
        }
        return n;
    }

    /** Hugging Face's "longest_first": trim the longer of the two until both fit, as evenly as it can. */
    static truncatedLengths(a: number, b: number, max: number): [number, number] {
        if (a + b <= max) {
            return [a, b];
        }
        const shorter = Math.min(a, b);
        if (shorter <= max - shorter) {
            return a <= b ? [a, max - a] : [max - b, b];
        }
        const half = Math.floor(max / 2);
        return a <= b ? [half, max - half] : [max - half, half];
    }

    /**
     * A cut of a text from chars to 4 chars long: its start, or its end when truncating from the left; undefined when
     * no place to cut is there. It is cut where a space follows a word (every pre-tokenizer splits there, so the
     * tokens of the start are the text's first tokens, and those of the end, which begins with the space, its last),
     * else at another boundary of words (OTHER).
     */
    private cut(text: string, chars: number): string | undefined {
        if (!this.left) {
            // Cut points q in [chars, 4 chars), before the last character; a match at i of the window is q = chars - 1 + i.
            const window = text.slice(chars - 1, Math.min(4 * chars, text.length));
            for (const re of [SPACE_END, OTHER]) {
                for (const m of window.matchAll(re)) {
                    if (m.index > 0) {
                        return text.slice(0, chars - 1 + m.index);
                    }
                }
            }
            return undefined;
        }
        // The end from p, p in [lo, hi]: from 4 chars (but not the whole text) to chars long; the last p is the shortest.
        const lo = Math.max(1, text.length - 4 * chars + 1);
        const hi = text.length - chars;
        const window = text.slice(lo - 1, hi + 2);
        for (const re of [SPACE_START, OTHER]) {
            let at: number | undefined;
            for (const m of window.matchAll(re)) {
                if (m.index > 0 && m.index <= hi - lo + 1) {
                    at = lo - 1 + m.index;
                }
            }
            if (at !== undefined) {
                return text.slice(at);
            }
        }
        return undefined;
    }

    /**
     * The tokens of a text, or of a cut of it holding at least `need` of them: a long text is tokenised only as far as
     * truncation can reach into it. Tokenising a whole 1 MB text takes seconds of the replica's time.
     */
    private tokens(text: string, need: number): Tokens {
        for (let chars = need * this.charsPerToken; chars < text.length; chars *= 4) {
            const part = this.cut(text, chars);
            if (part !== undefined) {
                const tokens = this.tokenizer.tokenize(part);
                if (tokens.length >= need) {
                    return { tokens, whole: false };
                }
            }
        }
        return { tokens: this.tokenizer.tokenize(text), whole: true };
    }

    /**
     * A pair truncated longest first, an odd budget's last token going to the longer text: a cut text is tokenised
     * further until the two compare as the whole texts do. Both cut compare so only with an even budget.
     */
    private longestFirst(text: string, pair: string, budget: number): [Tokens, Tokens, [number, number]] {
        const need = budget + CUT_MARGIN;
        let a = this.tokens(text, need);
        let b = this.tokens(pair, need);
        while (!(a.whole && b.whole)) {
            const [na, nb] = [a.tokens.length, b.tokens.length];
            if (!a.whole && !b.whole ? budget % 2 === 0 : a.whole ? nb >= na : na > nb) {
                break;
            }
            if (!a.whole && (b.whole || na <= nb)) {
                a = this.tokens(text, nb + 1);
            }
            else {
                b = this.tokens(pair, na + (a.whole ? 0 : 1));
            }
        }
        return [a, b, TextTokenizer.truncatedLengths(a.tokens.length, b.tokens.length, budget)];
    }

    /**
     * only_first and only_second: the other text is kept whole, and the one named is cut to the room it leaves. A pair
     * whose other text leaves no room is refused, as Hugging Face's tokenizers refuse it.
     */
    private onlyOne(text: string, pair: string, budget: number, maxLength: number): [Tokens, Tokens, [number, number]] {
        const first = this.settings.strategy === 'only_first';
        const kept = this.tokens(first ? pair : text, budget + CUT_MARGIN);
        const room = budget - kept.tokens.length;
        const cut = this.tokens(first ? text : pair, Math.max(room, 0) + CUT_MARGIN);
        const over = !kept.whole || !cut.whole || kept.tokens.length + cut.tokens.length > budget;
        if (over && room < 1) {
            const [named, other] = first ? ['first', 'second'] : ['second', 'first'];
            throw fail('INVALID_BODY', `truncation ${this.settings.strategy} cuts only the ${named} text of a pair, but the ${other} has `
                + `${kept.whole ? '' : 'at least '}${kept.tokens.length} tokens, leaving none of the ${maxLength} (special tokens included) to the ${named}; `
                + `send a shorter ${other} text`);
        }
        const lengths: [number, number] = [kept.tokens.length, over ? room : cut.tokens.length];
        return first ? [cut, kept, [lengths[1], lengths[0]]] : [kept, cut, lengths];
    }

    /** A text or a pair as ids and type ids: truncated to maxLength (special tokens included) as the settings say. */
    encode(text: string, pair?: string, maxLength = this.maxLength): Encoded {
        const budget = Math.max(0, maxLength - this.special(pair !== undefined));
        let a: Tokens;
        let b: Tokens | null = null;
        let lengths: [number, number];
        if (pair === undefined) {
            a = this.tokens(text, budget + CUT_MARGIN);
            lengths = [Math.min(a.tokens.length, budget), 0];
        }
        else {
            [a, b, lengths] = this.settings.strategy === 'longest_first' ? this.longestFirst(text, pair, budget) : this.onlyOne(text, pair, budget, maxLength);
        }
        const cut = (x: string[], n: number) => this.left ? x.slice(x.length - n) : x.slice(0, n);
        const { tokens, types } = this.post(cut(a.tokens, lengths[0]), b && cut(b.tokens, lengths[1]));
        const ids = tokens.map((t) => {
            const found = this.tokenizer.token_to_id(t) ?? this.unk;
            if (found === undefined) {
                throw fail('INVALID_BODY', `the token ${quote(t)} is not in the tokenizer's vocabulary, which has no unknown token`);
            }
            return found;
        });
        return { ids, types };
    }
}

const textSchema = Joi.string().min(1);

export const text: HandlerFactory<TextItem> = (ctx) => {
    const options = ctx.options as unknown as TextOptions;
    let tok: TextTokenizer | undefined;
    let outputName = '';

    const single = (): Joi.Schema => options.task === 'classification'
        ? classificationSchema
        : Joi.object({
            embedding: Joi.array().items(Joi.number())
                .description(`the text's embedding (${options.pooling} pooling${options.normalize ? ', unit length' : ''})`)
        });

    const handler: Handler<TextItem> = {
        requestSchema() {
            return Joi.alternatives(
                Joi.object({
                    text: textSchema.required().description('the text'),
                    text_pair: textSchema.description('a second text, for models that take pairs (token_type_ids 1)')
                }),
                Joi.object({
                    texts: Joi.array().items(Joi.alternatives(textSchema, Joi.array().items(textSchema).length(2))).min(1).required()
                        .description('several texts; a pair is a two-item array. The answer is {"results": [...]}, in order')
                })
            );
        },

        responseSchema() {
            return perRequestSchema(single(), 'text');
        },

        querySchema() {
            return Joi.object({
                text: textSchema.required().description('the text'),
                text_pair: textSchema.description('a second text, for models that take pairs')
            });
        },

        example() {
            return { text: 'I loved this film, it was wonderful' };
        },

        parse(req, sig) {
            if (req.contentType !== 'application/json') {
                throw fail('UNSUPPORTED_MEDIA_TYPE', `the text handler takes application/json, not ${clip(req.contentType) || 'a body without a content type'}; ${USAGE}`);
            }
            const body = req.payload as Record<string, unknown> | null;
            if (!body || typeof body !== 'object' || Array.isArray(body)) {
                throw fail('INVALID_BODY', USAGE);
            }
            const extra = Object.keys(body).filter((k) => !['text', 'text_pair', 'texts'].includes(k));
            if (extra.length || ('texts' in body) === ('text' in body) || ('texts' in body && 'text_pair' in body)) {
                throw fail('INVALID_BODY', `${USAGE}${extra.length ? `; unknown field ${quote(extra[0])}` : ''}`);
            }
            let item: TextItem;
            if ('text' in body) {
                const first = checkText(body.text, 'text');
                item = { texts: ['text_pair' in body ? [first, checkText(body.text_pair, 'text_pair')] : first], list: false };
            }
            else {
                if (!Array.isArray(body.texts) || !body.texts.length) {
                    throw fail('INVALID_BODY', '"texts" must be a non-empty array of texts and [text, text pair] arrays');
                }
                item = {
                    texts: body.texts.map((t: unknown, i) => {
                        if (!Array.isArray(t)) {
                            return checkText(t, `texts[${i}]`);
                        }
                        if (t.length !== 2) {
                            throw fail('INVALID_BODY', `"texts[${i}]" is an array, so it must be a pair: [text, text pair]`);
                        }
                        return [checkText(t[0], `texts[${i}][0]`), checkText(t[1], `texts[${i}][1]`)];
                    }),
                    list: true
                };
            }
            checkCap(sig, item.texts.length, 'text');
            return { rows: item.texts.length, key: '', item };
        },

        load(sig) {
            if (!ctx.model.tokenizer) {
                throw new Error(ctx.model.dir
                    ? `the text handler needs a Hugging Face tokenizer.json in the model folder ${ctx.model.dir}, and there is none`
                    : `the text handler needs a Hugging Face tokenizer.json: model.path ${ctx.model.file} is a lone file; point it at a folder holding the model and its tokenizer.json`);
            }
            const ids = sig.inputs.find((i) => i.name === 'input_ids');
            const others = sig.inputs.filter((i) => !FED.includes(i.name)).map((i) => `"${i.name}"`);
            if (!ids || others.length) {
                throw new Error(`the text handler feeds ${FED.join(', ')}; the model's inputs are ${sig.inputs.map((i) => `"${i.name}"`).join(', ')}`);
            }
            const notInt = sig.inputs.find((i) => i.type !== 'int64' && i.type !== 'int32');
            if (notInt) {
                throw new Error(`the text handler feeds int64 or int32 tensors; the model's input "${notInt.name}" is ${notInt.type}`);
            }
            // options.output, else logits (classification) or last_hidden_state (embedding), else the first output.
            outputName = outputOf(sig, options.output, options.task === 'classification' ? 'logits' : 'last_hidden_state');
            tok = TextTokenizer.load(ctx.model.tokenizer, options, ctx.model.config);
        },

        preprocess(items, sig) {
            const t = tok as TextTokenizer;
            // A model whose sequence dimension is fixed takes exactly that many tokens.
            const fixed = sig.inputs.find((i) => i.name === 'input_ids')?.dims[1];
            const seqFixed = typeof fixed === 'number' && fixed > 0 ? fixed : undefined;
            const max = Math.min(t.maxLength, seqFixed ?? Infinity);
            const encoded = items.flatMap((it) => it.texts.map((x) => typeof x === 'string' ? t.encode(x, undefined, max) : t.encode(x[0], x[1], max)));
            batchLengths.set(items, encoded.map((e) => e.ids.length));
            const rows = Math.max(encoded.length, fixedBatch(sig) ?? 0);
            const seq = seqFixed ?? Math.max(1, ...encoded.map((e) => e.ids.length));
            const values: Record<string, number[]> = {
                input_ids: new Array(rows * seq).fill(t.padId),
                attention_mask: new Array(rows * seq).fill(0),
                token_type_ids: new Array(rows * seq).fill(t.padTypeId)
            };
            const left = t.settings.paddingSide === 'left';
            encoded.forEach((e, r) => {
                const start = r * seq + (left ? seq - e.ids.length : 0);
                e.ids.forEach((id, k) => {
                    values.input_ids[start + k] = id;
                    values.attention_mask[start + k] = 1;
                    values.token_type_ids[start + k] = e.types[k];
                });
            });
            return Object.fromEntries(sig.inputs.map((i) => [i.name, {
                type: i.type,
                data: i.type === 'int64' ? BigInt64Array.from(values[i.name], BigInt) : Int32Array.from(values[i.name]),
                dims: [rows, seq]
            }]));
        },

        postprocess(outputs: Feeds, items) {
            const out = outputs[outputName] as Tensor;
            const lengths = batchLengths.get(items) as number[];
            const rows = lengths.length;
            const data = out.data as Float32Array;
            let answers: unknown[];
            if (options.task === 'classification') {
                if (out.dims.length !== 2) {
                    throw fail('HANDLER_ERROR', `classification reads a [batch, classes] output; "${outputName}" is [${out.dims.join(', ')}]`);
                }
                answers = classifications(out, rows, options, ctx.model);
            }
            else {
                if (out.dims.length !== 2 && out.dims.length !== 3) {
                    throw fail('HANDLER_ERROR', `embedding reads a [batch, sequence, dim] or [batch, dim] output; "${outputName}" is [${out.dims.join(', ')}]`);
                }
                const dim = out.dims[out.dims.length - 1];
                const seq = out.dims.length === 3 ? out.dims[1] : 1;
                // Left padding puts a row's real tokens at its end.
                const left = (tok as TextTokenizer).settings.paddingSide === 'left';
                answers = lengths.map((len, r) => {
                    // [batch, dim] is used as it is; [batch, sequence, dim] is pooled over the row's real tokens.
                    const n = out.dims.length === 2 || options.pooling === 'cls' ? 1 : Math.min(len, seq);
                    const first = left && out.dims.length === 3 ? seq - Math.min(len, seq) : 0;
                    const v = new Array<number>(dim).fill(0);
                    for (let p = first; p < first + n; p++) {
                        for (let k = 0; k < dim; k++) {
                            v[k] += data[(r * seq + p) * dim + k];
                        }
                    }
                    const norm = options.normalize ? Math.hypot(...v) : n;
                    const scale = norm > 0 ? norm : 1;
                    return { embedding: v.map((x) => x / scale) };
                });
            }
            return perRequest(answers, items, (it) => it.texts.length);
        },

        reconfigure(userConfig) {
            const keys = Object.keys(userConfig);
            if (keys.length) {
                throw new Error(`the text handler takes no user_config (found "${keys[0]}"); its settings go under options:`);
            }
        }
    };
    return handler;
};
