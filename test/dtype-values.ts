// The dtypes model's test values (modelgen/zoo.ts dtypes(): one input per datatype, each through Identity), for the
// tests that send every datatype: test/oip.test.ts and test/in-process.test.ts.

/** BYTES elements as the binary extension sends them: each a 4-byte little-endian length, then its bytes. */
export function elements(...items: Array<Buffer | string>): Buffer {
    return Buffer.concat(items.flatMap((item) => {
        const bytes = Buffer.from(item);
        const length = Buffer.alloc(4);
        length.writeUInt32LE(bytes.length);
        return [length, bytes];
    }));
}

/** The bytes of a typed array. */
export const bytesOf = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** The dtypes model's inputs, one per datatype (each named after it), these values for a [2, 2] shape of each. */
export const values: Record<string, unknown[]> = {
    bool: [true, false, false, true], uint8: [0, 1, 254, 255], uint16: [0, 1, 65534, 65535], uint32: [0, 1, 4294967294, 4294967295],
    uint64: [0, 1, 2 ** 53 - 1, 2 ** 32], int8: [-128, -1, 0, 127], int16: [-32768, -1, 0, 32767], int32: [-2147483648, -1, 0, 2147483647],
    int64: [-(2 ** 53 - 1), -1, 0, 2 ** 53 - 1], fp16: [0.5, -2, 65504, 0.0999755859375], fp32: [0.5, -2, 3.4028234663852886e38, 0.10000000149011612],
    fp64: [0.1, -2, 1e300, 5e-324], bytes: ['héllo ✓', '', 'a\tb', '日本語']
};
/** Each datatype's values as the binary extension sends them. */
export const raws: Record<string, Buffer> = {
    bool: Buffer.from([1, 0, 0, 1]), uint8: Buffer.from([0, 1, 254, 255]), uint16: bytesOf(Uint16Array.of(0, 1, 65534, 65535)),
    uint32: bytesOf(Uint32Array.of(0, 1, 4294967294, 4294967295)), uint64: bytesOf(BigUint64Array.of(0n, 1n, 2n ** 64n - 2n, 2n ** 64n - 1n)),
    int8: bytesOf(Int8Array.of(-128, -1, 0, 127)), int16: bytesOf(Int16Array.of(-32768, -1, 0, 32767)), int32: bytesOf(Int32Array.of(-2147483648, -1, 0, 2147483647)),
    int64: bytesOf(BigInt64Array.of(-(2n ** 63n), -1n, 0n, 2n ** 63n - 1n)), fp16: bytesOf(Uint16Array.of(0x7e00, 0x7c00, 0x0001, 0x8000)),
    fp32: bytesOf(Float32Array.of(Infinity, -0, 1.5, 3.4028234663852886e38)), fp64: bytesOf(Float64Array.of(-Infinity, 0.1, 1e-310, Number.MAX_VALUE)),
    bytes: elements('', '✓', Buffer.from([0xe6, 0x97, 0xa5]), 'a'.repeat(300))
};

/** A datatype's name in the Open Inference Protocol, from its input's. */
export const datatype = (name: string) => name === 'bytes' ? 'BYTES' : name.toUpperCase();
