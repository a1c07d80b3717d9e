// The text handler's limits and truncation: the length limit read from the model folder (positions less the padding
// offset, model_max_length, the tokenizer's own truncation), the strategies and sides, long texts cut before they are
// tokenised, and a RoBERTa-like model of 16 usable positions that fails in onnxruntime on longer inputs, served by a
// real `tsserve up`: a text over its limit gets the answer of its truncated text, never a 500.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { Tokenizer } from '@huggingface/tokenizers';
import { text, TextTokenizer, type TextItem } from '../handlers/text';
import { limits, positionLimit, textSettings } from '../handlers/text-limits';
import { text as textOptions } from '../schemas/text';
import { modelFiles } from '../lib/model-files';
import { Graph } from '../modelgen/onnx-builder';
import { mulberry32 } from '../modelgen/zoo';
import { info, near, serve, type Served } from './helpers';
import type { Signature } from '../lib/signature';

const exampleDir = path.join(__dirname, '..', 'examples', 'models', 'sentiment');
const fixtureDir = path.join(__dirname, 'fixtures', 'text', 'short-positions');
const exampleJson = JSON.parse(fs.readFileSync(path.join(exampleDir, 'tokenizer.json'), 'utf8'));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-text-limits-'));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Ids of the example vocabulary (examples/models/sentiment/tokenizer.json); each of these words is one token.
const PAD = 0, UNK = 1, CLS = 2, SEP = 3;
const ID: Record<string, number> = { the: 168, movie: 116, was: 185, great: 85, terrible: 166, service: 152, so: 156, bad: 30, and: 23, cold: 45, food: 73, awful: 29 };
const WORDS = Object.keys(ID);
/** n words of the vocabulary, each one token, starting at the k-th: every window of them differs. */
const words = (n: number, k = 0): string[] => Array.from({ length: n }, (_, i) => WORDS[(i * 5 + k + Math.floor(i / 12)) % WORDS.length]);
const ids = (ws: string[]) => ws.map((w) => ID[w]);

/** `got` within `eps` of `want`, by helpers' near(); a failure shows both. */
const close = (t: Test, got: number | ArrayLike<number>, want: number | ArrayLike<number>, msg: string, eps?: number) =>
    t.ok(near(got, want, eps), msg, { found: got, wanted: want });

/**
 * A RoBERTa-like classifier (int64 input_ids and attention_mask -> logits [batch, 2]) with 18 rows of learned
 * positions: as RoBERTa does, a token's position is its count among the real tokens plus padding_idx 1, so positions
 * 2-17 are a text's and a 17th token gathers row 18, which onnxruntime refuses. The logits are a linear map of the mean
 * of word and position embeddings over the real tokens: every token and its place change them, padding does not.
 */
function shortModel(): Uint8Array {
    const g = new Graph('short-positions');
    const rand = mulberry32(16);
    const table = (rows: number, cols: number) => Float32Array.from({ length: rows * cols }, () => rand() * 2 - 1);
    g.input('input_ids', 'int64', ['batch', 'sequence']);
    g.input('attention_mask', 'int64', ['batch', 'sequence']);
    const wordTable = g.initializer('word_embeddings', table(201, 4), [201, 4]);
    const positionTable = g.initializer('position_embeddings', table(18, 4), [18, 4]);
    const along = g.initializer('axis_1', BigInt64Array.of(1n), []);
    const paddingIdx = g.initializer('padding_idx', BigInt64Array.of(1n), []);
    g.node('Gather', [wordTable, 'input_ids'], ['word']);
    g.node('CumSum', ['attention_mask', along], ['count']);
    g.node('Mul', ['count', 'attention_mask'], ['incremental']);
    g.node('Add', ['incremental', paddingIdx], ['position_ids']);
    g.node('Gather', [positionTable, 'position_ids'], ['position']);
    g.node('Add', ['word', 'position'], ['hidden']);
    g.node('Cast', ['attention_mask'], ['mask'], { to: { i: 1 } });
    g.node('Unsqueeze', ['mask', g.initializer('axes_2', BigInt64Array.of(2n), [1])], ['mask_3d']);
    g.node('Mul', ['hidden', 'mask_3d'], ['masked']);
    const axes1 = g.initializer('axes_1', BigInt64Array.of(1n), [1]);
    g.node('ReduceSum', ['masked', axes1], ['sum'], { keepdims: { i: 0 } });
    g.node('ReduceSum', ['mask_3d', axes1], ['real'], { keepdims: { i: 0 } });
    g.node('Div', ['sum', 'real'], ['pooled']);
    g.node('MatMul', ['pooled', g.initializer('head', table(4, 2), [4, 2])], ['logits']);
    return g.output('logits', 'float32', ['batch', 2]).toBytes();
}

/**
 * The fixture model folder: test/fixtures/text/short-positions (config.json: roberta, max_position_embeddings 18;
 * tokenizer_config.json: model_max_length int(1e30), transformers' "unknown"), the example's tokenizer.json without
 * its truncation settings, and the model. Nothing in it but config.json bounds a text: before the limit was read, a
 * 17-token text reached onnxruntime and failed.
 */
function shortFolder(): string {
    const dir = path.join(tmp, 'short-positions');
    fs.cpSync(fixtureDir, dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({ ...exampleJson, truncation: null }));
    fs.writeFileSync(path.join(dir, 'model.onnx'), shortModel());
    return dir;
}
const shortDir = shortFolder();

/** A tokenizer.json like the example's, changed by `change`, with a tokenizer_config.json when given; returns the file. */
function variant(change: (json: any) => void = () => {}, tokenizerConfig?: object): string {
    const json = structuredClone(exampleJson);
    change(json);
    const dir = fs.mkdtempSync(path.join(tmp, 'tok-'));
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
    if (tokenizerConfig) {
        fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
    }
    return path.join(dir, 'tokenizer.json');
}

t.test('the limit is the least the folder gives: positions less a padding offset, model_max_length, the tokenizer\'s truncation', async (t) => {
    t.same(positionLimit({ model_type: 'bert', max_position_embeddings: 512 }), { tokens: 512, from: 'config.json max_position_embeddings 512' });
    t.same(positionLimit({ model_type: 'gpt2', n_positions: 1024 }), { tokens: 1024, from: 'config.json n_positions 1024' });
    t.same(positionLimit({ model_type: 'roberta', max_position_embeddings: 514, pad_token_id: 1 }),
        { tokens: 512, from: 'config.json max_position_embeddings 514 less 2 (model_type roberta: positions start after the padding index)' });
    for (const type of ['xlm-roberta', 'camembert', 'mpnet']) {
        t.equal(positionLimit({ model_type: type, max_position_embeddings: 514 })?.tokens, 512, `${type}: padding_idx 1 when config.json does not say`);
    }
    t.equal(positionLimit({ model_type: 'longformer', max_position_embeddings: 4098, pad_token_id: 1 })?.tokens, 4096);
    t.equal(positionLimit({ model_type: 'bart', max_position_embeddings: 1024, pad_token_id: 1 })?.tokens, 1024, 'BART adds its offset to the table: none to take');
    t.equal(positionLimit({ model_type: 'deberta-v2', max_position_embeddings: 512, position_biased_input: false }), undefined, 'relative positions only: no limit');
    t.equal(positionLimit({ model_type: 'esm', max_position_embeddings: 1026, position_embedding_type: 'rotary' }), undefined, 'rotary: no limit');
    t.equal(positionLimit({ model_type: 't5' }), undefined, 'no positions given');
    t.equal(positionLimit({ max_position_embeddings: 'many' }), undefined, 'not a count');
    t.equal(positionLimit(), undefined, 'no config.json');

    const folder = {
        tokenizer: { truncation: { max_length: 128 } },
        tokenizerConfig: { model_max_length: 1e30 },
        config: { model_type: 'roberta', max_position_embeddings: 514, pad_token_id: 1 }
    };
    t.same(limits(folder).map((l) => l.from), ['tokenizer.json truncation.max_length 128', 'config.json max_position_embeddings 514 less 2 (model_type roberta: positions start after the padding index)'],
        'least first; model_max_length int(1e30) is transformers\' "unknown"');
    t.same(limits({ tokenizer: {}, tokenizerConfig: { model_max_length: 256 }, config: { max_position_embeddings: 512 } }).map((l) => l.tokens), [256, 512]);
    t.same(limits({ tokenizer: { truncation: null } }), [], 'nothing known');

    const example = TextTokenizer.load(path.join(exampleDir, 'tokenizer.json'), {}, modelFiles({ runtime: 'onnx', path: exampleDir }).config);
    t.equal(example.maxLength, 64, 'the example: 64 by all three');
    const short = TextTokenizer.load(path.join(shortDir, 'tokenizer.json'), {}, modelFiles({ runtime: 'onnx', path: shortDir }).config);
    t.equal(short.maxLength, 16, 'the fixture: 18 positions less RoBERTa\'s 2; its model_max_length and tokenizer.json say nothing');
});

t.test('settings: serve.yaml\'s options, else tokenizer_config.json, else tokenizer.json, else the defaults', async (t) => {
    t.same(textSettings({ tokenizer: {} }), { maxLength: 512, strategy: 'longest_first', truncationSide: 'right', paddingSide: 'right' });
    const json = { truncation: { max_length: 100, direction: 'Left', strategy: 'OnlySecond' }, padding: { direction: 'Left' } };
    t.same(textSettings({ tokenizer: json }), { maxLength: 100, strategy: 'only_second', truncationSide: 'left', paddingSide: 'left' }, 'tokenizer.json');
    t.same(textSettings({ tokenizer: json, tokenizerConfig: { truncation_side: 'right', padding_side: 'RIGHT', model_max_length: 50 } }),
        { maxLength: 50, strategy: 'only_second', truncationSide: 'right', paddingSide: 'right' }, 'tokenizer_config.json over tokenizer.json, as transformers does');
    t.same(textSettings({ tokenizer: json, tokenizerConfig: { truncation_side: 'middle' } }).truncationSide, 'left', 'a side that is neither is not one');
    t.same(textSettings({ tokenizer: json }, { max_length: 20, truncation: 'only_first', truncation_side: 'right', padding_side: 'right' }),
        { maxLength: 20, strategy: 'only_first', truncationSide: 'right', paddingSide: 'right' }, 'options over the files');
    t.equal(textSettings({ tokenizer: { truncation: { strategy: 'Nonsense' } } }).strategy, 'longest_first');
    t.equal(textSettings({ tokenizer: {}, tokenizerConfig: { model_max_length: 512 } }, { max_length: 600 }).maxLength, 600,
        'model_max_length is what the tokenizer was saved with, not a bound on the model: options may go past it');
    t.throws(() => textSettings({ tokenizer: {}, config: { model_type: 'roberta', max_position_embeddings: 514 } }, { max_length: 600 }), {
        message: 'options.max_length is 600, over the model\'s 512 positions (config.json max_position_embeddings 514 less 2 (model_type roberta: positions start after the padding index)): longer inputs would fail in the model'
    });
    t.equal(textSettings({ tokenizer: {}, config: { max_position_embeddings: 512 } }, { max_length: 512 }).maxLength, 512, 'up to the positions');
    t.match(textOptions.validate({ truncation: 'middle_out' }).error?.message, /"truncation" must be one of \[longest_first, only_first, only_second\]/);
    t.match(textOptions.validate({ padding_side: 'top' }).error?.message, /"padding_side" must be one of \[left, right\]/);
});

t.test('strategies and sides cut pairs as transformers\' fast tokenizers do', async (t) => {
    const load = (options: Record<string, unknown>) => TextTokenizer.load(variant(), textOptions.validate(options).value);
    const enc = (options: Record<string, unknown>, a: string, b?: string) => load(options).encode(a, b).ids;
    const four = 'the movie was great';
    t.same(enc({ max_length: 7, truncation: 'only_first' }, four, 'so bad'), [CLS, ...ids(['the', 'movie']), SEP, ...ids(['so', 'bad']), SEP], 'only_first: the first text loses what the pair is over');
    t.same(enc({ max_length: 7, truncation: 'only_first', truncation_side: 'left' }, four, 'so bad'), [CLS, ...ids(['was', 'great']), SEP, ...ids(['so', 'bad']), SEP], 'and from the left, its start');
    t.same(enc({ max_length: 7, truncation: 'only_second' }, 'so bad', four), [CLS, ...ids(['so', 'bad']), SEP, ...ids(['the', 'movie']), SEP], 'only_second');
    t.same(enc({ max_length: 7, truncation: 'only_second', truncation_side: 'left' }, 'so bad', four), [CLS, ...ids(['so', 'bad']), SEP, ...ids(['was', 'great']), SEP]);
    t.same(enc({ max_length: 8, truncation: 'only_second' }, 'so bad', four), [CLS, ...ids(['so', 'bad']), SEP, ...ids(['the', 'movie', 'was']), SEP], 'room for 3');
    t.same(enc({ max_length: 12, truncation: 'only_first' }, four, 'so bad'), [CLS, ...ids(['the', 'movie', 'was', 'great']), SEP, ...ids(['so', 'bad']), SEP], 'a pair that fits is not cut');
    t.same(enc({ max_length: 5, truncation: 'only_second' }, four), [CLS, ...ids(['the', 'movie', 'was']), SEP], 'a single text is cut whatever the strategy');
    t.same(enc({ max_length: 7, truncation_side: 'left' }, four, 'so bad cold food'), [CLS, ...ids(['was', 'great']), SEP, ...ids(['cold', 'food']), SEP], 'longest_first from the left');
    t.same(enc({ max_length: 8, truncation: 'longest_first' }, four, 'so bad'), [CLS, ...ids(['the', 'movie', 'was']), SEP, ...ids(['so', 'bad']), SEP]);

    t.throws(() => enc({ max_length: 7, truncation: 'only_second' }, four, 'so bad'), {
        output: { statusCode: 400 },
        message: 'truncation only_second cuts only the second text of a pair, but the first has 4 tokens, leaving none of the 7 (special tokens included) to the second; send a shorter first text'
    }, 'the first text fills the room: refused, as Hugging Face\'s tokenizers refuse it');
    t.throws(() => enc({ max_length: 7, truncation: 'only_first' }, 'so bad', words(200).join(' ')), {
        output: { statusCode: 400 },
        message: /^truncation only_first cuts only the first text of a pair, but the second has at least \d+ tokens, leaving none of the 7/
    }, 'a long other text is counted only as far as needed');

    // Long texts, cut before tokenising: the same ids as the whole texts give, whatever the strategy and side.
    const long = words(300).join(' ');
    const longer = words(400, 3).join(' ');
    for (const truncation of ['longest_first', 'only_first', 'only_second']) {
        for (const side of ['right', 'left']) {
            const options = { max_length: 12, truncation, truncation_side: side };
            const whole = load(options);
            whole.charsPerToken = Infinity;
            const pairs: Array<[string, string]> = truncation === 'only_first' ? [[long, 'so bad'], [longer, 'great']] : truncation === 'only_second' ? [['so bad', long], ['great', longer]] : [[long, longer], [longer, 'great']];
            for (const [a, b] of pairs) {
                t.same(load(options).encode(a, b), whole.encode(a, b), `${truncation}, ${side}: ${a.length} and ${b.length} characters`);
            }
        }
    }
});

t.test('a long text is cut before it is tokenised, at spaces, else at punctuation or between CJK ideographs', async (t) => {
    /** The example tokenizer, recording the length of each text it tokenises; `whole` tokenises every text whole. */
    const make = (side: string, whole = false) => {
        const j = { ...exampleJson, truncation: null };
        const tok = new TextTokenizer(new Tokenizer(j, {}), j, 128, { truncationSide: side as 'left' | 'right' });
        const seen: number[] = [];
        const tokenize = tok.tokenizer.tokenize.bind(tok.tokenizer);
        tok.tokenizer.tokenize = (s: string) => {
            seen.push(s.length);
            return tokenize(s);
        };
        tok.charsPerToken = whole ? Infinity : tok.charsPerToken;
        return { tok, seen };
    };
    // A 1 MB text, and 20 KB of the same sentences (its start and its end): the cut 1 MB gives what the whole 20 KB does.
    const texts: Array<[string, string]> = [
        ['English', 'the movie was great and the food was awful, '],
        ['words joined by punctuation', 'great,'],
        ['CJK, no spaces', '我喜欢这部电影。'],
        ['newlines', 'great\n']
    ];
    for (const [name, unit] of texts) {
        const megabyte = unit.repeat(Math.ceil(1e6 / unit.length));
        const part = unit.repeat(Math.ceil(2e4 / unit.length));
        for (const side of ['right', 'left']) {
            const { tok, seen } = make(side);
            const got = tok.encode(megabyte);
            t.equal(got.ids.length, 128, `${name}, ${side}: 128 tokens`);
            t.ok(Math.max(...seen) < 8192, `${name}, ${side}: at most ${Math.max(...seen)} of ${megabyte.length} characters tokenised`);
            const whole = make(side, true).tok;
            t.same(got, whole.encode(part), `${name}, ${side}: the tokens of the whole text`);
            t.same(tok.encode(part), whole.encode(part), `${name}, ${side}: 20 KB cut and whole`);
        }
    }
    // A letter run longer than every cut has nowhere to cut: tokenised whole (WordPiece makes it one [UNK] at once).
    for (const side of ['right', 'left']) {
        const { tok, seen } = make(side);
        t.same(tok.encode(side === 'right' ? `great ${'x'.repeat(20000)}` : `${'x'.repeat(20000)} great`).ids, side === 'right' ? [CLS, ID.great, UNK, SEP] : [CLS, UNK, ID.great, SEP], side);
        t.same(seen, [20006], `${side}: no cut tried`);
    }
});

t.test('padding: right or left of a row\'s tokens; embeddings pool over the real tokens either way', async (t) => {
    const sig: Signature = {
        inputs: ['input_ids', 'attention_mask'].map((n) => info(n, 'int64', ['batch', 'sequence'])),
        outputs: [info('last_hidden_state', 'float32', ['batch', 'sequence', 1])]
    };
    const model = modelFiles({ runtime: 'onnx', path: exampleDir });
    const rowsOf = (data: ArrayLike<bigint>, seq: number) => Array.from({ length: data.length / seq }, (_, r) => Array.from(data, Number).slice(r * seq, (r + 1) * seq));
    const items: TextItem[] = [{ texts: ['great'], list: false }, { texts: ['the movie was great', 'so bad'], list: true }];
    const hidden = (feeds: Record<string, { data: unknown; dims: number[] }>) => ({
        // each token's hidden state is its id: the mean of a row is the mean of its real ids
        last_hidden_state: { type: 'float32', data: Float32Array.from(feeds.input_ids.data as BigInt64Array, Number), dims: [...feeds.input_ids.dims, 1] }
    });
    for (const side of ['right', 'left']) {
        for (const pooling of ['mean', 'cls']) {
            const h = text({ options: textOptions.validate({ task: 'embedding', normalize: false, padding_side: side, pooling }).value, model });
            await h.load?.(sig);
            const feeds = await h.preprocess(items, sig);
            const real = [[CLS, ID.great, SEP], [CLS, ...ids(['the', 'movie', 'was', 'great']), SEP], [CLS, ID.so, ID.bad, SEP]];
            const pad = (row: number[]) => Array(6 - row.length).fill(PAD);
            t.same(rowsOf(feeds.input_ids.data as BigInt64Array, 6), real.map((r) => side === 'left' ? [...pad(r), ...r] : [...r, ...pad(r)]), `${side}: the ids`);
            t.same(rowsOf(feeds.attention_mask.data as BigInt64Array, 6), real.map((r) => side === 'left' ? [...pad(r), ...r.map(() => 1)] : [...r.map(() => 1), ...pad(r)]), `${side}: the mask`);
            const out = await h.postprocess(hidden(feeds) as any, items, sig) as any[];
            const want = real.map((r) => pooling === 'cls' ? CLS : r.reduce((a, b) => a + b, 0) / r.length);
            close(t, [out[0].embedding[0], ...out[1].results.map((x: any) => x.embedding[0])], want, `${side}, ${pooling}: pooled over the real tokens`, 1e-6);
        }
    }
});

t.test('the fixture model: 16 tokens run, 17 fail in onnxruntime; through the handler, a longer text gets its truncated text\'s answer', async (t) => {
    const session = await ort.InferenceSession.create(fs.readFileSync(path.join(shortDir, 'model.onnx')));
    const feed = (n: number) => ({
        input_ids: new ort.Tensor('int64', BigInt64Array.from({ length: n }, () => BigInt(ID.great)), [1, n]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n])
    });
    t.same((await session.run(feed(16))).logits.dims, [1, 2]);
    await t.rejects(session.run(feed(17)), /indices element out of data bounds/, 'a 17th token gathers position row 18, which is not there');

    const sig: Signature = {
        inputs: session.inputNames.map((n) => info(n, 'int64', ['batch', 'sequence'])),
        outputs: [info('logits', 'float32', ['batch', 2])]
    };
    const model = modelFiles({ runtime: 'onnx', path: shortDir });
    /** The handler's answers to these texts, through the model. */
    const answers = async (options: Record<string, unknown>, texts: TextItem['texts']): Promise<any[]> => {
        const h = text({ options: textOptions.validate(options).value, model });
        await h.load?.(sig);
        const items = texts.map((x) => ({ texts: [x], list: false }));
        const feeds = await h.preprocess(items, sig);
        const out = await session.run(Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor('int64', v.data as BigInt64Array, v.dims)])));
        return h.postprocess({ logits: { type: 'float32', data: out.logits.data as Float32Array, dims: [...out.logits.dims] } }, items, sig) as any[];
    };
    const long = words(200);
    const other = words(50, 1);
    const side = (ws: string[], n: number, left: boolean) => (left ? ws.slice(-n) : ws.slice(0, n)).join(' ');
    // [truncation, the long text or pair, the truncated text or pair for the right side and the left]
    const cases: Array<[string, TextItem['texts'][number], (left: boolean) => TextItem['texts'][number]]> = [
        ['longest_first', long.join(' '), (left) => side(long, 14, left)],
        ['longest_first', [long.join(' '), other.join(' ')], (left) => [side(long, 7, left), side(other, 6, left)]],
        ['only_first', [long.join(' '), 'so bad'], (left) => [side(long, 11, left), 'so bad']],
        ['only_second', ['so bad', long.join(' ')], (left) => ['so bad', side(long, 11, left)]]
    ];
    for (const [truncation, whole, truncated] of cases) {
        for (const left of [false, true]) {
            const options = { truncation, truncation_side: left ? 'left' : 'right' };
            const [got, want] = await answers(options, [whole, truncated(left)]);
            t.same(got, want, `${truncation}, ${options.truncation_side}: ${typeof whole === 'string' ? 'a text' : 'a pair'} over the limit gets its truncated ${typeof whole === 'string' ? 'text' : 'pair'}'s answer`);
        }
    }
    t.throws(() => text({ options: textOptions.validate({ max_length: 64 }).value, model }).load?.(sig),
        { message: /^options.max_length is 64, over the model's 16 positions \(config.json max_position_embeddings 18 less 2/ }, 'a max_length past the positions stops the replica');
});

t.test('end to end: texts over the fixture model\'s 16 positions get the answers of their truncated texts', async (t) => {
    const deployment = (name: string, options: string) => `  - name: ${name}
    deployments:
      - name: model
        handler: text
        model: { path: ${shortDir} }
        options: ${options}
        batching: { max_batch_size: 8, batch_wait_timeout_s: 0.01 }
`;
    const s: Served = await serve(tmp, `http_options: { host: 127.0.0.1, port: 8000, request_timeout_s: 30 }
applications:
${deployment('right', '{}')}
${deployment('left', '{ truncation_side: left, padding_side: left, truncation: only_second }')}
`);
    t.teardown(() => s.stop());
    const scores = (body: any) => body.predictions.map((p: any) => `${p.label} ${p.score}`);
    /** POSTs both bodies; the first must get exactly the answer of the second. */
    const same = async (route: string, body: object, truncated: object, msg: string) => {
        const [a, b] = await Promise.all([s.post(route, body), s.post(route, truncated)]);
        t.same([a.status, b.status], [200, 200], `${msg}: both answered`);
        t.same(scores(a.body), scores(b.body), msg);
    };
    const long = words(200);
    await same('/right/predict', { text: long.join(' ') }, { text: long.slice(0, 14).join(' ') }, 'a 200-word text: its first 14 words (16 less [CLS] and [SEP])');
    await same('/left/predict', { text: long.join(' ') }, { text: long.slice(-14).join(' ') }, 'truncation_side left: its last 14 words');
    await same('/right/predict', { text: long.join(' '), text_pair: words(50, 1).join(' ') }, { text: long.slice(0, 7).join(' '), text_pair: words(6, 1).join(' ') },
        'a pair, longest_first: 7 and 6 words (16 less 3 special tokens), the odd one to the longer');
    await same('/left/predict', { text: 'so bad', text_pair: long.join(' ') }, { text: 'so bad', text_pair: long.slice(-11).join(' ') }, 'only_second, from the left');
    const refused = await s.post('/left/predict', { text: long.join(' '), text_pair: 'so bad' });
    t.equal(refused.status, 400, 'only_second with a first text that leaves no room: 400, not 500');
    t.match(refused.body.message, /^truncation only_second cuts only the second text of a pair, but the first has at least \d+ tokens, leaving none of the 16/);

    // 10 tokens a sentence ("awful," is two)
    const megabyte = 'the movie was great and the food was awful, '.repeat(24000);
    await same('/right/predict', { text: megabyte }, { text: 'the movie was great and the food was awful, the movie was great' }, 'a 1 MB text: its first 14 tokens');
    await same('/left/predict', { text: megabyte }, { text: 'food was awful, the movie was great and the food was awful,' }, 'a 1 MB text from the left: its last 14 tokens');

    // Batched: texts of every length, padded left or right, each get their one-at-a-time answer.
    for (const route of ['/right/predict', '/left/predict']) {
        const bodies = Array.from({ length: 12 }, (_, i) => ({ text: words(1 + i * 3, i).join(' ') }));
        const alone: any[] = [];
        for (const body of bodies) {
            alone.push((await s.post(route, body)).body);
        }
        const together = await Promise.all(bodies.map((body) => s.post(route, body)));
        close(t, together.flatMap((a) => a.body.predictions.map((p: any) => p.score)), alone.flatMap((b) => b.predictions.map((p: any) => p.score)), `${route}: batched as alone`, 1e-6);
    }
    const status = (await s.get('/-/status')).body;
    t.same(status.applications.map((a: any) => a.deployments[0].replicas.map((r: any) => r.restarts)), [[0], [0]], 'no replica restarted');
});
