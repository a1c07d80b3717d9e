// The audio handler: WAV files in (raw body, multipart files or base64 in JSON), mixed down to mono, resampled to the
// model's rate, padded or trimmed, turned into the model's features, and classified (top-k labels) or returned raw.
//
// The features are those of the extractor the model folder's preprocessor_config.json names in
// `feature_extractor_type`: Hugging Face's WhisperFeatureExtractor (audio-whisper.ts), ASTFeatureExtractor
// (audio-kaldi.ts) or Wav2Vec2FeatureExtractor (audio-wav2vec2.ts), each set by that file's own fields; or tsserve's
// own, tsserve.LogMel, also taken when the file names none: the waveform or a log-mel spectrogram (audio-dsp.ts,
// shared with the example model's training script) as the options and the model's input shape say. Any other type is
// an error that names it: the model does not load.
//
// Batching: audio of a fixed length (length_s, a model input of fixed size, Whisper's chunk_length, AST's max_length)
// batches freely. Variable-length audio batches freely too when the model takes an `attention_mask` (rows are padded
// to the batch's longest and the mask says which steps are real); without one, padding would change the answers, so
// each request runs in a batch of its own and the audios of one request must have the same length.
import Joi from 'joi';
import { WaveFile } from 'wavefile';
import { fail } from '../lib/errors';
import { dtype } from '../lib/tensor';
import { audio as audioSchema, fallbacks, type AudioOptions } from '../schemas/audio';
import { classificationSchema, classifications, outputOf } from './classify';
import { checkCap, perRequest, perRequestSchema, rawAnswers, rawSchema } from './items';
import { decodeWav, fitLength, frameCount, logMel, mixdown, resample, samplesForFrames, samplesNeeded } from './audio-dsp';
import type { Extractor, ExtractorType, Row } from './audio-extractor';
import { whisperExtractor } from './audio-whisper';
import { astExtractor } from './audio-kaldi';
import { wav2vec2Extractor } from './audio-wav2vec2';
import type { Feeds } from '../lib/tensor';
import { fixedBatch, type Signature, type TensorInfo } from '../lib/signature';
import type { Handler, HandlerContext, HandlerFactory, RequestIn } from '../lib/handler';
import { base64Text, binary, collect, fileBodies } from './media';

/** One audio as the front received it: WAV bytes, or the base64 text of a JSON body (decoded in the replica). */
type Audio = Uint8Array | string;

interface Item {
    audios: Audio[];
    /** the request sent a list (audios: [...], several files): the answer is {results: [...]} */
    list: boolean;
}

/** tsserve's own feature extractor: the options (and preprocessor_config.json's fields of the same names) set it. */
const ownType = 'tsserve.LogMel';

/** The feature_extractor_type values of Hugging Face's that the handler applies, by name. */
const extractorTypes: Record<string, ExtractorType> = {
    WhisperFeatureExtractor: whisperExtractor,
    ASTFeatureExtractor: astExtractor,
    Wav2Vec2FeatureExtractor: wav2vec2Extractor
};

/** The options that set tsserve.LogMel: another extractor reads its settings from preprocessor_config.json alone. */
const ownOptions = ['sampling_rate', 'length_s', 'features', 'n_fft', 'hop_length', 'n_mels', 'log_offset'] as const;

/** The handler's options, and the extractor preprocessor_config.json names (none: tsserve.LogMel). */
interface Setup {
    options: AudioOptions;
    extractor?: { type: string; made: Extractor };
}

/** How this deployment turns audio into the model's feeds, from its options and extractor and the model's signature. */
interface Layout {
    options: AudioOptions;
    rate: number;
    input: TensorInfo;
    mask?: TensorInfo;
    /** samples every audio is padded (with zeros) or trimmed to; undefined: its own length */
    length?: number;
    /** samples an audio is trimmed to but not padded to: all its extractor reads */
    limit?: number;
    /** every audio makes as many steps: audios batch freely */
    fixed: boolean;
    /** values per step: the input is [batch, steps] when it is the waveform, else [batch, steps, width] */
    width: number;
    unit: 'samples' | 'frames';
    /** input [batch, width, steps] rather than [batch, steps, width] */
    melsFirst: boolean;
    /** the value that pads a batch's shorter rows */
    padValue: number;
    /** one audio's row of features (see Extractor.extract) */
    extract(x: Float32Array, real: number): Row;
}

/** Media types taken as a raw WAV body. */
const wavTypes = new Set(['audio/wav', 'audio/x-wav', 'audio/wave', 'audio/vnd.wave', 'application/octet-stream']);
const minRate = 1000;
const maxRate = 384000;

const showDims = (dims: ReadonlyArray<number | string>): string => `[${dims.join(', ')}]`;
const fixed = (d: number | string | undefined): number | undefined => typeof d === 'number' && d > 0 ? d : undefined;

/** The extractor preprocessor_config.json names, set up from its fields; and the options. Throws what does not fit. */
function resolve(ctx: HandlerContext): Setup {
    const pre = ctx.model.preprocessor ?? {};
    const type = pre.feature_extractor_type;
    if (type === undefined || type === ownType) {
        return { options: resolveOptions(ctx) };
    }
    const where = `preprocessor_config.json of ${ctx.model.dir}`;
    const known = Object.hasOwn(extractorTypes, type as string) ? extractorTypes[type as string] : undefined;
    if (!known) {
        throw new Error(`${where}: feature_extractor_type ${JSON.stringify(type)} is not one the audio handler applies (it applies ${[ownType, ...Object.keys(extractorTypes)].join(', ')})`);
    }
    const options = ctx.options as unknown as AudioOptions;
    const own = ownOptions.filter((k) => options[k] !== undefined);
    if (own.length) {
        throw new Error(`options ${own.join(', ')} set tsserve.LogMel's features; ${type} (${where}) takes its settings from that file`);
    }
    const { error, value } = known.fields.validate(pre);
    if (error) {
        throw new Error(`${where} (${type}): ${error.message}`);
    }
    try {
        return { options, extractor: { type: type as string, made: known.make(value) } };
    }
    catch (err) {
        throw new Error(`${where} (${type}): ${(err as Error).message}`);
    }
}

/** serve.yaml's options over preprocessor_config.json's (same names; feature_size > 1 is n_mels), checked by the schema. */
function resolveOptions(ctx: HandlerContext): AudioOptions {
    const pre = ctx.model.preprocessor ?? {};
    const fromPre: Record<string, unknown> = {};
    for (const key of ['sampling_rate', 'length_s', 'features', 'n_fft', 'hop_length', 'n_mels', 'log_offset']) {
        if (pre[key] !== undefined) {
            fromPre[key] = pre[key];
        }
    }
    if (fromPre.n_mels === undefined && typeof pre.feature_size === 'number' && pre.feature_size > 1) {
        fromPre.n_mels = pre.feature_size;
    }
    const { error, value } = audioSchema.validate({ ...fromPre, ...ctx.options });
    if (error) {
        throw new Error(`preprocessor_config.json of ${ctx.model.dir}: ${error.message}`);
    }
    return value as AudioOptions;
}

/** A Hugging Face extractor's features fitted to the model's input: the dims must agree with what its fields say. */
function extractorLayout(options: AudioOptions, { type, made: ex }: NonNullable<Setup['extractor']>, input: TensorInfo, mask: TensorInfo | undefined): Layout {
    const base = { options, rate: ex.rate, input, mask, extract: ex.extract };
    if (ex.kind === 'waveform') {
        if (input.dims.length !== 2) {
            throw new Error(`${type} feeds input "${input.name}" as [batch, samples], but the model takes ${showDims(input.dims)}`);
        }
        const length = fixed(input.dims[1]);
        return { ...base, length, fixed: length !== undefined, width: 1, unit: 'samples', melsFirst: false, padValue: ex.padValue };
    }
    // The dim that equals the width holds it; when neither does, or both, the layout is the extractor's own.
    const [, a, b] = input.dims;
    const widthFirst = fixed(a) === ex.width && fixed(b) !== ex.width ? true
        : fixed(b) === ex.width && fixed(a) !== ex.width ? false : ex.widthFirst;
    const [w, s] = widthFirst ? [a, b] : [b, a];
    if (input.dims.length !== 3 || (fixed(w) ?? ex.width) !== ex.width || (fixed(s) ?? ex.steps) !== ex.steps) {
        const makes = widthFirst ? [ex.width, ex.steps] : [ex.steps, ex.width];
        throw new Error(`${type} makes features [batch, ${makes.join(', ')}] (as its preprocessor_config.json says), but input "${input.name}" is ${showDims(input.dims)}`);
    }
    return { ...base, limit: ex.limit, fixed: true, width: ex.width, unit: 'frames', melsFirst: widthFirst, padValue: 0 };
}

function layout({ options, extractor }: Setup, sig: Signature): Layout {
    const input = sig.inputs.find((i) => i.name !== 'attention_mask');
    const mask = sig.inputs.find((i) => i.name === 'attention_mask');
    const names = sig.inputs.map((i) => `"${i.name}" ${showDims(i.dims)}`).join(', ');
    if (!input || sig.inputs.length > (mask ? 2 : 1)) {
        throw new Error(`the audio handler feeds one audio input (and attention_mask, when the model has one); this model takes ${names}`);
    }
    if (input.type !== 'float32') {
        throw new Error(`the audio handler feeds float32 audio, but input "${input.name}" is ${input.type}`);
    }
    if (mask && mask.dims.length !== 2) {
        throw new Error(`attention_mask must be [batch, steps]; this model's is ${showDims(mask.dims)}`);
    }
    if (extractor) {
        return extractorLayout(options, extractor, input, mask);
    }
    const features = options.features ?? (input.dims.length === 3 ? 'log_mel' : 'waveform');
    const rate = options.sampling_rate ?? fallbacks.sampling_rate;
    const nFft = options.n_fft ?? fallbacks.n_fft;
    const hop = options.hop_length ?? fallbacks.hop_length;
    let melsFirst = false;
    let nMels = options.n_mels ?? fallbacks.n_mels;
    let steps = input.dims[1];
    if (features === 'waveform' && input.dims.length !== 2) {
        throw new Error(`features: waveform feeds input "${input.name}" as [batch, samples], but the model takes ${showDims(input.dims)}`);
    }
    if (features === 'log_mel') {
        if (input.dims.length !== 3) {
            throw new Error(`features: log_mel feeds input "${input.name}" as [batch, frames, n_mels] or [batch, n_mels, frames], but the model takes ${showDims(input.dims)}`);
        }
        const [, a, b] = input.dims;
        // Which dim holds the mel bands: the one equal to n_mels; n_mels unset, the fixed one (the smaller when both are).
        const [fa, fb] = [fixed(a), fixed(b)];
        melsFirst = options.n_mels !== undefined ? b !== options.n_mels && a === options.n_mels
            : fa !== undefined && (fb === undefined || fa < fb);
        const mels = melsFirst ? a : b;
        steps = melsFirst ? b : a;
        nMels = options.n_mels ?? fixed(mels) ?? nMels;
        if (fixed(mels) !== undefined && mels !== nMels) {
            throw new Error(`input "${input.name}" ${showDims(input.dims)} takes ${mels} mel bands, but n_mels is ${nMels}`);
        }
    }
    // The length the model's fixed input size implies, and the one options ask for: they must agree.
    const fixedSteps = fixed(steps);
    const modelLength = fixedSteps === undefined ? undefined : features === 'log_mel' ? samplesForFrames(fixedSteps, nFft, hop) : fixedSteps;
    const asked = options.length_s === undefined ? undefined : Math.max(1, Math.round(options.length_s * rate));
    if (asked !== undefined && fixedSteps !== undefined && (features === 'log_mel' ? frameCount(asked, nFft, hop) : asked) !== fixedSteps) {
        throw new Error(`length_s: ${options.length_s} makes ${asked} samples at ${rate} Hz, but input "${input.name}" ${showDims(input.dims)} takes ${fixedSteps} ${features === 'log_mel' ? 'frames' : 'samples'}`);
    }
    const length = asked ?? modelLength;
    const base = { options, rate, input, mask, length, fixed: length !== undefined, melsFirst, padValue: 0 };
    if (features === 'waveform') {
        return { ...base, width: 1, unit: 'samples', extract: (x, real) => ({ steps: x.length, real, data: x }) };
    }
    const mel = { rate, nFft, hop, nMels, logOffset: options.log_offset ?? fallbacks.log_offset };
    return {
        ...base, width: nMels, unit: 'frames',
        extract: (x, real) => {
            const { data, frames } = logMel(x, mel);
            return { steps: frames, real: Math.min(frames, frameCount(real, nFft, hop)), data };
        }
    };
}

const base64Wav = 'a WAV file encoded as a non-empty base64 string';
const noFetch = 'the audio handler does not fetch URLs: send the WAV file itself, base64-encoded';

/** One audio of a JSON body: its base64 text, decoded in the replica. */
function fromJson(value: unknown, name: string): string {
    const text = base64Text(value, `"${name}"`, base64Wav, noFetch);
    if (!text) {
        throw fail('INVALID_BODY', `"${name}" must be ${base64Wav}`);
    }
    return text;
}

function itemOf(req: RequestIn): Item {
    const { items, list } = collect<Audio>(req, {
        raw: (type) => wavTypes.has(type),
        fromRaw: (bytes) => {
            if (!bytes.length) {
                throw fail('INVALID_BODY', 'the body is empty: send the bytes of a WAV file');
            }
            return bytes;
        },
        fromFile: (bytes) => bytes,
        one: 'audio',
        many: 'audios',
        fromJson: (value, i) => fromJson(value, i === undefined ? 'audio' : `audios[${i}]`),
        noFile: 'the multipart body holds no file: send each WAV file as a file part',
        jsonShape: 'the body must be {"audio": "<base64 WAV>"} or {"audios": ["<base64 WAV>", ...]}',
        notList: '"audios" must be a non-empty array of base64 WAV files',
        unsupported: (type) => type.startsWith('audio/') ? `the audio handler decodes WAV only (audio/wav), not ${type}`
            : `the audio handler takes audio/wav, multipart/form-data or application/json, not ${type || 'a body without a content type'}`
    });
    return { audios: items, list };
}

/** One audio to the model's rate and length: mono samples, and how many of them are the audio's own (not padding).
 * Throws (a plain Error) what is wrong with it. */
function samplesOf(audio: Audio, l: Layout): { x: Float32Array; real: number } {
    let bytes: Uint8Array;
    if (typeof audio === 'string') {
        if (/[^A-Za-z0-9+/=_\s-]/.test(audio)) {
            throw new Error('not valid base64');
        }
        bytes = Buffer.from(audio, 'base64');
    }
    else {
        bytes = audio;
    }
    const { rate, channels } = decodeWav(bytes);
    if (rate < minRate || rate > maxRate) {
        throw new Error(`its sample rate, ${rate} Hz, is outside ${minRate} to ${maxRate} Hz`);
    }
    let x = mixdown(channels);
    if (!x.length) {
        throw new Error('the WAV file holds no samples');
    }
    const keep = l.length ?? l.limit;
    if (keep !== undefined) {
        // Only what the kept length needs is resampled; a limit trims, a length pads too.
        const real = Math.min(keep, Math.ceil(x.length * l.rate / rate));
        const y = resample(x.subarray(0, samplesNeeded(keep, rate, l.rate)), rate, l.rate);
        return { x: l.length === undefined ? y.subarray(0, real) : fitLength(y, l.length), real };
    }
    if (x.length / rate > l.options.max_length_s) {
        throw new Error(`it lasts ${(x.length / rate).toFixed(1)} s; this deployment takes at most ${l.options.max_length_s} s (max_length_s)`);
    }
    x = resample(x, rate, l.rate);
    return { x, real: x.length };
}

export const audio: HandlerFactory<Item> = (ctx) => {
    const setup = resolve(ctx);
    const { options } = setup;
    let topK = options.top_k;
    let memo: { sig: Signature; layout: Layout } | undefined;
    const layoutOf = (sig: Signature): Layout => {
        if (memo?.sig !== sig) {
            memo = { sig, layout: layout(setup, sig) };
        }
        return memo.layout;
    };
    // Variable-length audio for a model without attention_mask: each request batches alone.
    let solo = 0;

    const logitsOf = (sig: Signature): string => outputOf(sig, options.output, 'logits');

    const handler: Handler<Item> = {
        requestSchema() {
            return Joi.object({
                audio: Joi.string().description('one WAV file, base64-encoded (a data:audio/wav;base64, prefix is fine); URLs are not fetched'),
                audios: Joi.array().items(Joi.string()).min(1).description('several WAV files, base64-encoded; the answer is {"results": [...]}, one per file')
            }).description('exactly one of "audio" and "audios"; or send a WAV file as the body (audio/wav), or WAV files as multipart/form-data');
        },

        responseSchema(sig) {
            return perRequestSchema(options.task === 'classification' ? classificationSchema : rawSchema(sig, 'audio'), 'audio');
        },

        example(sig) {
            // A quarter second of 440 Hz at the model's rate, 16-bit mono.
            const rate = layoutOf(sig).rate;
            const samples = Int16Array.from({ length: Math.round(rate / 4) }, (_, i) => Math.round(8000 * Math.sin(2 * Math.PI * 440 * i / rate)));
            const wav = new WaveFile();
            wav.fromScratch(1, rate, '16', samples);
            return { audio: Buffer.from(wav.toBuffer()).toString('base64') };
        },

        openapi() {
            return fileBodies('audio/wav', 'a WAV file (PCM 8/16/24/32-bit or float; any rate and channels). audio/x-wav, audio/wave and application/octet-stream are taken too',
                'one or more WAV files as file parts (any field names); several files are answered with {"results": [...]}', { file: binary });
        },

        parse(req, sig) {
            const item = itemOf(req);
            checkCap(sig, item.audios.length, 'audio');
            const l = layoutOf(sig);
            const key = l.fixed || l.mask ? '' : `solo:${++solo}`;
            return { rows: item.audios.length, key, item };
        },

        load(sig) {
            layoutOf(sig);
            if (options.task === 'classification') {
                logitsOf(sig);
            }
        },

        preprocess(items, sig) {
            const l = layoutOf(sig);
            // Per audio: its steps (samples or frames), those of them that are not padding, and its row of features,
            // [steps] or [steps, width].
            const rows: Row[] = [];
            for (const item of items) {
                item.audios.forEach((a, i) => {
                    let x: Float32Array;
                    let real: number;
                    try {
                        ({ x, real } = samplesOf(a, l));
                    }
                    catch (err) {
                        throw fail('INVALID_MEDIA', `${item.audios.length > 1 ? `audio ${i + 1}: ` : ''}${(err as Error).message}`);
                    }
                    rows.push(l.extract(x, real));
                });
            }
            const steps = Math.max(...rows.map((r) => r.steps));
            if (!l.mask && rows.some((r) => r.steps !== steps)) {
                throw fail('INVALID_BODY', `this model takes audio of any length but no attention_mask, so the audios of one request must be equally long at ${l.rate} Hz (these make ${rows.map((r) => r.steps).join(', ')} ${l.unit}); send them in separate requests`);
            }
            const batch = Math.max(rows.length, fixedBatch(sig) ?? 0);
            const width = l.width;
            // Padding (shorter rows, and the rows a fixed batch size adds) is zeros (or the extractor's padding value),
            // masked out by attention_mask.
            const data = new Float32Array(batch * steps * width).fill(l.padValue);
            rows.forEach((r, i) => {
                if (!l.melsFirst) {
                    data.set(r.data, i * steps * width);
                    return;
                }
                for (let f = 0; f < r.steps; f++) {
                    for (let m = 0; m < width; m++) {
                        data[(i * width + m) * steps + f] = r.data[f * width + m];
                    }
                }
            });
            const dims = l.input.dims.length === 2 ? [batch, steps] : l.melsFirst ? [batch, width, steps] : [batch, steps, width];
            const feeds: Feeds = { [l.input.name]: { type: 'float32', data, dims } };
            if (l.mask) {
                const d = dtype(l.mask.type, l.mask.name);
                const mask = new d.ctor(batch * steps);
                const one = (d.bigint ? 1n : 1) as never;
                // 1 on the audio's own samples (or frames), 0 on padding: a batch's, or that of a fixed length.
                rows.forEach((r, i) => mask.fill(one, i * steps, i * steps + r.real));
                feeds[l.mask.name] = { type: l.mask.type, data: mask, dims: [batch, steps] };
            }
            return feeds;
        },

        postprocess(outputs, items, sig) {
            const rows = items.reduce((n, it) => n + it.audios.length, 0);
            const answers = options.task === 'classification' ? classifications(outputs[logitsOf(sig)], rows, options, ctx.model, topK) : rawAnswers(outputs, rows, sig);
            return perRequest(answers, items, (it) => it.audios.length);
        },

        reconfigure(userConfig) {
            // user_config: { top_k } changes how many labels come back, live.
            const { error, value } = Joi.object({ top_k: Joi.number().integer().min(1).max(1000) }).validate(userConfig);
            if (error) {
                throw new Error(`user_config of the audio handler: ${error.message}`);
            }
            topK = value.top_k ?? options.top_k;
        }
    };
    return handler;
};
