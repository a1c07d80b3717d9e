// Whisper's features, as Hugging Face transformers' WhisperFeatureExtractor computes them, for a model folder whose
// preprocessor_config.json names feature_extractor_type "WhisperFeatureExtractor":
// - The audio is padded with padding_value, or trimmed, to chunk_length seconds (chunk_length * sampling_rate samples).
// - A centred STFT: n_fft // 2 samples of reflect padding at each end (numpy's "reflect", the edge not repeated), frames
//   of n_fft samples every hop_length, the periodic Hann window, the power spectrum |X_k|^2; the last frame is dropped,
//   which leaves chunk_length * sampling_rate / hop_length frames (3000 for 30 s at 16 kHz, hop 160).
// - feature_size mel bands (80, or 128 for large-v3) on the Slaney scale (linear below 1 kHz, logarithmic above), from
//   0 to 8000 Hz, each triangle scaled by 2 / its width in Hz (Slaney's "constant energy per channel"; librosa's
//   default filters, which OpenAI's Whisper ships).
// - log10 of max(mel, 1e-10); clamped to at least the audio's maximum minus 8; then (x + 4) / 4.
// The model input is input_features [batch, feature_size, frames]. The attention mask, when the model takes one, is the
// sample mask taken every hop_length samples: ceil(audio samples / hop_length) frames are the audio's own. A `dither`
// field (random noise added before the STFT; 0, none, by default) is not applied: the features are deterministic.
import Joi from 'joi';
import { bandSum, bandsOf, hann, PowerSpectrum, type Band } from './audio-dsp';
import type { Extractor, ExtractorType } from './audio-extractor';

const minLogHz = 1000;
const minLogMel = 15;
const logStep = Math.log(6.4) / 27;

/** The Slaney mel scale: 3 mels per 200 Hz up to 1 kHz (15 mels), then logarithmic, 27 mels per factor 6.4. */
export const slaneyMel = (f: number): number => f >= minLogHz ? minLogMel + Math.log(f / minLogHz) / logStep : 3 * f / 200;
export const slaneyHz = (m: number): number => m >= minLogMel ? minLogHz * Math.exp(logStep * (m - minLogMel)) : 200 * m / 3;

/** The Slaney mel filter bank (norm "slaney"): nMels rows of nFft / 2 + 1 weights, corners evenly spaced in Slaney
 * mels from fMin to fMax, bins at k * floor(rate / 2) / (nFft / 2) Hz (transformers' mel_filter_bank, librosa's mel). */
export function slaneyFilterbank(nMels: number, nFft: number, rate: number, fMin: number, fMax: number): Float64Array[] {
    const bins = Math.floor(nFft / 2) + 1;
    const [lo, hi] = [slaneyMel(fMin), slaneyMel(fMax)];
    const corners = Array.from({ length: nMels + 2 }, (_, i) => slaneyHz(lo + (hi - lo) * i / (nMels + 1)));
    return Array.from({ length: nMels }, (_, m) => {
        const [left, mid, right] = [corners[m], corners[m + 1], corners[m + 2]];
        const norm = 2 / (right - left);
        return Float64Array.from({ length: bins }, (_, k) => {
            const f = k * Math.floor(rate / 2) / (bins - 1);
            return norm * Math.max(0, Math.min((f - left) / (mid - left), (right - f) / (right - mid)));
        });
    });
}

/** What WhisperFeatureExtractor reads of preprocessor_config.json, and its defaults. */
export const whisperFields = Joi.object({
    feature_size: Joi.number().integer().min(1).max(512).default(80),
    sampling_rate: Joi.number().integer().min(1000).max(384000).default(16000),
    hop_length: Joi.number().integer().min(1).max(65536).default(160),
    chunk_length: Joi.number().greater(0).max(3600).default(30),
    n_fft: Joi.number().integer().min(2).max(65536).default(400),
    padding_value: Joi.number().default(0)
}).unknown(true);

/** Whisper's settings, as read from preprocessor_config.json (see whisperFields). */
export interface WhisperSettings {
    featureSize: number;
    rate: number;
    hop: number;
    nFft: number;
    /** chunk_length * sampling_rate */
    samples: number;
    paddingValue: number;
}

/** Whisper's log-mel features of one audio: [frames][featureSize], frame by frame. */
export type WhisperFeatures = (x: Float32Array) => { data: Float32Array; frames: number };

/** The frames of a padded chunk: those of the centred STFT, less the last. */
export const whisperFrames = (s: WhisperSettings): number => Math.floor((s.samples + 2 * Math.floor(s.nFft / 2) - s.nFft) / s.hop);

/** Whisper's features, set up once for its settings (the filter bank, the window, the FFT). */
export function whisperFeatures(s: WhisperSettings): WhisperFeatures {
    const { featureSize, hop, nFft, samples: n, paddingValue } = s;
    const half = Math.floor(nFft / 2);
    const frames = whisperFrames(s);
    const bands: Band[] = bandsOf(slaneyFilterbank(featureSize, nFft, s.rate, 0, 8000));
    const window = hann(nFft);
    const spectrum = new PowerSpectrum(nFft);
    return (x) => {
        const real = Math.min(x.length, n);
        // The chunk, reflect-padded: p[half + i] is sample i.
        const p = new Float64Array(n + 2 * half).fill(paddingValue);
        for (let i = 0; i < real; i++) {
            p[half + i] = x[i];
        }
        for (let j = 1; j <= half; j++) {
            p[half - j] = p[half + j];
            p[half + n - 1 + j] = p[half + n - 1 - j];
        }
        // Frames that start past the audio, when the end's reflection is of padding too, are all alike: one is computed.
        const alike = real <= n - 1 - half ? half + real : Infinity;
        let padded: Float64Array | undefined;
        const logs = new Float64Array(frames * featureSize);
        const frame = new Float64Array(nFft);
        const power = new Float64Array(spectrum.bins);
        let max = -Infinity;
        for (let f = 0; f < frames; f++) {
            const at = f * hop;
            let row = at >= alike ? padded : undefined;
            if (!row) {
                for (let i = 0; i < nFft; i++) {
                    frame[i] = p[at + i] * window[i];
                }
                spectrum.compute(frame, power);
                row = Float64Array.from(bands, (b) => Math.log10(Math.max(1e-10, bandSum(b, power))));
                if (at >= alike) {
                    padded = row;
                }
            }
            logs.set(row, f * featureSize);
            for (const v of row) {
                max = Math.max(max, v);
            }
        }
        const data = new Float32Array(logs.length);
        for (let i = 0; i < logs.length; i++) {
            data[i] = (Math.max(logs[i], max - 8) + 4) / 4;
        }
        return { data, frames };
    };
}

/** feature_extractor_type "WhisperFeatureExtractor". */
export const whisperExtractor: ExtractorType = {
    fields: whisperFields,
    make(c): Extractor {
        const s: WhisperSettings = {
            featureSize: c.feature_size, rate: c.sampling_rate, hop: c.hop_length, nFft: c.n_fft,
            samples: Math.round(c.chunk_length * c.sampling_rate), paddingValue: c.padding_value
        };
        const frames = whisperFrames(s);
        if (!(frames >= 1 && s.samples > Math.floor(s.nFft / 2))) {
            throw new Error(`chunk_length ${c.chunk_length} s at ${s.rate} Hz makes ${s.samples} samples: too few for n_fft ${s.nFft} and hop_length ${s.hop}`);
        }
        const features = whisperFeatures(s);
        return {
            rate: s.rate, kind: 'frames', width: s.featureSize, steps: frames, widthFirst: true, limit: s.samples,
            extract(x) {
                const { data } = features(x);
                return { steps: frames, real: Math.min(frames, Math.ceil(x.length / s.hop)), data };
            }
        };
    }
};
