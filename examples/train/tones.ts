// Trains the example pitch classifier served by the audio handler (examples/models/tones), offline and reproducibly.
//
//   npx tsc -p . && node build/examples/train/tones.js [outDir]     (default: <repo>/examples/models/tones)
//
// About 70 s of CPU; the same files, byte for byte, every run.
//
// 1. Synthetic tones with a seeded RNG: the twelve notes C4 (261.6 Hz) .. B4 (493.9 Hz), each clip detuned by up to
//    +-30 cents, of random amplitude, phase and length (0.15 to 1.5 s), pure or with a 2nd and 3rd harmonic, clean or
//    with white noise (15 to 80 dB below the tone), some quantised to 8 or 16 bits, with short fades; a quarter of them
//    made at 8, 22.05, 44.1 or 48 kHz and brought to 16 kHz by the handler's own resampler.
// 2. Features computed by the audio handler's own code (handlers/audio-dsp.ts logMel), with the settings written to
//    preprocessor_config.json, so that training and serving cannot disagree.
// 3. The model, trained with TensorFlow.js on each clip's mean log-mel frame, centred (its mean over the mel bands
//    subtracted, so loudness does not matter) and standardised: dense 64 -> relu -> dense 12 logits.
// 4. The same model written as ONNX (modelgen/onnx-builder.ts), the whole of it on the handler's features:
//    inputs input_features float32 [batch, frames, n_mels] and attention_mask int64 [batch, frames]; the mean over
//    the frames the mask marks (so padding cannot change an answer), centring (ReduceMean), standardising, the two
//    dense layers; output logits [batch, 12]. ONNX Runtime on padded batches must agree with TensorFlow.js to within
//    1e-4, the held-out accuracy must be at least 95%, and clean tones of every note must be recognised, or this fails.
// 5. Sample WAV files for the README and tests, two folders above outDir: examples/tone-440hz.wav (A4, 16 kHz mono
//    16-bit), examples/tone-c4-44k-stereo.wav (C4, 44.1 kHz stereo 16-bit), examples/tone-e4-8k.wav (E4, 8 kHz mono).
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { WaveFile } from 'wavefile';
import { Graph } from '../../modelgen/onnx-builder';
import { mulberry32 } from '../../modelgen/zoo';
import { logMel, resample, type LogMelOptions } from '../../handlers/audio-dsp';

const SEED = 440;
const NOTES = ['C4', 'C#4', 'D4', 'D#4', 'E4', 'F4', 'F#4', 'G4', 'G#4', 'A4', 'A#4', 'B4'];
/** The frequency of NOTES[i] (equal temperament, A4 = 440 Hz). */
const noteHz = (i: number, cents = 0): number => 440 * 2 ** ((i - 9 + cents / 100) / 12);

const RATE = 16000;
const MEL: LogMelOptions = { rate: RATE, nFft: 1024, hop: 256, nMels: 96, logOffset: 1e-6 };
const HIDDEN = 64;
const PER_NOTE = 360;
const HELD_OUT = 60;

type Rand = () => number;
const between = (rand: Rand, lo: number, hi: number): number => lo + (hi - lo) * rand();

/** Standard normal noise (Box-Muller). */
function gauss(rand: Rand): number {
    return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

/** One random clip of note `note`, at 16 kHz. */
function clip(rand: Rand, note: number): Float32Array {
    const rates = [8000, 22050, 44100, 48000];
    const rate = rand() < 0.25 ? rates[Math.floor(rand() * rates.length)] : RATE;
    const f = noteHz(note, between(rand, -30, 30));
    const n = Math.round(between(rand, 0.15, 1.5) * rate);
    const amp = between(rand, 0.05, 0.9);
    const harmonic = rand() < 0.5;
    const [h2, h3] = harmonic ? [between(rand, 0, 0.5), between(rand, 0, 0.3)] : [0, 0];
    const [p1, p2, p3] = [rand(), rand(), rand()].map((p) => 2 * Math.PI * p);
    // Some clips are clean, the others noisy (15 to 80 dB below the tone); some are quantised as WAV files are.
    const noise = rand() < 0.2 ? 0 : amp * 10 ** (-between(rand, 15, 80) / 20);
    const bits = [8, 16, 0, 0, 0][Math.floor(rand() * 5)];
    const fade = Math.round(between(rand, 0, 0.02) * rate);
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) {
        const t = i / rate;
        const tone = Math.sin(2 * Math.PI * f * t + p1) + h2 * Math.sin(4 * Math.PI * f * t + p2) + h3 * Math.sin(6 * Math.PI * f * t + p3);
        const env = fade ? Math.min(1, i / fade, (n - 1 - i) / fade) : 1;
        x[i] = amp * env * tone / (1 + h2 + h3) + (noise ? noise * gauss(rand) : 0);
        if (bits) {
            x[i] = Math.round(x[i] * 2 ** (bits - 1)) / 2 ** (bits - 1);
        }
    }
    return resample(x, rate, RATE);
}

/** The model's view of a clip: its mean log-mel frame, less its mean over the bands. */
function centredMean(x: Float32Array): Float32Array {
    const { data, frames } = logMel(x, MEL);
    const mean = new Float32Array(MEL.nMels);
    for (let f = 0; f < frames; f++) {
        for (let m = 0; m < MEL.nMels; m++) {
            mean[m] += data[f * MEL.nMels + m] / frames;
        }
    }
    const centre = mean.reduce((a, b) => a + b, 0) / MEL.nMels;
    return mean.map((v) => v - centre);
}

interface Weights {
    mu: Float32Array;
    sigma: Float32Array;
    w1: Float32Array;
    b1: Float32Array;
    w2: Float32Array;
    b2: Float32Array;
}

/** The ONNX graph: masked mean over frames -> centre -> standardise -> dense -> relu -> dense. */
function toOnnx(w: Weights): Uint8Array {
    const M = MEL.nMels;
    const g = new Graph('tones');
    g.input('input_features', 'float32', ['batch', 'frames', M]);
    g.input('attention_mask', 'int64', ['batch', 'frames']);
    const int64 = (...v: number[]) => BigInt64Array.from(v.map(BigInt));
    g.node('Cast', ['attention_mask'], ['mask'], { to: { i: 1 } });
    g.node('Unsqueeze', ['mask', g.initializer('last', int64(2), [1])], ['mask3']);
    g.node('Mul', ['input_features', 'mask3'], ['masked']);
    const frames = g.initializer('frames_axis', int64(1), [1]);
    g.node('ReduceSum', ['masked', frames], ['sum'], { keepdims: { i: 0 } });
    g.node('ReduceSum', ['mask', frames], ['count'], { keepdims: { i: 1 } });
    g.node('Div', ['sum', 'count'], ['mean']);
    // Opset 17: ReduceMean takes its axes as an attribute.
    g.node('ReduceMean', ['mean'], ['level'], { axes: { ints: [1] }, keepdims: { i: 1 } });
    g.node('Sub', ['mean', 'level'], ['centred']);
    g.node('Sub', ['centred', g.initializer('mu', w.mu, [M])], ['shifted']);
    g.node('Div', ['shifted', g.initializer('sigma', w.sigma, [M])], ['z']);
    g.node('MatMul', ['z', g.initializer('w1', w.w1, [M, HIDDEN])], ['h0']);
    g.node('Add', ['h0', g.initializer('b1', w.b1, [HIDDEN])], ['h1']);
    g.node('Relu', ['h1'], ['h']);
    g.node('MatMul', ['h', g.initializer('w2', w.w2, [HIDDEN, NOTES.length])], ['y0']);
    g.node('Add', ['y0', g.initializer('b2', w.b2, [NOTES.length])], ['logits']);
    g.output('logits', 'float32', ['batch', NOTES.length]);
    return g.toBytes();
}

/** A WAV file of a pure tone: 16-bit PCM, the same samples in every channel. */
function toneWav(hz: number, rate: number, seconds: number, channels = 1, amplitude = 0.5): Uint8Array {
    const n = Math.round(rate * seconds);
    const samples = new Int16Array(n * channels);
    for (let i = 0; i < n; i++) {
        const v = Math.round(amplitude * 32767 * Math.sin(2 * Math.PI * hz * i / rate));
        samples.fill(v, i * channels, (i + 1) * channels);
    }
    const wav = new WaveFile();
    wav.fromScratch(channels, rate, '16', samples);
    return wav.toBuffer();
}

async function main(): Promise<void> {
    const out = path.resolve(process.argv[2] ?? path.join(__dirname, '..', '..', '..', 'examples', 'models', 'tones'));
    const examples = path.dirname(path.dirname(out));
    await tf.setBackend('cpu');
    const rand = mulberry32(SEED);

    // 1-2. clips and their features
    const started = Date.now();
    const clips: Array<{ x: Float32Array; label: number; feature: Float32Array }> = [];
    for (let k = 0; k < PER_NOTE; k++) {
        for (let note = 0; note < NOTES.length; note++) {
            const x = clip(rand, note);
            clips.push({ x, label: note, feature: centredMean(x) });
        }
    }
    const test = clips.splice(0, HELD_OUT * NOTES.length);
    console.log(`${clips.length} training and ${test.length} held-out clips in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const M = MEL.nMels;
    const mu = new Float32Array(M);
    const sigma = new Float32Array(M);
    for (const c of clips) {
        c.feature.forEach((v, m) => mu[m] += v / clips.length);
    }
    for (const c of clips) {
        c.feature.forEach((v, m) => sigma[m] += (v - mu[m]) ** 2 / clips.length);
    }
    sigma.forEach((v, m) => sigma[m] = Math.sqrt(v) + 1e-3);
    const standardise = (rows: Array<{ feature: Float32Array }>) =>
        tf.tensor2d(rows.flatMap((c) => Array.from(c.feature, (v, m) => (v - mu[m]) / sigma[m])), [rows.length, M]);

    // 3. training
    const model = tf.sequential({
        layers: [
            tf.layers.dense({ inputShape: [M], units: HIDDEN, activation: 'relu', kernelInitializer: tf.initializers.glorotUniform({ seed: SEED }) }),
            tf.layers.dense({ units: NOTES.length, kernelInitializer: tf.initializers.glorotUniform({ seed: SEED + 1 }) })
        ]
    });
    const optimizer = tf.train.adam(0.003);
    const xs = standardise(clips);
    const ys = tf.oneHot(tf.tensor1d(clips.map((c) => c.label), 'int32'), NOTES.length).toFloat();
    const order = clips.map((_, i) => i);
    const batchSize = 64;
    for (let epoch = 0; epoch < 40; epoch++) {
        for (let i = order.length - 1; i > 0; i--) {
            const j = Math.floor(rand() * (i + 1));
            [order[i], order[j]] = [order[j], order[i]];
        }
        let total = 0;
        for (let at = 0; at < order.length; at += batchSize) {
            const idx = tf.tensor1d(order.slice(at, at + batchSize), 'int32');
            const loss = optimizer.minimize(() => tf.losses.softmaxCrossEntropy(ys.gather(idx), model.predict(xs.gather(idx)) as tf.Tensor), true) as tf.Scalar;
            total += loss.dataSync()[0];
            tf.dispose([idx, loss]);
        }
        if (epoch % 10 === 9) {
            console.log(`epoch ${epoch + 1}: loss ${(total / Math.ceil(order.length / batchSize)).toFixed(4)}`);
        }
    }
    const testX = standardise(test);
    const tfLogits = (model.predict(testX) as tf.Tensor).arraySync() as number[][];
    const argmax = (row: ArrayLike<number>) => Array.from(row).reduce((best, v, i, a) => v > a[best] ? i : best, 0);
    const accuracy = test.filter((c, i) => argmax(tfLogits[i]) === c.label).length / test.length;
    console.log(`held-out accuracy: ${(accuracy * 100).toFixed(1)}%`);
    if (accuracy < 0.95) {
        throw new Error(`held-out accuracy ${accuracy} is below 0.95`);
    }

    // 4. ONNX, and the check that it is the same model
    const [k1, b1, k2, b2] = model.getWeights().map((w) => w.dataSync() as Float32Array);
    fs.mkdirSync(out, { recursive: true });
    const onnxFile = path.join(out, 'model.onnx');
    fs.writeFileSync(onnxFile, toOnnx({ mu, sigma, w1: k1, b1, w2: k2, b2 }));
    fs.writeFileSync(path.join(out, 'config.json'), `${JSON.stringify({
        model_type: 'tones',
        architectures: ['MeanLogMelMLP'],
        id2label: Object.fromEntries(NOTES.map((n, i) => [String(i), n])),
        label2id: Object.fromEntries(NOTES.map((n, i) => [n, i]))
    }, null, 2)}\n`);
    fs.writeFileSync(path.join(out, 'preprocessor_config.json'), `${JSON.stringify({
        feature_extractor_type: 'tsserve.LogMel',
        features: 'log_mel',
        sampling_rate: MEL.rate,
        n_fft: MEL.nFft,
        hop_length: MEL.hop,
        n_mels: MEL.nMels,
        log_offset: MEL.logOffset,
        return_attention_mask: true
    }, null, 2)}\n`);
    const session = await ort.InferenceSession.create(onnxFile);
    let worst = 0;
    for (let at = 0; at < test.length; at += 16) {
        // Padded batches of clips of different lengths, as the handler makes them.
        const rows = test.slice(at, at + 16).map((c) => logMel(c.x, MEL));
        const frames = Math.max(...rows.map((r) => r.frames));
        const features = new Float32Array(rows.length * frames * M);
        const mask = new BigInt64Array(rows.length * frames);
        rows.forEach((r, i) => {
            features.set(r.data, i * frames * M);
            mask.fill(1n, i * frames, i * frames + r.frames);
        });
        const result = await session.run({
            input_features: new ort.Tensor('float32', features, [rows.length, frames, M]),
            attention_mask: new ort.Tensor('int64', mask, [rows.length, frames])
        });
        const logits = result.logits.data as Float32Array;
        rows.forEach((_, i) => tfLogits[at + i].forEach((v, k) => worst = Math.max(worst, Math.abs(v - logits[i * NOTES.length + k]))));
    }
    console.log(`ONNX Runtime vs TensorFlow.js on ${test.length} held-out clips: largest difference ${worst.toExponential(2)}`);
    if (!(worst < 1e-4)) {
        throw new Error(`ONNX and TensorFlow.js disagree by ${worst}`);
    }

    // Every note, as a clean tone at the rates and lengths a person would send, must be recognised.
    let checked = 0;
    for (const rate of [8000, 16000, 44100]) {
        for (const seconds of [0.2, 1]) {
            for (const amplitude of [0.1, 0.8]) {
                for (let note = 0; note < NOTES.length; note++) {
                    const x = Float32Array.from({ length: Math.round(rate * seconds) }, (_, i) => Math.round(32767 * amplitude * Math.sin(2 * Math.PI * noteHz(note) * i / rate)) / 32768);
                    const got = argmax((model.predict(standardise([{ feature: centredMean(resample(x, rate, RATE)) }])) as tf.Tensor).dataSync());
                    if (got !== note) {
                        throw new Error(`a clean ${NOTES[note]} (${rate} Hz, ${seconds} s, amplitude ${amplitude}) is classified ${NOTES[got]}`);
                    }
                    checked++;
                }
            }
        }
    }
    console.log(`${checked} clean tones of every note at 8, 16 and 44.1 kHz: all right`);

    // 5. sample files, each checked against the model
    const samples: Array<[string, number, number, number, number]> = [
        ['tone-440hz.wav', 9, 16000, 1, 1],
        ['tone-c4-44k-stereo.wav', 0, 44100, 0.5, 2],
        ['tone-e4-8k.wav', 4, 8000, 1, 1]
    ];
    for (const [file, note, rate, seconds, channels] of samples) {
        fs.writeFileSync(path.join(examples, file), toneWav(noteHz(note), rate, seconds, channels));
        const x = resample(Float32Array.from({ length: Math.round(rate * seconds) }, (_, i) => 0.5 * Math.sin(2 * Math.PI * noteHz(note) * i / rate)), rate, RATE);
        const got = argmax((model.predict(standardise([{ feature: centredMean(x) }])) as tf.Tensor).dataSync());
        console.log(`${file}: ${NOTES[got]} (${NOTES[note]} expected)`);
        if (got !== note) {
            throw new Error(`${file} is classified ${NOTES[got]}, not ${NOTES[note]}`);
        }
    }
    console.log(`wrote ${out} (model.onnx ${fs.statSync(onnxFile).size} bytes) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
