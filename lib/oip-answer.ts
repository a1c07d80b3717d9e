// The Open Inference Protocol's inference answer, written where the outputs are: in the replica for the tensor handler
// (the front then only forwards it), in the front for text, image and audio (lib/oip-media.ts). JSON, or the binary
// extension's form when an output is asked for as binary data: the JSON header, then each binary output's bytes, in
// the order of the outputs.
import { oipNames, toBytes, toFlat, type Tensor } from './tensor';
import type { RequestedOutput } from './oip-request';
import type { BinaryBody } from './messages';

/** The model a V2 request names, as its answer names it back. */
export interface V2Model {
    model_name: string;
    model_version: string;
}

/** What an answer is written for: the model, and the request's id and the outputs it asked for (lib/oip-request.ts). */
export interface AnswerTo extends V2Model {
    id?: unknown;
    /** absent: the model's outputs (the handler's default ones), each binary as `binary` says */
    outputs?: RequestedOutput[];
    binary: boolean;
}

/** An answer in the binary extension's form. A replica sends it as it is (lib/worker.ts), not as JSON. */
export class BinaryAnswer implements BinaryBody {
    constructor(readonly header_length: number, readonly bytes: Uint8Array) {}
}

/** The outputs an answer holds, in order: those asked for, else every one of `names` as `binary` says. */
export function answered(to: AnswerTo, names: readonly string[]): RequestedOutput[] {
    return to.outputs ?? names.map((name) => ({ name, binary: to.binary }));
}

/**
 * The answer of these outputs (each a tensor, and whether it goes as binary data): the response object, or a
 * BinaryAnswer when any output goes as binary data.
 */
export function writeAnswer(to: AnswerTo, outputs: Array<{ name: string; tensor: Tensor; binary: boolean }>): Record<string, unknown> | BinaryAnswer {
    const chunks: Buffer[] = [];
    const written = outputs.map(({ name, tensor, binary }) => {
        const head = { name, datatype: oipNames[tensor.type], shape: tensor.dims };
        if (!binary) {
            return { ...head, data: toFlat(tensor) };
        }
        const bytes = toBytes(tensor);
        chunks.push(bytes);
        return { ...head, parameters: { binary_data_size: bytes.length } };
    });
    const answer = { model_name: to.model_name, model_version: to.model_version, ...(to.id !== undefined && { id: to.id }), outputs: written };
    if (!chunks.length) {
        return answer;
    }
    const header = Buffer.from(JSON.stringify(answer));
    return new BinaryAnswer(header.length, Buffer.concat([header, ...chunks]));
}
