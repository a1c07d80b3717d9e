// The audio handler's Hugging Face feature extractors (WhisperFeatureExtractor, ASTFeatureExtractor,
// Wav2Vec2FeatureExtractor) against reference values computed independently in NumPy from the published formulas
// (test/fixtures/audio/reference.py, run once; its output is committed there with the three signals it made: a sine,
// a chirp and speech-like noise). Each extractor agrees to 1e-4, alone and through the handler (layouts, trimming,
// padding, batching, attention masks, resampling); unknown types and settings that cannot work are refused, naming
// what is wrong; and a Whisper-shaped model is served end to end by a real `tsserve up`.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WaveFile } from 'wavefile';
import { Graph } from '../modelgen/onnx-builder';
import { cliHere, serve } from './helpers';
import { decodeWav, resample } from '../handlers/audio-dsp';
import { whisperExtractor, whisperFeatures } from '../handlers/audio-whisper';
import { astExtractor } from '../handlers/audio-kaldi';
import { wav2vec2Extractor, wav2vec2Values } from '../handlers/audio-wav2vec2';
import type { Extractor, ExtractorType } from '../handlers/audio-extractor';
import { audio } from '../handlers/audio';
import { audio as audioSchema } from '../schemas/audio';
import type { Signature, TensorInfo } from '../lib/signature';
import type { Handler } from '../lib/handler';

// `tsserve validate` in this process, loaded before any server starts (see cliHere()).
const tsserve = cliHere();
const here = path.join(__dirname, 'fixtures', 'audio');
const tol = 1e-4;

interface FramesCase {
    signal: string;
    config: Record<string, any>;
    shape: [number, number];
    frames: number[];
    values: number[][];
    band_means: number[];
    mask_ones?: number;
    real_frames?: number;
}
interface WaveCase {
    signals: string[];
    lengths: number[];
    config: Record<string, any>;
    shape: [number, number];
    samples: number[];
    values: number[][];
    mask_ones?: number[];
}
const fixture = <C>(name: string): C[] => JSON.parse(fs.readFileSync(path.join(here, `${name}.json`), 'utf8')).cases;
const whisperCases = fixture<FramesCase>('whisper');
const astCases = fixture<FramesCase>('ast');
const wav2vec2Cases = fixture<WaveCase>('wav2vec2');

const wavBytes = (file: string): Buffer => fs.readFileSync(path.join(here, file));
const signal = (file: string): Float32Array => decodeWav(wavBytes(file)).channels[0];

/** A 16-bit WAV of samples that are k / 32768 (as the fixtures' are). */
function wavOf(x: Float32Array, rate = 16000): Buffer {
    const w = new WaveFile();
    w.fromScratch(1, rate, '16', Array.from(x, (v) => Math.round(v * 32768)));
    return Buffer.from(w.toBuffer());
}

/** The worst difference per extractor, for the summary at the end. */
const worst: Record<string, number> = {};

/**
 * Features got(frame, band) against a fixture case: the frames it lists, every band, and each band's mean over all
 * `frames` frames. Asserts the largest difference is within tol, and records it under `name`.
 */
function compareFrames(t: Test, name: string, c: FramesCase, frames: number, bands: number, got: (f: number, b: number) => number, what: string): void {
    let diff = 0;
    c.frames.forEach((f, i) => c.values[i].forEach((want, b) => diff = Math.max(diff, Math.abs(got(f, b) - want))));
    let meanDiff = 0;
    for (let b = 0; b < bands; b++) {
        let sum = 0;
        for (let f = 0; f < frames; f++) {
            sum += got(f, b);
        }
        meanDiff = Math.max(meanDiff, Math.abs(sum / frames - c.band_means[b]));
    }
    t.ok(diff <= tol && meanDiff <= tol, `${what}: frames ${c.frames.join(' ')} within ${diff.toExponential(2)}, band means within ${meanDiff.toExponential(2)}`);
    worst[name] = Math.max(worst[name] ?? 0, diff, meanDiff);
}

/** Whether two arrays hold the very same numbers (t.same is slow on arrays this long). */
const identical = (a: ArrayLike<number>, b: ArrayLike<number>): boolean => a.length === b.length && Array.prototype.every.call(a, (v: number, i: number) => v === b[i]);

const made = (type: ExtractorType, config: Record<string, unknown>): Extractor => type.make(type.fields.validate(config).value);

const info = (name: string, dims: Array<number | string>, type = 'float32'): TensorInfo => ({ name, type, dims });
const sigOf = (...inputs: TensorInfo[]): Signature => ({ inputs, outputs: [info('y', ['batch'])] });

function make(preprocessor: Record<string, unknown>, options: Record<string, unknown> = { task: 'raw' }): Handler<any> {
    const { error, value } = audioSchema.validate(options);
    if (error) {
        throw error;
    }
    return audio({ options: value, model: { file: '/models/m/model.onnx', dir: '/models/m', preprocessor } });
}

/** The handler's feeds for WAV files sent as one request (several as a multipart body). */
async function feeds(h: Handler<any>, sig: Signature, ...wavs: Buffer[]) {
    const payload = wavs.length === 1 ? wavs[0] : Object.fromEntries(wavs.map((w, i) => [`f${i}`, w]));
    const item = h.parse({ payload, headers: {}, contentType: wavs.length === 1 ? 'audio/wav' : 'multipart/form-data' }, sig).item;
    h.load?.(sig);
    return h.preprocess([item], sig);
}

t.test('the signals are the ones the reference was computed on', async (t) => {
    for (const name of ['sine', 'chirp', 'noise']) {
        const x = signal(`${name}.wav`);
        t.equal(x.length, 16000, `${name}: 1 s at 16 kHz`);
        t.equal(decodeWav(wavBytes(`${name}.wav`)).rate, 16000);
    }
    t.ok(Math.max(...signal('noise.wav').map(Math.abs)) > 0.6, 'the noise is loud');
});

t.test('Whisper: log-mel features agree with the reference', async (t) => {
    for (const c of whisperCases) {
        const ex = made(whisperExtractor, c.config);
        const x = signal(c.signal);
        const [bands, frames] = c.shape;
        t.match(ex, { kind: 'frames', width: bands, steps: frames, widthFirst: true, rate: 16000, limit: c.config.chunk_length * 16000 });
        const row = ex.extract(x, x.length);
        t.same([row.steps, row.real, row.data.length], [frames, c.mask_ones, frames * bands], `${c.signal} ${bands} bands, ${c.config.chunk_length} s: ${frames} frames, ${c.mask_ones} of them the audio's`);
        compareFrames(t, 'whisper', c, frames, bands, (f, b) => row.data[f * bands + b], `${c.signal}, ${JSON.stringify(c.config)}`);
    }
    // Audio longer than the chunk is trimmed: a 2 s audio is its first second.
    const s = { featureSize: 80, rate: 16000, hop: 160, nFft: 400, samples: 16000, paddingValue: 0 };
    const second = signal('noise.wav');
    const long = new Float32Array(32000);
    long.set(second);
    long.set(signal('sine.wav'), 16000);
    t.ok(identical(whisperFeatures(s)(long).data, whisperFeatures(s)(second).data), 'trimmed to chunk_length');
});

t.test('AST: Kaldi fbank features agree with the reference', async (t) => {
    for (const c of astCases) {
        const ex = made(astExtractor, c.config);
        const x = signal(c.signal);
        const [frames, bins] = c.shape;
        t.match(ex, { kind: 'frames', width: bins, steps: frames, widthFirst: false, rate: 16000, limit: (frames - 1) * 160 + 400 });
        const row = ex.extract(x, x.length);
        t.same([row.steps, row.real], [frames, c.real_frames], `${c.signal}: ${frames} frames, ${c.real_frames} of them the audio's`);
        compareFrames(t, 'ast', c, frames, bins, (f, b) => row.data[f * bins + b], `${c.signal}, ${JSON.stringify(c.config)}`);
    }
    // Shorter than one 25 ms frame: no frame of its own, all padding (normalised zeros).
    const short = made(astExtractor, { max_length: 3, num_mel_bins: 4 }).extract(new Float32Array(399).fill(0.1), 399);
    t.same([short.steps, short.real], [3, 0]);
    t.ok(short.data.every((v) => Math.abs(v - 4.2677393 / (2 * 4.5689974)) < 1e-6), 'padding is -mean / (2 std)');
});

t.test('Wav2Vec2: the waveform agrees with the reference', async (t) => {
    for (const c of wav2vec2Cases.filter((c) => c.signals.length === 1)) {
        const ex = made(wav2vec2Extractor, c.config);
        const x = signal(c.signals[0]);
        const row = ex.extract(x, x.length);
        t.match(ex, { kind: 'waveform', rate: 16000, padValue: 0 });
        t.same([row.steps, row.real], [16000, 16000]);
        let diff = 0;
        c.samples.forEach((i, k) => diff = Math.max(diff, Math.abs(row.data[i] - c.values[0][k])));
        t.ok(diff <= tol, `${c.signals[0]}: within ${diff.toExponential(2)}`);
        worst.wav2vec2 = Math.max(worst.wav2vec2 ?? 0, diff);
    }
    // By hand, 3 samples of their own and one of padding: with return_attention_mask the mean and variance are the
    // audio's (2 and 2/3) and the padding stays padding_value; without, they are the padded row's (1.5 and 1.25).
    const x = Float32Array.of(1, 2, 3, 0);
    const close = (got: Float32Array, want: number[], msg: string) => t.ok(want.every((w, i) => Math.abs(got[i] - w) < 1e-6), msg, { found: Array.from(got), wanted: want });
    const masked = Math.sqrt(2 / 3 + 1e-7);
    close(wav2vec2Values(x, 3, { normalize: true, paddingValue: 0.5, masked: true }), [-1 / masked, 0, 1 / masked, 0.5], 'masked: the audio\'s own statistics');
    const whole = Math.sqrt(1.25 + 1e-7);
    close(wav2vec2Values(x, 3, { normalize: true, paddingValue: 0, masked: false }), [-0.5 / whole, 0.5 / whole, 1.5 / whole, -1.5 / whole], 'unmasked: the padded row\'s');
    close(wav2vec2Values(x, 3, { normalize: false, paddingValue: -1, masked: false }), [1, 2, 3, -1], 'do_normalize false: the samples, padded with padding_value');
});

t.test('through the handler: Whisper input_features, in either layout, with its mask, resampled and trimmed', async (t) => {
    const c = whisperCases[0];
    const h = make(c.config);
    const hf = sigOf(info('input_features', ['batch', 80, 3000]));
    const f = await feeds(h, hf, wavBytes(c.signal));
    t.same(f.input_features.dims, [1, 80, 3000]);
    const data = f.input_features.data as Float32Array;
    compareFrames(t, 'whisper', c, 3000, 80, (fr, b) => data[b * 3000 + fr], 'handler, [batch, 80, 3000]');
    // Frames first, when the model's dims say so; symbolic dims take Hugging Face's layout.
    const t2 = await feeds(make(c.config), sigOf(info('x', ['batch', 3000, 80])), wavBytes(c.signal));
    t.same(t2.x.dims, [1, 3000, 80]);
    compareFrames(t, 'whisper', c, 3000, 80, (fr, b) => (t2.x.data as Float32Array)[fr * 80 + b], 'handler, [batch, 3000, 80]');
    const sym = await feeds(make(c.config), sigOf(info('x', ['batch', 'feature_size', 'frames'])), wavBytes(c.signal));
    t.same(sym.x.dims, [1, 80, 3000]);
    t.ok(identical(sym.x.data as Float32Array, data), 'the same features');
    // A model with attention_mask: 1 on the audio's frames. Two audios of different lengths batch (a fixed chunk).
    const masked = whisperCases.find((w) => w.config.chunk_length === 2) as FramesCase;
    const hm = make(masked.config);
    const msig = sigOf(info('input_features', ['batch', 80, 'frames']), info('attention_mask', ['batch', 'frames'], 'int64'));
    const short = wavOf(signal('chirp.wav').subarray(0, 8000));
    const m = await feeds(hm, msig, wavBytes(masked.signal), short);
    t.same(m.input_features.dims, [2, 80, 200]);
    t.same(m.attention_mask.dims, [2, 200]);
    const ones = Array.from(m.attention_mask.data as BigInt64Array, Number);
    t.same([ones.slice(0, 200).reduce((a, v) => a + v, 0), ones.slice(200).reduce((a, v) => a + v, 0)], [masked.mask_ones, 50]);
    compareFrames(t, 'whisper', masked, 200, 80, (fr, b) => (m.input_features.data as Float32Array)[b * 200 + fr], 'handler, padding_value 0.25, first of a batch');
    t.equal(hm.parse({ payload: short, headers: {}, contentType: 'audio/wav' }, msig).key, '', 'a fixed chunk batches freely');
    // Audio at 8 kHz is resampled to 16 kHz first; audio longer than the chunk is trimmed before.
    const sine = signal('sine.wav');
    const at8k = sine.filter((_, i) => i % 2 === 0);
    const settings = { featureSize: 80, rate: 16000, hop: 160, nFft: 400, samples: 32000, paddingValue: 0.25 };
    const want = whisperFeatures(settings)(resample(at8k, 8000, 16000));
    const r = await feeds(make(masked.config), sigOf(info('x', ['batch', 200, 80])), wavOf(at8k, 8000));
    t.ok(identical(r.x.data as Float32Array, want.data), 'resampled with the handler\'s resampler');
    const half = { ...masked.config, chunk_length: 0.5 };
    const trimmed = await feeds(make(half), sigOf(info('x', ['batch', 50, 80])), wavBytes('sine.wav'));
    t.ok(identical(trimmed.x.data as Float32Array, whisperFeatures({ ...settings, samples: 8000 })(sine.subarray(0, 8000)).data), 'trimmed to chunk_length');
});

t.test('through the handler: AST input_values, trimmed to max_length', async (t) => {
    const c = astCases[0];
    const f = await feeds(make(c.config), sigOf(info('input_values', ['batch', 'frames', 'bins'])), wavBytes(c.signal));
    t.same(f.input_values.dims, [1, 1024, 128], 'symbolic dims: [batch, max_length, num_mel_bins]');
    compareFrames(t, 'ast', c, 1024, 128, (fr, b) => (f.input_values.data as Float32Array)[fr * 128 + b], 'handler');
    // max_length 50: the audio is trimmed to the 8240 samples 50 frames read, and the fixture's features come out.
    const short = astCases[3];
    const g = await feeds(make(short.config), sigOf(info('x', ['batch', 64, 50])), wavBytes(short.signal));
    t.same(g.x.dims, [1, 64, 50], 'bins first, when the dims say so');
    compareFrames(t, 'ast', short, 50, 64, (fr, b) => (g.x.data as Float32Array)[b * 50 + fr], 'handler, max_length 50, 64 bins');
});

t.test('through the handler: Wav2Vec2 batches padded to the longest, with the attention mask', async (t) => {
    for (const c of wav2vec2Cases.filter((c) => c.signals.length === 2)) {
        const h = make(c.config);
        const sig = sigOf(info('input_values', ['batch', 'samples']), info('attention_mask', ['batch', 'samples'], 'int64'));
        const wavs = c.signals.map((s, i) => wavOf(signal(s).subarray(0, c.lengths[i])));
        const f = await feeds(h, sig, ...wavs);
        t.same(f.input_values.dims, c.shape);
        const mask = Array.from(f.attention_mask.data as BigInt64Array, Number);
        t.same([0, 1].map((i) => mask.slice(i * 16000, (i + 1) * 16000).reduce((a, v) => a + v, 0)), c.mask_ones);
        let diff = 0;
        c.values.forEach((row, i) => c.samples.forEach((s, k) => diff = Math.max(diff, Math.abs((f.input_values.data as Float32Array)[i * 16000 + s] - row[k]))));
        t.ok(diff <= tol, `padding_value ${c.config.padding_value}: within ${diff.toExponential(2)}`);
        worst.wav2vec2 = Math.max(worst.wav2vec2 ?? 0, diff);
    }
    // A model of a fixed length without a mask: padded with padding_value, then normalised padding and all.
    const x = signal('chirp.wav').subarray(0, 9600);
    const f = await feeds(make({ feature_extractor_type: 'Wav2Vec2FeatureExtractor', padding_value: 0 }), sigOf(info('x', ['batch', 16000])), wavOf(x));
    const padded = new Float32Array(16000);
    padded.set(x);
    t.ok(identical(f.x.data as Float32Array, wav2vec2Values(padded, 9600, { normalize: true, paddingValue: 0, masked: false })), 'normalised over the padded row');
    // Without a mask or a fixed length, each request batches alone, as tsserve.LogMel's waveform does.
    const solo = make({ feature_extractor_type: 'Wav2Vec2FeatureExtractor' });
    t.not(solo.parse({ payload: wavOf(x), headers: {}, contentType: 'audio/wav' }, sigOf(info('x', ['batch', 'samples']))).key, '');
});

t.test('an unknown feature_extractor_type, fields that cannot work, and a model that does not fit: errors that say why', async (t) => {
    const all = 'tsserve.LogMel, WhisperFeatureExtractor, ASTFeatureExtractor, Wav2Vec2FeatureExtractor';
    t.throws(() => make({ feature_extractor_type: 'SpeechT5FeatureExtractor' }), { message: `preprocessor_config.json of /models/m: feature_extractor_type "SpeechT5FeatureExtractor" is not one the audio handler applies (it applies ${all})` });
    t.throws(() => make({ feature_extractor_type: 'toString' }), /feature_extractor_type "toString" is not one/);
    t.throws(() => make({ feature_extractor_type: 7 }), /feature_extractor_type 7 is not one/);
    t.throws(() => make({ feature_extractor_type: 'WhisperFeatureExtractor', feature_size: 'many' }), { message: 'preprocessor_config.json of /models/m (WhisperFeatureExtractor): "feature_size" must be a number' });
    t.throws(() => make({ feature_extractor_type: 'ASTFeatureExtractor', num_mel_bins: 3 }), /\(ASTFeatureExtractor\): "num_mel_bins" must be greater than or equal to 4/);
    t.throws(() => make({ feature_extractor_type: 'WhisperFeatureExtractor', chunk_length: 0.01 }), { message: 'preprocessor_config.json of /models/m (WhisperFeatureExtractor): chunk_length 0.01 s at 16000 Hz makes 160 samples: too few for n_fft 400 and hop_length 160' });
    t.throws(() => make({ feature_extractor_type: 'WhisperFeatureExtractor' }, { sampling_rate: 8000, n_mels: 80 }), { message: 'options sampling_rate, n_mels set tsserve.LogMel\'s features; WhisperFeatureExtractor (preprocessor_config.json of /models/m) takes its settings from that file' });
    // tsserve's own type, named or not, reads the options and the file's fields of the same names, as before.
    const own = make({ feature_extractor_type: 'tsserve.LogMel', sampling_rate: 8000 }, { features: 'waveform' });
    t.same((await feeds(own, sigOf(info('x', ['batch', 'samples'])), wavOf(new Float32Array(160), 16000))).x.dims, [1, 80]);

    const whisper = { feature_extractor_type: 'WhisperFeatureExtractor' };
    const ast = { feature_extractor_type: 'ASTFeatureExtractor' };
    const bad: Array<[Record<string, unknown>, TensorInfo, string]> = [
        [whisper, info('input_features', ['batch', 80, 1500]), 'WhisperFeatureExtractor makes features [batch, 80, 3000] (as its preprocessor_config.json says), but input "input_features" is [batch, 80, 1500]'],
        [whisper, info('input_features', ['batch', 'frames', 128]), 'WhisperFeatureExtractor makes features [batch, 80, 3000] (as its preprocessor_config.json says), but input "input_features" is [batch, frames, 128]'],
        [whisper, info('x', ['batch', 'samples']), 'WhisperFeatureExtractor makes features [batch, 80, 3000] (as its preprocessor_config.json says), but input "x" is [batch, samples]'],
        [ast, info('input_values', ['batch', 1000, 128]), 'ASTFeatureExtractor makes features [batch, 1024, 128] (as its preprocessor_config.json says), but input "input_values" is [batch, 1000, 128]'],
        [{ feature_extractor_type: 'Wav2Vec2FeatureExtractor' }, info('x', ['batch', 'frames', 80]), 'Wav2Vec2FeatureExtractor feeds input "x" as [batch, samples], but the model takes [batch, frames, 80]']
    ];
    for (const [pre, input, message] of bad) {
        t.throws(() => make(pre).load?.(sigOf(input)), { message });
    }
});

// ---- end to end ----------------------------------------------------------------------------------------------------

/** A Whisper-shaped model: input_features [batch, 80, 3000] in; its first 4 frames and each band's mean out. */
function whisperModel(): Uint8Array {
    const g = new Graph('whisper-probe');
    g.input('input_features', 'float32', ['batch', 80, 3000]);
    const i64 = (name: string, v: number) => g.initializer(name, BigInt64Array.of(BigInt(v)), [1]);
    g.node('Slice', ['input_features', i64('starts', 0), i64('ends', 4), i64('axes', 2)], ['head']);
    g.node('ReduceMean', ['input_features'], ['band_means'], { axes: { ints: [2] }, keepdims: { i: 0 } });
    g.output('head', 'float32', ['batch', 80, 4]);
    g.output('band_means', 'float32', ['batch', 80]);
    return g.toBytes();
}

t.test('tsserve serves a Whisper-shaped model on WhisperFeatureExtractor features; an unknown type fails its load and validate', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-extractors-'));
    for (const [name, pre] of [['whisper', whisperCases[0].config], ['unknown', { feature_extractor_type: 'SpeechT5FeatureExtractor' }]] as const) {
        fs.mkdirSync(path.join(dir, name));
        fs.writeFileSync(path.join(dir, name, 'model.onnx'), whisperModel());
        fs.writeFileSync(path.join(dir, name, 'preprocessor_config.json'), JSON.stringify(pre));
    }
    const yaml = `http_options: { host: 127.0.0.1 }
applications:
  - name: whisper
    deployments:
      - name: model
        handler: audio
        options: { task: raw }
        model: { path: ./whisper }
        batching: { max_batch_size: 4, batch_wait_timeout_s: 0.01 }
  - name: unknown
    deployments:
      - name: model
        handler: audio
        options: { task: raw }
        model: { path: ./unknown }
`;
    const s = await serve(dir, yaml);
    t.teardown(() => s.stop());
    const why = 'feature_extractor_type "SpeechT5FeatureExtractor" is not one the audio handler applies (it applies tsserve.LogMel, WhisperFeatureExtractor, ASTFeatureExtractor, Wav2Vec2FeatureExtractor)';

    // The model's outputs against the fixture: frames 0 to 3, every band, and each band's mean over the 3000 frames.
    const check = (outputs: { head: number[][]; band_means: number[] }, c: FramesCase, what: string) => {
        let diff = 0;
        [0, 1, 2, 3].forEach((f) => c.values[c.frames.indexOf(f)].forEach((want, b) => diff = Math.max(diff, Math.abs(outputs.head[b][f] - want))));
        c.band_means.forEach((want, b) => diff = Math.max(diff, Math.abs(outputs.band_means[b] - want)));
        t.ok(diff <= tol, `${what}: served, within ${diff.toExponential(2)}`);
        worst.whisper = Math.max(worst.whisper, diff);
    };
    const [sine, noise] = [whisperCases[0], whisperCases[2]];
    const one = await s.post('/whisper/predict', wavBytes(sine.signal), { 'content-type': 'audio/wav' });
    t.equal(one.status, 200);
    check(one.body.outputs, sine, 'sine.wav');
    const form = new FormData();
    form.append('a', new Blob([wavBytes(noise.signal)]), 'noise.wav');
    form.append('b', new Blob([wavBytes(sine.signal)]), 'sine.wav');
    const two = await fetch(`${s.url}/whisper/predict`, { method: 'POST', body: form }).then((r) => r.json()) as any;
    check(two.results[0].outputs, noise, 'noise.wav, first of two');
    check(two.results[1].outputs, sine, 'sine.wav, second of two');

    const dep = (await s.get('/-/status')).body.applications.find((a: any) => a.name === 'unknown').deployments[0];
    t.equal(dep.last_error, `model failed to load: preprocessor_config.json of ./unknown: ${why}`, 'the replica\'s load fails, naming the type');
    const refused = await s.post('/unknown/predict', wavBytes(sine.signal), { 'content-type': 'audio/wav' });
    t.match(refused, { status: 503, body: { code: 'REPLICA_UNAVAILABLE' } });
    t.match(refused.body.message, 'SpeechT5FeatureExtractor');

    const validate = await tsserve(['validate', path.join(dir, 'serve.yaml')]);
    t.equal(validate.code, 1, 'tsserve validate refuses it');
    t.match(validate.stderr, `applications[1].deployments[0].handler: handler "audio" cannot be set up: preprocessor_config.json of unknown: ${why}`);
});

t.test('agreement with the reference, per extractor', async (t) => {
    t.comment(`largest differences from the NumPy reference: ${Object.entries(worst).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);
    t.same(Object.keys(worst).sort(), ['ast', 'wav2vec2', 'whisper']);
    t.ok(Object.values(worst).every((v) => v <= tol));
});
