// Options of the audio handler (`options:` of a deployment with `handler: audio`). Settings given here win; what
// serve.yaml leaves out comes from the model folder's preprocessor_config.json (same names; feature_size > 1 stands
// for n_mels), then from the model's input shape, then from `fallbacks` below. That is tsserve's own feature extractor
// (tsserve.LogMel); when preprocessor_config.json names one of Hugging Face's (WhisperFeatureExtractor, ...), that file
// alone sets the features, and sampling_rate, length_s, features, n_fft, hop_length, n_mels and log_offset are refused.
import Joi from 'joi';
import { labels, topK, type ClassifyOptions } from './classify';

/** What neither serve.yaml nor preprocessor_config.json nor the model's input shape says. */
export const fallbacks = {
    sampling_rate: 16000,
    n_fft: 400,
    hop_length: 160,
    n_mels: 64,
    log_offset: 1e-6
} as const;

export const audio = Joi.object({
    task: Joi.string().valid('classification', 'raw').default('classification')
        .description('classification: top-k labels from the model\'s logits; raw: every output as nested arrays, per audio'),
    sampling_rate: Joi.number().integer().min(1000).max(384000)
        .description(`the model's rate in Hz; audio is resampled to it. Default: preprocessor_config.json, else ${fallbacks.sampling_rate}`),
    length_s: Joi.number().min(0.001).max(3600)
        .description('pad with silence or trim to this length; default: preprocessor_config.json, else the model\'s fixed input size, else variable length'),
    max_length_s: Joi.number().min(0.001).max(36000).default(600)
        .description('longest audio taken when the length is variable; longer audio is refused with 400'),
    features: Joi.string().valid('waveform', 'log_mel')
        .description('waveform: samples, model input [batch, samples]; log_mel: log-mel frames, model input [batch, frames, n_mels] '
            + 'or [batch, n_mels, frames]. Default: preprocessor_config.json, else read from the model input\'s rank (2 or 3)'),
    n_fft: Joi.number().integer().min(8).max(65536)
        .description(`log_mel: FFT size and frame length in samples (periodic Hann window). Default: preprocessor_config.json, else ${fallbacks.n_fft}`),
    hop_length: Joi.number().integer().min(1).max(65536)
        .description(`log_mel: samples between frames. Default: preprocessor_config.json, else ${fallbacks.hop_length}`),
    n_mels: Joi.number().integer().min(1).max(512)
        .description(`log_mel: mel bands (HTK mel scale, 0 Hz to half the rate). Default: preprocessor_config.json, else the model's input shape, else ${fallbacks.n_mels}`),
    log_offset: Joi.number().min(0)
        .description(`log_mel: features are ln(mel power + log_offset). Default: preprocessor_config.json, else ${fallbacks.log_offset}`),
    output: Joi.string().description('classification: the model output holding the logits; default: "logits" when there is one, else the first output'),
    top_k: topK,
    labels
});

export interface AudioOptions extends ClassifyOptions {
    task: 'classification' | 'raw';
    sampling_rate?: number;
    length_s?: number;
    max_length_s: number;
    features?: 'waveform' | 'log_mel';
    n_fft?: number;
    hop_length?: number;
    n_mels?: number;
    log_offset?: number;
    output?: string;
}
