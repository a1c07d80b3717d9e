// What a feature extractor is to the audio handler: the type a model folder's preprocessor_config.json names in
// `feature_extractor_type` (Hugging Face's WhisperFeatureExtractor, ASTFeatureExtractor, Wav2Vec2FeatureExtractor),
// set up from that file's fields, turns one audio (mono samples at its rate) into the model input's row. The handler
// (audio.ts) decodes, resamples, batches and fits the rows to the model's input; each extractor's file holds its
// signal processing and the fields it reads.
import type Joi from 'joi';

/** One audio's features: `steps` frames (or samples) of `width` values each, frame by frame; the first `real` steps
 * are the audio's own, the rest padding (what an attention_mask marks 0). */
export interface Row {
    steps: number;
    real: number;
    data: Float32Array;
}

interface Common {
    /** the rate, in Hz, it takes audio at: audio is resampled to it */
    rate: number;
    /** One audio's features: its samples at `rate`, the first `real` of them its own (the rest, when there are more,
     * zeros that fit it to the model's fixed length). */
    extract(x: Float32Array, real: number): Row;
}

/** An extractor of the samples themselves: model input [batch, samples]; audio of any length. */
export interface WaveformExtractor extends Common {
    kind: 'waveform';
    /** the value that pads a shorter audio of a batch */
    padValue: number;
}

/** An extractor of frames: model input [batch, steps, width] or [batch, width, steps]; every audio makes `steps`. */
export interface FramesExtractor extends Common {
    kind: 'frames';
    /** values per frame */
    width: number;
    /** the frames every audio makes (the extractor pads or trims to them) */
    steps: number;
    /** the layout its models take when the input's dims do not tell: [batch, width, steps] */
    widthFirst: boolean;
    /** the most samples it reads of an audio: the rest is trimmed before resampling */
    limit: number;
}

/** An extractor set up from a preprocessor_config.json. */
export type Extractor = WaveformExtractor | FramesExtractor;

/** A feature_extractor_type: the preprocessor_config.json fields it reads (a schema with their defaults, unknown keys
 * allowed) and the extractor they make. */
export interface ExtractorType {
    fields: Joi.ObjectSchema;
    /** throws (a plain Error) what in the fields cannot work */
    make(fields: Record<string, any>): Extractor;
}
