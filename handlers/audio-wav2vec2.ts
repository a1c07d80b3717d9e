// The raw waveform, as Hugging Face transformers' Wav2Vec2FeatureExtractor hands it to wav2vec 2.0, HuBERT, WavLM,
// Data2VecAudio and the like, for a model folder whose preprocessor_config.json names feature_extractor_type
// "Wav2Vec2FeatureExtractor":
// - The samples at sampling_rate; with do_normalize, zero mean and unit variance: (x - mean) / sqrt(var + 1e-7), the
//   population variance.
// - Padding (to the longest audio of a batch, or to the model's fixed length) is padding_value. With
//   return_attention_mask the mean and variance are of the audio's own samples and the padding stays padding_value
//   after normalising; without, an audio padded to the model's fixed length is normalised padding and all, as the
//   extractor does. (tsserve pads to a batch's longest after normalising, and only for a model that takes an
//   attention_mask, so the other audios of a batch never change an answer.)
// The model input is input_values [batch, samples], and attention_mask [batch, samples] when the model takes one.
import Joi from 'joi';
import type { Extractor, ExtractorType } from './audio-extractor';

/** What Wav2Vec2FeatureExtractor reads of preprocessor_config.json, and its defaults. */
export const wav2vec2Fields = Joi.object({
    sampling_rate: Joi.number().integer().min(1000).max(384000).default(16000),
    do_normalize: Joi.boolean().default(true),
    padding_value: Joi.number().default(0),
    return_attention_mask: Joi.boolean().default(false)
}).unknown(true);

/** Wav2Vec2's settings, as read from preprocessor_config.json (see wav2vec2Fields). */
export interface Wav2Vec2Settings {
    normalize: boolean;
    paddingValue: number;
    /** return_attention_mask: normalise over the audio's own samples only */
    masked: boolean;
}

/** One audio's input values: x, its first `real` samples its own and the rest padding (to a fixed length). */
export function wav2vec2Values(x: Float32Array, real: number, s: Wav2Vec2Settings): Float32Array {
    const v = Float64Array.from(x);
    v.fill(s.paddingValue, real);
    if (s.normalize) {
        const n = s.masked ? real : v.length;
        let mean = 0;
        for (let i = 0; i < n; i++) {
            mean += v[i];
        }
        mean /= n;
        let variance = 0;
        for (let i = 0; i < n; i++) {
            variance += (v[i] - mean) ** 2;
        }
        const scale = 1 / Math.sqrt(variance / n + 1e-7);
        for (let i = 0; i < v.length; i++) {
            v[i] = i >= n ? s.paddingValue : (v[i] - mean) * scale;
        }
    }
    return Float32Array.from(v);
}

/** feature_extractor_type "Wav2Vec2FeatureExtractor". */
export const wav2vec2Extractor: ExtractorType = {
    fields: wav2vec2Fields,
    make(c): Extractor {
        const s: Wav2Vec2Settings = { normalize: c.do_normalize, paddingValue: c.padding_value, masked: c.return_attention_mask };
        return {
            rate: c.sampling_rate, kind: 'waveform', padValue: s.paddingValue,
            extract: (x, real) => ({ steps: x.length, real, data: wav2vec2Values(x, real, s) })
        };
    }
};
