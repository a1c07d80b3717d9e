// Dependency-free writer for the subset of ONNX (onnx/onnx.proto) that
// tsserve needs to generate small test/bench models without Python.
//
// Protobuf wire format: every field is a varint key (field << 3 | wireType)
// followed by a varint (type 0), 4 little-endian bytes (type 5) or a
// varint length plus payload (type 2). Messages are encoded bottom-up.

export type DType = 'float32' | 'int32' | 'int64' | 'float16' | 'float64' | 'int8' | 'int16' | 'uint8' | 'uint16' | 'uint32' | 'uint64' | 'bool' | 'string';
/** A dimension: a fixed size, or a symbolic name such as 'batch'. */
export type Dim = number | string;
export type TensorData = Float32Array | Int32Array | BigInt64Array;
export interface TensorValue {
    data: TensorData;
    dims: number[];
}
/** One node attribute; the key selects the AttributeProto field and type. */
export type Attr =
    | { f: number }
    | { i: number }
    | { s: string }
    | { t: TensorValue }
    | { floats: number[] }
    | { ints: number[] };

/** TensorProto.DataType codes. */
const ELEM_TYPE: Record<DType, number> = {
    float32: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7, string: 8, bool: 9, float16: 10, float64: 11, uint32: 12, uint64: 13
};
/** ModelProto.ir_version (IR v8, ONNX 1.10+) and default-domain opset. */
export const IR_VERSION = 8;
export const OPSET = 17;

const VARINT = 0;
const LEN = 2;
const FIXED32 = 5;

/** Protobuf message under construction. Raw byte chunks are joined once. */
class Msg {
    private readonly parts: Uint8Array[] = [];

    private key(field: number, wire: number): void {
        this.varint((field << 3) | wire);
    }

    /** Varint of a signed 64-bit value (negatives take 10 bytes, as int64 requires). */
    private varint(value: number | bigint): void {
        let n = BigInt.asUintN(64, BigInt(value));
        const out: number[] = [];
        while (n > 0x7fn) {
            out.push(Number(n & 0x7fn) | 0x80);
            n >>= 7n;
        }
        out.push(Number(n));
        this.parts.push(Uint8Array.from(out));
    }

    int(field: number, value: number | bigint): this {
        this.key(field, VARINT);
        this.varint(value);
        return this;
    }

    float(field: number, value: number): this {
        this.key(field, FIXED32);
        const b = new Uint8Array(4);
        new DataView(b.buffer).setFloat32(0, value, true);
        this.parts.push(b);
        return this;
    }

    bytes(field: number, data: Uint8Array): this {
        this.key(field, LEN);
        this.varint(data.length);
        this.parts.push(data);
        return this;
    }

    str(field: number, s: string): this {
        return this.bytes(field, Buffer.from(s, 'utf8'));
    }

    msg(field: number, m: Msg): this {
        return this.bytes(field, m.finish());
    }

    /** Packed repeated int64 (parsers accept packed and unpacked alike). */
    packedInts(field: number, values: readonly number[]): this {
        const inner = new Msg();
        for (const v of values) inner.varint(v);
        return this.bytes(field, inner.finish());
    }

    /** Packed repeated float. */
    packedFloats(field: number, values: readonly number[]): this {
        const b = new Uint8Array(values.length * 4);
        const view = new DataView(b.buffer);
        values.forEach((v, k) => view.setFloat32(k * 4, v, true));
        return this.bytes(field, b);
    }

    finish(): Uint8Array {
        return Buffer.concat(this.parts);
    }
}

function elemTypeOf(data: TensorData): number {
    if (data instanceof Float32Array) return ELEM_TYPE.float32;
    return data instanceof BigInt64Array ? ELEM_TYPE.int64 : ELEM_TYPE.int32;
}

/** TensorProto with raw_data (typed arrays are little-endian on every platform Node supports). */
function tensorProto(name: string, { data, dims }: TensorValue): Msg {
    return new Msg()
        .packedInts(1, dims)
        .int(2, elemTypeOf(data))
        .str(8, name)
        .bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
}

/** AttributeProto: name, the value field, and the AttributeType discriminator (field 20). */
function attributeProto(name: string, a: Attr): Msg {
    const m = new Msg().str(1, name);
    if ('f' in a) return m.float(2, a.f).int(20, 1);
    if ('i' in a) return m.int(3, a.i).int(20, 2);
    if ('s' in a) return m.str(4, a.s).int(20, 3);
    if ('t' in a) return m.msg(5, tensorProto(name, a.t)).int(20, 4);
    if ('floats' in a) return m.packedFloats(7, a.floats).int(20, 6);
    return m.packedInts(8, a.ints).int(20, 7);
}

/** ValueInfoProto{name, TypeProto{tensor_type{elem_type, shape{dim*}}}}. */
function valueInfo(name: string, dtype: DType, dims: readonly Dim[]): Msg {
    const shape = new Msg();
    for (const d of dims) {
        const dim = typeof d === 'number' ? new Msg().int(1, d) : new Msg().str(2, d);
        shape.msg(1, dim);
    }
    const tensorType = new Msg().int(1, ELEM_TYPE[dtype]).msg(2, shape);
    return new Msg().str(1, name).msg(2, new Msg().msg(1, tensorType));
}

/** A computation graph; nodes must be added in topological order. */
export class Graph {
    private readonly nodes: Msg[] = [];
    private readonly initializers: Msg[] = [];
    private readonly inputs: Msg[] = [];
    private readonly outputs: Msg[] = [];

    constructor(readonly name: string) {}

    input(name: string, dtype: DType, dims: readonly Dim[]): this {
        this.inputs.push(valueInfo(name, dtype, dims));
        return this;
    }

    output(name: string, dtype: DType, dims: readonly Dim[]): this {
        this.outputs.push(valueInfo(name, dtype, dims));
        return this;
    }

    /** Adds a constant tensor; returns its name for use as a node input. */
    initializer(name: string, data: TensorData, dims: number[]): string {
        this.initializers.push(tensorProto(name, { data, dims }));
        return name;
    }

    /** Adds a node; returns the name of its first output. */
    node(op: string, inputs: string[], outputs: string[], attrs: Record<string, Attr> = {}): string {
        const m = new Msg();
        for (const i of inputs) m.str(1, i);
        for (const o of outputs) m.str(2, o);
        m.str(3, `${op}_${this.nodes.length}`).str(4, op);
        for (const [k, v] of Object.entries(attrs)) m.msg(5, attributeProto(k, v));
        this.nodes.push(m);
        return outputs[0];
    }

    /** Serialises a ModelProto (IR 8, default-domain opset 17) holding this graph. */
    toBytes(): Uint8Array {
        const g = new Msg();
        for (const n of this.nodes) g.msg(1, n);
        g.str(2, this.name);
        for (const t of this.initializers) g.msg(5, t);
        for (const i of this.inputs) g.msg(11, i);
        for (const o of this.outputs) g.msg(12, o);
        return new Msg()
            .int(1, IR_VERSION)
            .str(2, 'tsserve')
            .msg(7, g)
            .msg(8, new Msg().str(1, '').int(2, OPSET))
            .finish();
    }
}
