// Trains the example sentiment model served by the text handler (examples/models/sentiment), offline and reproducibly.
//
//   npx tsc -p . && node build/examples/train/sentiment.js [outDir]     (default: <repo>/examples/models/sentiment)
//
// 1. A synthetic corpus of short English reviews, made from templates with a seeded RNG ("the movie was great",
//    "terrible service and cold food", "I loved this film, it was wonderful"), labelled negative (0) or positive (1).
// 2. A Hugging Face tokenizer.json written by hand: lowercasing BERT normalizer, BERT pre-tokenizer, a WordPiece
//    vocabulary of the corpus' words (plus a few "##" suffixes), [PAD] [UNK] [CLS] [SEP] [MASK], a TemplateProcessing
//    post-processor (pairs get token_type_ids 0 then 1), truncation to 64 tokens and batch-longest padding with [PAD].
//    It is checked by loading it with @huggingface/tokenizers, the library the text handler uses.
// 3. The model, trained with TensorFlow.js: token embedding -> mean over the attention mask -> linear -> logits.
//    Padding cannot change an answer: padded positions are multiplied by a mask of 0 before the mean.
// 4. The same weights written as ONNX (modelgen/onnx-builder.ts): inputs input_ids and attention_mask int64
//    [batch, sequence]; outputs logits [batch, 2] and last_hidden_state [batch, sequence, 16] (the token embeddings,
//    so the same model also serves the text handler's embedding task). ONNX Runtime must agree with TensorFlow.js to
//    within 1e-4 on held-out sentences, and a few sentences a person can check must get the right label, or this fails.
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import * as ort from 'onnxruntime-node';
import { Tokenizer } from '@huggingface/tokenizers';
import { Graph } from '../../modelgen/onnx-builder';
import { mulberry32 } from '../../modelgen/zoo';

const SEED = 20240611;
const DIM = 16;
const MAX_LENGTH = 64;
const LABELS = ['negative', 'positive'];

// ---- 1. corpus ------------------------------------------------------------------------------------------------

const determiners = ['the', 'this', 'that', 'my', 'our', 'their'];
const nouns = ['movie', 'film', 'show', 'book', 'story', 'plot', 'ending', 'acting', 'music', 'album', 'song', 'concert',
    'food', 'meal', 'dinner', 'breakfast', 'pizza', 'coffee', 'soup', 'service', 'staff', 'waiter', 'restaurant', 'cafe',
    'hotel', 'room', 'place', 'trip', 'product', 'phone', 'app', 'game', 'price', 'experience', 'cast', 'series'];
const positive = ['great', 'good', 'wonderful', 'excellent', 'amazing', 'fantastic', 'lovely', 'delightful', 'brilliant',
    'superb', 'enjoyable', 'fun', 'beautiful', 'perfect', 'awesome', 'nice', 'pleasant', 'charming', 'delicious',
    'friendly', 'fresh', 'outstanding', 'impressive', 'funny', 'memorable', 'helpful', 'clean', 'cozy', 'tasty', 'moving'];
const negative = ['terrible', 'awful', 'boring', 'bad', 'horrible', 'dull', 'poor', 'disappointing', 'bland', 'rude',
    'cold', 'slow', 'dirty', 'mediocre', 'annoying', 'ugly', 'dreadful', 'pathetic', 'stale', 'noisy', 'overpriced',
    'forgettable', 'weak', 'painful', 'tedious', 'greasy', 'broken', 'useless', 'unpleasant', 'lame'];
const positiveVerbs = ['loved', 'enjoyed', 'liked', 'adored', 'appreciated', 'love', 'enjoy', 'like', 'recommend'];
const negativeVerbs = ['hated', 'disliked', 'despised', 'regretted', 'hate', 'dislike', 'regret', 'despise'];
const positiveThings = ['a masterpiece', 'a joy', 'a delight', 'a gem', 'a treat', 'a pleasure'];
const negativeThings = ['a mess', 'a disaster', 'a waste of time', 'a waste of money', 'a letdown', 'a failure'];
const intensifiers = ['', '', '', 'very', 'really', 'so', 'truly', 'quite', 'absolutely', 'incredibly', 'pretty', 'extremely', 'totally'];
const openers = ['', '', '', '', 'overall,', 'honestly,', 'i think', 'to be honest,', 'well,', 'in short,', 'i must say'];
const closers = ['', '', '', '.', '!', '!!', '...', '?'];
const people = ['i', 'we', 'my family', 'my friends', 'everyone', 'the kids'];
/** Words the templates write themselves, beyond the lists above. */
const glue = ['a', 'an', 'and', 'it', 'is', 'was', 'what', 'of', 'time', 'money', 'food', 'service', 'family', 'friends',
    'everyone', 'kids', 'i', 'we', 'must', 'say', 'think', 'to', 'be', 'honest', 'overall', 'honestly', 'well', 'in',
    'short', 'the', 'such', 'with', 'for', 'at', 'us', 'me', 'all', 'just', 'but', 'not', 'you', 'they', 'very'];

type Rand = () => number;
const pick = <T>(rand: Rand, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
const join = (...parts: string[]): string => parts.filter(Boolean).join(' ');

/** One review of the given sentiment (1 positive, 0 negative). */
function review(rand: Rand, label: number): string {
    const adj = () => pick(rand, label ? positive : negative);
    const verb = () => pick(rand, label ? positiveVerbs : negativeVerbs);
    const thing = () => pick(rand, label ? positiveThings : negativeThings);
    const np = () => `${pick(rand, determiners)} ${pick(rand, nouns)}`;
    const int = () => pick(rand, intensifiers);
    const templates: Array<() => string> = [
        () => join(np(), 'was', int(), adj()),
        () => join(np(), 'is', int(), adj()),
        () => join('what a', int(), adj(), pick(rand, nouns)),
        () => join(adj(), pick(rand, nouns)),
        () => join(adj(), pick(rand, nouns), 'and', adj(), pick(rand, nouns)),
        () => `${join(pick(rand, people), verb(), np())}, ${join('it was', int(), adj())}`,
        () => join(pick(rand, people), verb(), np()),
        () => join(np(), 'was', adj(), 'and', adj()),
        () => join(np(), 'was', thing()),
        () => join('such', thing()),
        () => join(int(), adj()),
        () => join(pick(rand, people), verb(), 'it'),
        () => `${join(np(), 'was', adj())}, ${join(np(), 'was', int(), adj())}`,
        () => join('it was', int(), adj()),
        () => `${adj()}, ${join(adj(), pick(rand, nouns))}`,
        () => join(adj(), 'food', 'and', adj(), 'service')
    ];
    return join(pick(rand, openers), pick(rand, templates)(), pick(rand, closers)).replace(/ ([,.!?])/g, '$1');
}

function corpus(rand: Rand, n: number): Array<{ text: string; label: number }> {
    return Array.from({ length: n }, (_, i) => {
        const label = i % 2;
        return { text: review(rand, label), label };
    });
}

// ---- 2. tokenizer.json ----------------------------------------------------------------------------------------

const specials = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
const punctuation = [',', '.', '!', '?', '\'', '-', ':', ';', '(', ')'];
const suffixes = ['##s', '##ed', '##ing', '##ly', '##er', '##est', '##y'];

function vocabulary(): string[] {
    const words = new Set<string>();
    const lists = [determiners, nouns, positive, negative, positiveVerbs, negativeVerbs, positiveThings, negativeThings,
        intensifiers, openers, people, glue];
    for (const phrase of lists.flat()) {
        for (const w of phrase.split(/[\s,]+/).filter(Boolean)) {
            words.add(w);
        }
    }
    return [...specials, ...punctuation, ...[...words].sort(), ...suffixes];
}

function tokenizerJson(vocab: string[]): Record<string, unknown> {
    const id = (t: string) => vocab.indexOf(t);
    const special = (t: string) => ({ id: t, ids: [id(t)], tokens: [t] });
    const token = (t: string, type: number) => ({ SpecialToken: { id: t, type_id: type } });
    const seq = (s: 'A' | 'B', type: number) => ({ Sequence: { id: s, type_id: type } });
    return {
        version: '1.0',
        truncation: { direction: 'Right', max_length: MAX_LENGTH, strategy: 'LongestFirst', stride: 0 },
        padding: { strategy: 'BatchLongest', direction: 'Right', pad_to_multiple_of: null, pad_id: id('[PAD]'), pad_type_id: 0, pad_token: '[PAD]' },
        added_tokens: specials.map((t) => ({ id: id(t), content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
        normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
        pre_tokenizer: { type: 'BertPreTokenizer' },
        post_processor: {
            type: 'TemplateProcessing',
            single: [token('[CLS]', 0), seq('A', 0), token('[SEP]', 0)],
            pair: [token('[CLS]', 0), seq('A', 0), token('[SEP]', 0), seq('B', 1), token('[SEP]', 1)],
            special_tokens: { '[CLS]': special('[CLS]'), '[SEP]': special('[SEP]') }
        },
        decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
        model: {
            type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100,
            vocab: Object.fromEntries(vocab.map((t, i) => [t, i]))
        }
    };
}

/** Token ids of each text, padded to the batch's longest, with the attention mask (as the text handler does). */
function encodeBatch(tok: Tokenizer, texts: string[]): { ids: number[][]; mask: number[][] } {
    const enc = texts.map((t) => tok.encode(t).ids.slice(0, MAX_LENGTH));
    const len = Math.max(...enc.map((e) => e.length));
    return {
        ids: enc.map((e) => [...e, ...Array(len - e.length).fill(0)]),
        mask: enc.map((e) => [...e.map(() => 1), ...Array(len - e.length).fill(0)])
    };
}

// ---- 3. the model, in TensorFlow.js ---------------------------------------------------------------------------

interface Weights {
    embedding: tf.Variable; // [vocab, DIM]
    w: tf.Variable;         // [DIM, 2]
    b: tf.Variable;         // [2]
}

function init(rand: Rand, vocab: number): Weights {
    const uniform = (n: number, limit: number) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * limit);
    return {
        embedding: tf.variable(tf.tensor2d(uniform(vocab * DIM, 0.1), [vocab, DIM])),
        w: tf.variable(tf.tensor2d(uniform(DIM * 2, Math.sqrt(6 / (DIM + 2))), [DIM, 2])),
        b: tf.variable(tf.zeros([2]))
    };
}

/**
 * logits = (sum over tokens of embedding * mask) / max(sum of mask, 1) . w + b. The embedding lookup is a one-hot
 * product (exactly a Gather, which the ONNX model uses), because tfjs' gradient of gather is slow on CPU and missing on
 * the WebAssembly backend.
 */
function forward(wt: Weights, ids: tf.Tensor2D, mask: tf.Tensor2D): tf.Tensor2D {
    const [batch, seq] = ids.shape;
    const vocab = wt.embedding.shape[0];
    const emb = tf.oneHot(ids.reshape([-1]), vocab).matMul(wt.embedding).reshape([batch, seq, DIM]); // [batch, seq, DIM]
    const m = mask.expandDims(2);                                   // [batch, seq, 1]
    const pooled = emb.mul(m).sum(1).div(m.sum(1).maximum(1));      // [batch, DIM]
    return pooled.matMul(wt.w).add(wt.b) as tf.Tensor2D;
}

function train(wt: Weights, tok: Tokenizer, data: Array<{ text: string; label: number }>, rand: Rand): void {
    const optimizer = tf.train.adam(0.02);
    const batchSize = 64;
    const epochs = 12;
    for (let epoch = 0; epoch < epochs; epoch++) {
        const order = data.map((_, i) => i);
        for (let i = order.length - 1; i > 0; i--) {
            const j = Math.floor(rand() * (i + 1));
            [order[i], order[j]] = [order[j], order[i]];
        }
        let total = 0;
        for (let at = 0; at < order.length; at += batchSize) {
            const batch = order.slice(at, at + batchSize).map((i) => data[i]);
            const { ids, mask } = encodeBatch(tok, batch.map((d) => d.text));
            const loss = tf.tidy(() => {
                const x = tf.tensor2d(ids, undefined, 'int32');
                const m = tf.tensor2d(mask);
                const y = tf.oneHot(tf.tensor1d(batch.map((d) => d.label), 'int32'), 2);
                return optimizer.minimize(() => {
                    const ce = tf.losses.softmaxCrossEntropy(y, forward(wt, x, m));
                    return ce.add(tf.mul(1e-4, tf.sum(tf.square(wt.w)))) as tf.Scalar;
                }, true) as tf.Scalar;
            });
            total += loss.dataSync()[0] * batch.length;
            loss.dispose();
        }
        console.log(`epoch ${epoch + 1}/${epochs}: loss ${(total / data.length).toFixed(4)}`);
    }
}

// ---- 4. ONNX export -------------------------------------------------------------------------------------------

function toOnnx(wt: Weights, vocab: number): Uint8Array {
    const g = new Graph('sentiment')
        .input('input_ids', 'int64', ['batch', 'sequence'])
        .input('attention_mask', 'int64', ['batch', 'sequence']);
    const data = (v: tf.Variable) => Float32Array.from(v.dataSync());
    const embedding = g.initializer('embedding', data(wt.embedding), [vocab, DIM]);
    const axis1 = g.initializer('axis_1', BigInt64Array.of(1n), [1]);
    const axis2 = g.initializer('axis_2', BigInt64Array.of(2n), [1]);
    const one = g.initializer('one', Float32Array.of(1), []);
    g.node('Gather', [embedding, 'input_ids'], ['last_hidden_state'], { axis: { i: 0 } });   // [batch, seq, DIM]
    g.node('Cast', ['attention_mask'], ['mask_f'], { to: { i: 1 } });                       // float32 [batch, seq]
    g.node('Unsqueeze', ['mask_f', axis2], ['mask_3d']);                                     // [batch, seq, 1]
    g.node('Mul', ['last_hidden_state', 'mask_3d'], ['masked']);
    g.node('ReduceSum', ['masked', axis1], ['summed'], { keepdims: { i: 0 } });             // [batch, DIM]
    g.node('ReduceSum', ['mask_3d', axis1], ['count'], { keepdims: { i: 0 } });             // [batch, 1]
    g.node('Max', ['count', one], ['count_1']);
    g.node('Div', ['summed', 'count_1'], ['pooled']);
    g.node('MatMul', ['pooled', g.initializer('classifier_w', data(wt.w), [DIM, 2])], ['projected']);
    g.node('Add', ['projected', g.initializer('classifier_b', data(wt.b), [2])], ['logits']);
    return g.output('logits', 'float32', ['batch', 2])
        .output('last_hidden_state', 'float32', ['batch', 'sequence', DIM])
        .toBytes();
}

async function main(): Promise<void> {
    const out = path.resolve(process.argv[2] ?? path.join(__dirname, '..', '..', '..', 'examples', 'models', 'sentiment'));
    await tf.setBackend('wasm');
    const rand = mulberry32(SEED);

    const vocab = vocabulary();
    const json = tokenizerJson(vocab);
    const tok = new Tokenizer(json, {});
    const check = tok.encode('The movie was GREAT!', { text_pair: 'terrible service', return_token_type_ids: true });
    const expectTokens = ['[CLS]', 'the', 'movie', 'was', 'great', '!', '[SEP]', 'terrible', 'service', '[SEP]'];
    if (check.tokens.join(' ') !== expectTokens.join(' ') || check.token_type_ids.join('') !== '0000000111') {
        throw new Error(`@huggingface/tokenizers reads the tokenizer differently than intended: ${JSON.stringify(check)}`);
    }

    const trainSet = corpus(rand, 6000);
    const testSet = corpus(rand, 1000);
    const unknown = trainSet.flatMap((d) => tok.encode(d.text).tokens).filter((t) => t === '[UNK]').length;
    if (unknown) {
        throw new Error(`${unknown} corpus tokens are not in the vocabulary`);
    }
    console.log(`vocabulary: ${vocab.length} tokens; corpus: ${trainSet.length} training and ${testSet.length} test reviews, e.g.`);
    trainSet.slice(0, 6).forEach((d) => console.log(`  ${LABELS[d.label]}: ${d.text}`));

    const wt = init(rand, vocab.length);
    train(wt, tok, trainSet, rand);

    const predict = (texts: string[]): { ids: number[][]; mask: number[][]; logits: number[][] } => {
        const { ids, mask } = encodeBatch(tok, texts);
        const logits = tf.tidy(() => forward(wt, tf.tensor2d(ids, undefined, 'int32'), tf.tensor2d(mask)).arraySync());
        return { ids, mask, logits };
    };
    const accuracy = (() => {
        const { logits } = predict(testSet.map((d) => d.text));
        return testSet.filter((d, i) => Number(logits[i][1] > logits[i][0]) === d.label).length / testSet.length;
    })();
    console.log(`test accuracy: ${(accuracy * 100).toFixed(1)}%`);
    if (accuracy < 0.97) {
        throw new Error('the model did not learn the corpus');
    }

    fs.mkdirSync(out, { recursive: true });
    const onnxFile = path.join(out, 'model.onnx');
    fs.writeFileSync(onnxFile, toOnnx(wt, vocab.length));
    fs.writeFileSync(path.join(out, 'tokenizer.json'), `${JSON.stringify(json, null, 2)}\n`);
    fs.writeFileSync(path.join(out, 'tokenizer_config.json'), `${JSON.stringify({
        tokenizer_class: 'BertTokenizerFast', do_lower_case: true, model_max_length: MAX_LENGTH,
        pad_token: '[PAD]', unk_token: '[UNK]', cls_token: '[CLS]', sep_token: '[SEP]', mask_token: '[MASK]'
    }, null, 2)}\n`);
    fs.writeFileSync(path.join(out, 'config.json'), `${JSON.stringify({
        architectures: ['MeanPooledEmbeddingClassifier'], model_type: 'tsserve-example', hidden_size: DIM, vocab_size: vocab.length,
        max_position_embeddings: MAX_LENGTH, num_labels: 2,
        id2label: Object.fromEntries(LABELS.map((l, i) => [String(i), l])),
        label2id: Object.fromEntries(LABELS.map((l, i) => [l, i]))
    }, null, 2)}\n`);

    // ONNX Runtime must give what TensorFlow.js gives, on sentences of different lengths in one padded batch.
    const samples = [...testSet.slice(0, 40).map((d) => d.text), 'I loved this film, it was wonderful', 'what a boring and awful movie'];
    const ref = predict(samples);
    const session = await ort.InferenceSession.create(onnxFile);
    const int64 = (rows: number[][]) => new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0].length]);
    const result = await session.run({ input_ids: int64(ref.ids), attention_mask: int64(ref.mask) });
    const onnxLogits = result.logits.data as Float32Array;
    const diff = Math.max(...ref.logits.flat().map((v, i) => Math.abs(v - onnxLogits[i])));
    console.log(`max |onnx - tfjs| over ${samples.length} padded sentences: ${diff.toExponential(2)}`);
    if (!(diff < 1e-4)) {
        throw new Error('the ONNX model disagrees with TensorFlow.js');
    }
    const sm = (row: number[]) => Math.exp(row[1]) / (Math.exp(row[0]) + Math.exp(row[1]));
    const checks: Array<[string, number]> = [['I loved this film, it was wonderful', 1], ['what a boring and awful movie', 0],
        ['the food was delicious and the staff friendly', 1], ['terrible service and cold food', 0]];
    for (const [text, label] of checks) {
        const [row] = predict([text]).logits;
        const p = sm(row);
        console.log(`  ${text} -> positive ${p.toFixed(4)}`);
        if (label ? p < 0.95 : p > 0.05) {
            throw new Error(`"${text}" should be ${LABELS[label]} with high confidence`);
        }
    }
    console.log(`wrote ${out}: model.onnx (${fs.statSync(onnxFile).size} bytes), tokenizer.json, tokenizer_config.json, config.json`);
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
