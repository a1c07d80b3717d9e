// A model's signature: its inputs and outputs as the runtime reports them, and what follows from it for batching.

/** One model input or output as the runtime reports it; a string dim is symbolic. */
export interface TensorInfo {
    name: string;
    type: string;
    dims: Array<number | string>;
}

export interface Signature {
    inputs: TensorInfo[];
    outputs: TensorInfo[];
}

/** The most rows a model takes in one run: its first input dim when that is fixed, else unbounded. */
export function fixedBatch(sig: Signature): number | undefined {
    const first = sig.inputs[0]?.dims[0];
    return typeof first === 'number' && first > 0 ? first : undefined;
}
