// Pure audio signal processing for the audio handler (and its training script, so that training and serving compute
// the very same features): WAV decoding to floats, mixdown, resampling, padding, the power spectrum, and the log-mel
// spectrogram of tsserve's own extractor (tsserve.LogMel). The extractors of Hugging Face's models build on the
// same pieces in audio-whisper.ts, audio-kaldi.ts and audio-wav2vec2.ts, each with its own conventions.
//
// Conventions, for anyone matching them elsewhere:
// - Samples are floats: PCM is divided by 2^(bits-1) (8-bit PCM is unsigned: (v - 128) / 128), float stays as is.
// - Resampling is band-limited (windowed sinc, Kaiser window, beta 8.6, 16 zero crossings, cutoff 0.95 of the lower
//   Nyquist), polyphase over the exact ratio (kernels interpolated between 1024 phases when the reduced ratio has more).
//   Output length: ceil(n * to / from); sample 0 stays at time 0.
// - Frames are not centred (no padding at the start, like Kaldi's snip_edges): frame f covers samples
//   [f * hop, f * hop + n_fft); frames = 1 + floor((n - n_fft) / hop), and 1 (zero-padded) when n < n_fft.
// - Window: periodic Hann, w[i] = 0.5 - 0.5 cos(2 pi i / n_fft) (torch.hann_window's default).
// - Power spectrum |X_k|^2 for k = 0 .. n_fft / 2, no normalisation.
// - Mel filterbank: the HTK mel scale, mel(f) = 2595 log10(1 + f / 700), n_mels triangles with unit peaks (no area
//   normalisation) between 0 Hz and rate / 2, corners evenly spaced in mel (torchaudio's melscale_fbanks with
//   mel_scale="htk", norm=None).
// - log_mel = ln(mel + log_offset): the natural log.
import { WaveFile } from 'wavefile';

/** A decoded WAV: its sample rate and, per channel, samples as floats in [-1, 1]. */
export interface Decoded {
    rate: number;
    channels: Float32Array[];
}

const formats: Record<number, string> = { 2: 'MS ADPCM', 6: 'A-law', 7: 'mu-law', 17: 'IMA ADPCM', 85: 'MP3' };

/** Decodes a WAV file (RIFF or RIFX; PCM 8/16/24/32-bit or float 32/64-bit; any number of channels). Throws why not. */
export function decodeWav(bytes: Uint8Array): Decoded {
    const wav = new WaveFile();
    try {
        wav.fromBuffer(bytes);
    }
    catch (err) {
        const why = (err as Error).message.replace(/\.$/, '');
        throw new Error(`not a WAV file (${why === 'Not a supported format' ? 'no RIFF/WAVE header' : why})`);
    }
    const fmt = wav.fmt as { audioFormat: number; numChannels: number; sampleRate: number; bitsPerSample: number; subformat?: number[] };
    const data = wav.data as { chunkSize: number; samples: Uint8Array };
    // WAVE_FORMAT_EXTENSIBLE names the real format in the first field of its subformat GUID.
    const format = fmt.audioFormat === 0xfffe ? fmt.subformat?.[0] ?? 0 : fmt.audioFormat;
    const bits = fmt.bitsPerSample;
    const channels = fmt.numChannels;
    if (format !== 1 && format !== 3) {
        throw new Error(`unsupported WAV encoding ${formats[format] ?? `(format tag ${format})`}: send PCM or float samples`);
    }
    if (format === 1 ? ![8, 16, 24, 32].includes(bits) : ![32, 64].includes(bits)) {
        throw new Error(`unsupported WAV sample size: ${bits}-bit ${format === 1 ? 'PCM (8, 16, 24 or 32)' : 'float (32 or 64)'}`);
    }
    if (!(channels >= 1)) {
        throw new Error('the WAV header declares no channels');
    }
    if (!(fmt.sampleRate >= 1)) {
        throw new Error('the WAV header declares no sample rate');
    }
    const width = bits / 8;
    const frame = width * channels;
    // A writer that could not seek back (a pipe) leaves the data size at its maximum: take what is there.
    const streamed = data.chunkSize === 0xffffffff;
    if (!streamed && data.samples.length < data.chunkSize) {
        throw new Error(`the WAV file is truncated: its data chunk declares ${data.chunkSize} bytes, ${data.samples.length} are present`);
    }
    const n = Math.floor(data.samples.length / frame);
    const view = new DataView(data.samples.buffer, data.samples.byteOffset, data.samples.byteLength);
    const little = wav.container !== 'RIFX';
    const read: (at: number) => number = format === 3
        ? bits === 32 ? (at) => view.getFloat32(at, little) : (at) => view.getFloat64(at, little)
        : bits === 8 ? (at) => (view.getUint8(at) - 128) / 128
            : bits === 16 ? (at) => view.getInt16(at, little) / 32768
                : bits === 32 ? (at) => view.getInt32(at, little) / 2147483648
                    : (at) => {
                        const [lo, mid, hi] = little ? [at, at + 1, at + 2] : [at + 2, at + 1, at];
                        return ((view.getInt8(hi) << 16) | (view.getUint8(mid) << 8) | view.getUint8(lo)) / 8388608;
                    };
    const out = Array.from({ length: channels }, () => new Float32Array(n));
    for (let i = 0; i < n; i++) {
        for (let c = 0; c < channels; c++) {
            out[c][i] = read(i * frame + c * width);
        }
    }
    return { rate: fmt.sampleRate, channels: out };
}

/** The mean of the channels, sample by sample. */
export function mixdown(channels: Float32Array[]): Float32Array {
    if (channels.length === 1) {
        return channels[0];
    }
    const out = new Float32Array(channels[0].length);
    for (let i = 0; i < out.length; i++) {
        let sum = 0;
        for (const c of channels) {
            sum += c[i];
        }
        out[i] = sum / channels.length;
    }
    return out;
}

const gcd = (a: number, b: number): number => b ? gcd(b, a % b) : a;

/** The modified Bessel function of the first kind, order 0 (its power series). */
function besselI0(x: number): number {
    let sum = 1;
    let term = 1;
    for (let k = 1; k < 50 && term > sum * 1e-12; k++) {
        term *= (x / (2 * k)) ** 2;
        sum += term;
    }
    return sum;
}

const zeroCrossings = 16;
const rolloff = 0.95;
const kaiserBeta = 8.6;

interface Polyphase {
    up: number;
    down: number;
    /** taps per phase */
    taps: number;
    /** the first tap's offset from the output's input sample */
    first: number;
    /** kernels at fractions 0, 1/rows, ..., of an input sample: exact ones (rows = up), or a table to interpolate */
    rows: number;
    exact: boolean;
    /** [rows (+ 1 when interpolated)][taps] */
    coeffs: Float32Array;
}

/** Up to this many output phases, each has its own kernel; beyond (rates with no large common divisor), kernels are
 * interpolated linearly between this many, which bounds memory and set-up time whatever rates a file declares. */
const maxPhases = 1024;
const plans = new Map<string, Polyphase>();

/** The filter bank that takes `from` Hz to `to` Hz: one windowed-sinc kernel per output phase. */
function polyphase(from: number, to: number): Polyphase {
    const key = `${from}:${to}`;
    const cached = plans.get(key);
    if (cached) {
        return cached;
    }
    const g = gcd(from, to);
    const up = to / g;
    const down = from / g;
    const exact = up <= maxPhases;
    const rows = exact ? up : maxPhases;
    // Cutoff in cycles per input sample, relative to the input Nyquist; the kernel spans zeroCrossings of it each way.
    const cutoff = Math.min(1, to / from) * rolloff;
    const half = zeroCrossings / cutoff;
    const first = -Math.floor(half);
    const taps = 2 * Math.floor(half) + 2;
    const coeffs = new Float32Array((exact ? rows : rows + 1) * taps);
    const norm = besselI0(kaiserBeta);
    for (let p = 0; p < coeffs.length / taps; p++) {
        const frac = p / rows;
        for (let j = 0; j < taps; j++) {
            const d = frac - (first + j);
            if (Math.abs(d) >= half) {
                continue;
            }
            const x = cutoff * d;
            const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
            const u = d / half;
            coeffs[p * taps + j] = cutoff * sinc * besselI0(kaiserBeta * Math.sqrt(1 - u * u)) / norm;
        }
    }
    const plan = { up, down, taps, first, rows, exact, coeffs };
    if (plans.size >= 16) {
        plans.delete(plans.keys().next().value as string);
    }
    plans.set(key, plan);
    return plan;
}

/** Resamples from `from` Hz to `to` Hz (band-limited; see the top of this file). */
export function resample(x: Float32Array, from: number, to: number): Float32Array {
    if (from === to) {
        return x;
    }
    const { up, down, taps, first, rows, exact, coeffs } = polyphase(from, to);
    const n = Math.ceil(x.length * up / down);
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
        // Output i lies at input position i * from / to = base + phase / up.
        const pos = i * down;
        const base = Math.floor(pos / up);
        const phase = pos - base * up;
        const start = base + first;
        const lo = Math.max(0, -start);
        const hi = Math.min(taps, x.length - start);
        let sum = 0;
        if (exact) {
            const c = phase * taps;
            for (let j = lo; j < hi; j++) {
                sum += coeffs[c + j] * x[start + j];
            }
        }
        else {
            const at = phase * rows / up;
            const row = Math.floor(at);
            const w = at - row;
            const c0 = row * taps;
            const c1 = c0 + taps;
            for (let j = lo; j < hi; j++) {
                sum += (coeffs[c0 + j] + w * (coeffs[c1 + j] - coeffs[c0 + j])) * x[start + j];
            }
        }
        out[i] = sum;
    }
    return out;
}

/** Pads with zeros at the end, or trims the end, to exactly `length` samples. */
export function fitLength(x: Float32Array, length: number): Float32Array {
    if (x.length === length) {
        return x;
    }
    if (x.length > length) {
        return x.subarray(0, length);
    }
    const out = new Float32Array(length);
    out.set(x);
    return out;
}

/** STFT frames of n samples (see the top of this file). */
export function frameCount(n: number, nFft: number, hop: number): number {
    return n < nFft ? 1 : 1 + Math.floor((n - nFft) / hop);
}

/** The samples that make exactly `frames` frames. */
export function samplesForFrames(frames: number, nFft: number, hop: number): number {
    return (frames - 1) * hop + nFft;
}

/** The periodic Hann window of n points. */
export function hann(n: number): Float64Array {
    return Float64Array.from({ length: n }, (_, i) => 0.5 - 0.5 * Math.cos(2 * Math.PI * i / n));
}

export const hzToMel = (f: number): number => 2595 * Math.log10(1 + f / 700);
export const melToHz = (m: number): number => 700 * (10 ** (m / 2595) - 1);

/** The HTK mel filterbank: nMels rows of nFft / 2 + 1 weights over the power spectrum's bins. */
export function melFilterbank(nMels: number, nFft: number, rate: number): Float64Array[] {
    const bins = Math.floor(nFft / 2) + 1;
    const top = hzToMel(rate / 2);
    const corners = Array.from({ length: nMels + 2 }, (_, i) => melToHz(top * i / (nMels + 1)));
    return Array.from({ length: nMels }, (_, m) => {
        const [lo, mid, hi] = [corners[m], corners[m + 1], corners[m + 2]];
        return Float64Array.from({ length: bins }, (_, k) => {
            const f = k * rate / nFft;
            return Math.max(0, Math.min((f - lo) / (mid - lo), (hi - f) / (hi - mid)));
        });
    });
}

/** In-place iterative radix-2 FFT of a power-of-two length (re, im). */
function fft2(re: Float64Array, im: Float64Array, cos: Float64Array, sin: Float64Array): void {
    const n = re.length;
    for (let i = 1, j = 0; i < n; i++) {
        let bit = n >> 1;
        for (; j & bit; bit >>= 1) {
            j ^= bit;
        }
        j ^= bit;
        if (i < j) {
            [re[i], re[j]] = [re[j], re[i]];
            [im[i], im[j]] = [im[j], im[i]];
        }
    }
    for (let size = 2; size <= n; size <<= 1) {
        const half = size >> 1;
        const step = n / size;
        for (let start = 0; start < n; start += size) {
            for (let k = 0; k < half; k++) {
                const wr = cos[k * step];
                const wi = -sin[k * step];
                const a = start + k;
                const b = a + half;
                const tr = re[b] * wr - im[b] * wi;
                const ti = re[b] * wi + im[b] * wr;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
    }
}

/** The power spectrum |X_k|^2, k = 0 .. n / 2, of real frames of length n (any n: Bluestein's algorithm when not a power of two). */
export class PowerSpectrum {
    readonly bins: number;
    private readonly m: number;
    private readonly cos: Float64Array;
    private readonly sin: Float64Array;
    private readonly re: Float64Array;
    private readonly im: Float64Array;
    /** Bluestein: the chirp and the transform of its conjugate filter */
    private readonly chirp?: { re: Float64Array; im: Float64Array; fre: Float64Array; fim: Float64Array };

    constructor(readonly n: number) {
        this.bins = Math.floor(n / 2) + 1;
        const pow2 = (n & (n - 1)) === 0;
        this.m = pow2 ? n : 2 ** Math.ceil(Math.log2(2 * n - 1));
        this.cos = Float64Array.from({ length: this.m }, (_, k) => Math.cos(2 * Math.PI * k / this.m));
        this.sin = Float64Array.from({ length: this.m }, (_, k) => Math.sin(2 * Math.PI * k / this.m));
        this.re = new Float64Array(this.m);
        this.im = new Float64Array(this.m);
        if (!pow2) {
            // X_k = conj(w_k) * sum_j (x_j conj(w_j)) w_{k-j}, with w_j = exp(i pi j^2 / n).
            const re = new Float64Array(n);
            const im = new Float64Array(n);
            for (let j = 0; j < n; j++) {
                const angle = Math.PI * ((j * j) % (2 * n)) / n;
                re[j] = Math.cos(angle);
                im[j] = Math.sin(angle);
            }
            const fre = new Float64Array(this.m);
            const fim = new Float64Array(this.m);
            for (let j = 0; j < n; j++) {
                fre[j] = re[j];
                fim[j] = im[j];
                if (j > 0) {
                    fre[this.m - j] = re[j];
                    fim[this.m - j] = im[j];
                }
            }
            fft2(fre, fim, this.cos, this.sin);
            this.chirp = { re, im, fre, fim };
        }
    }

    /** |X_k|^2 of one frame (already windowed) into out[0 .. bins). */
    compute(frame: ArrayLike<number>, out: Float64Array): void {
        const { re, im, n, m } = this;
        re.fill(0);
        im.fill(0);
        const c = this.chirp;
        if (!c) {
            for (let j = 0; j < n; j++) {
                re[j] = frame[j];
            }
            fft2(re, im, this.cos, this.sin);
            for (let k = 0; k < this.bins; k++) {
                out[k] = re[k] * re[k] + im[k] * im[k];
            }
            return;
        }
        for (let j = 0; j < n; j++) {
            re[j] = frame[j] * c.re[j];
            im[j] = -frame[j] * c.im[j];
        }
        fft2(re, im, this.cos, this.sin);
        // Multiply by the filter's transform, then an inverse FFT by conjugation.
        for (let k = 0; k < m; k++) {
            const r = re[k] * c.fre[k] - im[k] * c.fim[k];
            const i = re[k] * c.fim[k] + im[k] * c.fre[k];
            re[k] = r;
            im[k] = -i;
        }
        fft2(re, im, this.cos, this.sin);
        // |conj(w_k) * y_k / m|^2 = |y_k|^2 / m^2, as |w_k| = 1.
        for (let k = 0; k < this.bins; k++) {
            out[k] = (re[k] * re[k] + im[k] * im[k]) / (m * m);
        }
    }
}

export interface LogMelOptions {
    rate: number;
    nFft: number;
    hop: number;
    nMels: number;
    logOffset: number;
}

/** A filter of a bank, stored sparsely: its first nonzero bin and its weights from there to its last nonzero one. */
export interface Band {
    from: number;
    weights: Float64Array;
}

/** A filter bank (one row of weights per filter over the spectrum's bins) as bands. A filter narrower than one bin
 * catches none: it stays zero. */
export function bandsOf(filters: Float64Array[]): Band[] {
    return filters.map((w) => {
        const from = w.findIndex((v) => v > 0);
        const to = w.length - [...w].reverse().findIndex((v) => v > 0);
        return from < 0 ? { from: 0, weights: new Float64Array(0) } : { from, weights: w.subarray(from, to) };
    });
}

/** A band's weighted sum of a power spectrum. */
export function bandSum({ from, weights }: Band, power: Float64Array): number {
    let sum = 0;
    for (let k = 0; k < weights.length; k++) {
        sum += weights[k] * power[from + k];
    }
    return sum;
}

interface MelPlan {
    window: Float64Array;
    spectrum: PowerSpectrum;
    /** per mel band, its weights */
    bands: Band[];
}

const melPlans = new Map<string, MelPlan>();

function melPlan({ rate, nFft, nMels }: LogMelOptions): MelPlan {
    const key = `${rate}:${nFft}:${nMels}`;
    let plan = melPlans.get(key);
    if (!plan) {
        plan = { window: hann(nFft), spectrum: new PowerSpectrum(nFft), bands: bandsOf(melFilterbank(nMels, nFft, rate)) };
        if (melPlans.size >= 8) {
            melPlans.delete(melPlans.keys().next().value as string);
        }
        melPlans.set(key, plan);
    }
    return plan;
}

/** The log-mel spectrogram of x: [frames][nMels], row-major, and its frame count. */
export function logMel(x: Float32Array, options: LogMelOptions): { data: Float32Array; frames: number } {
    const { nFft, hop, nMels, logOffset } = options;
    const { window, spectrum, bands } = melPlan(options);
    const frames = frameCount(x.length, nFft, hop);
    const data = new Float32Array(frames * nMels);
    const frame = new Float64Array(nFft);
    const power = new Float64Array(spectrum.bins);
    for (let f = 0; f < frames; f++) {
        const at = f * hop;
        for (let i = 0; i < nFft; i++) {
            frame[i] = at + i < x.length ? x[at + i] * window[i] : 0;
        }
        spectrum.compute(frame, power);
        for (let m = 0; m < nMels; m++) {
            data[f * nMels + m] = Math.log(bandSum(bands[m], power) + logOffset);
        }
    }
    return { data, frames };
}

/** How many input samples resample() reads to make its first `length` outputs: trimming to this first changes nothing. */
export function samplesNeeded(length: number, from: number, to: number): number {
    const cutoff = Math.min(1, to / from) * rolloff;
    return Math.ceil(length * from / to) + Math.floor(zeroCrossings / cutoff) + 2;
}
