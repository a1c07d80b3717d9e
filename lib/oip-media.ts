// Text, image and audio deployments as Open Inference Protocol models. Their handlers take no tensors, so V2 gives each
// BYTES inputs of shape [-1], one element per item: `text` (and, optional, `text_pair`, as many) for text, `image` (an
// encoded image) and `audio` (a WAV file). A V2 request becomes the handler's own request of those items, as its
// application route takes one (texts as JSON; images and audio as the files of a multipart body, or in JSON as the
// base64 text that the request's JSON data holds), and goes through the deployment's queue and batcher as such; the
// items' answers become outputs of one element per item: `label` (BYTES) and `score` (FP64) for a classification,
// `embedding` (FP64, [items, width]) for a text embedding, and for every task `json` (BYTES): each item's answer as the
// application route gives it.
import { fail, quote } from './errors';
import { STRING, bytesElements, checkShape, fromFlat, size, type Tensor } from './tensor';
import { checkOutputs, type InferRequest } from './oip-request';
import { answered, BinaryAnswer, writeAnswer, type V2Model } from './oip-answer';
import type { IncomingHttpHeaders } from 'node:http';
import type { Deployment } from './deployment';
import type { RequestIn } from './handler';
import type { Body } from './messages';
import type { Client, Trace } from './scheduler';

/** A tensor as V2 metadata describes it. */
export interface TensorMeta {
    name: string;
    datatype: string;
    shape: number[];
}

/** The handlers served here, by name, with their inputs: the first is required, any other optional. */
const inputs: Readonly<Record<string, readonly string[]>> = { text: ['text', 'text_pair'], image: ['image'], audio: ['audio'] };

/** Whether a deployment's handler is one of those served here (text, image, audio). */
export const isMedia = (handler: string): boolean => Object.hasOwn(inputs, handler);

/** One item's answer, as its application route gives it. */
interface Answer {
    label?: string;
    score?: number;
    embedding?: number[];
}

/** An output, and how its tensor is made of the items' answers. */
interface Output extends TensorMeta {
    tensor(answers: Answer[]): Tensor;
}

const label: Output = { name: 'label', datatype: 'BYTES', shape: [-1], tensor: (a) => ({ type: STRING, data: a.map((x) => x.label) as never, dims: [a.length] }) };
const score: Output = { name: 'score', datatype: 'FP64', shape: [-1], tensor: (a) => ({ type: 'float64', data: Float64Array.from(a, (x) => x.score as number), dims: [a.length] }) };
const embedding: Output = {
    name: 'embedding', datatype: 'FP64', shape: [-1, -1],
    tensor: (a) => ({ type: 'float64', data: Float64Array.from(a.flatMap((x) => x.embedding as number[])), dims: [a.length, (a[0].embedding as number[]).length] })
};
const json: Output = { name: 'json', datatype: 'BYTES', shape: [-1], tensor: (a) => ({ type: STRING, data: a.map((x) => JSON.stringify(x)) as never, dims: [a.length] }) };

/** The outputs of each task (the handler's `task` option, schemas/<handler>.ts): a new task adds its entry here. */
const byTask: Readonly<Record<string, Output[]>> = { classification: [label, score, json], embedding: [embedding, json], raw: [json] };

const outputsOf = (d: Deployment): Output[] => byTask[d.config.options.task as string];

/** A deployment's inputs and outputs as its V2 metadata shows them. */
export function mediaMetadata(d: Deployment): { inputs: TensorMeta[]; outputs: TensorMeta[] } {
    return {
        inputs: inputs[d.config.handler].map((name) => ({ name, datatype: 'BYTES', shape: [-1] })),
        outputs: outputsOf(d).map(({ name, datatype, shape }) => ({ name, datatype, shape }))
    };
}

/** The elements of each input of a request: strings (JSON data, and text), or the bytes of each (binary data). */
function elementsOf(d: Deployment, request: InferRequest): Map<string, Array<string | Buffer>> {
    const names = inputs[d.config.handler];
    const text = d.config.handler === 'text';
    const elements = new Map<string, Array<string | Buffer>>();
    for (const { name, shape, datatype, data, bytes } of request.inputs) {
        if (!names.includes(name)) {
            throw fail('INVALID_BODY', `unknown input ${quote(name)}; the model's inputs are ${names.map((n) => `"${n}"`).join(', ')}`);
        }
        if (datatype !== 'BYTES') {
            throw fail('INPUT_DTYPE_MISMATCH', `input ${quote(name)} expects datatype BYTES, received ${datatype}`, { input: name, expected: 'BYTES' });
        }
        checkShape(name, [-1], shape);
        elements.set(name, bytes
            ? bytesElements(bytes, size(shape), name, (start, end) => text ? bytes.toString('utf8', start, end) : bytes.subarray(start, end))
            : fromFlat(data, STRING, shape, name).data as unknown as string[]);
    }
    const [first, pair] = names.map((n) => elements.get(n));
    if (!first) {
        throw fail('INVALID_BODY', `missing input ${quote(names[0])}`, { input: names[0] });
    }
    if (pair && pair.length !== first.length) {
        throw fail('INPUT_SHAPE_MISMATCH', `input "text_pair" has ${pair.length} element(s), and "text" ${first.length}: one pair per text`, { input: 'text_pair' });
    }
    return elements;
}

/**
 * The handler's own request of these items, as its application route takes it: {"text", "text_pair"} or {"texts"};
 * files as the parts of a multipart body (binary data), or {"image"} / {"images"} of base64 text (JSON data).
 */
function requestOf(handler: string, elements: Map<string, Array<string | Buffer>>, headers: IncomingHttpHeaders): RequestIn {
    const [name, second] = inputs[handler];
    const items = elements.get(name) as Array<string | Buffer>;
    const pairs = elements.get(second);
    const many = items.length > 1;
    if (handler === 'text') {
        const payload = many ? { texts: items.map((t, i) => pairs ? [t, pairs[i]] : t) } : { text: items[0], ...(pairs && { text_pair: pairs[0] }) };
        return { payload, headers, contentType: 'application/json' };
    }
    if (Buffer.isBuffer(items[0])) {
        // a part per element, named after it, as refusals name it: file part "image[1]"
        return { payload: Object.fromEntries(items.map((b, i) => [`${name}[${i}]`, b])), headers, contentType: 'multipart/form-data' };
    }
    return { payload: many ? { [`${name}s`]: items } : { [name]: items[0] }, headers, contentType: 'application/json' };
}

/**
 * An inference: the request's items through the deployment's queue and batcher, as one request of its handler; the
 * answer in the protocol's form (JSON text, or the binary extension's).
 */
export async function mediaInfer(d: Deployment, request: InferRequest, model: V2Model, headers: IncomingHttpHeaders, timeoutMs: number, client?: Client,
    trace?: Trace): Promise<Body> {
    const elements = elementsOf(d, request);
    const outputs = outputsOf(d);
    checkOutputs(request, outputs.map((o) => o.name));
    const body = JSON.parse(await d.handle(requestOf(d.config.handler, elements, headers), timeoutMs, client, trace)) as Answer & { results?: Answer[] };
    const answers = body.results ?? [body];
    const to = { ...model, id: request.id, outputs: request.outputs, binary: request.binary };
    const written = writeAnswer(to, answered(to, outputs.map((o) => o.name)).map(({ name, binary }) =>
        ({ name, binary, tensor: (outputs.find((o) => o.name === name) as Output).tensor(answers) })));
    return written instanceof BinaryAnswer ? written : JSON.stringify(written);
}
