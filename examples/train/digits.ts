// Trains the example digits classifier (0-9) offline, on digits rendered from the DejaVu fonts, and writes it twice:
//   examples/models/digits-tfjs/  TF.js layers model.json + weights.bin, input NHWC [batch, 28, 28, 1]
//   examples/models/digits/       model.onnx with the same weights,    input NCHW [batch, 1, 28, 28]
// each with config.json (id2label) and preprocessor_config.json, plus the sample images examples/seven.png and
// examples/three.jpg. Training images are dark digits on light backgrounds, as people photograph or draw them, of
// random font, size, weight, slant, offset, rotation, stroke width, colours and canvas size; they go through the
// image handler's own preprocessing (handlers/image.ts), so training and serving see exactly the same tensors.
//
//   npx tsc -p . && node build/examples/train/digits.js        (about 2 minutes on 2 cores)
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs';
import * as ort from 'onnxruntime-node';
import { imageTensor, makePlan } from '../../handlers/image';
import { image as imageOptions, type ImageOptions } from '../../schemas/image';
import { Graph } from '../../modelgen/onnx-builder';
import { repoRoot } from '../../modelgen/make';
import type { Signature } from '../../lib/signature';

const root = repoRoot(__dirname);
const out = {
    onnx: path.join(root, 'examples', 'models', 'digits'),
    tfjs: path.join(root, 'examples', 'models', 'digits-tfjs'),
    samples: path.join(root, 'examples')
};

const SIDE = 28;
const CLASSES = 10;
const TRAIN = 12000;
const TEST = 1000;
const EPOCHS = 12;

const preprocessor = {
    image_processor_type: 'ImageProcessor',
    do_resize: true,
    size: { shortest_edge: SIDE },
    resample: 2,
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: true,
    image_mean: [0.5],
    image_std: [0.5]
};
const config = {
    model_type: 'digits-mlp',
    architectures: ['DigitsMLP'],
    num_labels: CLASSES,
    id2label: Object.fromEntries(Array.from({ length: CLASSES }, (_, i) => [String(i), String(i)])),
    label2id: Object.fromEntries(Array.from({ length: CLASSES }, (_, i) => [String(i), i]))
};

/** mulberry32: a small seeded PRNG, so that every run makes the same data and the same model. */
function rng(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

const families = ['DejaVu Sans', 'DejaVu Serif', 'DejaVu Sans Mono', 'DejaVu Sans Condensed', 'DejaVu Serif Condensed'];

interface Look {
    digit: number;
    canvas: { width: number; height: number };
    family: string;
    weight: 'normal' | 'bold';
    style: 'normal' | 'italic';
    /** font size as a fraction of the canvas's short side */
    size: number;
    /** offset of the digit's centre, as fractions of the canvas */
    dx: number;
    dy: number;
    rotate: number;
    stroke: number;
    ink: string;
    paper: string;
}

/** The SVG elements of one digit image, drawn at (0, 0). */
function glyph(l: Look): string {
    const { width, height } = l.canvas;
    const short = Math.min(width, height);
    const [x, y] = [width * (0.5 + l.dx), height * (0.5 + l.dy)];
    return `<rect width="${width}" height="${height}" fill="${l.paper}"/>`
        + `<text x="${x}" y="${y}" font-family="${l.family}" font-weight="${l.weight}" font-style="${l.style}" font-size="${l.size * short}" `
        + `fill="${l.ink}" stroke="${l.ink}" stroke-width="${l.stroke * short}" text-anchor="middle" dominant-baseline="central" `
        + `transform="rotate(${l.rotate} ${x} ${y})">${l.digit}</text>`;
}

const CELL = 112;
const PER_ROW = 16;

/**
 * Renders many digits at once: one SVG sheet (librsvg is much faster per digit on a sheet, and renders one SVG
 * at a time: several SVGs with text rendering at once crash it now and then), then cuts each image out and
 * encodes it as PNG or JPEG, as a client would send it.
 */
async function render(looks: Look[], format: (i: number) => 'png' | 'jpeg'): Promise<Buffer[]> {
    const rows = Math.ceil(looks.length / PER_ROW);
    const cells = looks.map((l, i) => `<svg x="${(i % PER_ROW) * CELL}" y="${Math.floor(i / PER_ROW) * CELL}" width="${l.canvas.width}" height="${l.canvas.height}">${glyph(l)}</svg>`);
    const sheet = await sharp(Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${PER_ROW * CELL}" height="${rows * CELL}">${cells.join('')}</svg>`))
        .removeAlpha().raw().toBuffer({ resolveWithObject: true });
    return Promise.all(looks.map((l, i) => {
        const img = sharp(sheet.data, { raw: sheet.info }).extract({ left: (i % PER_ROW) * CELL, top: Math.floor(i / PER_ROW) * CELL, ...l.canvas });
        return format(i) === 'png' ? img.png().toBuffer() : img.jpeg({ quality: 90 }).toBuffer();
    }));
}

function randomLook(digit: number, r: () => number): Look {
    const between = (lo: number, hi: number) => lo + (hi - lo) * r();
    const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)];
    const gray = (lo: number, hi: number) => {
        const v = Math.round(between(lo, hi));
        // a slight tint now and then: the model sees colour photos as luma
        const tint = () => Math.max(0, Math.min(255, v + Math.round(between(-25, 25))));
        return r() < 0.3 ? `rgb(${tint()},${tint()},${tint()})` : `rgb(${v},${v},${v})`;
    };
    const side = Math.round(between(28, CELL));
    const aspect = r() < 0.6 ? 1 : between(0.75, 1.33);
    return {
        digit,
        canvas: { width: Math.round(side * Math.min(1, aspect)), height: Math.round(side * Math.min(1, 1 / aspect)) },
        family: pick(families),
        weight: r() < 0.35 ? 'bold' : 'normal',
        style: r() < 0.25 ? 'italic' : 'normal',
        size: between(0.6, 1.05),
        dx: between(-0.1, 0.1),
        dy: between(-0.08, 0.08),
        rotate: between(-12, 12),
        stroke: r() < 0.5 ? 0 : between(0, 0.05),
        ink: gray(0, 100),
        paper: gray(165, 255)
    };
}

/** n digits (balanced), rendered, then preprocessed exactly as the image handler does it for the tfjs model. */
async function dataset(n: number, seed: number, sig: Signature): Promise<{ x: Float32Array; y: Int32Array }> {
    const r = rng(seed);
    const plan = makePlan(imageOptions.validate({}).value as ImageOptions, preprocessor, sig);
    const y = Int32Array.from({ length: n }, (_, i) => i % CLASSES);
    const looks = Array.from(y, (d) => randomLook(d, r));
    const x = new Float32Array(n * SIDE * SIDE);
    const chunk = 256;
    for (let at = 0; at < n; at += chunk) {
        const part = looks.slice(at, at + chunk);
        const bytes = await render(part, (k) => (at + k) % 5 === 0 ? 'jpeg' : 'png');
        const t = await imageTensor(bytes.map((b) => ({ bytes: b, at: 'training image' })), plan);
        x.set(t.data as Float32Array, at * SIDE * SIDE);
    }
    return { x, y };
}

function build(): tf.LayersModel {
    const init = (seed: number) => tf.initializers.glorotUniform({ seed });
    const input = tf.input({ shape: [SIDE, SIDE, 1], name: 'pixel_values' });
    let h = tf.layers.flatten({ name: 'flatten' }).apply(input) as tf.SymbolicTensor;
    h = tf.layers.dense({ units: 128, activation: 'relu', name: 'hidden1', kernelInitializer: init(1) }).apply(h) as tf.SymbolicTensor;
    h = tf.layers.dense({ units: 64, activation: 'relu', name: 'hidden2', kernelInitializer: init(2) }).apply(h) as tf.SymbolicTensor;
    const logits = tf.layers.dense({ units: CLASSES, name: 'logits', kernelInitializer: init(3) }).apply(h) as tf.SymbolicTensor;
    return tf.model({ inputs: input, outputs: logits, name: 'digits' });
}

async function train(model: tf.LayersModel, data: { x: Float32Array; y: Int32Array }): Promise<void> {
    const r = rng(99);
    const n = data.y.length;
    const x = tf.tensor4d(data.x, [n, SIDE, SIDE, 1]);
    const y = tf.oneHot(tf.tensor1d(data.y, 'int32'), CLASSES);
    const optimizer = tf.train.adam(0.002);
    model.compile({ optimizer, loss: (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.losses.softmaxCrossEntropy(yTrue, yPred), metrics: ['accuracy'] });
    for (let epoch = 0; epoch < EPOCHS; epoch++) {
        // a fresh shuffle and fresh pixel noise each epoch (seeded)
        const order = Array.from({ length: n }, (_, i) => i);
        for (let i = n - 1; i > 0; i--) {
            const j = Math.floor(r() * (i + 1));
            [order[i], order[j]] = [order[j], order[i]];
        }
        const idx = tf.tensor1d(order, 'int32');
        const xs = tf.tidy(() => tf.gather(x, idx).add(tf.randomNormal([n, SIDE, SIDE, 1], 0, 0.15, 'float32', epoch + 1)));
        const ys = tf.gather(y, idx);
        if (epoch === Math.floor(EPOCHS * 0.7)) {
            (optimizer as unknown as { learningRate: number }).learningRate = 0.0005;
        }
        const h = await model.fit(xs, ys, { epochs: 1, batchSize: 64, shuffle: false, verbose: 0 });
        console.log(`epoch ${epoch + 1}/${EPOCHS}: loss ${(h.history.loss[0] as number).toFixed(4)}, accuracy ${(h.history.acc[0] as number).toFixed(4)}`);
        tf.dispose([idx, xs, ys]);
    }
    tf.dispose([x, y]);
}

/** model.json + weights.bin, as tfjs's own file saver writes them. */
async function saveTfjs(model: tf.LayersModel, dir: string): Promise<void> {
    await model.save(tf.io.withSaveHandler(async (artifacts) => {
        const weights = Buffer.concat([artifacts.weightData as ArrayBuffer | ArrayBuffer[]].flat().map((b) => Buffer.from(b)));
        fs.writeFileSync(path.join(dir, 'weights.bin'), weights);
        fs.writeFileSync(path.join(dir, 'model.json'), JSON.stringify({
            format: 'layers-model',
            generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
            convertedBy: null,
            modelTopology: artifacts.modelTopology,
            weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }]
        }));
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON', weightDataBytes: weights.length } };
    }));
}

/** The same network as ONNX: NCHW [batch, 1, 28, 28] in; with one channel, its flattening order is the same as NHWC's. */
function toOnnx(model: tf.LayersModel): Uint8Array {
    const g = new Graph('digits');
    g.input('pixel_values', 'float32', ['batch', 1, SIDE, SIDE]);
    let h = g.node('Flatten', ['pixel_values'], ['flat'], { axis: { i: 1 } });
    for (const [k, name] of ['hidden1', 'hidden2', 'logits'].entries()) {
        const [kernel, bias] = model.getLayer(name).getWeights();
        const w = g.initializer(`${name}.weight`, kernel.dataSync() as Float32Array, kernel.shape as number[]);
        const b = g.initializer(`${name}.bias`, bias.dataSync() as Float32Array, bias.shape as number[]);
        h = g.node('MatMul', [h, w], [`${name}.matmul`]);
        h = g.node('Add', [h, b], [name === 'logits' ? 'logits' : `${name}.add`]);
        if (k < 2) {
            h = g.node('Relu', [h], [`${name}.relu`]);
        }
    }
    g.output('logits', 'float32', ['batch', CLASSES]);
    return g.toBytes();
}

function argmax(row: ArrayLike<number>): number {
    let best = 0;
    for (let i = 1; i < row.length; i++) {
        best = row[i] > row[best] ? i : best;
    }
    return best;
}

async function main(): Promise<void> {
    require('@tensorflow/tfjs-backend-wasm');
    await tf.setBackend('wasm');
    const started = Date.now();
    const nhwc: Signature = { inputs: [{ name: 'pixel_values', type: 'float32', dims: ['batch', SIDE, SIDE, 1] }], outputs: [] };
    const trainSet = await dataset(TRAIN, 1, nhwc);
    const testSet = await dataset(TEST, 2, nhwc);
    console.log(`rendered ${TRAIN} + ${TEST} digits in ${((Date.now() - started) / 1000).toFixed(1)}s`);

    const model = build();
    await train(model, trainSet);

    for (const dir of [out.onnx, out.tfjs]) {
        fs.mkdirSync(dir, { recursive: true });
        fs.writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
        fs.writeFileSync(path.join(dir, 'preprocessor_config.json'), `${JSON.stringify(preprocessor, null, 2)}\n`);
    }
    await saveTfjs(model, out.tfjs);
    fs.writeFileSync(path.join(out.onnx, 'model.onnx'), toOnnx(model));

    // Sample images, as anyone would make them: a black 7 on white, and a dark blue 3 on cream, non-square, as JPEG.
    const base = { family: 'DejaVu Sans', weight: 'normal', style: 'normal', size: 0.8, dx: 0, dy: 0, rotate: 0, stroke: 0 } as const;
    const [seven, three] = await render([
        { ...base, digit: 7, canvas: { width: 100, height: 100 }, ink: '#000000', paper: '#ffffff' },
        { ...base, digit: 3, canvas: { width: 84, height: 112 }, weight: 'bold', ink: '#1a2a6c', paper: '#f4efe1' }
    ], (i) => i === 0 ? 'png' : 'jpeg');
    fs.writeFileSync(path.join(out.samples, 'seven.png'), seven);
    fs.writeFileSync(path.join(out.samples, 'three.jpg'), three);

    // Held-out accuracy (the tfjs model), and the ONNX model against it on the same images.
    const logits = tf.tidy(() => (model.predict(tf.tensor4d(testSet.x, [TEST, SIDE, SIDE, 1])) as tf.Tensor).dataSync() as Float32Array);
    const correct = testSet.y.filter((d, i) => argmax(logits.subarray(i * CLASSES, (i + 1) * CLASSES)) === d).length;
    const session = await ort.InferenceSession.create(path.join(out.onnx, 'model.onnx'));
    const onnx = (await session.run({ pixel_values: new ort.Tensor('float32', testSet.x, [TEST, 1, SIDE, SIDE]) })).logits.data as Float32Array;
    const diff = logits.reduce((m, v, i) => Math.max(m, Math.abs(v - onnx[i])), 0);
    console.log(`held-out accuracy ${(correct / TEST * 100).toFixed(1)}% on ${TEST} digits; ONNX vs tfjs max |diff| ${diff.toExponential(2)}`);
    if (diff > 1e-4) {
        throw new Error(`the ONNX and tfjs models disagree by ${diff}`);
    }
    const tfjsBytes = fs.statSync(path.join(out.tfjs, 'weights.bin')).size;
    console.log(`wrote ${out.onnx} and ${out.tfjs} (${(tfjsBytes / 1024).toFixed(0)} KiB of weights) in ${((Date.now() - started) / 1000).toFixed(0)}s`);
}

main().catch((err) => {
    console.error(err);
    process.exit(1);
});
