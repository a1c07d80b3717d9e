// The audio handler: WAV decoding, mixdown, resampling, padding and log-mel features checked against values worked out
// by hand here; the handler's every option and refusal; and the example pitch classifier (examples/models/tones) end
// to end through a real `tsserve up`: raw, multipart and base64 bodies, batching of audio of different lengths, and
// bad inputs that each get a clean 4xx while the replica keeps serving.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { WaveFile } from 'wavefile';
import { Graph } from '../modelgen/onnx-builder';
import { near, serve, validOpenApi } from './helpers';
import {
    decodeWav, fitLength, frameCount, hann, hzToMel, logMel, melFilterbank, melToHz, mixdown, PowerSpectrum, resample,
    samplesForFrames, samplesNeeded
} from '../handlers/audio-dsp';
import { audio } from '../handlers/audio';
import { audio as audioSchema } from '../schemas/audio';
import type { Feeds, Tensor } from '../lib/tensor';
import type { Signature, TensorInfo } from '../lib/signature';
import type { ModelFiles } from '../lib/model-files';
import type { Handler } from '../lib/handler';

const examples = path.join(__dirname, '..', 'examples');
const tonesDir = path.join(examples, 'models', 'tones');
const NOTES = ['C4', 'C#4', 'D4', 'D#4', 'E4', 'F4', 'F#4', 'G4', 'G#4', 'A4', 'A#4', 'B4'];
const noteHz = (note: string): number => 440 * 2 ** ((NOTES.indexOf(note) - 9) / 12);

/** A WAV file from interleaved sample values, as wavefile writes it. */
function wavOf(channels: number, rate: number, bits: string, samples: ArrayLike<number>): Buffer {
    const w = new WaveFile();
    w.fromScratch(channels, rate, bits, Array.from(samples));
    return Buffer.from(w.toBuffer());
}

/** A tone as a WAV file: `bits` '8', '16', '24', '32' (PCM) or '32f', '64' (float), the same signal in every channel. */
function tone(hz: number, rate: number, seconds: number, bits = '16', channels = 1, amplitude = 0.5): Buffer {
    const n = Math.round(rate * seconds);
    const full = bits === '8' ? 127 : bits === '32f' || bits === '64' ? 1 : 2 ** (Number(bits) - 1) - 1;
    const values: number[] = [];
    for (let i = 0; i < n; i++) {
        const v = amplitude * Math.sin(2 * Math.PI * hz * i / rate);
        const q = full === 1 ? v : Math.round(v * full) + (bits === '8' ? 128 : 0);
        for (let c = 0; c < channels; c++) {
            values.push(q);
        }
    }
    return wavOf(channels, rate, bits, values);
}

const close = (t: Test, got: ArrayLike<number>, want: ArrayLike<number>, tol: number, msg: string): void => {
    t.equal(got.length, want.length, `${msg}: length`);
    let worst = 0;
    for (let i = 0; i < want.length; i++) {
        worst = Math.max(worst, Math.abs(got[i] - want[i]));
    }
    t.ok(worst <= tol, `${msg}: largest difference ${worst} <= ${tol}`);
};

/** `got` within `tol` of `want`, by helpers' near(); a failure shows both. */
const approx = (t: Test, got: number, want: number, tol: number, msg: string) => t.ok(near(got, want, tol), msg, { found: got, wanted: want });

/** A plain DFT power spectrum, written out: |sum_j x_j e^{-2 pi i k j / n}|^2 for k = 0 .. n / 2. */
function dftPower(x: ArrayLike<number>): number[] {
    const n = x.length;
    return Array.from({ length: Math.floor(n / 2) + 1 }, (_, k) => {
        let re = 0;
        let im = 0;
        for (let j = 0; j < n; j++) {
            re += x[j] * Math.cos(2 * Math.PI * k * j / n);
            im -= x[j] * Math.sin(2 * Math.PI * k * j / n);
        }
        return re * re + im * im;
    });
}

t.test('WAV decoding gives the float value of every sample format', async (t) => {
    // PCM: v / 2^(bits-1); 8-bit PCM is unsigned, (v - 128) / 128. Float as is.
    const cases: Array<[string, number[], number[]]> = [
        ['8', [0, 128, 255, 192], [-1, 0, 127 / 128, 0.5]],
        ['16', [16384, -32768, 32767, 0, -16384], [0.5, -1, 32767 / 32768, 0, -0.5]],
        ['24', [4194304, -8388608, 8388607, -1], [0.5, -1, 8388607 / 8388608, -1 / 8388608]],
        ['32', [1073741824, -2147483648, 2147483647], [0.5, -1, 2147483647 / 2147483648]],
        ['32f', [0.5, -0.25, 1], [0.5, -0.25, 1]],
        ['64', [0.125, -1, 0.1], [0.125, -1, 0.1]]
    ];
    for (const [bits, values, want] of cases) {
        const mono = decodeWav(wavOf(1, 8000, bits, values));
        t.equal(mono.rate, 8000);
        t.equal(mono.channels.length, 1);
        // Exactly the hand value, as a float32.
        close(t, mono.channels[0], want.map(Math.fround), 0, `${bits}-bit mono`);
        // Stereo: left is the values, right the values reversed, interleaved.
        const right = [...values].reverse();
        const stereo = decodeWav(wavOf(2, 44100, bits, values.flatMap((v, i) => [v, right[i]])));
        t.equal(stereo.rate, 44100);
        close(t, stereo.channels[0], want.map(Math.fround), 0, `${bits}-bit left`);
        close(t, stereo.channels[1], [...want].reverse().map(Math.fround), 0, `${bits}-bit right`);
    }
    // Big-endian RIFX files (of 4 samples: wavefile pads an odd count when it writes RIFX).
    for (const [bits, values, want] of [cases[1], cases[2]]) {
        const w = new WaveFile();
        w.fromScratch(1, 8000, bits, values.slice(0, 4));
        w.toRIFX();
        const bytes = Buffer.from(w.toBuffer());
        t.equal(bytes.subarray(0, 4).toString(), 'RIFX');
        close(t, decodeWav(bytes).channels[0], want.slice(0, 4), 0, `${bits}-bit RIFX`);
    }
    // Three channels, and a WAVE_FORMAT_EXTENSIBLE file (wavefile writes 12-bit samples so, in 16-bit words).
    const three = decodeWav(wavOf(3, 16000, '16', [16384, -16384, 0, 8192, 0, -32768]));
    t.same(three.channels.map((c) => Array.from(c)), [[0.5, 0.25], [-0.5, 0], [0, -1]]);
    const extensible = wavOf(1, 16000, '12', [1024, -2048]);
    t.equal(extensible.readUInt16LE(20), 0xfffe, 'the format tag is WAVE_FORMAT_EXTENSIBLE');
    t.same(Array.from(decodeWav(extensible).channels[0]), [1024 / 32768, -2048 / 32768]);
    // A writer that streamed its output leaves the data size at 0xffffffff: what is there is read.
    const streamed = wavOf(1, 8000, '16', [16384]);
    streamed.writeUInt32LE(0xffffffff, 40);
    t.same(Array.from(decodeWav(Buffer.concat([streamed, Buffer.from([0, 0xc0])])).channels[0]), [0.5, -0.5]);
    // An empty data chunk is not an error here: the handler refuses it.
    t.equal(decodeWav(wavOf(1, 8000, '16', [])).channels[0].length, 0);
});

t.test('WAV decoding says what is wrong with a file it cannot read', async (t) => {
    const good = wavOf(1, 8000, '16', [1, 2, 3, 4]);
    const patched = (at: number, value: number, size = 2): Buffer => {
        const b = Buffer.from(good);
        size === 2 ? b.writeUInt16LE(value, at) : b.writeUInt32LE(value, at);
        return b;
    };
    const alaw = new WaveFile();
    alaw.fromScratch(1, 8000, '16', [1000, -1000]);
    alaw.toALaw();
    const cases: Array<[string, Uint8Array, RegExp]> = [
        ['text', Buffer.from('hello, this is not audio'), /^not a WAV file \(no RIFF\/WAVE header\)$/],
        ['nothing', Buffer.alloc(0), /not a WAV file/],
        ['no data chunk', good.subarray(0, 36), /not a WAV file \(Could not find the "data" chunk\)/],
        ['truncated', good.subarray(0, good.length - 3), /truncated: its data chunk declares 8 bytes, 5 are present/],
        ['header only', good.subarray(0, 44), /truncated: its data chunk declares 8 bytes, 0 are present/],
        ['A-law', alaw.toBuffer(), /unsupported WAV encoding A-law: send PCM or float samples/],
        ['MP3 in WAV', patched(20, 85), /unsupported WAV encoding MP3/],
        ['unknown format', patched(20, 0x1234), /unsupported WAV encoding \(format tag 4660\)/],
        ['extensible without a subformat', patched(20, 0xfffe), /format tag 0/],
        ['20-bit PCM', patched(34, 20), /unsupported WAV sample size: 20-bit PCM \(8, 16, 24 or 32\)/],
        ['16-bit float', patched(20, 3), /unsupported WAV sample size: 16-bit float \(32 or 64\)/],
        ['no channels', patched(22, 0), /declares no channels/],
        ['no rate', patched(24, 0, 4), /declares no sample rate/]
    ];
    for (const [name, bytes, message] of cases) {
        t.throws(() => decodeWav(bytes), message, name);
    }
});

t.test('mixdown, padding and trimming', async (t) => {
    const left = Float32Array.of(1, 0.5, -1, 0.25);
    const right = Float32Array.of(0, 0.5, 1, -0.75);
    t.same(Array.from(mixdown([left, right])), [0.5, 0.5, 0, -0.25], 'a stereo pair becomes its mean');
    t.same(Array.from(mixdown([left, right, Float32Array.of(0.5, 2, 3, 0.5)])), [0.5, 1, 1, 0]);
    t.equal(mixdown([left]), left, 'mono stays as it is');
    const x = Float32Array.of(1, 2, 3);
    t.same(Array.from(fitLength(x, 5)), [1, 2, 3, 0, 0], 'padded with zeros at the end');
    t.same(Array.from(fitLength(x, 2)), [1, 2], 'trimmed at the end');
    t.equal(fitLength(x, 3), x);
});

t.test('resampling keeps the frequency and the timing of a sine', async (t) => {
    const sine = (hz: number, rate: number, n: number, phase = 0) => Float32Array.from({ length: n }, (_, i) => Math.sin(2 * Math.PI * hz * i / rate + phase));
    // 12347 and 16000 share no factor: 16000 phases, so kernels are interpolated between 1024 of them.
    for (const [from, to, seconds] of [[48000, 16000, 1], [44100, 16000, 0.5], [8000, 16000, 0.5], [22050, 16000, 0.3], [16000, 44100, 0.2], [12347, 16000, 0.5], [383999, 16000, 0.1]]) {
        const n = Math.round(from * seconds);
        const y = resample(sine(1000, from, n), from, to);
        t.equal(y.length, Math.ceil(n * to / from), `${from} -> ${to}: ceil(n * to / from) samples`);
        // Away from the ends (where the filter sees zeros), the samples are the sine at the new rate.
        const want = sine(1000, to, y.length);
        close(t, y.subarray(200, y.length - 200), want.subarray(200, y.length - 200), 1e-3, `${from} -> ${to}: samples`);
        // 1 kHz: 2 zero crossings per ms.
        let crossings = 0;
        for (let i = 201; i < y.length - 200; i++) {
            crossings += Math.sign(y[i]) !== Math.sign(y[i - 1]) ? 1 : 0;
        }
        t.ok(Math.abs(crossings - 2 * (y.length - 401) / to * 1000) <= 2, `${from} -> ${to}: ${crossings} zero crossings`);
    }
    // A tone above the new Nyquist is filtered out rather than folded back: 7 kHz at 48 kHz -> 8 kHz.
    const alias = resample(sine(7000, 48000, 48000), 48000, 8000);
    approx(t, Math.max(...alias.subarray(200, 7800).map(Math.abs)), 0, 1e-3, 'no aliasing');
    const dc = resample(new Float32Array(3000).fill(0.5), 44100, 16000);
    close(t, dc.subarray(100, 900), new Float32Array(800).fill(0.5), 1e-4, 'DC keeps its level');
    t.equal(resample(Float32Array.of(0.5, 0.1), 16000, 16000).length, 2);
    t.equal(resample(new Float32Array(1001), 48000, 16000).length, 334);
    // What is resampled beyond samplesNeeded() cannot change the first outputs.
    const x = sine(440, 44100, 10000, 0.3);
    const need = samplesNeeded(1000, 44100, 16000);
    t.ok(need < 10000, `${need} samples needed, fewer than the 10000 there are`);
    t.same(Array.from(resample(x.subarray(0, need), 44100, 16000).subarray(0, 1000)), Array.from(resample(x, 44100, 16000).subarray(0, 1000)));
    // Many rate pairs (the filter bank cache keeps the latest).
    for (let rate = 8000; rate < 8000 + 18 * 1000; rate += 1000) {
        t.equal(resample(new Float32Array(rate / 100), rate, 16000).length, 160);
    }
});

t.test('frames, window, mel scale and filterbank', async (t) => {
    t.equal(frameCount(1000, 400, 160), 4, '1 + floor((1000 - 400) / 160)');
    t.equal(frameCount(400, 400, 160), 1);
    t.equal(frameCount(300, 400, 160), 1, 'shorter than a frame: one zero-padded frame');
    t.equal(samplesForFrames(4, 400, 160), 880);
    close(t, hann(4), [0, 0.5, 1, 0.5], 1e-15, 'periodic Hann');
    approx(t, hzToMel(700), 2595 * Math.log10(2), 1e-9, 'HTK: mel(700 Hz) = 2595 log10 2');
    approx(t, melToHz(hzToMel(1234.5)), 1234.5, 1e-9, 'melToHz undoes hzToMel');
    // One band between 0 Hz and 4 kHz peaks halfway in mel, which is the geometric mean in (1 + f / 700):
    // 1 + peak / 700 = sqrt(1 + 4000 / 700). Bins of an 8-point FFT at 8 kHz lie at 0, 1, 2, 3, 4 kHz.
    const peak = 700 * (Math.sqrt(1 + 4000 / 700) - 1);
    const [band] = melFilterbank(1, 8, 8000);
    close(t, band, [0, 1000 / peak, (4000 - 2000) / (4000 - peak), (4000 - 3000) / (4000 - peak), 0], 1e-12, 'a single triangle');
    // Unit peaks: with 3 bands over 16 bins, every weight is in [0, 1] and every band is a rise then a fall.
    for (const row of melFilterbank(3, 32, 16000)) {
        t.same(row.filter((v) => v < 0 || v > 1), [], 'weights in [0, 1]');
        const top = row.indexOf(Math.max(...row));
        const [rise, fall] = [row.slice(0, top + 1), row.slice(top)];
        t.same(rise, [...rise].sort((a, b) => a - b), 'a rise up to the peak');
        t.same(fall, [...fall].sort((a, b) => b - a), 'then a fall');
    }
});

t.test('the power spectrum is the DFT, for any frame length', async (t) => {
    // By hand: a frame of ones has all its power in bin 0 (n^2); cos(2 pi 2 j / 8) has (n / 2)^2 in bin 2.
    const ps8 = new PowerSpectrum(8);
    const out = new Float64Array(5);
    ps8.compute(new Float64Array(8).fill(1), out);
    close(t, out, [64, 0, 0, 0, 0], 1e-9, 'DC');
    ps8.compute(Float64Array.from({ length: 8 }, (_, j) => Math.cos(2 * Math.PI * 2 * j / 8)), out);
    close(t, out, [0, 0, 16, 0, 0], 1e-9, 'a cosine on bin 2');
    for (const n of [16, 12, 400, 7]) {
        const x = Float64Array.from({ length: n }, (_, j) => Math.sin(j * 0.37) + 0.3 * Math.cos(j * 1.7) + (j % 3) * 0.1);
        const ps = new PowerSpectrum(n);
        const got = new Float64Array(ps.bins);
        ps.compute(x, got);
        const want = dftPower(x);
        close(t, got, want, 1e-9 * Math.max(...want), `n = ${n}${(n & (n - 1)) ? ' (Bluestein)' : ''}`);
    }
});

t.test('log-mel of known signals', async (t) => {
    // A constant 1: the periodic Hann window of 8 sums to 4 (bin 0) and its first coefficient is -2 (bin 1), so the
    // power is [16, 4, 0, 0, 0]; the single band above weighs bin 1 (1 kHz) by 1000 / peak.
    const peak = 700 * (Math.sqrt(1 + 4000 / 700) - 1);
    const opts = { rate: 8000, nFft: 8, hop: 4, nMels: 1, logOffset: 1e-6 };
    const dc = logMel(new Float32Array(16).fill(1), opts);
    t.equal(dc.frames, 3);
    close(t, dc.data, new Array(3).fill(Math.log(4 * 1000 / peak + 1e-6)), 1e-6, 'DC frames');
    // A sine frame against a direct DFT and the triangle worked out above.
    const x = Float32Array.from({ length: 8 }, (_, j) => Math.sin(2 * Math.PI * 1500 * j / 8000 + 0.2));
    const p = dftPower(Array.from(x, (v, j) => v * (0.5 - 0.5 * Math.cos(2 * Math.PI * j / 8))));
    const mel = p[1] * 1000 / peak + p[2] * 2000 / (4000 - peak) + p[3] * 1000 / (4000 - peak);
    close(t, logMel(x, opts).data, [Math.log(mel + 1e-6)], 1e-5, 'a sine frame');
    t.equal(logMel(x, { ...opts, logOffset: 0.01 }).data[0].toFixed(5), Math.log(mel + 0.01).toFixed(5), 'log_offset is added before the log');
    // Shorter than a frame: one frame, zero-padded: the same as the padded signal.
    close(t, logMel(x.subarray(0, 5), opts).data, logMel(fitLength(x.subarray(0, 5), 8), opts).data, 0, 'zero-padded frame');
    // 128 bands over a 400-point FFT at 16 kHz (bins 40 Hz apart): the lowest band, 0 to melToHz(2 * 2840 / 129) = 27.8 Hz,
    // catches no bin (bin 0, at 0 Hz, is its corner, weight 0): ln(log_offset). The next one, up to 42 Hz, catches bin 1.
    const fine = logMel(new Float32Array(400).fill(0.1), { rate: 16000, nFft: 400, hop: 160, nMels: 128, logOffset: 1e-6 });
    t.equal(fine.data[0], Math.fround(Math.log(1e-6)), 'an empty band');
    t.ok(fine.data[1] > Math.log(1e-6) + 1, `the next is not: ${fine.data[1]}`);
    // A 1 kHz tone: the band whose peak is nearest 1 kHz is the loudest.
    const opts16 = { rate: 16000, nFft: 512, hop: 256, nMels: 40, logOffset: 1e-6 };
    const toneMel = logMel(Float32Array.from({ length: 4096 }, (_, i) => Math.sin(2 * Math.PI * 1000 * i / 16000)), opts16);
    const first = Array.from(toneMel.data.subarray(0, 40));
    const peaks = Array.from({ length: 40 }, (_, m) => melToHz(hzToMel(8000) * (m + 1) / 41));
    const nearest = peaks.reduce((best, f, m) => Math.abs(f - 1000) < Math.abs(peaks[best] - 1000) ? m : best, 0);
    t.equal(first.indexOf(Math.max(...first)), nearest, `band ${nearest} (peak ${peaks[nearest].toFixed(0)} Hz) is loudest`);
    // Settings used once are cached, a few at a time.
    for (let n = 16; n < 16 + 10; n++) {
        t.equal(logMel(new Float32Array(n), { ...opts, nFft: n }).frames, 1);
    }
});

// ---- the handler, called directly ------------------------------------------------------------------------------

const info = (name: string, dims: Array<number | string>, type = 'float32'): TensorInfo => ({ name, type, dims });
const sigOf = (inputs: TensorInfo[], outputs: TensorInfo[] = [info('logits', ['batch', 3])]): Signature => ({ inputs, outputs });

function make(options: Record<string, unknown> = {}, model: Partial<ModelFiles> = {}): Handler<any> {
    const { error, value } = audioSchema.validate(options);
    if (error) {
        throw error;
    }
    return audio({ options: value, model: { file: 'model.onnx', ...model } });
}

const raw = (payload: unknown, contentType = 'audio/wav') => ({ payload, headers: {}, contentType });
const rejects = (t: Test, fn: () => unknown, status: number, code: string, message: RegExp, name: string): void => {
    try {
        fn();
        t.fail(`${name}: no error`);
    }
    catch (err) {
        const e = err as { output?: { statusCode: number }; data?: { code: string }; message: string };
        t.equal(e.output?.statusCode, status, `${name}: status`);
        t.equal(e.data?.code, code, `${name}: code`);
        t.match(e.message, message, `${name}: message`);
    }
};

t.test('the handler reads its settings from options, preprocessor_config.json and the model', async (t) => {
    const preprocessor = { sampling_rate: 8000, n_fft: 64, hop_length: 32, feature_size: 20, log_offset: 0.001, length_s: 0.5, ignored: 'x' };
    // preprocessor_config.json fills what options leave out; options win.
    const fromPre = make({}, { preprocessor });
    const mel = sigOf([info('input_features', ['batch', 'frames', 20])]);
    const feeds = await fromPre.preprocess([fromPre.parse(raw(tone(440, 8000, 1)), mel).item], mel);
    const want = logMel(new Float32Array(resample(decodeWav(tone(440, 8000, 1)).channels[0], 8000, 8000).subarray(0, 4000)), { rate: 8000, nFft: 64, hop: 32, nMels: 20, logOffset: 0.001 });
    t.same(feeds.input_features.dims, [1, frameCount(4000, 64, 32), 20], 'features: log_mel from the input rank, n_mels from feature_size, length_s');
    close(t, feeds.input_features.data as Float32Array, want.data, 0, 'the same log-mel as computed directly');
    const mine = make({ sampling_rate: 16000, length_s: 0.25, features: 'waveform' }, { preprocessor });
    const wave = sigOf([info('x', ['batch', 'samples'])]);
    t.same((await mine.preprocess([mine.parse(raw(tone(440, 8000, 1)), wave).item], wave)).x.dims, [1, 4000], 'options win');
    t.throws(() => make({}, { preprocessor: { sampling_rate: 'fast' }, dir: '/models/x' }), /preprocessor_config.json of \/models\/x: "sampling_rate" must be a number/);
    t.throws(() => make({}, { preprocessor: { feature_size: 1, n_mels: 0 } }), /"n_mels" must be greater than or equal to 1/);

    // Refusals of models the handler cannot feed, each saying why (load() runs this in the replica).
    const bad: Array<[Record<string, unknown>, Signature, RegExp]> = [
        [{}, sigOf([info('attention_mask', ['batch', 'samples'], 'int64')]), /feeds one audio input .* this model takes "attention_mask" \[batch, samples\]/],
        [{}, sigOf([info('a', ['batch', 'samples']), info('b', ['batch', 'samples'])]), /feeds one audio input/],
        [{}, sigOf([info('x', ['batch', 'samples'], 'int16')]), /feeds float32 audio, but input "x" is int16/],
        [{}, sigOf([info('x', ['batch', 'samples']), info('attention_mask', ['batch'], 'int64')]), /attention_mask must be \[batch, steps\]; this model's is \[batch\]/],
        [{ features: 'waveform' }, sigOf([info('x', ['batch', 'frames', 64])]), /features: waveform feeds input "x" as \[batch, samples\], but the model takes \[batch, frames, 64\]/],
        [{ features: 'log_mel' }, sigOf([info('x', ['batch', 'samples'])]), /features: log_mel feeds input "x" as \[batch, frames, n_mels\] or \[batch, n_mels, frames\]/],
        [{ n_mels: 40 }, sigOf([info('x', ['batch', 'frames', 64])]), /input "x" \[batch, frames, 64\] takes 64 mel bands, but n_mels is 40/],
        [{ length_s: 0.5 }, sigOf([info('x', ['batch', 16000])]), /length_s: 0.5 makes 8000 samples at 16000 Hz, but input "x" \[batch, 16000\] takes 16000 samples/],
        [{ length_s: 0.5, n_mels: 64 }, sigOf([info('x', ['batch', 10, 64])]), /takes 10 frames/]
    ];
    for (const [options, sig, message] of bad) {
        t.throws(() => make(options).load?.(sig), message);
    }
    make({ length_s: 1 }).load?.(sigOf([info('x', ['batch', 16000])]));
    make({ length_s: 0.036, n_mels: 64 }).load?.(sigOf([info('x', ['batch', 2, 64])]));
    t.pass('a length_s that agrees with the model is fine');
});

t.test('log-mel features take the layout of the model input', async (t) => {
    const bytes = tone(1000, 16000, 0.1);
    const direct = logMel(decodeWav(bytes).channels[0], { rate: 16000, nFft: 400, hop: 160, nMels: 64, logOffset: 1e-6 });
    const cases: Array<[Record<string, unknown>, Array<number | string>, number[], boolean]> = [
        [{}, ['batch', 'frames', 64], [1, direct.frames, 64], false],
        [{}, ['batch', 64, 'frames'], [1, 64, direct.frames], true],
        [{}, ['batch', 'frames', 'mels'], [1, direct.frames, 64], false],
        [{ n_mels: 64 }, ['batch', 64, 'frames'], [1, 64, direct.frames], true],
        [{ n_mels: 64 }, ['batch', 'frames', 'mels'], [1, direct.frames, 64], false],
        [{ n_mels: 64 }, ['batch', 4, 'mels'], [1, 4, 64], false],
        // A fixed number of frames: the audio is padded or trimmed to (frames - 1) * hop + n_fft samples.
        [{ n_mels: 64 }, ['batch', 20, 64], [1, 20, 64], false],
        // Both fixed and n_mels unset: the smaller is the mel bands.
        [{}, ['batch', 300, 64], [1, 300, 64], false],
        [{}, ['batch', 64, 300], [1, 64, 300], true]
    ];
    for (const [options, dims, want, melsFirst] of cases) {
        const h = make(options);
        const sig = sigOf([info('feats', dims)]);
        const feeds = await h.preprocess([h.parse(raw(bytes), sig).item], sig);
        const got = feeds.feats;
        t.same(got.dims, want, `${JSON.stringify(dims)}`);
        const frames = melsFirst ? want[2] : want[1];
        const ref = logMel(fitLength(decodeWav(bytes).channels[0], frames === direct.frames ? 1600 : samplesForFrames(frames, 400, 160)), { rate: 16000, nFft: 400, hop: 160, nMels: 64, logOffset: 1e-6 });
        const at = (f: number, m: number) => got.data[melsFirst ? m * frames + f : f * 64 + m] as number;
        const points = [0, frames - 1].flatMap((f) => [0, 10, 63].map((m) => [f, m]));
        t.same(points.map(([f, m]) => at(f, m)), points.map(([f, m]) => ref.data[f * 64 + m]), `${JSON.stringify(dims)}: frame f, band m in place`);
    }
});

t.test('batches of audio of different lengths: padding and attention_mask', async (t) => {
    const short = tone(440, 16000, 0.01);
    const long = tone(440, 16000, 0.02);
    for (const [type, one] of [['int64', 1n], ['int32', 1], ['float32', 1], ['bool', 1]] as const) {
        const h = make();
        const sig = sigOf([info('x', ['batch', 'samples']), info('attention_mask', ['batch', 'samples'], type)]);
        const a = h.parse(raw(short), sig);
        const b = h.parse({ payload: { audios: [long.toString('base64'), `data:audio/wav;base64,${short.toString('base64')}`] }, headers: {}, contentType: 'application/json' }, sig);
        t.equal(a.key, '', 'a model with attention_mask batches anything');
        t.equal(b.key, '');
        t.equal(b.rows, 2);
        const feeds = await h.preprocess([a.item, b.item], sig);
        t.same(feeds.x.dims, [3, 320]);
        t.same(feeds.attention_mask.dims, [3, 320]);
        t.equal(feeds.attention_mask.type, type);
        const mask = Array.from(feeds.attention_mask.data as ArrayLike<number | bigint>);
        t.same([mask.slice(0, 320).filter((v) => v === one).length, mask.slice(320, 640).filter((v) => v === one).length, mask.slice(640).filter((v) => v === one).length], [160, 320, 160], `${type} mask`);
        t.same(Array.from(feeds.x.data.subarray(160, 320) as Float32Array), new Array(160).fill(0), 'padding is zeros');
        t.equal(feeds.x.data[320 + 1], Math.fround(Math.round(0.5 * 32767 * Math.sin(2 * Math.PI * 440 / 16000)) / 32768), 'the second row is the long audio');
    }
    // log-mel frames padded, [batch, n_mels, frames] too
    const h = make();
    const sig = sigOf([info('f', ['batch', 8, 'frames']), info('attention_mask', ['batch', 'frames'], 'int64')]);
    const feeds = await h.preprocess([h.parse(raw(tone(440, 16000, 0.05)), sig).item, h.parse(raw(tone(440, 16000, 0.1)), sig).item], sig);
    t.same(feeds.f.dims, [2, 8, 8], '0.05 s: 3 frames, 0.1 s: 8 frames');
    t.same(Array.from(feeds.attention_mask.data as BigInt64Array, Number), [1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
    t.same([3, 4, 7].map((f) => feeds.f.data[f]), [0, 0, 0], 'padded frames are zeros');

    // No attention_mask and variable length: every request batches alone, and its audios must be equally long.
    const solo = make();
    const wave = sigOf([info('x', ['batch', 'samples'])]);
    const keys = [solo.parse(raw(short), wave).key, solo.parse(raw(short), wave).key];
    t.not(keys[0], keys[1], 'unique keys');
    t.not(keys[0], '');
    const twoFiles = solo.parse(raw({ a: short, b: long, note: 'text fields are ignored' }, 'multipart/form-data'), wave);
    await t.rejects(Promise.resolve().then(() => solo.preprocess([twoFiles.item], wave)), { output: { statusCode: 400 }, data: { code: 'INVALID_BODY' }, message: /no attention_mask, so the audios of one request must be equally long at 16000 Hz \(these make 160, 320 samples\)/ });
    const melSig = sigOf([info('f', ['batch', 'frames', 64])]);
    const twoMel = solo.parse(raw({ a: tone(440, 16000, 0.05), b: tone(440, 16000, 0.1) }, 'multipart/form-data'), melSig);
    await t.rejects(Promise.resolve().then(() => solo.preprocess([twoMel.item], melSig)), { data: { code: 'INVALID_BODY' }, message: /\(these make 3, 8 frames\)/ });
    const same = solo.parse(raw({ a: [short, short] }, 'multipart/form-data'), wave);
    t.same((await solo.preprocess([same.item], wave)).x.dims, [2, 160], 'equal lengths are fine; a repeated field gives several files');
    // Fixed length: key '' and every row the same length.
    const fixedLen = make({ length_s: 0.015 });
    const f1 = fixedLen.parse(raw(short), wave);
    t.equal(f1.key, '');
    t.same((await fixedLen.preprocess([f1.item, fixedLen.parse(raw(long), wave).item], wave)).x.dims, [2, 240]);
    // A fixed length and attention_mask: the mask marks the audio's own part. 0.01 s at 8 kHz is 80 samples, 160 at 16 kHz.
    const maskedLen = make({ length_s: 0.015 });
    const maskSig = sigOf([info('x', ['batch', 'samples']), info('attention_mask', ['batch', 'samples'], 'int64')]);
    const m = await maskedLen.preprocess([maskedLen.parse(raw(tone(440, 8000, 0.01)), maskSig).item, maskedLen.parse(raw(long), maskSig).item], maskSig);
    t.same(Array.from(m.attention_mask.data as BigInt64Array, Number).reduce((a, v, i) => (a[Math.floor(i / 240)] += v, a), [0, 0]), [160, 240]);
    const melLen = make({ length_s: 0.1 });
    const melMask = sigOf([info('f', ['batch', 'frames', 64]), info('attention_mask', ['batch', 'frames'], 'int64')]);
    const mm = await melLen.preprocess([melLen.parse(raw(tone(440, 16000, 0.04)), melMask).item], melMask);
    t.same(mm.f.dims, [1, 8, 64], '0.1 s: 8 frames');
    t.same(Array.from(mm.attention_mask.data as BigInt64Array, Number), [1, 1, 0, 0, 0, 0, 0, 0], '0.04 s of audio: 1 + floor((640 - 400) / 160) = 2 frames');
    // A fixed batch size: rows padded to it; more audios than it are refused.
    const fixedBatch = make({ task: 'raw' });
    const sig2 = sigOf([info('x', [2, 'samples']), info('attention_mask', [2, 'samples'], 'int64')], [info('y', [2]), info('all', [])]);
    const one = fixedBatch.parse(raw(short), sig2);
    const padded = await fixedBatch.preprocess([one.item], sig2);
    t.same(padded.x.dims, [2, 160]);
    t.same(Array.from(padded.attention_mask.data as BigInt64Array, Number).slice(160).filter(Boolean), [], 'the padding row is masked out');
    rejects(t, () => fixedBatch.parse(raw({ a: short, b: short, c: short }, 'multipart/form-data'), sig2), 400, 'INVALID_BODY', /^this model takes at most 2 audios per request; this one sent 3$/, 'too many for the fixed batch');
    const outputs: Feeds = { y: { type: 'float32', data: Float32Array.of(7, 8), dims: [2] }, all: { type: 'float32', data: Float32Array.of(9), dims: [] } };
    t.same(await fixedBatch.postprocess(outputs, [one.item], sig2), [{ outputs: { y: 7, all: 9 } }], 'per-row outputs sliced, the others whole');
});

t.test('the request forms the handler takes, and those it refuses', async (t) => {
    const h = make();
    const sig = sigOf([info('x', ['batch', 'samples']), info('attention_mask', ['batch', 'samples'], 'int64')]);
    const wav = tone(440, 16000, 0.01);
    for (const type of ['audio/wav', 'audio/x-wav', 'audio/wave', 'audio/vnd.wave', 'application/octet-stream']) {
        t.match(h.parse(raw(wav, type), sig), { rows: 1, item: { list: false } }, type);
    }
    t.match(h.parse(raw({ file: wav }, 'multipart/form-data'), sig), { rows: 1, item: { list: false } }, 'one file');
    t.match(h.parse(raw({ audio: wav.toString('base64') }, 'application/json'), sig), { rows: 1, item: { list: false } }, 'base64');
    t.match(h.parse(raw({ audios: [wav.toString('base64')] }, 'application/json'), sig), { rows: 1, item: { list: true } }, 'a list of one');
    // A data: URL prefix, in any case, is dropped at the front door, and the WAV decodes as without it.
    const b64 = wav.toString('base64');
    const plain = await h.preprocess([h.parse(raw({ audio: b64 }, 'application/json'), sig).item], sig);
    for (const prefix of ['data:audio/wav;base64,', 'DATA:audio/wav;BASE64,', ' Data:audio/x-wav;name=a.wav;Base64,']) {
        const item = h.parse(raw({ audios: [prefix + b64] }, 'application/json'), sig).item;
        t.same(item.audios, [b64], `${prefix} is dropped`);
        t.same(await h.preprocess([item], sig), plain, `${prefix}: the same features`);
    }
    const refused: Array<[unknown, string, number, string, RegExp]> = [
        [Buffer.alloc(0), 'audio/wav', 400, 'INVALID_BODY', /the body is empty/],
        [null, 'application/octet-stream', 400, 'INVALID_BODY', /the body is empty/],
        [wav, 'audio/mpeg', 415, 'UNSUPPORTED_MEDIA_TYPE', /decodes WAV only \(audio\/wav\), not audio\/mpeg/],
        [wav, 'image/png', 415, 'UNSUPPORTED_MEDIA_TYPE', /takes audio\/wav, multipart\/form-data or application\/json, not image\/png/],
        [wav, '', 415, 'UNSUPPORTED_MEDIA_TYPE', /not a body without a content type/],
        [{ note: 'no file' }, 'multipart/form-data', 400, 'INVALID_BODY', /multipart body holds no file/],
        [null, 'multipart/form-data', 400, 'INVALID_BODY', /multipart body holds no file/],
        [null, 'application/json', 400, 'INVALID_BODY', /\{"audio": "<base64 WAV>"\} or \{"audios"/],
        [[wav.toString('base64')], 'application/json', 400, 'INVALID_BODY', /\{"audio"/],
        [{}, 'application/json', 400, 'INVALID_BODY', /\{"audio"/],
        [{ audio: 'a', audios: ['b'] }, 'application/json', 400, 'INVALID_BODY', /\{"audio"/],
        [{ audio: '' }, 'application/json', 400, 'INVALID_BODY', /"audio" must be a WAV file encoded as a non-empty base64 string/],
        [{ audio: 42 }, 'application/json', 400, 'INVALID_BODY', /"audio" must be/],
        [{ audios: [] }, 'application/json', 400, 'INVALID_BODY', /"audios" must be a non-empty array/],
        [{ audios: 'x' }, 'application/json', 400, 'INVALID_BODY', /"audios" must be a non-empty array/],
        [{ audios: ['AAAA', null] }, 'application/json', 400, 'INVALID_BODY', /"audios\[1\]" must be/],
        [{ audio: 'https://example.com/a.wav' }, 'application/json', 400, 'INVALID_BODY', /"audio" is a URL; the audio handler does not fetch URLs/],
        [{ audio: ' ftp://example.com/a.wav' }, 'application/json', 400, 'INVALID_BODY', /"audio" is a URL/],
        [{ audio: 'data:audio/wav,RIFF' }, 'application/json', 400, 'INVALID_BODY', /"audio" is a data: URL without ";base64"/],
        [{ audio: 'DATA:audio/wav,RIFF' }, 'application/json', 400, 'INVALID_BODY', /"audio" is a data: URL without ";base64"/],
        [{ audios: ['DATA:audio/wav;BASE64,'] }, 'application/json', 400, 'INVALID_BODY', /^"audios\[0\]" must be a WAV file encoded as a non-empty base64 string$/]
    ];
    for (const [payload, type, status, code, message] of refused) {
        rejects(t, () => h.parse(raw(payload, type), sig), status, code, message, `${type} ${JSON.stringify(payload)?.slice(0, 40)}`);
    }
    // What only decoding finds: INVALID_MEDIA from preprocess, naming the audio when the request has several.
    const item = (payload: unknown, type = 'application/json') => h.parse(raw(payload, type), sig).item;
    const broken: Array<[unknown, RegExp]> = [
        [item({ audio: 'not base64!' }), /^not valid base64$/],
        [item({ audio: Buffer.from('hello').toString('base64') }), /^not a WAV file \(no RIFF\/WAVE header\)$/],
        [item({ audios: [wav.toString('base64'), wav.subarray(0, 60).toString('base64')] }), /^audio 2: the WAV file is truncated/],
        [item(wavOf(1, 16000, '16', []), 'audio/wav'), /^the WAV file holds no samples$/],
        [item(tone(100, 500, 0.1), 'audio/wav'), /^its sample rate, 500 Hz, is outside 1000 to 384000 Hz$/],
        [item(tone(100, 400000, 0.001), 'audio/wav'), /sample rate, 400000 Hz/]
    ];
    for (const [it, message] of broken) {
        await t.rejects(Promise.resolve().then(() => h.preprocess([it], sig)), { output: { statusCode: 400 }, data: { code: 'INVALID_MEDIA' }, message });
    }
    const capped = make({ max_length_s: 0.5 });
    await t.rejects(Promise.resolve().then(() => capped.preprocess([capped.parse(raw(tone(440, 8000, 0.6)), sig).item], sig)), { data: { code: 'INVALID_MEDIA' }, message: /it lasts 0.6 s; this deployment takes at most 0.5 s \(max_length_s\)/ });
    const long = make({ max_length_s: 0.5, length_s: 0.1 });
    t.same((await long.preprocess([long.parse(raw(tone(440, 8000, 0.6)), sig).item], sig)).x.dims, [1, 1600], 'a fixed length trims rather than refuses');
});

t.test('postprocess: labels, top_k, lists and raw outputs', async (t) => {
    const sig = sigOf([info('x', ['batch', 'samples'])], [info('logits', ['batch', 3]), info('other', ['batch', 2])]);
    const logits: Tensor = { type: 'float32', data: Float32Array.of(0, 1, 2, 5, 1, 1, 1, 1, 1), dims: [3, 3] };
    const items = [{ audios: [new Uint8Array(1)], list: false }, { audios: [new Uint8Array(1), new Uint8Array(1)], list: true }];
    const named = make({ top_k: 2 }, { config: { id2label: { 0: 'low', 1: 'mid', 2: 'high' } } });
    const [first, second] = await named.postprocess({ logits }, items, sig) as any[];
    t.equal(first.label, 'high');
    const e = [1, Math.E, Math.E ** 2];
    approx(t, first.score, e[2] / (e[0] + e[1] + e[2]), 1e-12, 'softmax score');
    t.same(first.predictions.map((p: any) => p.label), ['high', 'mid'], 'top_k: 2, best first');
    t.same(second.results.map((r: any) => r.label), ['low', 'low'], 'a list gets results, in order');
    approx(t, second.results[1].score, 1 / 3, 1e-12, 'equal logits: equal scores');
    const labelled = make({ labels: ['a', 'b', 'c'], top_k: 10 });
    t.same((await labelled.postprocess({ logits }, [items[0]], sig) as any[])[0].predictions.map((p: any) => p.label), ['c', 'b', 'a'], 'labels option; top_k capped at the classes');
    labelled.reconfigure({ top_k: 1 }, sig);
    t.same((await labelled.postprocess({ logits }, [items[0]], sig) as any[])[0].predictions.length, 1, 'user_config top_k, live');
    labelled.reconfigure({}, sig);
    t.same((await labelled.postprocess({ logits }, [items[0]], sig) as any[])[0].predictions.length, 3, 'and back');
    t.throws(() => labelled.reconfigure({ top_k: 0 }, sig), /user_config of the audio handler: "top_k" must be greater than or equal to 1/);
    t.throws(() => labelled.reconfigure({ colour: 'red' }, sig), /"colour" is not allowed/);
    const unnamed = make();
    t.same((await unnamed.postprocess({ logits }, [items[0]], sig) as any[])[0].predictions.map((p: any) => p.label), ['LABEL_2', 'LABEL_1', 'LABEL_0'], 'no labels anywhere: LABEL_<i>');
    const rawOut = make({ task: 'raw' });
    const other: Tensor = { type: 'float32', data: Float32Array.of(1, 2, 3, 4, 5, 6), dims: [3, 2] };
    t.same(await rawOut.postprocess({ logits, other }, items, sig), [
        { outputs: { logits: [0, 1, 2], other: [1, 2] } },
        { results: [{ outputs: { logits: [5, 1, 1], other: [3, 4] } }, { outputs: { logits: [1, 1, 1], other: [5, 6] } }] }
    ]);
});

t.test('options.output picks the output holding the logits; a name the model lacks stops the replica at load', async (t) => {
    const two = sigOf([info('x', ['batch', 'samples'])], [info('features', ['batch', 2]), info('scores', ['batch', 2])]);
    const rows = (a: number, b: number): Tensor => ({ type: 'float32', data: Float32Array.of(a, b), dims: [1, 2] });
    const items = [{ audios: [new Uint8Array(1)], list: false }];
    const label = async (options: Record<string, unknown>, sig: Signature, outputs: Feeds) => (await make(options).postprocess(outputs, items, sig) as any[])[0].label;
    t.equal(await label({}, two, { features: rows(9, 0), scores: rows(0, 9) }), 'LABEL_0', 'no "logits": the first output');
    t.equal(await label({ output: 'scores' }, two, { features: rows(9, 0), scores: rows(0, 9) }), 'LABEL_1', 'the output named');
    const logitsSecond = sigOf(two.inputs, [info('features', ['batch', 2]), info('logits', ['batch', 2])]);
    t.equal(await label({}, logitsSecond, { features: rows(9, 0), logits: rows(0, 9) }), 'LABEL_1', '"logits" rather than the first output');
    t.throws(() => make({ output: 'probs' }).load?.(two), { message: 'options.output is "probs", not among the model\'s outputs (features, scores)' });
    t.doesNotThrow(() => make({ output: 'scores' }).load?.(two));
    t.doesNotThrow(() => make({ task: 'raw', output: 'probs' }).load?.(two), 'raw reads every output');
    t.match(audioSchema.describe(), { keys: { output: { type: 'string', flags: { description: /the model output holding the logits; default: "logits"/ } } } });
});

t.test('OpenAPI pieces', async (t) => {
    const sig = sigOf([info('x', ['batch', 'samples'])], [info('logits', ['batch', 3])]);
    const h = make({ sampling_rate: 8000 });
    const example = h.example(sig) as { audio: string };
    const decoded = decodeWav(Buffer.from(example.audio, 'base64'));
    t.equal(decoded.rate, 8000, 'the example is a WAV file at the model\'s rate');
    t.equal(decoded.channels[0].length, 2000);
    t.equal(h.requestSchema(sig).validate(example).error, undefined);
    t.equal(h.responseSchema(sig).validate({ label: 'a', score: 1, predictions: [{ label: 'a', score: 1 }] }).error, undefined);
    t.equal(h.responseSchema(sig).validate({ results: [{ label: 'a', score: 1, predictions: [] }] }).error, undefined);
    t.equal(make({ task: 'raw' }).responseSchema(sig).validate({ outputs: { logits: [1, 2, 3] } }).error, undefined);
    t.match(h.openapi?.(sig), { content: { 'audio/wav': { schema: { type: 'string', format: 'binary' } }, 'multipart/form-data': { schema: { type: 'object' } } } });
});

// ---- end to end ----------------------------------------------------------------------------------------------------

/** A model on raw waveforms: per row, the mean square and the number of samples; and the longest row, once. */
function waveModel(): Uint8Array {
    const g = new Graph('wave');
    g.input('x', 'float32', ['batch', 'samples']);
    g.node('Mul', ['x', 'x'], ['sq']);
    g.node('ReduceMean', ['sq'], ['energy'], { axes: { ints: [1] }, keepdims: { i: 0 } });
    g.node('Mul', ['x', g.initializer('zero', Float32Array.of(0), [])], ['zeros']);
    g.node('Add', ['zeros', g.initializer('one', Float32Array.of(1), [])], ['ones']);
    g.node('ReduceSum', ['ones', g.initializer('axis', BigInt64Array.of(1n), [1])], ['n'], { keepdims: { i: 0 } });
    g.node('ReduceMax', ['n'], ['longest'], { keepdims: { i: 0 } });
    g.output('energy', 'float32', ['batch']);
    g.output('n', 'float32', ['batch']);
    g.output('longest', 'float32', []);
    return g.toBytes();
}

/** POST a body of `size` bytes, and stop sending it once the server answers (as it does at once with a 413). */
function postHuge(url: string, size: number): Promise<{ status: number; body: any }> {
    return new Promise((resolve, reject) => {
        let answered = false;
        const req = http.request(url, { method: 'POST', headers: { 'content-type': 'audio/wav', 'content-length': size } }, (res) => {
            answered = true;
            let text = '';
            res.on('data', (d) => text += d);
            res.on('end', () => {
                resolve({ status: res.statusCode as number, body: JSON.parse(text) });
                req.destroy();
            });
        });
        req.on('error', (err) => answered || reject(err));
        const chunk = Buffer.alloc(1 << 20);
        let sent = 0;
        const write = (): void => {
            while (!answered && sent < size) {
                sent += chunk.length;
                if (!req.write(chunk)) {
                    req.once('drain', write);
                    return;
                }
            }
            if (!answered) {
                req.end();
            }
        };
        write();
    });
}

t.test('tsserve serves the tones example and audio models end to end', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-audio-'));
    fs.writeFileSync(path.join(dir, 'wave.onnx'), waveModel());
    const s = await serve(dir, `http_options: { host: 127.0.0.1, request_timeout_s: 30 }
applications:
  - name: tones
    deployments:
      - name: model
        handler: audio
        model: { path: ${tonesDir} }
        batching: { max_batch_size: 8, batch_wait_timeout_s: 0.01 }
  - name: wave
    deployments:
      - name: model
        handler: audio
        options: { task: raw }
        model: { path: ./wave.onnx }
  - name: fixed
    deployments:
      - name: model
        handler: audio
        options: { task: raw, length_s: 0.5, sampling_rate: 8000 }
        model: { path: ./wave.onnx }
  - name: misnamed
    deployments:
      - name: model
        handler: audio
        options: { output: probs }
        model: { path: ./wave.onnx }
`);
    t.teardown(() => s.stop());
    const post = (route: string, body: Buffer, type = 'audio/wav') => s.post(route, body, { 'content-type': type });

    t.test('the example WAV files get their notes', async (t) => {
        for (const [file, note] of [['tone-440hz.wav', 'A4'], ['tone-c4-44k-stereo.wav', 'C4'], ['tone-e4-8k.wav', 'E4']]) {
            const r = await post('/tones/predict', fs.readFileSync(path.join(examples, file)));
            t.equal(r.status, 200, file);
            t.equal(r.body.label, note, `${file} is ${note}`);
            t.equal(r.body.predictions.length, 5);
            t.equal(r.body.predictions[0].label, note);
            t.equal(r.body.score, r.body.predictions[0].score, `${file}: the score is the best prediction's`);
            t.ok(r.body.score > 0.5, `${file}: score ${r.body.score}`);
        }
    });

    t.test('tones made here, at many rates, bit depths and channel counts, get their notes', async (t) => {
        const cases: Array<[string, number, number, string, number]> = [
            ['A4', 16000, 1, '16', 1], ['G4', 22050, 0.4, '24', 1], ['D4', 48000, 0.3, '32f', 2], ['B4', 11025, 0.5, '8', 1],
            ['F#4', 32000, 0.6, '32', 2], ['A#4', 16000, 0.25, '64', 1], ['C#4', 44100, 0.7, '16', 2], ['F4', 8000, 1.2, '16', 1],
            ['D#4', 24000, 0.35, '24', 2], ['G#4', 96000, 0.2, '16', 1], ['E4', 12000, 0.9, '32f', 1], ['C4', 16000, 0.15, '8', 2]
        ];
        for (const [note, rate, seconds, bits, channels] of cases) {
            const r = await post('/tones/predict', tone(noteHz(note), rate, seconds, bits, channels));
            t.equal(r.body.label, note, `${note} (${noteHz(note).toFixed(1)} Hz) at ${rate} Hz, ${seconds} s, ${bits}-bit, ${channels} channel(s): ${r.body.label} ${r.body.score?.toFixed(3)}`);
        }
    });

    t.test('raw, multipart and base64 bodies give the same answers; several audios per request', async (t) => {
        const a4 = tone(noteHz('A4'), 16000, 0.5);
        const c4 = tone(noteHz('C4'), 44100, 0.3, '16', 2);
        const bodyA = (await post('/tones/predict', a4)).body;
        const bodyC = (await post('/tones/predict', c4)).body;
        t.same((await s.post('/tones/predict', { audio: a4.toString('base64') })).body, bodyA, 'base64');
        t.same((await s.post('/tones/predict', { audio: `data:audio/wav;base64,${a4.toString('base64')}` })).body, bodyA, 'a data: URL');
        t.same((await s.post('/tones/predict', { audio: `DATA:audio/wav;BASE64,${a4.toString('base64')}` })).body, bodyA, 'a data: URL in capitals');
        t.same((await post('/tones/predict', a4, 'audio/x-wav')).body, bodyA, 'audio/x-wav');
        const form = new FormData();
        form.append('file', new Blob([a4], { type: 'audio/wav' }), 'a4.wav');
        const one = await fetch(`${s.url}/tones/predict`, { method: 'POST', body: form }).then((r) => r.json());
        t.same(one, bodyA, 'one multipart file');
        const both = await s.post('/tones/predict', { audios: [a4.toString('base64'), c4.toString('base64'), a4.toString('base64')] });
        t.same(both.body.results.map((r: any) => r.label), ['A4', 'C4', 'A4'], 'a list of three');
        // Padded and masked in a batch with longer audio, C4 answers as alone (to float rounding: the sums run longer).
        t.equal(both.body.results[1].label, bodyC.label);
        t.same(both.body.results[1].predictions.map((p: any) => p.label), bodyC.predictions.map((p: any) => p.label), 'an audio in a padded batch answers as alone');
        close(t, both.body.results[1].predictions.map((p: any) => p.score), bodyC.predictions.map((p: any) => p.score), 1e-6, 'with the same scores');
        const form2 = new FormData();
        form2.append('first', new Blob([c4]), 'c4.wav');
        form2.append('second', new Blob([a4]), 'a4.wav');
        const two = await fetch(`${s.url}/tones/predict`, { method: 'POST', body: form2 }).then((r) => r.json()) as any;
        t.same(two.results.map((r: any) => r.label), ['C4', 'A4'], 'two multipart files, in order');
    });

    t.test('many concurrent requests of different lengths answer as one at a time', async (t) => {
        const requests = Array.from({ length: 36 }, (_, i) => tone(noteHz(NOTES[i % 12]), [16000, 8000, 44100][i % 3], 0.1 + 0.05 * ((i * 7) % 11), i % 2 ? '16' : '24', 1 + (i % 2)));
        const sequential: any[] = [];
        for (const body of requests) {
            sequential.push((await post('/tones/predict', body)).body);
        }
        const concurrent = await Promise.all(requests.map((body) => post('/tones/predict', body)));
        concurrent.forEach((r, i) => {
            t.equal(r.status, 200);
            t.equal(r.body.label, sequential[i].label, `request ${i}: ${r.body.label}`);
            t.same(r.body.predictions.map((p: any) => p.label), sequential[i].predictions.map((p: any) => p.label), `request ${i}: the same labels`);
            close(t, r.body.predictions.map((p: any) => p.score), sequential[i].predictions.map((p: any) => p.score), 1e-5, `request ${i}: the same scores`);
        });
        t.same(sequential.map((b) => b.label), requests.map((_, i) => NOTES[i % 12]), 'and they are right');
        // The waveform model has no attention_mask: its requests never share a batch, so nothing is padded.
        const waves = Array.from({ length: 20 }, (_, i) => tone(500, [16000, 8000, 22050, 44100][i % 4], 0.05 + 0.01 * i, '32f', 1, 0.1 + 0.02 * i));
        const answers = await Promise.all(waves.map((b) => post('/wave/predict', b)));
        answers.forEach((r, i) => {
            const rate = [16000, 8000, 22050, 44100][i % 4];
            const n = Math.round(rate * (0.05 + 0.01 * i));
            t.equal(r.body.outputs.n, Math.ceil(n * 16000 / rate), `wave ${i}: resampled to 16 kHz, unpadded`);
            t.equal(r.body.outputs.longest, r.body.outputs.n, 'alone in its batch');
            const amp = 0.1 + 0.02 * i;
            approx(t, r.body.outputs.energy, amp * amp / 2, 0.03 * amp * amp, `wave ${i}: the mean square is a^2 / 2`);
        });
    });

    t.test('a fixed length pads and trims', async (t) => {
        // length_s 0.5 at 8 kHz: 4000 samples. A 0.25 s sine of amplitude 0.4 padded with 0.25 s of silence: 0.04.
        const short = await post('/fixed/predict', tone(250, 16000, 0.25, '32f', 1, 0.4));
        t.same([short.body.outputs.n, short.body.outputs.longest], [4000, 4000]);
        approx(t, short.body.outputs.energy, 0.04, 0.002, 'padded');
        const long = await s.post('/fixed/predict', { audios: [tone(250, 44100, 2, '16', 2, 0.4).toString('base64'), tone(250, 8000, 0.1).toString('base64')] });
        t.same(long.body.results.map((r: any) => r.outputs.n), [4000, 4000]);
        approx(t, long.body.results[0].outputs.energy, 0.08, 0.002, 'trimmed');
    });

    t.test('bad inputs get a clean 4xx, and the replicas keep serving', async (t) => {
        const good = tone(noteHz('A4'), 16000, 0.5);
        const cases: Array<[string, () => Promise<{ status: number; body: any }>, number, string, RegExp]> = [
            ['a body that is not WAV', () => post('/tones/predict', Buffer.from('ID3 this is an mp3, honest')), 400, 'INVALID_MEDIA', /not a WAV file/],
            ['a truncated WAV', () => post('/tones/predict', good.subarray(0, 1000)), 400, 'INVALID_MEDIA', /truncated: its data chunk declares 16000 bytes, 956 are present/],
            ['no samples', () => post('/tones/predict', wavOf(1, 16000, '16', [])), 400, 'INVALID_MEDIA', /holds no samples/],
            ['A-law', () => {
                const w = new WaveFile();
                w.fromScratch(1, 8000, '16', [1, 2, 3]);
                w.toALaw();
                return post('/tones/predict', Buffer.from(w.toBuffer()));
            }, 400, 'INVALID_MEDIA', /A-law/],
            ['text/plain', () => post('/tones/predict', Buffer.from('hello'), 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE', /Unsupported Media Type/],
            ['audio/mpeg', () => post('/tones/predict', good, 'audio/mpeg'), 415, 'UNSUPPORTED_MEDIA_TYPE', /WAV only/],
            ['bad base64', () => s.post('/tones/predict', { audio: '%%%' }), 400, 'INVALID_MEDIA', /not valid base64/],
            ['a URL', () => s.post('/tones/predict', { audio: 'http://example.com/a.wav' }), 400, 'INVALID_BODY', /does not fetch URLs/],
            ['one bad audio of three', () => s.post('/tones/predict', { audios: [good.toString('base64'), 'AAAA', good.toString('base64')] }), 400, 'INVALID_MEDIA', /audio 2: not a WAV file/],
            ['a 50 MB body', () => postHuge(`${s.url}/tones/predict`, 50 << 20), 413, 'PAYLOAD_TOO_LARGE', /greater than maximum allowed/]
        ];
        // Each bad one among good ones sent at once: only it fails.
        for (const [name, send, status, code, message] of cases) {
            const [before, r, after] = await Promise.all([post('/tones/predict', good), send(), post('/tones/predict', good)]);
            t.equal(r.status, status, `${name}: status`);
            t.equal(r.body.code, code, `${name}: code`);
            t.match(r.body.message, message, `${name}: message`);
            t.same([before.body.label, after.body.label], ['A4', 'A4'], `${name}: the good requests beside it are answered`);
        }
        t.equal((await post('/wave/predict', Buffer.from('nope'))).body.code, 'INVALID_MEDIA');
        const status = (await s.get('/-/status')).body;
        const replicas = status.applications.filter((a: any) => a.name !== 'misnamed').flatMap((a: any) => a.deployments.flatMap((d: any) => d.replicas));
        t.same(replicas.map((r: any) => [r.state, r.restarts]), [['RUNNING', 0], ['RUNNING', 0], ['RUNNING', 0]], 'no replica restarted');
    });

    t.test('an output the model lacks fails the replica\'s load, clearly; the others serve', async (t) => {
        const why = 'options.output is "probs", not among the model\'s outputs (energy, n, longest)';
        await s.waitFor(/replica misnamed\/model#0: model failed to load/);
        const dep = (await s.get('/-/status')).body.applications.find((a: any) => a.name === 'misnamed').deployments[0];
        t.equal(dep.last_error, `model failed to load: ${why}`);
        t.match(await post('/misnamed/predict', tone(440, 16000, 0.1)), { status: 503, body: { code: 'REPLICA_UNAVAILABLE' } });
        t.equal((await post('/tones/predict', tone(noteHz('A4'), 16000, 0.5))).body.label, 'A4');
    });

    t.test('/openapi.json is valid and its example works', async (t) => {
        const doc = (await s.get('/openapi.json')).body;
        await validOpenApi(t, doc);
        const op = doc.paths['/tones/predict'].post;
        t.same(Object.keys(op.requestBody.content), ['application/json', 'audio/wav', 'multipart/form-data']);
        t.same(Object.keys(op.requestBody.content['application/json'].schema.properties), ['audio', 'audios']);
        const r = await s.post('/tones/predict', op.requestBody.content['application/json'].example);
        t.equal(r.status, 200);
        t.equal(r.body.label, 'A4', 'the example is a 440 Hz tone');
    });
});
