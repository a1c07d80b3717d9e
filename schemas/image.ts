// Options of the image handler (`options:` of a deployment with `handler: image`). Defaults live here; the model
// folder's preprocessor_config.json fills what serve.yaml leaves out, and the fallbacks named below fill the rest.
import Joi from 'joi';
import { labels, topK, type ClassifyOptions } from './classify';

const perChannel = Joi.array().items(Joi.number()).min(1).max(3);
const side = Joi.number().integer().min(1).max(8192);
const pixel = Joi.number().min(0).max(255);

export const image = Joi.object({
    task: Joi.string().valid('classification', 'raw').default('classification')
        .description('classification: top-k labels from the model\'s logits; raw: every output as nested arrays, per image'),
    size: Joi.alternatives(side, Joi.object({ height: side.required(), width: side.required() }))
        .description('model input size (a number is a square); default: preprocessor_config.json (crop_size, else size), else the model\'s fixed input dims, else 224. '
            + 'Set here, the image is resized to it as resize says, whatever preprocessor_config.json says of sizes'),
    resize: Joi.string().valid('crop', 'letterbox', 'stretch', 'none')
        .description('crop: resize the short side, then centre-crop; letterbox: fit inside, pad with pad_value; stretch: ignore the aspect ratio; '
            + 'none: no resize, only the centre crop (padded where the image is smaller). Default: as preprocessor_config.json says (do_resize, '
            + 'size, crop_size, crop_pct, as Hugging Face\'s processors apply them), else crop'),
    resample: Joi.string().valid('nearest', 'bilinear', 'bicubic', 'lanczos', 'box', 'hamming')
        .description('resize filter; default: preprocessor_config.json resample (PIL codes 0-5), else bilinear'),
    pad_value: Joi.alternatives(pixel, Joi.array().items(pixel).length(3))
        .description('the pixel value (0-255, before rescaling; one for every channel, or R, G, B) of padding: letterbox borders, and '
            + 'a centre crop larger than the image. Default 0 (black), as Hugging Face pads; a dark-on-light model wants 255'),
    mean: perChannel.description('per-channel mean, subtracted after rescaling (one value serves every channel); default: preprocessor_config.json image_mean, else 0'),
    std: perChannel.description('per-channel std, divided by after the mean; default: preprocessor_config.json image_std, else 1'),
    rescale_factor: Joi.number().greater(0).description('pixel values (0-255) are multiplied by this first; default: preprocessor_config.json rescale_factor, else 1/255'),
    channels: Joi.number().valid(1, 3).description('1 (grayscale, ITU-R 601 luma) or 3 (RGB); default: the model input\'s channel dimension, else 3'),
    layout: Joi.string().valid('nchw', 'nhwc').description('default: read from the model\'s input shape (channels of 1 or 3 second: nchw; last: nhwc), else nchw'),
    output: Joi.string().description('classification: the model output holding the logits; default: "logits" when there is one, else the first output'),
    top_k: topK,
    labels
});

/** PIL's filters, by name: the codes 0 to 5 of preprocessor_config.json's resample are nearest, lanczos, bilinear, bicubic, box, hamming. */
export type Resample = 'nearest' | 'bilinear' | 'bicubic' | 'lanczos' | 'box' | 'hamming';

export interface ImageOptions extends ClassifyOptions {
    task: 'classification' | 'raw';
    size?: number | { height: number; width: number };
    resize?: 'crop' | 'letterbox' | 'stretch' | 'none';
    resample?: Resample;
    pad_value?: number | number[];
    mean?: number[];
    std?: number[];
    rescale_factor?: number;
    channels?: 1 | 3;
    layout?: 'nchw' | 'nhwc';
    output?: string;
}
