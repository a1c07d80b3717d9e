// The image handler against transformers' image processors: preprocessor_config.json files in the shapes ViT,
// ConvNeXt, CLIP and DeiT save, and each PIL filter, compared with the pixel_values their slow (PIL) processors make
// (test/fixtures/image/reference.json, made once by reference.py beside it); the plan each config makes; padding.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { imageTensor, makePlan, maxResizedPixels, resizedSize } from '../handlers/image';
import { pillowResize } from '../handlers/resample';
import { image as schema, type ImageOptions } from '../schemas/image';
import { near } from './helpers';
import type { Signature } from '../lib/signature';

const fixtures = path.join(__dirname, 'fixtures', 'image');
const reference = JSON.parse(fs.readFileSync(path.join(fixtures, 'reference.json'), 'utf8')) as {
    cases: Array<{ name: string; image: string; preprocessor: Record<string, any>; dims: number[]; data?: number[]; stride?: number; sample?: number[]; sums?: number[] }>;
};

const options = (o: Record<string, unknown> = {}): ImageOptions => {
    const { error, value } = schema.validate(o);
    if (error) {
        throw error;
    }
    return value as ImageOptions;
};
const sig = (dims: Array<number | string>): Signature => ({ inputs: [{ name: 'x', type: 'float32', dims }], outputs: [{ name: 'logits', type: 'float32', dims: ['batch', 3] }] });
const plan = (o: Record<string, unknown>, pre: Record<string, unknown> | undefined, dims: Array<number | string> = ['batch', 3, 'h', 'w']) => makePlan(options(o), pre, sig(dims));
/** A PNG of exactly these pixels, row-major. */
const png = (width: number, height: number, channels: 1 | 3 | 4, pixels: number[]) =>
    sharp(Buffer.from(pixels), { raw: { width, height, channels } }).png().toBuffer();

/**
 * How far a case may be from transformers, in pixel levels (0-255, before rescaling and normalising), at most and on
 * average over its values. Where the handler resizes as Pillow does (enlarging, which is Pillow's own arithmetic here,
 * and no resize) only the reference's 4 decimals part them. Where sharp shrinks, its filters are PIL's, but libvips
 * extends the edges where PIL renormalises its weights, rounds in its own way, and first averages boxes of pixels when
 * shrinking 4 times or more (its `gap`, which sharp does not expose): measured here, at most 6 levels (at the edges and
 * the sharp detail) and 1.04 on average, hence 8 and 1.5. libvips has no box or hamming filter, so those shrink with
 * its cubic one: at most 24 levels, 2.2 on average, hence 32 and 3. sharp's flatten rounds a half-transparent pixel
 * a level away from PIL's alpha_composite now and then.
 */
const tolerance = (name: string): { max: number; mean: number } =>
    /enlarging|no resize|at 384/.test(name) ? { max: 0.02, mean: 0.01 } : /box|hamming/.test(name) ? { max: 32, mean: 3 } : { max: 8, mean: 1.5 };

t.test('the handler makes what transformers\' processors make of each preprocessor_config.json', async (t) => {
    for (const c of reference.cases) {
        const bytes = fs.readFileSync(path.join(fixtures, c.image));
        const p = plan({}, c.preprocessor);
        const x = await imageTensor([{ bytes, at: c.image }], p);
        t.same(x.dims, c.dims, `${c.name}: dims`);
        const got = x.data as Float32Array;
        const [, channels, height, width] = c.dims;
        /** The difference at index i, in pixel levels. */
        const level = (i: number, want: number) => Math.abs(got[i] - want) * p.std[Math.floor(i / (height * width)) % channels] / p.rescale;
        let diffs: number[];
        if (c.data) {
            diffs = c.data.map((want, i) => level(i, want));
        }
        else {
            diffs = (c.sample as number[]).map((want, k) => level(k * (c.stride as number), want));
            const sums = Array.from({ length: channels }, (_, k) => got.subarray(k * height * width, (k + 1) * height * width).reduce((a, b) => a + b, 0));
            t.ok(near(sums, c.sums as number[], 1e-4), `${c.name}: each channel's sum`, { found: sums, wanted: c.sums });
        }
        const max = Math.max(...diffs);
        const mean = diffs.reduce((a, b) => a + b, 0) / diffs.length;
        const tol = tolerance(c.name);
        t.ok(max <= tol.max && mean <= tol.mean, `${c.name}: at most ${max.toFixed(2)} levels apart, ${mean.toFixed(3)} on average (tolerance ${tol.max}, ${tol.mean})`);
    }
});

t.test('the plan each processor\'s preprocessor_config.json makes', async (t) => {
    const imagenet = { image_mean: [0.485, 0.456, 0.406], image_std: [0.229, 0.224, 0.225], rescale_factor: 1 / 255, do_rescale: true, do_normalize: true };
    const vit = { image_processor_type: 'ViTImageProcessor', size: { height: 224, width: 224 }, resample: 2, do_resize: true, ...imagenet };
    t.match(plan({}, vit), { height: 224, width: 224, resize: 'stretch', shortest: 0, stretch: undefined, resample: 'bilinear' }, 'ViT: stretched');
    const convnext = { image_processor_type: 'ConvNextImageProcessor', size: { shortest_edge: 224 }, crop_pct: 0.875, resample: 3, ...imagenet };
    t.match(plan({}, convnext), { height: 224, width: 224, resize: 'crop', shortest: 256, resample: 'bicubic' }, 'ConvNeXt: the short side to 224 / 0.875, then the centre');
    t.match(plan({}, { ...convnext, size: { shortest_edge: 384 } }), { height: 384, width: 384, resize: 'stretch', shortest: 0 }, 'ConvNeXt at 384: stretched');
    t.match(plan({}, { feature_extractor_type: 'ConvNextFeatureExtractor', size: 224, crop_pct: 0.875 }), { height: 224, width: 224, resize: 'crop', shortest: 256 },
        'an older ConvNeXt config: size 224 is its shortest edge');
    for (const pct of [0, 1.5, '0.875']) {
        t.match(plan({}, { ...convnext, crop_pct: pct }), { resize: 'crop', shortest: 224 }, `crop_pct ${JSON.stringify(pct)} is not one: the short side to 224`);
    }
    const clipConfig = { image_processor_type: 'CLIPImageProcessor', size: { shortest_edge: 224 }, crop_size: { height: 224, width: 224 }, do_center_crop: true, do_convert_rgb: true, resample: 3 };
    t.match(plan({}, clipConfig), { height: 224, width: 224, resize: 'crop', shortest: 224 }, 'CLIP: the short side, then the centre');
    t.match(plan({}, { feature_extractor_type: 'CLIPFeatureExtractor', size: 224, crop_size: 224 }), { height: 224, width: 224, resize: 'crop', shortest: 224 }, 'an older CLIP config');
    t.match(plan({}, { feature_extractor_type: 'ViTFeatureExtractor', size: 224 }), { height: 224, width: 224, resize: 'stretch' }, 'an older ViT config: size 224 is a square');
    t.match(plan({}, { image_processor_type: 'MobileNetV2ImageProcessor', size: { shortest_edge: 256 }, crop_size: { height: 224, width: 224 } }),
        { height: 224, width: 224, resize: 'crop', shortest: 256 });
    const deit = { image_processor_type: 'DeiTImageProcessor', size: { height: 256, width: 256 }, crop_size: { height: 224, width: 224 }, do_center_crop: true };
    t.match(plan({}, deit), { height: 224, width: 224, resize: 'stretch', stretch: { height: 256, width: 256 } }, 'DeiT: stretched, then the centre');
    t.match(plan({}, { ...clipConfig, do_resize: false }), { height: 224, width: 224, resize: 'none' }, 'do_resize false: only the centre crop');
    t.match(plan({}, { size: { shortest_edge: 20 }, do_resize: false }, ['batch', 3, 28, 28]), { height: 28, width: 28, resize: 'none' }, 'without a crop: the model\'s size');
    t.match(plan({}, { size: { height: 20, width: 30 }, do_resize: false }), { height: 20, width: 30, resize: 'none' });

    t.match(plan({ resize: 'letterbox' }, clipConfig), { height: 224, width: 224, resize: 'letterbox', shortest: 0 }, 'options.resize: the folder\'s size, fitted');
    t.match(plan({ resize: 'crop' }, clipConfig), { resize: 'crop', shortest: 224 }, 'the folder\'s own mode keeps its short side');
    t.match(plan({ resize: 'crop' }, deit), { height: 224, width: 224, resize: 'crop', shortest: 0, stretch: undefined }, 'another mode drops its stretch');
    t.match(plan({ resize: 'stretch' }, deit), { resize: 'stretch', stretch: { height: 256, width: 256 } });
    t.match(plan({ size: 32 }, deit), { height: 32, width: 32, resize: 'crop', shortest: 0, stretch: undefined }, 'options.size: the folder\'s sizes are not read');
    t.match(plan({ size: 32, resize: 'none' }, undefined), { height: 32, width: 32, resize: 'none' });

    const codes = [0, 1, 2, 3, 4, 5].map((resample) => plan({}, { resample }).resample);
    t.same(codes, ['nearest', 'lanczos', 'bilinear', 'bicubic', 'box', 'hamming'], 'PIL\'s filter codes');
    t.same(plan({}, undefined).pad, [0, 0, 0], 'padding is black by default, as transformers pads');
    t.same(plan({ pad_value: 255 }, undefined).pad, [255, 255, 255]);
    t.same(plan({ pad_value: [255, 128, 0] }, undefined).pad, [255, 128, 0]);
    t.match(schema.validate({ pad_value: 256 }).error?.message, /"pad_value" must be less than or equal to 255/);
    t.match(schema.validate({ pad_value: [1, 2] }).error?.message, /"pad_value" must contain 3 items/);
    t.match(schema.validate({ resample: 'sinc' }).error?.message, /"resample" must be one of \[nearest, bilinear, bicubic, lanczos, box, hamming\]/);

    // transformers rounds the long side down: int(224 * 640 / 480) = 298, not 299.
    t.same(resizedSize(plan({}, clipConfig), 640, 480), [298, 224]);
    t.same(resizedSize(plan({}, clipConfig), 480, 640), [224, 298]);
    t.same(resizedSize(plan({}, convnext), 500, 375), [341, 256], 'ConvNeXt: int(256 * 500 / 375)');
    t.same(resizedSize(plan({}, deit), 640, 480), [256, 256]);
    t.same(resizedSize(plan({}, { ...clipConfig, do_resize: false }), 640, 480), [640, 480]);
});

t.test('padding takes pad_value: letterbox borders, and a centre crop larger than the image', async (t) => {
    // A 4x2 image in a 4x4 input: a row of padding above and below; rescale 1 keeps the pixel values.
    const img = await png(4, 2, 3, Array.from({ length: 24 }, (_, i) => 10 * i));
    const values = async (o: Record<string, unknown>, dims: Array<number | string>, bytes = img) => Array.from((await imageTensor([{ bytes, at: 'x' }], plan({ rescale_factor: 1, ...o }, undefined, dims))).data as Float32Array);
    const red = (await values({ size: 4, resize: 'letterbox', pad_value: 255 }, ['batch', 3, 'h', 'w'])).slice(0, 16);
    t.same(red, [255, 255, 255, 255, 0, 30, 60, 90, 120, 150, 180, 210, 255, 255, 255, 255], 'white borders for a dark-on-light model');
    const rgb = await values({ size: 4, resize: 'letterbox', pad_value: [255, 128, 0] }, ['batch', 4, 4, 3]);
    t.same(rgb.slice(0, 3), [255, 128, 0], 'a colour, NHWC');
    const gray = await values({ size: 4, resize: 'letterbox', pad_value: [255, 128, 0] }, ['batch', 1, 4, 4]);
    t.ok(near(gray[0], 0.299 * 255 + 0.587 * 128), `a grayscale model pads with the colour's luma: ${gray[0]}`);
    const tall = await png(2, 4, 1, [0, 10, 20, 30, 40, 50, 60, 70]);
    t.same((await values({ size: 4, resize: 'letterbox', pad_value: 9 }, ['batch', 1, 'h', 'w'], tall)).slice(0, 8), [9, 0, 10, 9, 9, 20, 30, 9], 'a tall image: a column each side');
    const black = await values({ size: 4, resize: 'letterbox', mean: [10], std: [2] }, ['batch', 3, 'h', 'w']);
    t.same(black.slice(0, 4), [-5, -5, -5, -5], 'black by default, normalised as the pixels are');

    // No resize: a 4x2 image in a 6x6 input is centred and padded; in a 2x2 one, its centre is cut.
    const none = await values({ size: 6, resize: 'none', pad_value: 7 }, ['batch', 3, 'h', 'w']);
    t.same(none.slice(0, 36), [
        7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
        7, 0, 30, 60, 90, 7, 7, 120, 150, 180, 210, 7,
        7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7
    ], 'the image, one pixel from the left and two from the top (the odd one after, as transformers pads)');
    const cut = await values({ size: 2, resize: 'none' }, ['batch', 3, 'h', 'w']);
    t.same(cut.slice(0, 4), [30, 60, 150, 180], 'the centre 2x2, read from the image without decoding the rest');
});

t.test('Pillow\'s resize, by hand: separable, centred, rounded as Pillow rounds', async (t) => {
    const row = Uint8Array.of(0, 100);
    t.same([...pillowResize(row, 2, 1, 1, 4, 1, 'bilinear')], [0, 25, 75, 100], 'widened: samples at pixel centres 0.25, 0.75, 1.25, 1.75');
    t.same([...pillowResize(row, 2, 1, 1, 4, 1, 'nearest')], [0, 0, 100, 100]);
    t.same([...pillowResize(Uint8Array.of(0, 100, 200, 50), 4, 1, 1, 2, 1, 'box')], [50, 125], 'narrowed by box: pairs averaged');
    t.same([...pillowResize(Uint8Array.of(0, 200), 1, 2, 1, 1, 4, 'bilinear')], [0, 50, 150, 200], 'heightened only');
    t.same([...pillowResize(Uint8Array.of(0, 255, 0, 255), 4, 1, 1, 8, 1, 'lanczos')].map((v) => v >= 0 && v <= 255), Array(8).fill(true), 'overshoot is clipped to 0-255');
});

t.test('an image whose resize before the crop would be huge is refused, the others are not', async (t) => {
    const thin = await sharp({ create: { width: 1, height: 200000, channels: 3, background: '#000' } }).png().toBuffer();
    const p = plan({ size: 28 }, undefined);
    await t.rejects(imageTensor([{ bytes: thin, at: 'the image' }], p), { message: `the image is 1x200000 pixels (width x height): cropping it to 28x28 would first resize it to 28x5600000, over the ${maxResizedPixels} pixels taken; an aspect ratio this extreme is refused` });
    t.same((await imageTensor([{ bytes: thin, at: 'the image' }], plan({ size: 28, resize: 'none' }, undefined))).dims, [1, 3, 28, 28], 'without a resize, only the crop is read');
});
