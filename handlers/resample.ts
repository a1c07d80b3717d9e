// Pillow's resize (Image.resize, which Hugging Face's image processors call), for the axes along which an image is
// enlarged. sharp's (libvips') upsampling aligns the corners of the image where Pillow aligns the centres of its
// pixels, which moves every sample half an output pixel; so the image handler enlarges here, as Pillow's
// libImaging/Resample.c does: a separable convolution (horizontal, then vertical) with its filters, its kernel
// support, and its 8-bit fixed-point arithmetic, so the pixels are Pillow's own. Nearest is Pillow's affine sampling.
// Shrinking stays with sharp, which is much faster on large images and within a level or so of Pillow (README).
import type { Resample } from '../schemas/image';

/** A convolution filter: its support (in input pixels, before scaling) and its weight at a distance. */
interface Filter {
    support: number;
    at(x: number): number;
}

const sinc = (x: number): number => x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);

/** Pillow's filters (Resample.c). */
const FILTERS: Record<Exclude<Resample, 'nearest'>, Filter> = {
    box: { support: 0.5, at: (x) => Number(x > -0.5) * Number(x <= 0.5) },
    bilinear: { support: 1, at: (x) => Math.max(0, 1 - Math.abs(x)) },
    hamming: { support: 1, at: (x) => Math.abs(x) >= 1 ? 0 : sinc(x) * (0.54 + 0.46 * Math.cos(Math.PI * x)) },
    bicubic: {
        support: 2,
        at: (x) => {
            const a = -0.5;
            const d = Math.abs(x);
            return d < 1 ? ((a + 2) * d - (a + 3)) * d * d + 1 : d < 2 ? (((d - 5) * d + 8) * d - 4) * a : 0;
        }
    },
    lanczos: { support: 3, at: (x) => x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0 }
};

/** Pillow's fixed point: weights are integers of 22 fractional bits, and sums start at one half. */
const PRECISION_BITS = 22;
const ONE = 2 ** PRECISION_BITS;

/** The input pixels one output pixel reads along an axis: the first, and a fixed-point weight for each. */
interface Taps {
    first: number;
    weights: number[];
}

/** Pillow's precompute_coeffs and normalize_coeffs_8bpc: the taps of each of `out` pixels from `size` pixels. */
function convolution(size: number, out: number, filter: Filter): Taps[] {
    const scale = size / out;
    const filterScale = Math.max(scale, 1);
    const support = filter.support * filterScale;
    return Array.from({ length: out }, (_, i) => {
        const center = (i + 0.5) * scale;
        const first = Math.max(0, Math.trunc(center - support + 0.5));
        const last = Math.min(size, Math.trunc(center + support + 0.5));
        const raw = Array.from({ length: last - first }, (_, k) => filter.at((k + first - center + 0.5) / filterScale));
        // Never 0: the input pixel nearest the centre always weighs
        const total = raw.reduce((a, b) => a + b, 0);
        const weights = raw.map((w) => {
            const v = w / total * ONE;
            return Math.trunc(v < 0 ? v - 0.5 : v + 0.5);
        });
        return { first, weights };
    });
}

/** Pillow's nearest (ImagingScaleAffine): output pixel i reads input pixel floor((i + 0.5) * size / out), summed as Pillow sums it. */
function nearest(size: number, out: number): Taps[] {
    const step = size / out;
    let at = step * 0.5;
    return Array.from({ length: out }, () => {
        const first = Math.min(Math.trunc(at), size - 1);
        at += step;
        return { first, weights: [ONE] };
    });
}

/** One pass along an axis: `src` (width x height, `channels` interleaved) to `out` pixels along it. */
function pass(src: Uint8Array, width: number, height: number, channels: number, horizontal: boolean, out: number, resample: Resample): Uint8Array {
    const size = horizontal ? width : height;
    const taps = resample === 'nearest' ? nearest(size, out) : convolution(size, out, FILTERS[resample]);
    const [ow, oh] = horizontal ? [out, height] : [width, out];
    const step = horizontal ? channels : width * channels;
    const dst = new Uint8Array(ow * oh * channels);
    for (let y = 0; y < oh; y++) {
        for (let x = 0; x < ow; x++) {
            const { first, weights } = taps[horizontal ? x : y];
            const base = (horizontal ? y * width : x) * channels + first * step;
            for (let c = 0; c < channels; c++) {
                let sum = ONE / 2;
                for (let k = 0; k < weights.length; k++) {
                    sum += src[base + k * step + c] * weights[k];
                }
                dst[(y * ow + x) * channels + c] = Math.min(255, Math.max(0, Math.floor(sum / ONE)));
            }
        }
    }
    return dst;
}

/**
 * Raw 8-bit pixels (width x height, `channels` interleaved, row by row) resized to outWidth x outHeight as Pillow
 * resizes them: horizontally, then vertically, each pass only where the size changes.
 */
export function pillowResize(src: Uint8Array, width: number, height: number, channels: number, outWidth: number, outHeight: number, resample: Resample): Uint8Array {
    const wide = outWidth !== width ? pass(src, width, height, channels, true, outWidth, resample) : src;
    return outHeight !== height ? pass(wide, outWidth, height, channels, false, outHeight, resample) : wide;
}
