// The text handler: tokenising with the model folder's tokenizer.json (checked against ids written by hand from the
// example vocabulary), truncation, per-batch padding, pairs, classification and embedding answers, and the example
// sentiment model end to end through a real `tsserve up`.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { text, TextTokenizer, type TextItem } from '../handlers/text';
import { text as textOptions } from '../schemas/text';
import { modelFiles } from '../lib/model-files';
import { Graph } from '../modelgen/onnx-builder';
import { info, near, serve, validOpenApi, type Served } from './helpers';
import type { Feeds } from '../lib/tensor';
import type { Signature } from '../lib/signature';
import type { ModelFiles } from '../lib/model-files';
import type { Handler } from '../lib/handler';

const exampleDir = path.join(__dirname, '..', 'examples', 'models', 'sentiment');
const exampleJson = JSON.parse(fs.readFileSync(path.join(exampleDir, 'tokenizer.json'), 'utf8'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-text-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Ids of the example vocabulary (examples/models/sentiment/tokenizer.json), read off by hand.
const PAD = 0, UNK = 1, CLS = 2, SEP = 3, COMMA = 5, BANG = 7, S_SUFFIX = 194;
const THE = 168, MOVIE = 116, WAS = 185, GREAT = 85, TERRIBLE = 166, SERVICE = 152, SO = 156, BAD = 30, AND = 23, COLD = 45, FOOD = 73, AWFUL = 29;

const sentimentSig: Signature = {
    inputs: [info('input_ids', 'int64', ['batch', 'sequence']), info('attention_mask', 'int64', ['batch', 'sequence'])],
    outputs: [info('logits', 'float32', ['batch', 2]), info('last_hidden_state', 'float32', ['batch', 'sequence', 16])]
};
const withTypes = (type = 'int64', batch: number | string = 'batch', seq: number | string = 'sequence'): Signature => ({
    inputs: ['input_ids', 'attention_mask', 'token_type_ids'].map((n) => info(n, type, [batch, seq])),
    outputs: sentimentSig.outputs
});

/** `got` within `eps` of `want`, by helpers' near(); a failure shows both. */
const close = (t: Test, got: number | ArrayLike<number>, want: number | ArrayLike<number>, msg: string, eps?: number) =>
    t.ok(near(got, want, eps), msg, { found: got, wanted: want });

const exampleFiles = (): ModelFiles => modelFiles({ runtime: 'onnx', path: exampleDir });

function make(options: Record<string, unknown> = {}, model: ModelFiles = exampleFiles()): Handler<TextItem> {
    const { error, value } = textOptions.validate(options);
    if (error) {
        throw error;
    }
    return text({ options: value, model });
}

async function loaded(options: Record<string, unknown> = {}, sig: Signature = sentimentSig): Promise<Handler<TextItem>> {
    const h = make(options);
    await h.load?.(sig);
    return h;
}

const one = (...texts: TextItem['texts']): TextItem => ({ texts, list: false });
const many = (...texts: TextItem['texts']): TextItem => ({ texts, list: true });
const rowsOf = (feeds: Feeds, name: string): number[][] => {
    const [rows, seq] = feeds[name].dims;
    const data = Array.from(feeds[name].data as ArrayLike<number | bigint>, Number);
    return Array.from({ length: rows }, (_, r) => data.slice(r * seq, (r + 1) * seq));
};

/** A tokenizer.json like the example's, changed by `change`, in a folder of its own; returns the file. */
function variant(change: (json: any) => void): string {
    const json = structuredClone(exampleJson);
    change(json);
    const dir = fs.mkdtempSync(path.join(tmp, 'tok-'));
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
    return path.join(dir, 'tokenizer.json');
}

t.test('tokenising with the example tokenizer.json gives the ids, mask and type ids of its vocabulary', async (t) => {
    const h = await loaded({}, withTypes());
    const feeds = await h.preprocess([one('The movie was GREAT!')], withTypes());
    t.same(rowsOf(feeds, 'input_ids'), [[CLS, THE, MOVIE, WAS, GREAT, BANG, SEP]], 'lowercased, punctuation split off, [CLS] ... [SEP]');
    t.same(rowsOf(feeds, 'attention_mask'), [[1, 1, 1, 1, 1, 1, 1]]);
    t.same(rowsOf(feeds, 'token_type_ids'), [[0, 0, 0, 0, 0, 0, 0]]);
    t.type(feeds.input_ids.data, BigInt64Array, 'int64 inputs are BigInt64Array');
    t.equal(feeds.input_ids.type, 'int64');
    t.same(feeds.input_ids.dims, [1, 7]);

    const words = await h.preprocess([one('movies, xylophone')], withTypes());
    t.same(rowsOf(words, 'input_ids'), [[CLS, MOVIE, S_SUFFIX, COMMA, UNK, SEP]], 'WordPiece: movie ##s; an unknown word is [UNK]');

    const pair = await h.preprocess([one(['the movie was great', 'terrible service'])], withTypes());
    t.same(rowsOf(pair, 'input_ids'), [[CLS, THE, MOVIE, WAS, GREAT, SEP, TERRIBLE, SERVICE, SEP]], 'a pair: [CLS] A [SEP] B [SEP]');
    t.same(rowsOf(pair, 'token_type_ids'), [[0, 0, 0, 0, 0, 0, 1, 1, 1]], 'the second text has type 1');

    const int32 = await h.preprocess([one('great')], withTypes('int32'));
    t.type(int32.input_ids.data, Int32Array, 'int32 inputs are Int32Array');
    t.same([...int32.input_ids.data as Int32Array], [CLS, GREAT, SEP]);
    t.same(int32.token_type_ids.type, 'int32');

    const only = await h.preprocess([one('great')], sentimentSig);
    t.same(Object.keys(only), ['input_ids', 'attention_mask'], 'only the inputs the model has');
});

t.test('each batch is padded to its longest text, with a mask of 0 over the padding', async (t) => {
    const h = await loaded({}, withTypes());
    const items = [one('great'), many('the movie was great', 'so bad'), many(['great', 'so bad'])];
    const feeds = await h.preprocess(items, withTypes());
    t.same(feeds.input_ids.dims, [4, 6]);
    t.same(rowsOf(feeds, 'input_ids'), [
        [CLS, GREAT, SEP, PAD, PAD, PAD],
        [CLS, THE, MOVIE, WAS, GREAT, SEP],
        [CLS, SO, BAD, SEP, PAD, PAD],
        [CLS, GREAT, SEP, SO, BAD, SEP]
    ]);
    t.same(rowsOf(feeds, 'attention_mask'), [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]);
    t.same(rowsOf(feeds, 'token_type_ids'), [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1]]);

    const alone = await h.preprocess([one('great')], withTypes());
    t.same(alone.input_ids.dims, [1, 3], 'a batch of one is not padded');

    const fixedSeq = withTypes('int64', 'batch', 8);
    const fixed = await h.preprocess([one('great'), one('the movie was great and so bad , so bad')], fixedSeq);
    t.same(rowsOf(fixed, 'input_ids'), [[CLS, GREAT, SEP, PAD, PAD, PAD, PAD, PAD], [CLS, THE, MOVIE, WAS, GREAT, AND, SO, SEP]],
        'a fixed sequence dimension: padded and truncated to it');

    const fixedBatch = withTypes('int64', 3, 'sequence');
    const rows = await h.preprocess([one('great')], fixedBatch);
    t.same(rowsOf(rows, 'input_ids'), [[CLS, GREAT, SEP], [PAD, PAD, PAD], [PAD, PAD, PAD]], 'a fixed batch dimension: padded with rows');
    t.same(rowsOf(rows, 'attention_mask'), [[1, 1, 1], [0, 0, 0], [0, 0, 0]]);
    const parsed = h.parse({ payload: { texts: ['a', 'b', 'c'] }, headers: {}, contentType: 'application/json' }, fixedBatch);
    t.equal(parsed.rows, 3);
    t.throws(() => h.parse({ payload: { texts: ['a', 'b', 'c', 'd'] }, headers: {}, contentType: 'application/json' }, fixedBatch),
        { output: { statusCode: 400 }, message: 'this model takes at most 3 texts per request; this one sent 4' });
});

t.test('truncation: max_length from serve.yaml, else the tokenizer\'s own, else 512; pairs are trimmed longest first', async (t) => {
    t.same(TextTokenizer.truncatedLengths(3, 1, 10), [3, 1], 'fits: unchanged');
    t.same(TextTokenizer.truncatedLengths(10, 2, 6), [4, 2], 'only the longer is cut');
    t.same(TextTokenizer.truncatedLengths(2, 10, 6), [2, 4]);
    t.same(TextTokenizer.truncatedLengths(5, 5, 6), [3, 3], 'both are cut evenly');
    t.same(TextTokenizer.truncatedLengths(7, 4, 5), [3, 2], 'the longer keeps the odd token');
    t.same(TextTokenizer.truncatedLengths(4, 7, 5), [2, 3]);

    const h = await loaded({ max_length: 5 }, withTypes());
    const single = await h.preprocess([one('the movie was great!')], withTypes());
    t.same(rowsOf(single, 'input_ids'), [[CLS, THE, MOVIE, WAS, SEP]], 'max_length counts [CLS] and [SEP]');

    const h7 = await loaded({ max_length: 7 }, withTypes());
    const shortPair = await h7.preprocess([one(['the movie was great', 'so bad'])], withTypes());
    t.same(rowsOf(shortPair, 'input_ids'), [[CLS, THE, MOVIE, SEP, SO, BAD, SEP]], 'the longer text of a pair is cut first');
    t.same(rowsOf(shortPair, 'token_type_ids'), [[0, 0, 0, 0, 1, 1, 1]]);

    const h8 = await loaded({ max_length: 8 }, withTypes());
    const longPair = await h8.preprocess([one(['the movie was great', 'terrible service and cold food'])], withTypes());
    t.same(rowsOf(longPair, 'input_ids'), [[CLS, THE, MOVIE, SEP, TERRIBLE, SERVICE, AND, SEP]], 'both cut, 2 and 3 tokens');

    const own = await loaded({}, sentimentSig);
    const long = await own.preprocess([one(Array(100).fill('great').join(' '))], sentimentSig);
    t.same(long.input_ids.dims, [1, 64], 'the tokenizer.json truncation max_length (64)');
    t.equal(rowsOf(long, 'input_ids')[0][63], SEP);

    t.equal(TextTokenizer.load(variant((j) => j.truncation = null)).maxLength, 512, 'no truncation settings: 512');
    t.equal(TextTokenizer.load(variant((j) => j.truncation = null), { max_length: 9 }).maxLength, 9);
    const left = TextTokenizer.load(variant((j) => j.truncation = { max_length: 5, direction: 'Left' }));
    t.same(left.encode('the movie was great!').ids, [CLS, WAS, GREAT, BANG, SEP], 'direction Left keeps the end');
    t.same(left.encode('great', 'so', 2).ids, [CLS, SEP, SEP], 'a max_length below the special tokens keeps only them');
});

t.test('pad ids and type ids: the tokenizer\'s padding, else [PAD] or <pad>, else 0', async (t) => {
    const example = TextTokenizer.load(path.join(exampleDir, 'tokenizer.json'));
    t.equal(example.padId, PAD);
    t.equal(example.padTypeId, 0);
    const padded = TextTokenizer.load(variant((j) => j.padding = { pad_id: 7, pad_type_id: 1 }));
    t.same([padded.padId, padded.padTypeId], [7, 1]);
    t.equal(TextTokenizer.load(variant((j) => j.padding = null)).padId, 0, '[PAD]');
    const rename = (to: string) => (j: any) => {
        j.padding = null;
        j.added_tokens = j.added_tokens.filter((a: any) => a.content !== '[PAD]');
        delete j.model.vocab['[PAD]'];
        j.model.vocab[to] = 200;
    };
    t.equal(TextTokenizer.load(variant(rename('<pad>'))).padId, 200, '<pad>');
    t.equal(TextTokenizer.load(variant(rename('[NOTHING]'))).padId, 0, 'none: 0');
});

t.test('post-processors without type ids, and vocabularies without an unknown token', async (t) => {
    const none = TextTokenizer.load(variant((j) => j.post_processor = null));
    t.same(none.encode('great', 'so bad'), { ids: [GREAT, SO, BAD], types: [0, 1, 1] }, 'no post-processor: no special tokens, pair is type 1');
    t.same(none.encode('great'), { ids: [GREAT], types: [0] });
    const byteLevel = TextTokenizer.load(variant((j) => j.post_processor = { type: 'ByteLevel' }));
    t.same(byteLevel.encode('great', 'so bad'), { ids: [GREAT, SO, BAD], types: [0, 1, 1] }, 'a pair handed back apart is joined');
    const bert = TextTokenizer.load(variant((j) => j.post_processor = { type: 'BertProcessing', sep: ['[SEP]', SEP], cls: ['[CLS]', CLS] }));
    t.same(bert.encode('great', 'so bad'), { ids: [CLS, GREAT, SEP, SO, BAD, SEP], types: [0, 0, 0, 1, 1, 1] });
    const noUnk = TextTokenizer.load(variant((j) => j.model.unk_token = '[NONE]'));
    t.same(noUnk.encode('great').ids, [CLS, GREAT, SEP]);
    t.throws(() => noUnk.encode('xylophone'), { output: { statusCode: 400 }, message: /"\[NONE\]" is not in the tokenizer's vocabulary/ });
});

t.test('load() fails clearly without a tokenizer, with a bad one, or with a model the handler cannot feed', async (t) => {
    const bare = fs.mkdtempSync(path.join(tmp, 'bare-'));
    fs.copyFileSync(path.join(exampleDir, 'model.onnx'), path.join(bare, 'model.onnx'));
    t.throws(() => make({}, modelFiles({ runtime: 'onnx', path: bare })).load?.(sentimentSig),
        { message: `the text handler needs a Hugging Face tokenizer.json in the model folder ${bare}, and there is none` });
    const lone = path.join(bare, 'model.onnx');
    t.throws(() => make({}, modelFiles({ runtime: 'onnx', path: lone })).load?.(sentimentSig), { message: /model.path .*model.onnx is a lone file/ });

    fs.writeFileSync(path.join(bare, 'tokenizer.json'), '{"model": ');
    t.throws(() => make({}, modelFiles({ runtime: 'onnx', path: bare })).load?.(sentimentSig), { message: /cannot load the tokenizer .*tokenizer.json: .*JSON/ });
    fs.writeFileSync(path.join(bare, 'tokenizer.json'), JSON.stringify({ ...exampleJson, model: { type: 'Nonsense' } }));
    t.throws(() => make({}, modelFiles({ runtime: 'onnx', path: bare })).load?.(sentimentSig), { message: /cannot load the tokenizer .*Nonsense/ });

    const h = make();
    t.throws(() => h.load?.({ inputs: [info('pixel_values', 'float32', ['batch', 3])], outputs: sentimentSig.outputs }),
        { message: 'the text handler feeds input_ids, attention_mask, token_type_ids; the model\'s inputs are "pixel_values"' });
    t.throws(() => h.load?.({ inputs: [...sentimentSig.inputs, info('position_ids', 'int64', ['batch', 'sequence'])], outputs: sentimentSig.outputs }),
        { message: /the model's inputs are "input_ids", "attention_mask", "position_ids"/ });
    t.throws(() => h.load?.({ inputs: [info('input_ids', 'float32', ['batch', 'sequence'])], outputs: sentimentSig.outputs }),
        { message: 'the text handler feeds int64 or int32 tensors; the model\'s input "input_ids" is float32' });
    t.throws(() => make({ output: 'pooler_output' }).load?.(sentimentSig),
        { message: 'options.output is "pooler_output", not among the model\'s outputs (logits, last_hidden_state)' });

    t.doesNotThrow(() => h.reconfigure({}, sentimentSig));
    t.throws(() => h.reconfigure({ top_k: 1 }, sentimentSig), { message: /takes no user_config \(found "top_k"\)/ });
});

t.test('classification: softmax of the logits, labels from config.json or options, top_k', async (t) => {
    const items = [one('great'), many('so bad', 'great')];
    const logits = (rows: number[][]): Feeds => ({ logits: { type: 'float32', data: Float32Array.from(rows.flat()), dims: [rows.length, rows[0].length] } });
    const h = await loaded();
    await h.preprocess(items, sentimentSig);
    // softmax([0, ln 3]) = [1/4, 3/4]; softmax([ln 9, 0]) = [9/10, 1/10]
    const out = await h.postprocess(logits([[0, Math.log(3)], [Math.log(9), 0], [0, 0]]), items, sentimentSig) as any[];
    t.equal(out.length, 2, 'one body per request');
    t.equal(out[0].label, 'positive', 'id2label from config.json');
    t.same(out[0].predictions.map((p: any) => p.label), ['positive', 'negative']);
    close(t, out[0].predictions.map((p: any) => p.score), [0.75, 0.25], 'softmax([0, ln 3])', 1e-6);
    t.equal(out[0].score, out[0].predictions[0].score, 'the score is the best prediction\'s');
    t.equal(out[1].results.length, 2, 'a list gets results');
    t.same(out[1].results.map((r: any) => r.label), ['negative', 'negative'], 'the tie of the second row goes to the first label');
    close(t, out[1].results.map((r: any) => r.score), [0.9, 0.5], 'softmax([ln 9, 0]) and softmax([0, 0])', 1e-6);

    const named = await loaded({ labels: ['bad', 'good'], top_k: 1 });
    const single = [one('great')];
    await named.preprocess(single, sentimentSig);
    const top = await named.postprocess(logits([[0, Math.log(3)]]), single, sentimentSig) as any[];
    t.same(top[0].predictions.map((p: any) => p.label), ['good'], 'labels from options; top_k 1');
    t.equal(top[0].label, 'good');

    const wrong = [one('great')];
    await h.preprocess(wrong, sentimentSig);
    await t.rejects(async () => h.postprocess({ logits: { type: 'float32', data: new Float32Array(6), dims: [1, 3, 2] } }, wrong, sentimentSig),
        { output: { statusCode: 500 }, message: 'classification reads a [batch, classes] output; "logits" is [1, 3, 2]' });
});

t.test('embedding: mean over the attention mask (or the first token), L2-normalised; a [batch, dim] output as it is', async (t) => {
    const items = [one('great'), many('so bad')]; // 3 and 4 tokens: the first row has one padded position
    const hidden: Feeds = {
        last_hidden_state: {
            type: 'float32', dims: [2, 4, 2],
            data: Float32Array.from([1, 2, 3, 4, 5, 6, 100, 100, /* row 2 */ 1, 0, 0, 1, 1, 1, 2, 2])
        }
    };
    const run = async (options: Record<string, unknown>, outputs = hidden, sig = sentimentSig) => {
        const h = await loaded({ task: 'embedding', ...options }, sig);
        await h.preprocess(items, sig);
        return await h.postprocess(outputs, items, sig) as any[];
    };

    const mean = await run({ normalize: false });
    // row 1: ([1, 2] + [3, 4] + [5, 6]) / 3 = [3, 4] (the padding [100, 100] is masked); row 2: [4, 4] / 4 = [1, 1]
    t.same(mean, [{ embedding: [3, 4] }, { results: [{ embedding: [1, 1] }] }]);

    const unit = await run({});
    close(t, unit[0].embedding, [0.6, 0.8], '[3, 4] / 5', 1e-9);
    close(t, unit[1].results[0].embedding, [Math.SQRT1_2, Math.SQRT1_2], '[1, 1] / sqrt(2)', 1e-9);
    close(t, Math.hypot(...unit[0].embedding), 1, 'L2 norm 1', 1e-9);

    const cls = await run({ pooling: 'cls' });
    close(t, cls[0].embedding, [1 / Math.sqrt(5), 2 / Math.sqrt(5)], 'the first token, [1, 2] / sqrt(5)', 1e-9);
    close(t, cls[1].results[0].embedding, [1, 0], 'the first token, [1, 0]', 1e-9);

    const pooledSig: Signature = { inputs: sentimentSig.inputs, outputs: [info('pooled', 'float32', ['batch', 2])] };
    const pooled = await run({}, { pooled: { type: 'float32', dims: [2, 2], data: Float32Array.from([3, 4, 0, 0]) } }, pooledSig);
    close(t, pooled[0].embedding, [0.6, 0.8], 'a [batch, dim] output (the first output, as none is last_hidden_state) is only normalised', 1e-9);
    t.same(pooled[1].results[0].embedding, [0, 0], 'a zero vector stays zero');

    const named = await run({ output: 'logits', normalize: false }, { logits: { type: 'float32', dims: [2, 2], data: Float32Array.from([1, 2, 3, 4]) } });
    t.same(named, [{ embedding: [1, 2] }, { results: [{ embedding: [3, 4] }] }], 'options.output chooses the output');

    await t.rejects(run({}, { last_hidden_state: { type: 'float32', dims: [2], data: new Float32Array(2) } }),
        { output: { statusCode: 500 }, message: 'embedding reads a [batch, sequence, dim] or [batch, dim] output; "last_hidden_state" is [2]' });
});

t.test('parse() takes a text, a pair or a list, counts the rows, and refuses anything else with a clear 4xx', async (t) => {
    const h = make();
    const parse = (payload: unknown, contentType = 'application/json') => h.parse({ payload, headers: {}, contentType }, sentimentSig);
    t.same(parse({ text: 'great' }), { rows: 1, key: '', item: { texts: ['great'], list: false } });
    t.same(parse({ text: 'great', text_pair: 'bad' }), { rows: 1, key: '', item: { texts: [['great', 'bad']], list: false } });
    t.same(parse({ texts: ['great', ['a', 'b'], 'c'] }), { rows: 3, key: '', item: { texts: ['great', ['a', 'b'], 'c'], list: true } });

    const bad: Array<[unknown, string, number, RegExp]> = [
        [{ text: '' }, 'application/json', 400, /"text" is empty/],
        [{ text: ' \n\t ' }, 'application/json', 400, /"text" is empty/],
        [{ text: 3 }, 'application/json', 400, /"text" must be a string/],
        [{ text: 'a', text_pair: ' ' }, 'application/json', 400, /"text_pair" is empty/],
        [{ text_pair: 'a' }, 'application/json', 400, /the body must be \{"text"/],
        [{}, 'application/json', 400, /the body must be/],
        [{ text: 'a', texts: ['b'] }, 'application/json', 400, /the body must be/],
        [{ texts: ['b'], text_pair: 'c' }, 'application/json', 400, /the body must be/],
        [{ text: 'a', top_k: 3 }, 'application/json', 400, /unknown field "top_k"/],
        [null, 'application/json', 400, /the body must be/],
        [['great'], 'application/json', 400, /the body must be/],
        ['great', 'application/json', 400, /the body must be/],
        [{ texts: [] }, 'application/json', 400, /"texts" must be a non-empty array/],
        [{ texts: 'great' }, 'application/json', 400, /"texts" must be a non-empty array/],
        [{ texts: ['a', ''] }, 'application/json', 400, /"texts\[1\]" is empty/],
        [{ texts: ['a', ['b']] }, 'application/json', 400, /"texts\[1\]" is an array, so it must be a pair/],
        [{ texts: [['a', 'b', 'c']] }, 'application/json', 400, /"texts\[0\]" is an array/],
        [{ texts: [['a', 7]] }, 'application/json', 400, /"texts\[0\]\[1\]" must be a string/],
        [{ texts: [[' ', 'b']] }, 'application/json', 400, /"texts\[0\]\[0\]" is empty/],
        [{ texts: [{ text: 'a' }] }, 'application/json', 400, /"texts\[0\]" must be a string/],
        [Buffer.from('great'), 'application/octet-stream', 415, /takes application\/json, not application\/octet-stream/],
        [{ text: 'great' }, '', 415, /not a body without a content type/]
    ];
    for (const [payload, type, status, message] of bad) {
        t.throws(() => parse(payload, type), { output: { statusCode: status }, message }, `${JSON.stringify(payload)} (${type})`);
    }
});

t.test('the request and response schemas describe what the handler takes and answers', async (t) => {
    for (const task of ['classification', 'embedding']) {
        const h = await loaded({ task, normalize: task === 'embedding' });
        t.error(h.requestSchema(sentimentSig).validate(h.example(sentimentSig)).error, 'the example is a valid request');
        t.error(h.requestSchema(sentimentSig).validate({ texts: ['a', ['b', 'c']] }).error, 'texts and pairs');
        t.match(h.requestSchema(sentimentSig).validate({ texts: [['b']] }).error?.message, /"value" does not match any of the allowed types/, 'a pair of one');
        const items = [one('great'), many('so bad', ['a', 'b'])];
        const feeds = await h.preprocess(items, sentimentSig);
        const session = await ort.InferenceSession.create(path.join(exampleDir, 'model.onnx'));
        const out = await session.run(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor('int64', v.data as BigInt64Array, v.dims)])));
        const bodies = await h.postprocess(Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { type: v.type, data: v.data as Float32Array, dims: [...v.dims] }])), items, sentimentSig);
        for (const body of bodies) {
            t.error(h.responseSchema(sentimentSig).validate(body).error, `${task}: the answer matches the response schema`);
        }
    }
    t.match(JSON.stringify((await loaded({ task: 'embedding', normalize: false })).responseSchema(sentimentSig).describe()), /mean pooling\)/);
});

/** int32 input_ids, attention_mask, token_type_ids -> last_hidden_state float32 [batch, sequence, 3]: what it was fed. */
function echoModel(): Uint8Array {
    const g = new Graph('echo');
    const axis2 = g.initializer('axis_2', BigInt64Array.of(2n), [1]);
    const parts = ['input_ids', 'attention_mask', 'token_type_ids'].map((name) => {
        g.input(name, 'int32', ['batch', 'sequence']);
        g.node('Cast', [name], [`${name}_f`], { to: { i: 1 } });
        return g.node('Unsqueeze', [`${name}_f`, axis2], [`${name}_3d`]);
    });
    g.node('Concat', parts, ['last_hidden_state'], { axis: { i: 2 } });
    return g.output('last_hidden_state', 'float32', ['batch', 'sequence', 3]).toBytes();
}

t.test('end to end: the example sentiment model behind a real tsserve up', async (t) => {
    const echoDir = path.join(tmp, 'echo');
    fs.mkdirSync(echoDir);
    fs.writeFileSync(path.join(echoDir, 'model.onnx'), echoModel());
    fs.copyFileSync(path.join(exampleDir, 'tokenizer.json'), path.join(echoDir, 'tokenizer.json'));
    const noTokenizer = path.join(tmp, 'no-tokenizer');
    fs.mkdirSync(noTokenizer);
    fs.copyFileSync(path.join(exampleDir, 'model.onnx'), path.join(noTokenizer, 'model.onnx'));

    const deployment = (name: string, model: string, options: string) => `  - name: ${name}
    route_prefix: /${name}
    deployments:
      - name: model
        handler: text
        model: { path: ${model} }
        options: ${options}
        batching: { max_batch_size: 16, batch_wait_timeout_s: 0.01 }
`;
    const s: Served = await serve(tmp, `http_options: { host: 127.0.0.1, port: 8000, request_timeout_s: 30 }
applications:
${deployment('sentiment', exampleDir, '{ task: classification }')}
${deployment('embed', exampleDir, '{ task: embedding }')}
${deployment('echo', echoDir, '{ task: embedding, normalize: false }')}
${deployment('notok', noTokenizer, '{}')}
`);
    t.teardown(() => s.stop());
    await Promise.all(['sentiment', 'embed', 'echo'].map((app) => s.waitFor(new RegExp(`replica ${app}/model#0 RUNNING`))));

    t.test('a person can check the answers: positive and negative reviews, with high confidence', async (t) => {
        const pos = await s.post('/sentiment/predict', { text: 'I loved this film, it was wonderful' });
        t.equal(pos.status, 200);
        t.equal(pos.body.label, 'positive');
        t.ok(pos.body.score > 0.95, `score ${pos.body.score}`);
        t.same(pos.body.predictions.map((p: any) => p.label), ['positive', 'negative'], 'top_k 5, capped at the 2 classes');
        const neg = await s.post('/sentiment/predict', { text: 'what a boring and awful movie' });
        t.equal(neg.body.label, 'negative');
        t.ok(neg.body.score > 0.95, `score ${neg.body.score}`);

        const list = await s.post('/sentiment/predict', { texts: ['the food was delicious', 'terrible service and cold food', ['great acting', 'a lovely story']] });
        t.equal(list.status, 200);
        t.same(list.body.results.map((r: any) => r.label), ['positive', 'negative', 'positive'], 'a list: results in order');
    });

    t.test('embeddings are the masked mean of the model\'s token embeddings, of unit length', async (t) => {
        const text = 'I loved this film, it was wonderful';
        const r = await s.post('/embed/predict', { text });
        t.equal(r.status, 200);
        t.equal(r.body.embedding.length, 16);
        close(t, Math.hypot(...r.body.embedding), 1, 'unit length', 1e-6);
        // By hand: the model's own token embeddings of the 10 tokens, averaged and scaled to length 1.
        const ids = [CLS, 93, 107, 172, 72, COMMA, 98, WAS, 192, SEP];
        const session = await ort.InferenceSession.create(path.join(exampleDir, 'model.onnx'));
        const feeds = { input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, 10]), attention_mask: new ort.Tensor('int64', new BigInt64Array(10).fill(1n), [1, 10]) };
        const tokens = (await session.run(feeds)).last_hidden_state.data as Float32Array;
        const mean = Array.from({ length: 16 }, (_, k) => ids.reduce((sum, _, p) => sum + tokens[p * 16 + k], 0) / ids.length);
        const norm = Math.hypot(...mean);
        close(t, r.body.embedding, mean.map((v) => v / norm), 'equal to the hand computation', 1e-6);

        const list = await s.post('/embed/predict', { texts: ['great', 'awful'] });
        t.equal(list.body.results.length, 2);
    });

    t.test('int32 inputs, token_type_ids for pairs and the padding reach the model as the tokenizer says', async (t) => {
        // [CLS] great [SEP] awful movie [SEP]: the means of the ids, the mask and the type ids over the 6 real tokens
        const r = await s.post('/echo/predict', { text: 'great', text_pair: 'awful movie' });
        t.same(r.body.embedding, [(CLS + GREAT + SEP + AWFUL + MOVIE + SEP) / 6, 1, 3 / 6]);
        const texts: Array<string | [string, string]> = ['so bad', ['great', 'the movie was great'], 'cold food'];
        const want = [[(CLS + SO + BAD + SEP) / 4, 1, 0], [(CLS + GREAT + SEP + THE + MOVIE + WAS + GREAT + SEP) / 8, 1, 5 / 8], [(CLS + COLD + FOOD + SEP) / 4, 1, 0]];
        const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => s.post('/echo/predict', { texts: [texts[i % 3]] })));
        t.same(answers.map((a) => a.status), answers.map(() => 200));
        t.same(answers.map((a) => a.body.results[0].embedding), answers.map((_, i) => want[i % 3]), 'batched with padding, each exact');
    });

    t.test('30 concurrent requests of different lengths get exactly the answers they get one at a time', async (t) => {
        const words = ['great', 'awful', 'the movie was', 'really', 'boring', 'and', 'wonderful food', 'so', 'cold', 'i loved it'];
        const bodies = Array.from({ length: 30 }, (_, i) => {
            const sentence = (n: number) => Array.from({ length: 1 + ((i * 7 + n) % 13) }, (_, k) => words[(i + k * 3 + n) % words.length]).join(' ');
            return i % 3 === 0 ? { texts: [sentence(0), [sentence(1), sentence(2)], sentence(3)] } : i % 3 === 1 ? { text: sentence(0), text_pair: sentence(5) } : { text: sentence(4) };
        });
        for (const route of ['/sentiment/predict', '/embed/predict']) {
            const sequential: unknown[] = [];
            for (const body of bodies) {
                sequential.push((await s.post(route, body)).body);
            }
            const concurrent = await Promise.all(bodies.map((body) => s.post(route, body)));
            t.same(concurrent.map((c) => c.status), bodies.map(() => 200), `${route}: all answered`);
            // The answers' shapes and labels with every number as #, then the numbers.
            const numbers = (x: unknown): number[] => JSON.stringify(x).match(/-?\d+(\.\d+)?(e-?\d+)?/g)!.map(Number);
            const labels = (x: unknown): string => JSON.stringify(x).replace(/-?\d+(\.\d+)?(e-?\d+)?/g, '#');
            t.same(concurrent.map((c) => labels(c.body)), sequential.map(labels), `${route}: batched and padded answers have the one-at-a-time labels`);
            close(t, concurrent.flatMap((c) => numbers(c.body)), sequential.flatMap(numbers), `${route}: and numbers`, 1e-5);
        }
    });

    t.test('/openapi.json documents the text routes and is valid OpenAPI', async (t) => {
        const doc = (await s.get('/openapi.json')).body;
        const op = doc.paths['/sentiment/predict'].post;
        t.same(op.requestBody.content['application/json'].example, { text: 'I loved this film, it was wonderful' });
        t.same(Object.keys(op.requestBody.content), ['application/json']);
        t.same(op.requestBody.content['application/json'].schema.oneOf.map((o: any) => Object.keys(o.properties)), [['text', 'text_pair'], ['texts']]);
        t.same(Object.keys(doc.paths['/embed/predict'].post.responses['200'].content['application/json'].schema.oneOf[0].properties), ['embedding']);
        t.same(Object.keys(op.responses['200'].content['application/json'].schema.oneOf[0].properties), ['label', 'score', 'predictions']);
        await validOpenApi(t, doc);
        const tried = await s.post('/sentiment/predict', op.requestBody.content['application/json'].example);
        t.equal(tried.body.label, 'positive', 'the example works');
    });

    t.test('bad requests get a clean 4xx, and the replicas keep serving without a restart', async (t) => {
        const cases: Array<[string, () => Promise<{ status: number; body: any }>, number, string, RegExp]> = [
            ['empty text', () => s.post('/sentiment/predict', { text: '' }), 400, 'INVALID_BODY', /"text" is empty/],
            ['whitespace text', () => s.post('/embed/predict', { text: '   ' }), 400, 'INVALID_BODY', /"text" is empty/],
            ['empty text in a list', () => s.post('/sentiment/predict', { texts: ['great', ''] }), 400, 'INVALID_BODY', /"texts\[1\]" is empty/],
            ['missing field', () => s.post('/sentiment/predict', { sentence: 'great' }), 400, 'INVALID_BODY', /the body must be/],
            ['wrong type', () => s.post('/sentiment/predict', { text: 42 }), 400, 'INVALID_BODY', /"text" must be a string/],
            ['wrong type of list', () => s.post('/sentiment/predict', { texts: 'great' }), 400, 'INVALID_BODY', /"texts" must be a non-empty array/],
            ['text/plain', () => s.post('/sentiment/predict', 'great', { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE', /Unsupported Media Type/],
            ['octet-stream', () => s.post('/sentiment/predict', 'great', { 'content-type': 'application/octet-stream' }), 415, 'UNSUPPORTED_MEDIA_TYPE', /takes application\/json/],
            ['invalid JSON', () => s.post('/sentiment/predict', '{"text": "gre'), 400, 'INVALID_JSON', /JSON/],
            ['a 50 MB body', () => s.post('/sentiment/predict', JSON.stringify({ text: 'great '.repeat(50 * 1024 * 1024 / 6) })), 413, 'PAYLOAD_TOO_LARGE', /Payload content length greater than maximum allowed/]
        ];
        for (const [name, send, status, code, message] of cases) {
            const r = await send();
            t.equal(r.status, status, `${name}: status`);
            t.equal(r.body.code, code, `${name}: code`);
            t.match(r.body.message, message, `${name}: message`);
        }
        const still = await s.post('/sentiment/predict', { text: 'what a boring and awful movie' });
        t.equal(still.body.label, 'negative', 'still serving');
        const status = (await s.get('/-/status')).body;
        for (const name of ['sentiment', 'embed', 'echo']) {
            const dep = status.applications.find((a: any) => a.name === name).deployments[0];
            t.equal(dep.status, 'RUNNING', `${name} running`);
            t.same(dep.replicas.map((r: any) => r.restarts), [0], `${name}: no replica restarted`);
        }
    });

    t.test('a model folder without tokenizer.json fails to load, clearly, and the others are unaffected', async (t) => {
        const r = await s.post('/notok/predict', { text: 'great' });
        t.equal(r.status, 503);
        t.equal(r.body.code, 'REPLICA_UNAVAILABLE');
        const status = (await s.get('/-/status')).body;
        const dep = status.applications.find((a: any) => a.name === 'notok').deployments[0];
        t.equal(dep.status, 'UNHEALTHY');
        t.equal(dep.last_error, `model failed to load: the text handler needs a Hugging Face tokenizer.json in the model folder ./no-tokenizer, and there is none`, 'named as serve.yaml does, relative to its folder');
        t.equal((await s.post('/sentiment/predict', { text: 'great' })).status, 200);
    });
});
