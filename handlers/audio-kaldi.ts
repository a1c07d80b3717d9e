// Kaldi-style filter bank features (torchaudio.compliance.kaldi.fbank), and the Audio Spectrogram Transformer's
// extractor built on them (Hugging Face transformers' ASTFeatureExtractor), for a model folder whose
// preprocessor_config.json names feature_extractor_type "ASTFeatureExtractor".
//
// fbank, with the settings ASTFeatureExtractor calls it with (torchaudio's defaults but window_type "hanning"):
// - Frames of 25 ms every 10 ms (int(rate * 25 * 0.001) and int(rate * 10 * 0.001) samples), only those that fit in
//   the audio (snip_edges): 1 + floor((n - size) / shift) frames, none when the audio is shorter than one. No dither.
// - Per frame: its mean removed (remove_dc_offset), pre-emphasis x[i] - 0.97 x[i - 1] (x[0] - 0.97 x[0] first), the
//   symmetric Hann window 0.5 - 0.5 cos(2 pi i / (size - 1)), zero-padded to the next power of two, power spectrum.
// - num_mel_bins triangles on Kaldi's mel scale, 1127 ln(1 + f / 700), from 20 Hz to the Nyquist frequency, evenly
//   spaced and triangular in mel, unit peaks; the Nyquist bin weighs 0. No energy column.
// - The natural log of max(mel energy, float32 epsilon 2^-23).
// AST then pads the frames with zeros, or trims them, to max_length, and normalises (do_normalize) every value,
// padding included, to (x - mean) / (2 std). The model input is input_values [batch, max_length, num_mel_bins].
import Joi from 'joi';
import { bandSum, bandsOf, PowerSpectrum } from './audio-dsp';
import type { Extractor, ExtractorType } from './audio-extractor';

/** Kaldi's mel scale. */
export const kaldiMel = (f: number): number => 1127 * Math.log(1 + f / 700);

/** Kaldi's filter bank (torchaudio's get_mel_banks, vtln off) from 20 Hz to the Nyquist frequency over the power
 * spectrum of a `padded`-point FFT: numBins rows of padded / 2 + 1 weights, the last (Nyquist) 0. */
export function kaldiMelBanks(numBins: number, padded: number, rate: number): Float64Array[] {
    const [lo, hi] = [kaldiMel(20), kaldiMel(rate / 2)];
    const delta = (hi - lo) / (numBins + 1);
    return Array.from({ length: numBins }, (_, b) => {
        const [left, center, right] = [lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta];
        return Float64Array.from({ length: padded / 2 + 1 }, (_, k) => {
            const mel = kaldiMel(rate / padded * k);
            return k === padded / 2 ? 0 : Math.max(0, Math.min((mel - left) / (center - left), (right - mel) / (right - center)));
        });
    });
}

/** float32's epsilon, Kaldi's floor under the mel energies. */
const epsilon = 2 ** -23;

/** Frame size and shift in samples at a rate, as torchaudio rounds them. */
export const kaldiFrame = (rate: number): { size: number; shift: number } => ({ size: Math.trunc(rate * 25 * 0.001), shift: Math.trunc(rate * 10 * 0.001) });

/** Log mel filter bank energies of one audio: [frames][numBins], frame by frame. */
export type Fbank = (x: Float32Array) => { data: Float64Array; frames: number };

/** Kaldi's fbank (the settings above), set up once for a rate and a number of bins. */
export function kaldiFbank(rate: number, numBins: number): Fbank {
    const { size, shift } = kaldiFrame(rate);
    const padded = 2 ** Math.ceil(Math.log2(size));
    const bands = bandsOf(kaldiMelBanks(numBins, padded, rate));
    const window = Float64Array.from({ length: size }, (_, i) => 0.5 - 0.5 * Math.cos(2 * Math.PI * i / (size - 1)));
    const spectrum = new PowerSpectrum(padded);
    return (x) => {
        const frames = x.length < size ? 0 : 1 + Math.floor((x.length - size) / shift);
        const data = new Float64Array(frames * numBins);
        const frame = new Float64Array(padded);
        const power = new Float64Array(spectrum.bins);
        for (let f = 0; f < frames; f++) {
            const at = f * shift;
            let mean = 0;
            for (let i = 0; i < size; i++) {
                mean += x[at + i];
            }
            mean /= size;
            // DC offset removed, pre-emphasis (the first sample against itself), window.
            for (let i = 0; i < size; i++) {
                const v = x[at + i] - mean;
                const before = i > 0 ? x[at + i - 1] - mean : v;
                frame[i] = (v - 0.97 * before) * window[i];
            }
            spectrum.compute(frame, power);
            for (let b = 0; b < numBins; b++) {
                data[f * numBins + b] = Math.log(Math.max(bandSum(bands[b], power), epsilon));
            }
        }
        return { data, frames };
    };
}

/** What ASTFeatureExtractor reads of preprocessor_config.json, and its defaults. */
export const astFields = Joi.object({
    sampling_rate: Joi.number().integer().min(1000).max(384000).default(16000),
    num_mel_bins: Joi.number().integer().min(4).max(512).default(128),
    max_length: Joi.number().integer().min(1).max(100000).default(1024),
    do_normalize: Joi.boolean().default(true),
    mean: Joi.number().default(-4.2677393),
    std: Joi.number().greater(0).default(4.5689974)
}).unknown(true);

/** AST's input for one audio: fbank frames padded with zeros or trimmed to maxLength, normalised; [maxLength][numBins]. */
export function astFeatures(fbank: Fbank, numBins: number, maxLength: number, normalize: { mean: number; std: number } | undefined): (x: Float32Array) => { data: Float32Array; real: number } {
    return (x) => {
        const { data: fb, frames } = fbank(x);
        const real = Math.min(frames, maxLength);
        const values = new Float64Array(maxLength * numBins);
        values.set(fb.subarray(0, real * numBins));
        const data = normalize ? Float32Array.from(values, (v) => (v - normalize.mean) / (normalize.std * 2)) : Float32Array.from(values);
        return { data, real };
    };
}

/** feature_extractor_type "ASTFeatureExtractor". */
export const astExtractor: ExtractorType = {
    fields: astFields,
    make(c): Extractor {
        const { size, shift } = kaldiFrame(c.sampling_rate);
        const features = astFeatures(kaldiFbank(c.sampling_rate, c.num_mel_bins), c.num_mel_bins, c.max_length, c.do_normalize ? { mean: c.mean, std: c.std } : undefined);
        return {
            rate: c.sampling_rate, kind: 'frames', width: c.num_mel_bins, steps: c.max_length, widthFirst: false,
            // Samples past the last frame max_length allows change nothing.
            limit: (c.max_length - 1) * shift + size,
            extract(x) {
                const { data, real } = features(x);
                return { steps: c.max_length, real, data };
            }
        };
    }
};
