// The image handler: preprocessing against hand-computed tensors, the request forms it takes, and the digits
// example models (ONNX and TF.js) served end to end by a real `tsserve up`.
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import sharp from 'sharp';
import { image, imageTensor, makePlan, maxPixels, sniff, type ImageItem } from '../handlers/image';
import { image as schema, type ImageOptions } from '../schemas/image';
import { modelFiles } from '../lib/model-files';
import { near, serve, validOpenApi, type Served } from './helpers';
import type { Feeds } from '../lib/tensor';
import type { Signature } from '../lib/signature';
import type { ModelFiles } from '../lib/model-files';
import type { RequestIn } from '../lib/handler';

const root = path.join(__dirname, '..');
const seven = fs.readFileSync(path.join(root, 'examples', 'seven.png'));
const three = fs.readFileSync(path.join(root, 'examples', 'three.jpg'));
const digits = path.join(root, 'examples', 'models', 'digits');
const digitsTfjs = path.join(root, 'examples', 'models', 'digits-tfjs');

const options = (o: Record<string, unknown> = {}): ImageOptions => {
    const { error, value } = schema.validate(o);
    if (error) {
        throw error;
    }
    return value as ImageOptions;
};
const sig = (dims: Array<number | string>, outputs: Signature['outputs'] = [{ name: 'logits', type: 'float32', dims: ['batch', 3] }]): Signature =>
    ({ inputs: [{ name: 'x', type: 'float32', dims }], outputs });
/** A PNG of exactly these pixels, row-major. */
const png = (width: number, height: number, channels: 1 | 2 | 3 | 4, pixels: number[]) =>
    sharp(Buffer.from(pixels), { raw: { width, height, channels } }).png().toBuffer();
const tensor = async (bytes: Buffer, o: Record<string, unknown>, pre: Record<string, unknown> | undefined, dims: Array<number | string>) =>
    imageTensor([{ bytes, at: 'the image' }], makePlan(options(o), pre, sig(dims)));
/** `got` within `eps` of `want`, by helpers' near(); a failure shows both. */
const close = (t: Test, got: number | ArrayLike<number>, want: number | ArrayLike<number>, msg: string, eps?: number) =>
    t.ok(near(got, want, eps), msg, { found: got, wanted: want });

// A 4x2 RGB image (width 4, height 2), pixels row by row.
const rgb4x2 = [
    10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120,
    130, 140, 150, 160, 170, 180, 190, 200, 210, 220, 230, 240
];

t.test('preprocessing gives the hand-computed tensors', async (t) => {
    const img = await png(4, 2, 3, rgb4x2);

    t.test('crop: the short side already fits, so the centre two columns (1 and 2) are kept; NCHW, default rescale 1/255', async (t) => {
        const x = await tensor(img, { size: 2 }, undefined, ['batch', 3, 'h', 'w']);
        t.same(x.dims, [1, 3, 2, 2]);
        const want = [40, 70, 160, 190, 50, 80, 170, 200, 60, 90, 180, 210].map((v) => v / 255);
        close(t, x.data as Float32Array, want, 'the pixels');
    });

    t.test('the same in NHWC, with per-channel mean and std', async (t) => {
        const x = await tensor(img, { size: 2, mean: [0.5, 0.4, 0.3], std: [0.5, 0.25, 0.2] }, undefined, ['batch', 'h', 'w', 3]);
        t.same(x.dims, [1, 2, 2, 3]);
        const want = [
            (40 / 255 - 0.5) / 0.5, (50 / 255 - 0.4) / 0.25, (60 / 255 - 0.3) / 0.2,
            (70 / 255 - 0.5) / 0.5, (80 / 255 - 0.4) / 0.25, (90 / 255 - 0.3) / 0.2,
            (160 / 255 - 0.5) / 0.5, (170 / 255 - 0.4) / 0.25, (180 / 255 - 0.3) / 0.2,
            (190 / 255 - 0.5) / 0.5, (200 / 255 - 0.4) / 0.25, (210 / 255 - 0.3) / 0.2
        ];
        close(t, x.data as Float32Array, want, 'the pixels');
    });

    t.test('letterbox: a 4x2 image in a 4x4 input gets a black row above and below, padded before normalising', async (t) => {
        const x = await tensor(img, { size: 4, resize: 'letterbox', mean: [0.5], std: [0.5] }, undefined, ['batch', 3, 'h', 'w']);
        t.same(x.dims, [1, 3, 4, 4]);
        const n = (v: number) => (v / 255 - 0.5) / 0.5;
        const red = [-1, -1, -1, -1, n(10), n(40), n(70), n(100), n(130), n(160), n(190), n(220), -1, -1, -1, -1];
        const blue = [-1, -1, -1, -1, n(30), n(60), n(90), n(120), n(150), n(180), n(210), n(240), -1, -1, -1, -1];
        close(t, x.data.subarray(0, 16) as Float32Array, red, 'red');
        close(t, x.data.subarray(32, 48) as Float32Array, blue, 'blue');
    });

    t.test('stretch: a 2x1 black-white image to 4x2 with nearest repeats each pixel as a 2x2 block; grayscale', async (t) => {
        const bw = await png(2, 1, 3, [0, 0, 0, 255, 255, 255]);
        const x = await tensor(bw, { size: { height: 2, width: 4 }, resize: 'stretch', resample: 'nearest' }, undefined, ['batch', 1, 'h', 'w']);
        t.same(x.dims, [1, 1, 2, 4]);
        close(t, x.data as Float32Array, [0, 0, 1, 1, 0, 0, 1, 1], 'the pixels');
    });

    t.test('grayscale is ITU-R 601 luma: (200, 100, 50) -> 124.2', async (t) => {
        const px = await png(1, 1, 3, [200, 100, 50]);
        const x = await tensor(px, { size: 1 }, undefined, ['batch', 1, 'h', 'w']);
        close(t, x.data as Float32Array, [124.2 / 255], 'the luma');
        const nhwc = await tensor(px, { size: 1, rescale_factor: 1 }, undefined, ['batch', 'h', 'w', 1]);
        close(t, nhwc.data as Float32Array, [124.2], 'rescale_factor 1 keeps 0-255', 1e-4);
    });

    t.test('a grayscale image for an RGB model repeats its value; transparency is composited onto white', async (t) => {
        const gray = await png(1, 1, 1, [51]);
        close(t, (await tensor(gray, { size: 1 }, undefined, ['batch', 3, 'h', 'w'])).data as Float32Array, [0.2, 0.2, 0.2], 'gray in every channel');
        const rgba = await png(2, 1, 4, [255, 0, 0, 255, 0, 0, 0, 0]);
        const x = await tensor(rgba, { size: { height: 1, width: 2 } }, undefined, ['batch', 3, 'h', 'w']);
        close(t, x.data as Float32Array, [1, 1, 0, 1, 0, 1], 'red stays red, transparent is white');
    });

    t.test('crop_size with size.shortest_edge: the short side is resized first, then the centre is cut', async (t) => {
        // 4x4 gray ramp: v = 16 y + 4 x; shortest_edge 4 needs no resize, crop_size 2 keeps rows 1-2, columns 1-2.
        const ramp = await png(4, 4, 1, Array.from({ length: 16 }, (_, i) => 16 * Math.floor(i / 4) + 4 * (i % 4)));
        const pre = { size: { shortest_edge: 4 }, crop_size: { height: 2, width: 2 }, rescale_factor: 1, image_mean: [0], image_std: [1] };
        const x = await tensor(ramp, {}, pre, ['batch', 1, 'h', 'w']);
        t.same(x.dims, [1, 1, 2, 2]);
        close(t, x.data as Float32Array, [20, 24, 36, 40], 'the centre', 1e-3);
    });

    t.test('a model with a fixed batch size gets zero rows up to it', async (t) => {
        const px = await png(1, 1, 3, [255, 255, 255]);
        const x = await imageTensor([{ bytes: px, at: 'x' }], makePlan(options(), undefined, sig([2, 1, 1, 1])), 2);
        t.same(x.dims, [2, 1, 1, 1]);
        close(t, x.data as Float32Array, [1, 0], 'the image, then a zero row');
    });

    t.test('EXIF orientation is applied before resizing', async (t) => {
        // 2x1 (black, white), stored with orientation 6 (rotate 90 clockwise to view): seen as 1 wide, 2 high.
        const jpg = await sharp(Buffer.from([0, 0, 0, 255, 255, 255]), { raw: { width: 2, height: 1, channels: 3 } })
            .resize(16, 8, { kernel: 'nearest' }).jpeg({ quality: 100 }).withMetadata({ orientation: 6 }).toBuffer();
        const x = await tensor(jpg, { size: { height: 2, width: 1 }, resize: 'stretch' }, undefined, ['batch', 1, 'h', 'w']);
        t.ok(x.data[0] < 0.3, `top dark (unrotated, both would be 0.5): ${x.data[0]}`);
        t.ok(x.data[1] > 0.7, `bottom light: ${x.data[1]}`);
    });
});

t.test('the plan: layout, channels, size and normalisation from options, preprocessor_config.json and the model', async (t) => {
    const plan = (o: Record<string, unknown>, pre: Record<string, unknown> | undefined, dims: Array<number | string>) => makePlan(options(o), pre, sig(dims));
    t.match(plan({}, undefined, ['batch', 3, 224, 224]), { input: 'x', layout: 'nchw', channels: 3, height: 224, width: 224, resize: 'crop', resample: 'bilinear', rescale: 1 / 255, mean: [0, 0, 0], std: [1, 1, 1] });
    t.match(plan({}, undefined, ['batch', 28, 28, 1]), { layout: 'nhwc', channels: 1, height: 28, width: 28 }, 'NHWC: channels last');
    t.match(plan({}, undefined, ['batch', 'c', 'h', 'w']), { layout: 'nchw', channels: 3, height: 224, width: 224 }, 'nothing known: NCHW RGB 224');
    t.match(plan({}, undefined, [1, 3, 5, 3]), { layout: 'nchw', channels: 3, height: 5, width: 3 }, 'both could be channels: NCHW');
    t.match(plan({ layout: 'nhwc', channels: 1 }, undefined, ['b', 'h', 'w', 'c']), { layout: 'nhwc', channels: 1 });

    const pre = { size: { height: 2, width: 4 }, image_mean: [0.5], image_std: [0.25], rescale_factor: 0.01, resample: 0 };
    t.match(plan({}, pre, ['batch', 3, 'h', 'w']), { height: 2, width: 4, resize: 'stretch', resample: 'nearest', rescale: 0.01, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] },
        'preprocessor_config.json: {height, width} is stretched, as Hugging Face does');
    t.match(plan({ size: 3, resize: 'letterbox', resample: 'bicubic', mean: [0, 0.1, 0.2], std: [1], rescale_factor: 1 }, pre, ['batch', 3, 'h', 'w']),
        { height: 3, width: 3, resize: 'letterbox', resample: 'bicubic', rescale: 1, mean: [0, 0.1, 0.2], std: [1, 1, 1] }, 'options win over the file');
    t.match(plan({ size: { height: 5, width: 6 } }, pre, ['batch', 3, 'h', 'w']), { height: 5, width: 6, resize: 'crop' }, 'an options size is cropped to');
    t.match(plan({}, { size: 32, do_rescale: false, do_normalize: false, image_mean: [9], image_std: [9], resample: 1 }, ['batch', 1, 'h', 'w']),
        { height: 32, width: 32, resize: 'stretch', rescale: 1, mean: [0], std: [1], resample: 'lanczos' }, 'do_rescale / do_normalize false');
    t.match(plan({}, { size: { shortest_edge: 20 }, image_mean: 0.5, resample: 3 }, ['batch', 1, 'h', 'w']), { height: 20, width: 20, shortest: 20, resize: 'crop', mean: [0.5], resample: 'bicubic' });
    t.match(plan({}, { crop_size: 8, size: { height: 10, width: 10 } }, ['batch', 1, 'h', 'w']), { height: 8, width: 8, shortest: 0, resize: 'stretch', stretch: { height: 10, width: 10 } },
        'size {height, width} with crop_size: stretched, then the centre cut (as DeiT\'s processor does)');
    t.match(plan({}, { crop_size: 8, do_center_crop: false, size: { width: 10 }, image_mean: ['a'], resample: 9 }, ['batch', 1, 12, 12]),
        { height: 12, width: 12, resize: 'crop', mean: [0], resample: 'bilinear' }, 'unusable values fall back to the model\'s dims and the defaults');

    const refuse = (o: Record<string, unknown>, pre: Record<string, unknown> | undefined, s: Signature, re: RegExp) => t.throws(() => makePlan(options(o), pre, s), re);
    refuse({}, undefined, { inputs: [sig([1, 3, 2, 2]).inputs[0], { name: 'y', type: 'float32', dims: [1] }], outputs: [] }, /one image input; this model has 2 \(x, y\)/);
    refuse({}, undefined, { inputs: [{ name: 'x', type: 'uint8', dims: [1, 3, 2, 2] }], outputs: [] }, /float32 NCHW or NHWC tensor; input "x" is uint8 \[1, 3, 2, 2\]/);
    refuse({}, undefined, sig(['batch', 784]), /input "x" is float32 \[batch, 784\]/);
    refuse({ channels: 1 }, undefined, sig(['batch', 3, 28, 28]), /has 3 channels in nchw layout, but 1 are asked for/);
    refuse({ size: 32 }, undefined, sig(['batch', 1, 28, 28]), /takes 28x28 images \(height x width\), but the size settings ask for 32x32/);
    refuse({ mean: [0.1, 0.2] }, undefined, sig(['batch', 3, 'h', 'w']), /mean \(options.mean or image_mean\) has 2 values, but the model takes 3 channels/);
    refuse({}, { image_std: [0.5, 0.5, 0.5] }, sig(['batch', 1, 'h', 'w']), /std \(options.std or image_std\) has 3 values, but the model takes 1 channel$/);
    refuse({ std: [0] }, undefined, sig(['batch', 1, 'h', 'w']), /must not be 0/);
    t.match(schema.validate({ resize: 'zoom' }).error?.message, /"resize" must be one of \[crop, letterbox, stretch, none\]/);
    t.equal(maxPixels, 8192 * 8192);
});

/** A handler as a replica makes it, for a model folder or a bare signature. */
const make = (o: Record<string, unknown> = {}, model: ModelFiles = { file: 'model.onnx' }) => image({ options: options(o) as unknown as Record<string, unknown>, model });
const req = (contentType: string, payload: unknown): RequestIn => ({ contentType, payload, headers: {} });

t.test('parse collects the bytes of each request form without decoding them', async (t) => {
    const h = make();
    const s = sig(['batch', 1, 28, 28]);
    const b64 = seven.toString('base64');
    const items = (r: RequestIn) => h.parse(r, s);

    t.match(items(req('image/png', seven)), { rows: 1, key: '', item: { images: [seven], list: false } }, 'a raw image/* body');
    t.match(items(req('application/octet-stream', three)), { rows: 1, item: { list: false } }, 'application/octet-stream too');
    t.match(items(req('multipart/form-data', { a: seven, note: 'not a file', b: [three, seven] })), { rows: 3, item: { images: [seven, three, seven], list: true } }, 'every file part, in order; fields ignored');
    t.match(items(req('multipart/form-data', { image: seven })), { rows: 1, item: { list: false } }, 'one file is one result');
    t.same(items(req('application/json', { image: b64 })).item, { images: [seven], list: false }, 'base64');
    t.same(items(req('application/json', { image: `data:image/png;base64,${b64}` })).item.images[0], seven, 'a data: URL');
    t.same(items(req('application/json', { image: `DATA:image/png;BASE64,${b64}` })).item.images[0], seven, 'a data: URL in capitals');
    t.same(items(req('application/json', { image: b64.replace(/(.{76})/g, '$1\n') })).item.images[0], seven, 'MIME line breaks');
    t.same(items(req('application/json', { images: [b64, three.toString('base64url')] })).item, { images: [seven, three], list: true }, 'a list, base64url too');

    const bad = (r: RequestIn, code: string, re: RegExp, sg: Signature = s) => t.throws(() => h.parse(r, sg), { data: { code }, message: re });
    bad(req('image/png', Buffer.alloc(0)), 'INVALID_BODY', /the body is empty/);
    bad(req('image/png', null), 'INVALID_BODY', /the body is empty/);
    bad(req('image/png', Buffer.from('https://example.com/seven.png')), 'INVALID_BODY', /the body is a URL; tsserve never fetches URLs/);
    bad(req('image/png', Buffer.from('plain text, no image')), 'INVALID_MEDIA', /the body is not a JPEG, PNG, WebP, GIF, AVIF or TIFF image/);
    bad(req('image/svg+xml', Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"/>')), 'INVALID_MEDIA', /not a JPEG/);
    bad(req('multipart/form-data', { a: [seven, Buffer.from('GIF87a-but-nothing-else'), Buffer.from('xx')] }), 'INVALID_MEDIA', /file part "a" #3 is not a JPEG/);
    bad(req('multipart/form-data', { note: 'hello' }), 'INVALID_BODY', /holds no file part/);
    bad(req('multipart/form-data', null), 'INVALID_BODY', /holds no file part/);
    bad(req('audio/wav', Buffer.from('RIFF')), 'UNSUPPORTED_MEDIA_TYPE', /takes image\/\* .* not audio\/wav/);
    bad(req('application/json', null), 'INVALID_BODY', /\{"image": "<base64>"\} or \{"images"/);
    bad(req('application/json', [b64]), 'INVALID_BODY', /\{"image": "<base64>"\}/);
    bad(req('application/json', {}), 'INVALID_BODY', /\{"image": "<base64>"\}/);
    bad(req('application/json', { image: b64, images: [b64] }), 'INVALID_BODY', /\{"image": "<base64>"\}/);
    bad(req('application/json', { images: [] }), 'INVALID_BODY', /"images" must be a non-empty array/);
    bad(req('application/json', { images: b64 }), 'INVALID_BODY', /"images" must be a non-empty array/);
    bad(req('application/json', { image: 42 }), 'INVALID_BODY', /"image" must be a base64 string/);
    bad(req('application/json', { images: [b64, ' http://example.com/a.png'] }), 'INVALID_BODY', /"images"\[1\] is a URL; tsserve never fetches URLs/);
    bad(req('application/json', { image: 'data:image/png,%89PNG' }), 'INVALID_BODY', /data: URL without ";base64"/);
    bad(req('application/json', { image: 'not base64!' }), 'INVALID_BODY', /"image" is not valid base64/);
    bad(req('application/json', { image: 'abcde' }), 'INVALID_BODY', /"image" is not valid base64/);
    bad(req('application/json', { image: '  ' }), 'INVALID_BODY', /"image" is empty/);
    bad(req('application/json', { image: Buffer.from('hello').toString('base64') }), 'INVALID_MEDIA', /"image" is not a JPEG/);
    bad(req('application/json', { images: [b64, b64, b64] }), 'INVALID_BODY', /at most 2 images per request; this one sent 3/, sig([2, 1, 28, 28]));
    bad(req('multipart/form-data', { a: seven, b: three }), 'INVALID_BODY', /at most 1 image per request; this one sent 2/, sig([1, 1, 28, 28]));

    for (const [name, bytes] of Object.entries({
        JPEG: three, PNG: seven,
        GIF: await sharp(seven).gif().toBuffer(), WebP: await sharp(seven).webp().toBuffer(),
        AVIF: await sharp(seven).resize(16).avif().toBuffer(), TIFF: await sharp(seven).tiff().toBuffer()
    })) {
        t.equal(sniff(bytes), name, `${name} is recognised by its magic number`);
        t.equal(items(req('image/anything', bytes)).rows, 1);
    }
    t.equal(sniff(Buffer.from('MM\0*')), 'TIFF', 'big-endian TIFF');
});

t.test('a replica-side handler: preprocess, postprocess, load and reconfigure', async (t) => {
    const logits = (rows: number[][]): Feeds => ({ logits: { type: 'float32', data: Float32Array.from(rows.flat()), dims: [rows.length, rows[0].length] } });
    const s = sig(['batch', 1, 28, 28]);

    t.test('labels from options, else config.json id2label, else LABEL_<i>; one body per request', async (t) => {
        const items: ImageItem[] = [{ images: [seven], list: false }, { images: [seven, three], list: true }];
        const out = logits([[0, 2, 0], [5, 0, 0], [0, 0, 1]]);
        const named = make({ labels: ['a', 'b', 'c'], top_k: 2 }).postprocess(out, items, s) as any[];
        t.equal(named.length, 2);
        t.match(named[0], { label: 'b', predictions: [{ label: 'b' }, { label: 'a' }] });
        t.equal(named[0].predictions.length, 2, 'top_k');
        close(t, named[0].score, Math.exp(2) / (Math.exp(2) + 2), 'softmax score');
        t.same(named[1].results.map((r: any) => r.label), ['a', 'c'], 'a list gets results');
        const fromConfig = make({}, { file: 'm', config: { id2label: { 0: 'zero', 1: 'one', 2: 'two' } } }).postprocess(out, items, s) as any[];
        t.equal(fromConfig[0].label, 'one');
        t.equal(fromConfig[0].predictions.length, 3, 'top_k is capped at the classes');
        t.equal((make().postprocess(out, items, s) as any[])[0].label, 'LABEL_1');
    });

    t.test('options.output picks the logits; a wrong name stops the replica at load', async (t) => {
        const two = { inputs: s.inputs, outputs: [{ name: 'features', type: 'float32', dims: ['batch', 2] }, { name: 'scores', type: 'float32', dims: ['batch', 2] }] };
        const out: Feeds = { features: { type: 'float32', data: Float32Array.from([9, 0]), dims: [1, 2] }, scores: { type: 'float32', data: Float32Array.from([0, 9]), dims: [1, 2] } };
        const items: ImageItem[] = [{ images: [seven], list: false }];
        t.equal((make().postprocess(out, items, two) as any[])[0].label, 'LABEL_0', 'no "logits": the first output');
        t.equal((make({ output: 'scores' }).postprocess(out, items, two) as any[])[0].label, 'LABEL_1');
        t.throws(() => make({ output: 'probs' }).load?.(two), /options.output is "probs", not among the model's outputs \(features, scores\)/);
        t.doesNotThrow(() => make({ task: 'raw', output: 'probs' }).load?.(two), 'raw reads every output');
        t.throws(() => make({ size: 32 }).load?.(s), /takes 28x28 images/, 'a plan that contradicts the model stops the replica');
    });

    t.test('raw outputs per image, padded rows of a fixed batch left out', async (t) => {
        const fixed = sig([4, 1, 2, 2], [{ name: 'y', type: 'float32', dims: [4, 2] }, { name: 'scale', type: 'float32', dims: [1] }]);
        const out: Feeds = { y: { type: 'float32', data: Float32Array.from([1, 2, 3, 4, 5, 6, 0, 0]), dims: [4, 2] }, scale: { type: 'float32', data: Float32Array.from([7]), dims: [1] } };
        const bodies = make({ task: 'raw' }).postprocess(out, [{ images: [seven], list: false }, { images: [seven, seven], list: true }], fixed) as any[];
        t.same(bodies, [
            { outputs: { y: [1, 2], scale: [7] } },
            { results: [{ outputs: { y: [3, 4], scale: [7] } }, { outputs: { y: [5, 6], scale: [7] } }] }
        ]);
    });

    t.test('preprocess batches every image of every request, and names the one it cannot decode', async (t) => {
        const h = make({}, modelFiles({ runtime: 'onnx', path: digits }));
        await h.load?.(s);
        const feeds = await h.preprocess([{ images: [seven], list: false }, { images: [three, seven], list: true }], s);
        t.same(feeds.x.dims, [3, 1, 28, 28]);
        const again = await h.preprocess([{ images: [seven], list: false }], s);
        t.same(Array.from(again.x.data as Float32Array), Array.from(feeds.x.data.subarray(0, 784) as Float32Array), 'the same image, the same pixels, alone or batched');
        const truncated = seven.subarray(0, seven.length - 40);
        await t.rejects(async () => h.preprocess([{ images: [seven, truncated], list: true }], s), { data: { code: 'INVALID_MEDIA' }, message: /^image 2 of 2 cannot be decoded: (vipspng: libpng read error|it is truncated or corrupt)$/ });
        await t.rejects(async () => h.preprocess([{ images: [Buffer.from('GIF89a and nothing')], list: false }], s), { data: { code: 'INVALID_MEDIA' }, message: /the image cannot be decoded/ });
        // A PNG whose header says 100000 x 100000 pixels.
        const huge = Buffer.from(seven);
        huge.writeUInt32BE(100000, 16);
        huge.writeUInt32BE(100000, 20);
        huge.writeUInt32BE(zlib.crc32(huge.subarray(12, 29)), 29);
        await t.rejects(async () => h.preprocess([{ images: [huge], list: false }], s), { data: { code: 'INVALID_MEDIA' }, message: /exceeds pixel limit/ }, 'a decompression bomb is refused');
    });

    t.test('preprocessor_config.json from the model folder, overridden by options', async (t) => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-image-'));
        fs.copyFileSync(path.join(digits, 'model.onnx'), path.join(dir, 'model.onnx'));
        fs.writeFileSync(path.join(dir, 'preprocessor_config.json'), JSON.stringify({ size: { height: 1, width: 2 }, rescale_factor: 0.01, image_mean: [0.5, 1, 1.5], image_std: [2] }));
        const files = modelFiles({ runtime: 'onnx', path: dir });
        const rgb = sig(['batch', 3, 'h', 'w']);
        const px = await png(2, 1, 3, [100, 200, 50, 0, 0, 0]);
        const fromFile = await make({}, files).preprocess([{ images: [px], list: false }], rgb);
        t.same(fromFile.x.dims, [1, 3, 1, 2]);
        close(t, fromFile.x.data as Float32Array, [(1 - 0.5) / 2, (0 - 0.5) / 2, (2 - 1) / 2, (0 - 1) / 2, (0.5 - 1.5) / 2, (0 - 1.5) / 2], 'normalised as the file says');
        const overridden = await make({ rescale_factor: 1 / 255, mean: [0], std: [1], layout: 'nhwc', channels: 3 }, files).preprocess([{ images: [px], list: false }], sig(['batch', 'h', 'w', 'c']));
        t.same(overridden.x.dims, [1, 1, 2, 3]);
        close(t, overridden.x.data as Float32Array, [100 / 255, 200 / 255, 50 / 255, 0, 0, 0], 'normalised as options say');
    });

    t.test('reconfigure takes no user_config; the schemas and the example', async (t) => {
        const h = make();
        t.doesNotThrow(() => h.reconfigure({}, s));
        t.throws(() => h.reconfigure({ top_k: 3 }, s), /takes no user_config \(received top_k\); its settings go under options:/);
        t.same(h.requestSchema(s).validate(h.example(s)).error, undefined, 'the example is a valid request');
        t.match(h.requestSchema(s).validate({ images: [] }).error?.message, /does not match any of the allowed types/, 'an empty list is not');
        t.same(h.responseSchema(s).validate({ results: [{ label: '7', score: 0.9, predictions: [{ label: '7', score: 0.9 }] }] }).error, undefined);
        t.same(make({ task: 'raw' }).responseSchema(s).validate({ outputs: { logits: [1, 2, 3] } }).error, undefined);
        t.match(h.openapi?.(s), { content: { 'image/*': { schema: { format: 'binary' } }, 'multipart/form-data': { schema: { type: 'object' } } } });
        const decoded = await make().preprocess([{ images: [Buffer.from((h.example(s) as { image: string }).image, 'base64')], list: false }], s);
        close(t, decoded.x.data.subarray(0, 3) as Float32Array, [1, 1, 1], 'the example image is white');
    });
});

// ---- end to end

/** An application serving one image deployment; `lines` are more of its fields, one per line. */
const imageApp = (name: string, model: string, ...lines: string[]) => `  - name: ${name}
    deployments:
      - name: model
        handler: image
        model: ${model}
${lines.map((l) => `        ${l}\n`).join('')}`;

const batching = 'batching: { max_batch_size: 8, batch_wait_timeout_s: 0.01 }';
const yaml = `http_options: { host: 127.0.0.1, port: 8000, request_timeout_s: 20 }
applications:
${imageApp('digits', `{ runtime: onnx, path: ${digits} }`, batching)}${imageApp('digits-tfjs', `{ runtime: tfjs, path: ${digitsTfjs} }`, batching)}${imageApp('digits-raw', `{ path: ${digits} }`, 'options: { task: raw, resize: stretch }')}`;

const softmax = (xs: number[]) => {
    const e = xs.map((x) => Math.exp(x - Math.max(...xs)));
    return e.map((v) => v / e.reduce((a, b) => a + b, 0));
};

t.test('tsserve up serves the digits models, ONNX and TF.js, through the image handler', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-image-'));
    const s: Served = await serve(dir, yaml);
    t.teardown(() => s.stop());
    const raw = (route: string, bytes: Buffer, type = 'image/png') => s.post(route, bytes, { 'content-type': type });

    t.test('the sample images get their digits, on both runtimes, with the same scores', async (t) => {
        const answers: Record<string, any> = {};
        for (const app of ['digits', 'digits-tfjs']) {
            const a7 = await raw(`/${app}/predict`, seven);
            const a3 = await raw(`/${app}/predict`, three, 'image/jpeg');
            t.equal(a7.status, 200);
            t.equal(a7.body.label, '7', `${app}: seven.png is a 7`);
            t.equal(a3.body.label, '3', `${app}: three.jpg is a 3`);
            t.ok(a7.body.score > 0.9, `${app}: confident of the 7 (${a7.body.score})`);
            t.ok(a3.body.score > 0.9, `${app}: confident of the 3 (${a3.body.score})`);
            t.equal(a7.body.predictions.length, 5, 'top_k 5 by default');
            answers[app] = [a7.body, a3.body];
        }
        for (const k of [0, 1]) {
            const [onnx, tfjs] = [answers.digits[k], answers['digits-tfjs'][k]];
            t.same(tfjs.predictions.map((p: any) => p.label), onnx.predictions.map((p: any) => p.label));
            close(t, tfjs.predictions.map((p: any) => p.score), onnx.predictions.map((p: any) => p.score), 'ONNX and TF.js agree within 1e-4', 1e-4);
        }
        const st = (await s.get('/-/status')).body;
        const dep = (name: string) => st.applications.find((a: any) => a.name === name).deployments[0];
        t.match(dep('digits-tfjs').replicas[0].backend, /wasm/, 'the TF.js model runs on the wasm backend');
        t.match(dep('digits').replicas[0].backend, /onnx/i);
    });

    t.test('multipart, base64 JSON, data: URLs and several images per request', async (t) => {
        for (const app of ['digits', 'digits-tfjs']) {
            const form = new FormData();
            form.append('first', new Blob([seven], { type: 'image/png' }), 'seven.png');
            form.append('second', new Blob([three], { type: 'image/jpeg' }), 'three.jpg');
            form.append('comment', 'a text field is ignored');
            const res = await fetch(`${s.url}/${app}/predict`, { method: 'POST', body: form });
            const body = await res.json() as any;
            t.equal(res.status, 200);
            t.same(body.results.map((r: any) => r.label), ['7', '3'], `${app}: multipart, two files`);
            const one = new FormData();
            one.append('image', new Blob([three], { type: 'image/jpeg' }), 'three.jpg');
            t.equal((await (await fetch(`${s.url}/${app}/predict`, { method: 'POST', body: one })).json() as any).label, '3', 'one file: one result');
            t.equal((await s.post(`/${app}/predict`, { image: seven.toString('base64') })).body.label, '7', 'base64');
            t.equal((await s.post(`/${app}/predict`, { image: `data:image/jpeg;base64,${three.toString('base64')}` })).body.label, '3', 'a data: URL');
            const list = await s.post(`/${app}/predict`, { images: [seven, three, three, seven].map((b) => b.toString('base64')) });
            t.same(list.body.results.map((r: any) => r.label), ['7', '3', '3', '7'], 'a list');
        }
    });

    t.test('raw outputs: the logits per image', async (t) => {
        const a = await s.post('/digits-raw/predict', { images: [seven.toString('base64'), three.toString('base64')] });
        t.equal(a.status, 200);
        const rows = a.body.results.map((r: any) => r.outputs.logits as number[]);
        t.same(rows.map((r: number[]) => r.length), [10, 10]);
        t.same(rows.map((r: number[]) => r.indexOf(Math.max(...r))), [7, 3]);
        const crop = (await raw('/digits/predict', seven)).body;
        close(t, softmax(rows[0])[7], crop.score, 'a square image: stretch and crop agree', 1e-4);
    });

    t.test('concurrent requests of different image sizes are answered as one at a time', async (t) => {
        const images: Buffer[] = [];
        for (let i = 0; i < 24; i++) {
            const [src, w, h] = i % 2 ? [three, 40 + 7 * i, 60 + 5 * i] : [seven, 30 + 9 * i, 30 + 9 * i];
            images.push(await sharp(src).resize(w, h, { fit: 'fill' })[i % 3 ? 'png' : 'jpeg']().toBuffer());
        }
        for (const app of ['digits', 'digits-tfjs']) {
            const one: any[] = [];
            for (const img of images) {
                one.push((await raw(`/${app}/predict`, img)).body);
            }
            const together = await Promise.all(images.map((img) => raw(`/${app}/predict`, img)));
            t.same(together.map((a) => a.status), images.map(() => 200));
            t.same(one.map((b) => b.label), images.map((_, i) => i % 2 ? '3' : '7'), `${app}: every size is read right`);
            const labels = (a: any[]) => a.map((b) => b.predictions.map((p: any) => p.label));
            const scores = (a: any[]) => a.flatMap((b) => b.predictions.map((p: any) => p.score));
            t.same(labels(together.map((a) => a.body)), labels(one), `${app}: batched answers are the sequential ones`);
            close(t, scores(together.map((a) => a.body)), scores(one), `${app}: with the same scores`);
        }
    });

    t.test('/openapi.json validates and describes the image routes', async (t) => {
        const doc = (await s.get('/openapi.json')).body;
        await validOpenApi(t, doc);
        const op = doc.paths['/digits/predict'].post;
        t.same(Object.keys(op.requestBody.content), ['application/json', 'image/*', 'multipart/form-data']);
        t.same(Object.keys(op.requestBody.content['application/json'].schema.oneOf[0].properties), ['image']);
        const example = op.requestBody.content['application/json'].example;
        const a = await s.post('/digits/predict', example);
        t.equal(a.status, 200, 'the documented example works');
    });

    t.test('bad inputs get clean 4xx answers and the replicas keep serving', async (t) => {
        const truncated = seven.subarray(0, Math.floor(seven.length / 2));
        const cases: Array<[string, Promise<{ status: number; body: any }>, number, string, RegExp]> = [
            ['truncated PNG', raw('/digits/predict', truncated), 400, 'INVALID_MEDIA', /the image cannot be decoded/],
            ['truncated PNG (tfjs)', raw('/digits-tfjs/predict', truncated), 400, 'INVALID_MEDIA', /cannot be decoded/],
            ['non-image bytes', raw('/digits/predict', Buffer.from('this is not an image at all')), 400, 'INVALID_MEDIA', /not a JPEG, PNG/],
            ['a URL in JSON', s.post('/digits/predict', { image: 'https://example.com/seven.png' }), 400, 'INVALID_BODY', /never fetches URLs/],
            ['a URL as the body', raw('/digits/predict', Buffer.from('http://example.com/seven.png')), 400, 'INVALID_BODY', /never fetches URLs/],
            ['text/plain', s.post('/digits/predict', 'hello', { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE', /./],
            ['audio body', raw('/digits/predict', seven, 'audio/wav'), 415, 'UNSUPPORTED_MEDIA_TYPE', /image handler takes/],
            ['50 MB', raw('/digits/predict', Buffer.alloc(50 * 1024 * 1024, 1)), 413, 'PAYLOAD_TOO_LARGE', /./],
            ['missing field', s.post('/digits/predict', { picture: seven.toString('base64') }), 400, 'INVALID_BODY', /\{"image": "<base64>"\}/],
            ['not JSON', s.post('/digits/predict', '{"image": '), 400, 'INVALID_JSON', /./],
            ['empty body', raw('/digits/predict', Buffer.alloc(0)), 400, 'INVALID_BODY', /empty/]
        ];
        for (const [name, answer, status, code, re] of cases) {
            const a = await answer;
            t.equal(a.status, status, name);
            t.equal(a.body.code, code, name);
            t.match(a.body.message, re, name);
        }
        // A bad image among good ones in the same batch: only its request fails.
        const mixed = await Promise.all([seven, truncated, three, seven, truncated, three].map((b) => raw('/digits/predict', b)));
        t.same(mixed.map((a) => a.status), [200, 400, 200, 200, 400, 200]);
        t.same(mixed.filter((a) => a.status === 200).map((a) => a.body.label), ['7', '3', '7', '3']);
        for (const app of ['digits', 'digits-tfjs', 'digits-raw']) {
            t.equal((await raw(`/${app}/predict`, seven)).status, 200, `${app} still serves`);
        }
        const st = (await s.get('/-/status')).body;
        for (const app of st.applications) {
            t.same(app.deployments[0].replicas.map((r: any) => [r.state, r.restarts]), [['RUNNING', 0]], `${app.name}: no replica restarted`);
        }
    });
});
