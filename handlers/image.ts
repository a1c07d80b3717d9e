// The image handler: JPEG, PNG, WebP, GIF, AVIF or TIFF images in (a raw image/* body, multipart files, or base64
// in JSON), resized and normalised into the model's image tensor, top-k labels or the raw outputs back.
//
// The front process only collects the bytes and checks their magic numbers; decoding (sharp/libvips), resizing and
// normalising run in the replica. Per image: EXIF orientation applied, the first frame of an animation, transparency
// composited onto white (as Hugging Face's convert_rgb does), resized as the model folder's preprocessor_config.json
// says (as transformers' ViT, ConvNeXt and CLIP processors do) or as options say (crop / letterbox / stretch / none),
// centre-cropped, then each pixel value v (0-255) becomes (v * rescale_factor - mean[c]) / std[c]. Grayscale is
// ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B, PIL's "L"). Padding (letterbox borders, a crop larger than the image)
// takes pad_value, black by default, before normalising.
import Joi from 'joi';
import sharp from 'sharp';
import { fail } from '../lib/errors';
import { classificationSchema, classifications, outputOf } from './classify';
import { checkCap, perRequest, perRequestSchema, rawAnswers, rawSchema } from './items';
import type { Feeds, Tensor } from '../lib/tensor';
import { fixedBatch, type Signature } from '../lib/signature';
import type { ModelFiles } from '../lib/model-files';
import type { Handler, HandlerFactory, RequestIn } from '../lib/handler';
import { base64Text, binary, collect, fileBodies } from './media';
import type { ImageOptions, Resample } from '../schemas/image';
import { pillowResize } from './resample';

/** One request: the bytes of its images, and whether it sent a list (then its body is `{results: [...]}`). */
export interface ImageItem {
    images: Uint8Array[];
    list: boolean;
}

/** How images become the model's input tensor; settled once per model signature. */
export interface Plan {
    input: string;
    layout: 'nchw' | 'nhwc';
    channels: 1 | 3;
    height: number;
    width: number;
    /**
     * crop: the short side is resized to this first (size.shortest_edge, or ConvNeXt's shortest_edge / crop_pct), then
     * the centre cut; 0: the image is resized to cover height x width
     */
    shortest: number;
    /** stretch: the size stretched to before the centre crop (size with crop_size); unset: height x width */
    stretch?: { height: number; width: number };
    resize: 'crop' | 'letterbox' | 'stretch' | 'none';
    resample: Resample;
    rescale: number;
    /** one per channel */
    mean: number[];
    std: number[];
    /** R, G, B (0-255) of the padding: letterbox borders, and a centre crop larger than the image */
    pad: number[];
}

/** Decoded images may have at most this many pixels (a decompression bomb is refused, not decoded). */
export const maxPixels = 8192 * 8192;

/**
 * The resize may make at most this many pixels, or 4 times the size it resizes to if that is more: it is done before
 * the centre crop, so a long thin image (1 x 1,000,000 pixels, a 2 KB PNG) cropped to a square would first become a
 * huge one (28 x 28,000,000). Such an image is refused, from its header, before any of that work.
 */
export const maxResizedPixels = 2 ** 22;

const formats: Array<[string, RegExp]> = [
    ['JPEG', /^\xff\xd8\xff/],
    ['PNG', /^\x89PNG\r\n\x1a\n/],
    ['GIF', /^GIF8[79]a/],
    ['WebP', /^RIFF[^]{4}WEBP/],
    ['AVIF', /^[^]{4}ftyp(avif|avis|mif1|msf1)/],
    ['TIFF', /^(II\*\0|MM\0\*)/]
];
const formatNames = 'JPEG, PNG, WebP, GIF, AVIF or TIFF';
const isUrl = /^[a-z][a-z0-9+.-]*:\/\//i;
const noFetch = 'tsserve never fetches URLs: send the image\'s bytes (a raw image/* body, a multipart file, or base64 in JSON)';

/** The image format its first bytes announce, if it is one we decode. */
export function sniff(bytes: Uint8Array): string | undefined {
    const head = Buffer.from(bytes.subarray(0, 12)).toString('latin1');
    return formats.find(([, re]) => re.test(head))?.[0];
}

/** Front-door checks of one image's bytes: present, not a URL, and an image format we decode (by its magic number). */
function checkBytes(bytes: Buffer, at: string): Buffer {
    if (!bytes.length) {
        throw fail('INVALID_BODY', `${at} is empty`);
    }
    if (isUrl.test(bytes.subarray(0, 16).toString('latin1'))) {
        throw fail('INVALID_BODY', `${at} is a URL; ${noFetch}`);
    }
    if (!sniff(bytes)) {
        throw fail('INVALID_MEDIA', `${at} is not a ${formatNames} image`);
    }
    return bytes;
}

/** One image of a JSON body, decoded here: its magic number is checked at the front door. */
function fromBase64(value: unknown, at: string): Buffer {
    // MIME base64 wraps its lines.
    const text = base64Text(value, at, 'a base64 string', noFetch).replace(/\s+/g, '');
    if (text && (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text) || text.length % 4 === 1)) {
        throw fail('INVALID_BODY', `${at} is not valid base64`);
    }
    return checkBytes(Buffer.from(text, 'base64'), at);
}

/** The images of a request, as bytes, without decoding them. */
function collectImages(req: RequestIn): ImageItem {
    const { items, list } = collect(req, {
        raw: (type) => type.startsWith('image/') || type === 'application/octet-stream',
        fromRaw: (bytes) => checkBytes(bytes, 'the body'),
        fromFile: checkBytes,
        one: 'image',
        many: 'images',
        fromJson: (value, i) => fromBase64(value, i === undefined ? '"image"' : `"images"[${i}]`),
        noFile: 'the multipart body holds no file part (curl -F "image=@photo.jpg")',
        jsonShape: 'the body must be {"image": "<base64>"} or {"images": ["<base64>", ...]} (a data: URL prefix is fine)',
        notList: '"images" must be a non-empty array of base64 strings',
        unsupported: (type) => `the image handler takes image/* (JPEG, PNG, WebP, GIF, AVIF, TIFF), multipart/form-data or application/json, not ${type}`
    });
    return { images: items, list };
}

// ---- the plan: size, layout, channels and normalisation, from serve.yaml, preprocessor_config.json and the model

type Size = { height: number; width: number; shortest?: number };

const positive = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v > 0;

/**
 * A Hugging Face size: {height, width}, {shortest_edge}, or a number, which is a square, or the shortest edge for the
 * processors that read it so (`shortest`); undefined for anything else.
 */
function hfSize(v: unknown, shortest = false): Size | undefined {
    if (positive(v)) {
        return { height: v, width: v, ...shortest && { shortest: v } };
    }
    const o = (v ?? {}) as { height?: unknown; width?: unknown; shortest_edge?: unknown };
    if (positive(o.height) && positive(o.width)) {
        return { height: o.height, width: o.width };
    }
    return positive(o.shortest_edge) ? { height: o.shortest_edge, width: o.shortest_edge, shortest: o.shortest_edge } : undefined;
}

/**
 * Image processors whose `size` given as a number is the shortest edge (transformers' get_size_dict(size,
 * default_to_square=False)); for the others a number is a square.
 */
const shortestEdgeTypes = /^(CLIP|ConvNext|Bit|MobileNetV1|MobileNetV2|ViTHybrid)(ImageProcessor|FeatureExtractor)(Fast)?$/;

/** PIL's filter codes. */
const pilFilters: Record<number, Resample> = { 0: 'nearest', 1: 'lanczos', 2: 'bilinear', 3: 'bicubic', 4: 'box', 5: 'hamming' };

const numbers = (v: unknown): number[] | undefined => typeof v === 'number' ? [v]
    : Array.isArray(v) && v.length && v.every((x) => typeof x === 'number' && Number.isFinite(x)) ? v : undefined;

/** How a processor resizes: to a size (unset: the model's, else 224), by a resize mode, from a short side or a stretch. */
interface Geometry {
    size?: { height: number; width: number };
    resize: Plan['resize'];
    shortest: number;
    stretch?: { height: number; width: number };
}

/**
 * The resize preprocessor_config.json describes, as transformers' ViT, ConvNeXt, CLIP (and like) processors apply it:
 * do_resize; size as {height, width} (stretched to), {shortest_edge} (the short side resized to it) or a number;
 * then do_center_crop to crop_size; ConvNeXt's crop_pct (the short side to shortest_edge / crop_pct, then a centre
 * crop of shortest_edge, below 384; a stretch to shortest_edge from 384).
 */
function processorGeometry(pre: Record<string, unknown>): Geometry {
    const type = String(pre.image_processor_type ?? pre.feature_extractor_type);
    const size = hfSize(pre.size, shortestEdgeTypes.test(type));
    const crop = pre.do_center_crop !== false ? hfSize(pre.crop_size) : undefined;
    const square = (n: number) => ({ height: n, width: n });
    if (pre.do_resize === false) {
        return { size: crop ?? (size?.shortest ? undefined : size), resize: 'none', shortest: 0 };
    }
    if (size?.shortest) {
        const pct = pre.crop_pct;
        if (!crop && typeof pct === 'number' && pct > 0 && pct <= 1) {
            return size.shortest < 384
                ? { size: square(size.shortest), resize: 'crop', shortest: Math.floor(size.shortest / pct) }
                : { size: square(size.shortest), resize: 'stretch', shortest: 0 };
        }
        return { size: crop ?? square(size.shortest), resize: 'crop', shortest: size.shortest };
    }
    if (size) {
        return crop ? { size: crop, resize: 'stretch', shortest: 0, stretch: size } : { size, resize: 'stretch', shortest: 0 };
    }
    return { size: crop, resize: 'crop', shortest: 0 };
}

/** Settles how this model's images are made. Throws (the replica does not start) when the settings contradict the model. */
export function makePlan(options: ImageOptions, preprocessor: Record<string, unknown> | undefined, sig: Signature): Plan {
    const pre = preprocessor ?? {};
    const [input, ...others] = sig.inputs;
    const dims = input.dims;
    const shape = `[${dims.join(', ')}]`;
    if (others.length) {
        throw new Error(`the image handler feeds one image input; this model has ${sig.inputs.length} (${sig.inputs.map((i) => i.name).join(', ')})`);
    }
    if (input.type !== 'float32' || dims.length !== 4) {
        throw new Error(`the image handler feeds a float32 NCHW or NHWC tensor; input "${input.name}" is ${input.type} ${shape}`);
    }
    const isChannels = (d: number | string) => d === 1 || d === 3;
    const layout = options.layout ?? (isChannels(dims[1]) || !isChannels(dims[3]) ? 'nchw' : 'nhwc');
    const [c, h, w] = layout === 'nchw' ? [dims[1], dims[2], dims[3]] : [dims[3], dims[1], dims[2]];
    const channels = options.channels ?? (c === 1 ? 1 : 3);
    if (typeof c === 'number' && c !== channels) {
        throw new Error(`input "${input.name}" ${shape} has ${c} channels in ${layout} layout, but ${channels} are asked for; check options.channels and options.layout`);
    }

    // options.size replaces the processor's geometry; options.resize keeps its short side or stretch when it is its mode.
    const fromFile = options.size === undefined ? processorGeometry(pre) : { size: hfSize(options.size), resize: 'crop' as const, shortest: 0 };
    const resize = options.resize ?? fromFile.resize;
    const same = resize === fromFile.resize;
    const fixed = positive(h) && positive(w) ? { height: h, width: w } : undefined;
    const size = fromFile.size ?? fixed ?? { height: 224, width: 224 };
    if ((positive(h) && h !== size.height) || (positive(w) && w !== size.width)) {
        throw new Error(`input "${input.name}" ${shape} takes ${h}x${w} images (height x width), but the size settings ask for ${size.height}x${size.width}`);
    }

    const rescale = options.rescale_factor ?? (pre.do_rescale === false ? 1 : typeof pre.rescale_factor === 'number' ? pre.rescale_factor : 1 / 255);
    const normalize = pre.do_normalize !== false;
    const perChannel = (name: string, given: number[] | undefined, fromFile: unknown, fallback: number): number[] => {
        const v = given ?? (normalize ? numbers(fromFile) : undefined) ?? [fallback];
        if (v.length !== 1 && v.length !== channels) {
            throw new Error(`${name} has ${v.length} values, but the model takes ${channels} channel${channels > 1 ? 's' : ''}`);
        }
        return Array.from({ length: channels }, (_, k) => v[v.length === 1 ? 0 : k]);
    };
    const mean = perChannel('mean (options.mean or image_mean)', options.mean, pre.image_mean, 0);
    const std = perChannel('std (options.std or image_std)', options.std, pre.image_std, 1);
    if (std.includes(0)) {
        throw new Error('std (options.std or image_std) must not be 0');
    }
    const resample = options.resample ?? pilFilters[pre.resample as number] ?? 'bilinear';
    const padValue = options.pad_value ?? 0;
    const pad = typeof padValue === 'number' ? [padValue, padValue, padValue] : padValue;
    return {
        input: input.name, layout, channels, height: size.height, width: size.width, resize, resample, rescale, mean, std, pad,
        shortest: same && resize === 'crop' ? fromFile.shortest : 0,
        ...same && resize === 'stretch' && fromFile.stretch && { stretch: fromFile.stretch }
    };
}

// ---- decoding and the tensor

/**
 * sharp's kernel for each filter, when it shrinks. libvips has no box or hamming filter: its cubic is the nearest to
 * both in what they make of photographs (README).
 */
const kernels = { nearest: 'nearest', bilinear: 'linear', bicubic: 'cubic', lanczos: 'lanczos3', box: 'cubic', hamming: 'cubic' } as const;

/** The first line of libvips' error, or (when its error came from another thread) that the image is broken. */
const decodeError = (err: unknown, at: string) =>
    fail('INVALID_MEDIA', `${at} cannot be decoded: ${(err as Error).message.split('\n')[0].replace(/^Warning treated as error.*/, 'it is truncated or corrupt')}`);

/** The size (width, height) the plan resizes to: its stretch, the square of its short side, else the model's size. */
const target = (p: Plan): [number, number] => p.stretch ? [p.stretch.width, p.stretch.height]
    : p.shortest ? [p.shortest, p.shortest] : [p.width, p.height];

/**
 * The size (width, height) the plan's resize makes of a width x height image, before the centre crop: the stretch's
 * size; at most the target when it letterboxes; its own with no resize; when it crops, the image scaled to cover the
 * target, the other side rounded down as transformers' get_resize_output_image_size does (so as long and thin as
 * the image).
 */
export function resizedSize(p: Plan, width: number, height: number): [number, number] {
    const [w, h] = target(p);
    if (p.resize === 'none') {
        return [width, height];
    }
    if (p.resize !== 'crop') {
        return [w, h];
    }
    return w * height >= h * width ? [w, Math.floor(w * height / width)] : [Math.floor(h * width / height), h];
}

/** The size (width, height) of a width x height image fitted inside the plan's size, keeping its aspect ratio. */
function fittedSize(p: Plan, width: number, height: number): [number, number] {
    return p.width * height <= p.height * width
        ? [p.width, Math.max(1, Math.round(height * p.width / width))]
        : [Math.max(1, Math.round(width * p.height / height)), p.height];
}

/**
 * Decodes one image and writes it, normalised, as row `row` of `out` (laid out as the plan says). sharp shrinks
 * (and decodes, turns, flattens); Pillow's own resampling (./resample.ts) enlarges.
 */
async function fill(bytes: Uint8Array, p: Plan, out: Float32Array, row: number, at: string): Promise<void> {
    const img = sharp(bytes, { limitInputPixels: maxPixels, failOn: 'warning' }).rotate();
    // The size in the header (turned as the EXIF orientation says) bounds the resize before it is done.
    let size: { width: number; height: number };
    try {
        size = (await img.metadata()).autoOrient;
    }
    catch (err) {
        throw decodeError(err, at);
    }
    const [rw, rh] = p.resize === 'letterbox' ? fittedSize(p, size.width, size.height) : resizedSize(p, size.width, size.height);
    const [tw, th] = target(p);
    const limit = Math.max(maxResizedPixels, 4 * tw * th);
    if (p.resize !== 'none' && rw * rh > limit) {
        throw fail('INVALID_MEDIA', `${at} is ${size.width}x${size.height} pixels (width x height): cropping it to ${p.width}x${p.height} would first resize it to ${rw}x${rh}, over the ${limit} pixels taken; an aspect ratio this extreme is refused`);
    }
    // What sharp makes: the image shrunk where it is to shrink; without a resize, only what the centre crop keeps.
    const [sw, sh] = [Math.min(rw, size.width), Math.min(rh, size.height)];
    if (p.resize === 'none') {
        const [w, h] = [Math.min(size.width, p.width), Math.min(size.height, p.height)];
        img.extract({ left: Math.floor((size.width - w) / 2), top: Math.floor((size.height - h) / 2), width: w, height: h });
    }
    else if (sw !== size.width || sh !== size.height) {
        img.resize(sw, sh, { fit: 'fill', kernel: kernels[p.resample], fastShrinkOnLoad: false });
    }
    let decoded: { data: Buffer; info: { width: number; height: number } };
    try {
        decoded = await img.flatten({ background: '#ffffff' }).toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    }
    catch (err) {
        throw decodeError(err, at);
    }
    let { data, info: { width: dw, height: dh } } = decoded;
    if (p.resize !== 'none' && (rw > dw || rh > dh)) {
        data = Buffer.from(pillowResize(data, dw, dh, 3, rw, rh, p.resample));
        [dw, dh] = [rw, rh];
    }
    const { width: W, height: H, channels: C, rescale, mean, std } = p;
    const pad = C === 1 ? [luma(p.pad, 0)] : p.pad;
    // The resized image is centred on the model's size: cropped where it is larger, padded where smaller (as
    // transformers' center_crop pads, by half the difference, the odd pixel after).
    const left = Math.floor((dw - W) / 2);
    const top = Math.floor((dh - H) / 2);
    const [channelStride, pixelStride] = p.layout === 'nchw' ? [H * W, 1] : [1, C];
    const base = row * C * H * W;
    for (let y = 0; y < H; y++) {
        const sy = y + top;
        for (let x = 0; x < W; x++) {
            const sx = x + left;
            const i = (sy * dw + sx) * 3;
            const inside = sy >= 0 && sy < dh && sx >= 0 && sx < dw;
            const o = base + (y * W + x) * pixelStride;
            for (let c = 0; c < C; c++) {
                const v = !inside ? pad[c] : C === 1 ? luma(data, i) : data[i + c];
                out[o + c * channelStride] = (v * rescale - mean[c]) / std[c];
            }
        }
    }
}

/** ITU-R 601 luma (PIL's "L") of the RGB pixel at `i`. */
const luma = (rgb: ArrayLike<number>, i: number): number => 0.299 * rgb[i] + 0.587 * rgb[i + 1] + 0.114 * rgb[i + 2];

/** The images as one float32 batch tensor, zero rows added up to `rows` (a model with a fixed batch size). */
export async function imageTensor(images: Array<{ bytes: Uint8Array; at: string }>, p: Plan, rows = images.length): Promise<Tensor> {
    const n = Math.max(rows, images.length);
    const data = new Float32Array(n * p.channels * p.height * p.width);
    await Promise.all(images.map((im, k) => fill(im.bytes, p, data, k, im.at)));
    const dims = p.layout === 'nchw' ? [n, p.channels, p.height, p.width] : [n, p.height, p.width, p.channels];
    return { type: 'float32', data, dims };
}

// ---- the handler

/** A tiny PNG that decodes, for the OpenAPI example: 2x2 white pixels. */
const examplePng = 'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAACXBIWXMAAAPoAAAD6AG1e1JrAAAADklEQVQImWP4DwYMEAoAU7oL9W/sIDEAAAAASUVORK5CYII=';

export const image: HandlerFactory<ImageItem> = (ctx) => {
    const options = ctx.options as unknown as ImageOptions;
    const model: ModelFiles = ctx.model;
    let plan: { sig: Signature; plan: Plan } | undefined;
    const planFor = (sig: Signature): Plan => {
        if (plan?.sig !== sig) {
            plan = { sig, plan: makePlan(options, model.preprocessor, sig) };
        }
        return plan.plan;
    };
    const logitsOf = (sig: Signature): string => outputOf(sig, options.output, 'logits');

    const handler: Handler<ImageItem> = {
        requestSchema() {
            const b64 = Joi.string().description('base64 of a JPEG, PNG, WebP, GIF, AVIF or TIFF file; a data: URL is fine; URLs are not fetched');
            return Joi.alternatives(
                Joi.object({ image: b64.required() }),
                Joi.object({ images: Joi.array().items(b64).min(1).required().description('several images: the response is {"results": [...]}, one per image') })
            );
        },

        responseSchema(sig) {
            return perRequestSchema(options.task === 'raw' ? rawSchema(sig, 'image') : classificationSchema, 'image');
        },

        example() {
            return { image: examplePng };
        },

        openapi() {
            return fileBodies('image/*', 'one JPEG, PNG, WebP, GIF, AVIF or TIFF image',
                'one or more file parts, of any names; several files get {"results": [...]}',
                { image: binary, images: { type: 'array', items: binary } });
        },

        parse(req, sig) {
            const item = collectImages(req);
            checkCap(sig, item.images.length, 'image');
            return { rows: item.images.length, key: '', item };
        },

        load(sig) {
            planFor(sig);
            if (options.task === 'classification') {
                logitsOf(sig);
            }
        },

        async preprocess(items, sig) {
            const p = planFor(sig);
            const images = items.flatMap((it) => it.images.map((bytes, j) => ({ bytes, at: it.list ? `image ${j + 1} of ${it.images.length}` : 'the image' })));
            return { [p.input]: await imageTensor(images, p, fixedBatch(sig)) };
        },

        postprocess(outputs: Feeds, items, sig) {
            const rows = items.reduce((n, it) => n + it.images.length, 0);
            const answers = options.task === 'raw' ? rawAnswers(outputs, rows, sig) : classifications(outputs[logitsOf(sig)], rows, options, model);
            return perRequest(answers, items, (it) => it.images.length);
        },

        reconfigure(userConfig) {
            if (Object.keys(userConfig).length) {
                throw new Error(`the image handler takes no user_config (received ${Object.keys(userConfig).join(', ')}); its settings go under options:`);
            }
        }
    };
    return handler;
};
