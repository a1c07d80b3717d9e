// JSON tensors scanned straight from a body's bytes (lib/json-tensor.ts) against the ordinary path (hapi's JSON
// parse with @hapi/bourne, then fromNested()): the same tensors to the bit, or the same error, for every dtype, edge
// numbers, thousands of random ones and malformed bodies; then the front door's wiring (lib/http.ts), in process; then
// a real tsserve up, whose answers to a JSON body are those to the same tensors in the binary extension, and those
// of hapi's own parse of the same bytes.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import zlib from 'node:zlib';
import Boom from '@hapi/boom';
import { tensor } from '../handlers/tensor';
import { JsonTensors, parseAsHapi, parsedJson, readJson, scan } from '../lib/json-tensor';
import { dtypes, toHalf } from '../lib/tensor';
import { createServer } from '../lib/http';
import { Controller, type Route } from '../lib/controller';
import { ConfigWatcher } from '../lib/watcher';
import { Graph } from '../modelgen/onnx-builder';
import { mulberry32 } from '../modelgen/zoo';
import { serve, type Served } from './helpers';
import type { Signature } from '../lib/signature';
import type { RequestIn } from '../lib/handler';

// hapi's own JSON parser, as @hapi/subtext calls it (a dependency of hapi's, for this comparison only)
const Bourne = require('@hapi/bourne') as { parse(text: string, options: { protoAction: string }): unknown };

const handler = tensor({ options: {}, model: { file: 'model.onnx' } } as never);

/** What hapi made of a JSON body before the scanner: @hapi/subtext's steps (null when empty; its 400 when invalid). */
function hapiParse(bytes: Buffer): unknown {
    if (!bytes.length) {
        return null;
    }
    try {
        return Bourne.parse(bytes.toString('utf8'), { protoAction: 'error' });
    }
    catch (err) {
        throw Boom.badRequest('Invalid request payload JSON format', err);
    }
}

/** A parse's outcome, comparable: its rows, key and feeds (type, dims, array kind, every byte), or its error. */
function outcome(parse: () => ReturnType<typeof handler.parse>): unknown {
    try {
        const { rows, key, item } = parse();
        const feeds = Object.entries(item.feeds).map(([name, v]) => [name, v.type, v.dims, v.data.constructor.name, Array.isArray(v.data) ? v.data
            : [Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength).toString('hex'), v.data.byteOffset, v.data.buffer.byteLength]]);
        return { rows, key, feeds };
    }
    catch (err) {
        const boom = err as Boom.Boom;
        return Boom.isBoom(boom) ? { status: boom.output.statusCode, message: boom.message, data: boom.data instanceof Error ? String(boom.data) : boom.data } : { notBoom: String(err) };
    }
}

const request = (payload: unknown): RequestIn => ({ payload, headers: {}, contentType: 'application/json' });
/** The ordinary path: hapi's parse, then the tensor handler on parsed JSON. */
const ordinary = (body: Buffer, sig: Signature) => outcome(() => handler.parse(request(hapiParse(body)), sig));
/** The new path: the raw bytes, scanned (or, outside the scanner's form, parsed as hapi does). */
const scanned = (body: Buffer, sig: Signature) => outcome(() => handler.parse(request(body), sig));
/** Whether the scanner itself made the feeds (not the ordinary path behind it). */
const fast = (body: Buffer, sig: Signature) => Boolean(scan(body)?.feeds(sig));

const one = (type: string, dims: Array<number | string> = ['batch', 'n']): Signature => ({ inputs: [{ name: 'x', type, dims }], outputs: [] });

/** Asserts that both paths give the same outcome for `body`, and whether the scanner took it. */
function same(tap: Pick<typeof t, 'strictSame' | 'equal'>, body: string | Buffer, sig: Signature, scannerTakes: boolean | undefined, msg: string): void {
    const bytes = Buffer.isBuffer(body) ? body : Buffer.from(body);
    tap.strictSame(scanned(bytes, sig), ordinary(bytes, sig), msg);
    if (scannerTakes !== undefined) {
        tap.equal(fast(bytes, sig), scannerTakes, `${msg}: ${scannerTakes ? 'the scanner made the feeds' : 'the ordinary path answered'}`);
    }
}

/** Number texts for floats: signs, zeros, subnormals, the extremes, ties of each width, digits beyond 17, exponents. */
const floatTexts = [
    '0', '-0', '0.0', '-0.0', '0e0', '-0E+5', '0e999999999', '1', '-1', '0.1', '0.5', '2.5', '-12345.6789e-3', '1E5', '1e+5', '1E-5', '1e-5',
    '1e-45', '1.401298464324817e-45', '7e-46', '7.006492321624085e-46', '1.1754942e-38', '5e-324', '2.5e-324', '2.4703282292062328e-324',
    '4.9406564584124654e-324', '2.2250738585072011e-308', '2.2250738585072014e-308', '1e-310', '1.7976931348623157e308',
    '1.7976931348623158e308', '1.7976931348623159e308', '1e308', '1e309', '-1e400', '3.4028234663852886e38', '3.4028235677973366e38',
    '3.4028235e38', '0.10000000149011612', '0.30000000000000004', '0.1000000000000000055511151231257827021181583404541015625',
    '123456789012345678', '12345678901234567890123', '9007199254740993', '9007199254740993.0', '9007199254740995.0', '4503599627370496.5', '13510798882111489.0', '13510798882111491.0', '13510798882111490.5',
    '0.5000000000000000', '1.000000000000000', '1.0000000000000002', '0.9999999999999999', '0.99999999999999989', '0.99999999999999978', '1.9999999999999998', '1e22', '1e23', '1e-22', '1e-23',
    '123456789012345e-22', '1234567890123456e-22', '12345678901234567e-30', '65504', '65519.99', '65520', '-65520', '6.103515625e-5',
    '6.097555160522461e-5', '5.960464477539063e-8', '2.9802322387695312e-8', '8.940696716308594e-8', '1.0009765625', '1.00048828125',
    '1.00146484375', '0.000001', '1.5e-7', '0.48627451062202454', '-1.2345678901234567', '123.45678901234567', '4.8627451062202454e-5',
    `1${'0'.repeat(400)}`, `0.${'0'.repeat(400)}1`, `1${'0'.repeat(30)}e-30`, '0.000000000000000000000000000001'
];

t.test('floats: every edge number, scanned to the same bits as the ordinary path', async (t) => {
    for (const type of ['float64', 'float32', 'float16']) {
        same(t, `{"inputs": {"x": [[${floatTexts.join(', ')}]]}}`, one(type), true, `${type}, one row`);
        same(t, `{"inputs": [${floatTexts.map((x) => `[${x}, ${x}]`).join(',')}]}`, one(type), true, `${type}, a row each, without names`);
        for (const bad of ['true', 'false', 'null', '"1"', '{}']) {
            same(t, `{"inputs": {"x": [[1, ${bad}]]}}`, one(type), false, `${type} with ${bad}`);
        }
    }
    const scalar: Signature = { inputs: [{ name: 'x', type: 'float64', dims: [] }], outputs: [] };
    same(t, '{"inputs": {"x": 2.5}}', scalar, false, 'a scalar is not in the scanner\'s form');
});

t.test('integers and bools: in range, the scanner; out of range, fractional or of the wrong kind, the ordinary path\'s error', async (t) => {
    for (const [type, d] of Object.entries(dtypes).filter(([, d]) => d.range)) {
        const [lo, hi] = d.range as [number, number];
        const good = [String(lo), String(hi), '0', '-0', '1', '1.0', '1e0', '10e-1', '0.1e1'];
        same(t, `{"inputs": {"x": [[${good.join(',')}]]}}`, one(type), true, `${type}: ${good.join(', ')}`);
        for (const bad of [String(lo - 1), String(hi + 1), '0.5', '1e400', '-1e400', '1.0000000000000002', d.bool ? '"1"' : 'true', 'null']) {
            same(t, `{"inputs": {"x": [[1, ${bad}]]}}`, one(type), false, `${type}: ${bad}`);
        }
    }
    same(t, '{"inputs": {"x": [[true, false, 1, 0, -0, true]]}}', one('bool'), true, 'bool: true, false and 0 and 1');
    same(t, '{"inputs": {"x": [[true, false], [2, 1]]}}', one('bool'), false, 'bool: 2');
    same(t, '{"inputs": {"x": [[1, 2]]}}', one('bfloat16'), false, 'a type tsserve cannot take as JSON');
    same(t, '{"inputs": {"x": [["a", "é", "\\u00e9"]]}}', one('string'), false, 'strings: the ordinary path');
    same(t, '{"inputs": {"x": [[1, 2]]}}', one('string'), false, 'numbers for a string input');
});

/** A random number's text, in the forms clients write: shortest doubles, float32s, fixed digits, exponents, long and short. */
function randomNumber(rand: () => number): string {
    const bits = new Float64Array(1);
    const words = new Uint32Array(bits.buffer);
    const digits = (n: number) => Array.from({ length: n }, (_, i) => String(Math.floor(rand() * (i ? 10 : 9)) + (i ? 0 : 1))).join('');
    const sign = rand() < 0.3 ? '-' : '';
    switch (Math.floor(rand() * 9)) {
        case 0:
            words[0] = rand() * 2 ** 32;
            words[1] = rand() * 2 ** 32;
            return Number.isFinite(bits[0]) ? String(bits[0]) : '0';
        case 1:
            return String(Math.fround(rand() * 4 - 2));
        case 2:
            return sign + (rand() * 10 ** Math.floor(rand() * 20 - 10)).toPrecision(1 + Math.floor(rand() * 21));
        case 3: {
            const d = digits(1 + Math.floor(rand() * 22));
            const at = Math.floor(rand() * (d.length + 1));
            return sign + (at ? d.slice(0, at) + (at < d.length ? `.${d.slice(at)}` : '') : `0.${'0'.repeat(Math.floor(rand() * 5))}${d}`);
        }
        case 4:
            return `${sign}0.${digits(16 + Math.floor(rand() * 4))}`;
        case 5: {
            const d = digits(1 + Math.floor(rand() * 19));
            return `${sign}${d[0]}${d.length > 1 ? `.${d.slice(1)}` : ''}${rand() < 0.5 ? 'e' : 'E'}${Math.floor(rand() * 80) - 40}`;
        }
        case 6:
            return sign + (rand() * 4).toPrecision(17);
        case 7: {
            // halfway between two doubles, as 17 to 19 digits write it
            bits[0] = rand() * 2;
            const a = bits[0];
            words[0] += 1;
            return ((a + bits[0]) / 2).toPrecision(17 + Math.floor(rand() * 3));
        }
        default:
            return sign + String(Math.floor(rand() * 2 ** 53));
    }
}

t.test('a random fuzz: thousands of numbers, bit for bit, in every float type and in integers', async (t) => {
    const rand = mulberry32(20261202);
    let scannedBodies = 0;
    for (let k = 0; k < 60; k++) {
        const texts = Array.from({ length: 1000 }, () => randomNumber(rand));
        const body = Buffer.from(`{"inputs":{"x":[[${texts.join(',')}]]}}`);
        for (const type of ['float64', 'float32', 'float16']) {
            const a = scanned(body, one(type));
            const b = ordinary(body, one(type));
            if (JSON.stringify(a) !== JSON.stringify(b)) {
                t.strictSame(a, b, `${type}: ${texts.join(',')}`);
            }
            scannedBodies += Number(fast(body, one(type)));
        }
        // integers of every size up to 2^53, and of int16's range, as rows of 10
        const rowsOf = (ints: number[]) => Buffer.from(`{"inputs":{"x":[${ints.map((x, i) => (i % 10 ? ',' : i ? '],[' : '[') + x).join('')}]]}}`);
        const wide = rowsOf(Array.from({ length: 1000 }, () => Math.floor((rand() * 2 - 1) * 2 ** (rand() * 53))));
        const narrow = rowsOf(Array.from({ length: 1000 }, () => Math.floor((rand() * 2 - 1) * 32768)));
        for (const type of ['int64', 'uint64', 'int32', 'uint32', 'int16', 'uint8']) {
            t.strictSame(scanned(wide, one(type)), ordinary(wide, one(type)), `${type}: the same tensor, or the same error`);
            t.strictSame(scanned(narrow, one(type)), ordinary(narrow, one(type)), `${type}, int16's range: the same tensor, or the same error`);
        }
        t.same([fast(wide, one('int64')), fast(narrow, one('int16')), fast(narrow, one('int32'))], [true, true, true], 'the scanner\'s');
    }
    t.equal(scannedBodies, 180, 'every float body was the scanner\'s');
});

t.test('malformed and unusual bodies: the ordinary path\'s answer, status, message and details', async (t) => {
    const two: Signature = { inputs: [{ name: 'a', type: 'float32', dims: ['batch', 2] }, { name: 'b', type: 'int32', dims: ['batch', 1] }], outputs: [] };
    const mlp = one('float32', ['batch', 4]);
    const deep = (n: number) => `${'['.repeat(n)}1${']'.repeat(n)}`;
    const bodies: Array<[string | Buffer, boolean]> = [
        // valid, and the scanner's
        ['{"inputs": {"x": [[0.1, 0.2, 0.3, 0.4]]}}', true],
        ['{"inputs": [[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]]}', true],
        [' \t\r\n{ \t\r\n"inputs" \n: \r{ "x"\t:\n[ [ 1 ,2, 3 , 4 ] ] \n} }\r\n\t ', true],
        ['{"inputs": {"x": [[1, 2, 3, 4]], "y": [[1]]}}', false],
        ['{"inputs": {}}', true],
        // valid, and not the scanner's: the ordinary path answers (other keys, escapes, V2's form, strings, null)
        ['{"inputs": {"x": [[1, 2, 3, 4]]}, "id": "7"}', false],
        ['{"id": "7", "inputs": {"x": [[1, 2, 3, 4]]}}', false],
        ['{"inputs": {"\\u0078": [[1, 2, 3, 4]]}}', false],
        ['{"inputs": {"\u00e9": [[1, 2, 3, 4]]}}', false],
        ['{"inp\\u0075ts": {"x": [[1, 2, 3, 4]]}}', false],
        ['{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}', false],
        ['{"inputs": [null]}', false],
        ['{"inputs": {"x": [[1, 2, 3, null]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, "4"]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, [4]]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, {}]]}}', false],
        ['{"inputs": null}', false],
        ['{"inputs": 5}', false],
        ['{"inputs": "x"}', false],
        ['{"inputs": {"x": 5}}', false],
        ['{}', false],
        ['[]', false],
        ['null', false],
        ['"inputs"', false],
        ['5', false],
        ['', false],
        ['  ', false],
        // wrong for the model: shape, rank, names, raggedness, emptiness
        ['{"inputs": {"x": [[1, 2, 3]]}}', false],
        ['{"inputs": {"x": [1, 2, 3, 4]}}', false],
        ['{"inputs": {"x": [[[1, 2, 3, 4]]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4], [1, 2, 3]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4], [1, 2, 3, 4, 5]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4], 5]}}', false],
        ['{"inputs": {"x": [[[1], 2, 3, 4]]}}', false],
        ['{"inputs": {"x": []}}', false],
        ['{"inputs": {"x": [[]]}}', false],
        ['{"inputs": {"x": [[], []]}}', false],
        ['{"inputs": []}', false],
        ['{"inputs": {"y": [[1, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4]], "x": [[5, 6, 7, 8]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4]]}, "inputs": {"x": [[5, 6, 7, 8]]}}', false],
        [`{"inputs": {"x": ${deep(64)}}}`, false],
        [`{"inputs": {"x": ${deep(65)}}}`, false],
        [`{"inputs": {"x": ${deep(5000)}}}`, false],
        // "__proto__", as hapi refuses it (or not, where it is no key of that name)
        ['{"inputs": {"__proto__": [[1, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4]]}, "__proto__": {}}', false],
        ['{"__proto__": 1, "inputs": {"x": [[1, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4]]}, "m": {"n": [{"\\u005f_proto__": 1}]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4]]}, "a\\"__proto__": 1}', false],
        // not JSON
        ['{"inputs": {"x": [[1, 2, 3, 4]]}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4]]}}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4]]}} x', false],
        ['{"inputs": {"x": [[1, 2, 3, 4]]},}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4]],}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4],]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4,]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3,, 4]]}}', false],
        ['{"inputs": {"x": [[1 2, 3, 4]]}}', false],
        ['{"inputs": {"x" [[1, 2, 3, 4]]}}', false],
        ['{"inputs" {"x": [[1, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4]] "y": [[1]]}}', false],
        ['{"inputs": {x: [[1, 2, 3, 4]]}}', false],
        ["{'inputs': {'x': [[1, 2, 3, 4]]}}", false],
        ['{"inputs": }', false],
        ['{"inputs": {"x": }}', false],
        ['{"inputs": {"x": [[01, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[-01, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[+1, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[.5, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[1., 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[1.5.5, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[1e, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[1e+, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[1ee5, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[-, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[--1, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[0x10, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[NaN, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[Infinity, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[-Infinity, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[tru, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[truee, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[fals, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4', false],
        ['{"inputs": {"x": [[1, 2, 3, 4.', false],
        ['{"inputs": {"x": [[1, 2, 3, 4e', false],
        ['{"inputs": {"x": [[1, 2, 3, -', false],
        ['{"inputs": {"x": [[1, 2, 3, t', false],
        ['{"inputs": {"x": [[1, 2, 3, f', false],
        ['{"inputs": {"x', false],
        ['{"inputs', false],
        ['{', false],
        ['{"inputs": {"x": [[1,\f2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[1,\v2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[1,\u00a02, 3, 4]]}}', false],
        ['\ufeff{"inputs": {"x": [[1, 2, 3, 4]]}}', false],
        ['{"inputs": {"x\ty": [[1, 2, 3, 4]]}}', false],
        ['{"inputs": {"x": [[1, 2, 3, 4]]}}\u0000', false],
        ['{"inputs": {"x": [[1, 2, 3, 4\u0000]]}}', false],
        [Buffer.from([...Buffer.from('{"inputs": {"x": [[1, 2, 3, 4]]}, "a": "'), 0xff, 0xfe, ...Buffer.from('"}')]), false],
        [Buffer.from([...Buffer.from('{"inputs": {"x'), 0xc3, 0xa9, ...Buffer.from('": [[1, 2, 3, 4]]}}')]), false]
    ];
    for (const [body, scannerTakes] of bodies) {
        const shown = JSON.stringify(body.toString()).slice(0, 100);
        same(t, body, mlp, scannerTakes, shown);
        same(t, body, two, undefined, `${shown}, for a model of two inputs`);
    }
    same(t, '{"inputs": {"a": [[1, 2]], "b": [[3]]}}', two, true, 'two inputs');
    same(t, '{"inputs": {"b": [[3], [4]], "a": [[1, 2], [5, 6]]}}', two, true, 'two inputs, named the other way round');
    same(t, '{"inputs": {"a": [[1, 2]], "b": [[3.5]]}}', two, false, 'two inputs, one of them wrong');
    same(t, '{"inputs": {"a": [[1, 2]], "b": [[3], [4]]}}', two, true, 'two inputs, of different rows (check() refuses them as it does)');
    same(t, '{"inputs": [[1, 2]]}', two, false, 'the form without names, for a model of two inputs');
});

t.test('mutations of valid bodies: the scanner never takes what JSON.parse refuses', async (t) => {
    const rand = mulberry32(7);
    const bodies = ['{"inputs": {"x": [[0.1, -2e-3, 3E+2, 4]]}}', '{"inputs": [[true, false], [1, 0]]}', '{"inputs": {"a": [[1, 2]], "b": [[3]]}}'];
    const sigs = [one('float32', ['batch', 4]), one('bool'), { inputs: [{ name: 'a', type: 'float64', dims: ['batch', 2] }, { name: 'b', type: 'int8', dims: ['batch', 1] }], outputs: [] }];
    const alphabet = [...'[]{},:"-+.eE0123456789 \t\n\r\f\v\\/truefalsenullx', '\u00a0', '\u0000', '\u00e9'];
    let differ = 0;
    for (let k = 0; k < 6000; k++) {
        const i = k % bodies.length;
        const text = [...bodies[i]];
        for (let m = 1 + Math.floor(rand() * 3); m > 0; m--) {
            const at = Math.floor(rand() * (text.length + 1));
            const c = alphabet[Math.floor(rand() * alphabet.length)];
            const kind = rand();
            if (kind < 0.4) {
                text.splice(at, 1);
            }
            else {
                text.splice(at, kind < 0.7 ? 0 : 1, c);
            }
        }
        const body = Buffer.from(text.join(''));
        const a = scanned(body, sigs[i]);
        const b = ordinary(body, sigs[i]);
        if (JSON.stringify(a) !== JSON.stringify(b)) {
            differ++;
            t.strictSame(a, b, text.join(''));
        }
    }
    t.equal(differ, 0, '6000 mutations, the same answers');
});

t.test('the pieces: empty bodies, hapi\'s parse, large bodies beyond what is kept between bodies', async (t) => {
    t.equal(readJson(null), null);
    t.equal(readJson(Buffer.alloc(0)), null);
    t.type(readJson(Buffer.from('{"inputs": [[1]]}')), JsonTensors);
    t.strictSame(readJson(Buffer.from('{"inputs": [[1]], "id": 1}')), { inputs: [[1]], id: 1 }, 'parsed as hapi parses it');
    t.strictSame(parseAsHapi('[1]'), [1]);
    t.throws(() => parseAsHapi('{"a": {"__proto__": 1}}'), { message: 'Invalid request payload JSON format', output: { statusCode: 400 } });
    t.strictSame(parsedJson(readJson(Buffer.from('{"inputs": {"x": [[1, 2]]}}'))), { inputs: { x: [[1, 2]] } }, 'a scanned body as parsed JSON');
    const payload = { inputs: [[1]] };
    t.equal(parsedJson(payload), payload, 'anything else as it is');

    // 1,100,000 values in 5.5 MB: beyond the values and the copy kept between bodies; then a small body again
    const n = 1_100_000;
    const big = Buffer.from(`{"inputs": [[${'0.25,'.repeat(n - 1)}-1.5]]}`);
    const scannedBig = scan(big) as JsonTensors;
    t.strictSame([scannedBig.tensors[0].dims, scannedBig.tensors[0].values.length, scannedBig.tensors[0].values[0], scannedBig.tensors[0].values[n - 1]], [[1, n], n, 0.25, -1.5]);
    same(t, big, one('float32'), true, 'a large body: the same tensor');
    same(t, '{"inputs": [[1, 2.5]]}', one('float16'), true, 'then a small one');
});

t.test('the tensor handler takes a raw JSON body only as JSON: a raw body of another type is the binary extension\'s', async (t) => {
    const sig = one('float32', ['batch', 2]);
    const body = Buffer.from('{"inputs": {"x": [[1, 2]]}}');
    t.match(outcome(() => handler.parse({ payload: body, headers: {}, contentType: 'application/octet-stream' }, sig)), { status: 400, message: /Inference-Header-Content-Length must be/ });
    t.strictSame(outcome(() => handler.parse({ payload: body, headers: {}, contentType: 'application/json' }, sig)), ordinary(body, sig));
    t.strictSame(outcome(() => handler.parse({ payload: readJson(body), headers: {}, contentType: 'application/json' }, sig)), ordinary(body, sig), 'scanned already');
});

// ---- the front door's wiring (lib/http.ts), in process, with routes of its own

t.test('the front door keeps a JSON body raw for a tensor route alone, and reads it first', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-json-tensor-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'serve.yaml');
    fs.writeFileSync(file, 'applications: []\n');
    const controller = new Controller();
    const seen: unknown[] = [];
    const deployment = (handler: string) => ({
        id: `app/${handler}`, config: { name: handler, handler, logging_config: { enable_access_log: false } }, traffic: { record() {} },
        handle: async (req: RequestIn) => {
            seen.push(req.payload);
            return '{"ok": true}';
        }
    });
    const route = (handler: string, steps = false) => ({ method: 'POST', path: '/p', app: 'app', deployment: deployment(handler), ...steps && { steps: [{ deployment: deployment(handler) }] } }) as unknown as Route;
    // the route table as each lookup finds it: onPreAuth's first, then the handler's (a reload may come between them)
    let tables: Array<Route | undefined> = [];
    Object.defineProperty(controller, 'routes', { get: () => new Map([['/p', new Map([['POST', tables.length > 1 ? tables.shift() : tables[0]] as [string, Route]])]]) });
    controller.config = {} as never;
    const server = createServer(controller, new ConfigWatcher(file, controller), { host: '127.0.0.1', port: 0, requestTimeoutMs: 1000, maxBytes: 1 << 20 });
    const post = async (routes: Array<Route | undefined>, payload: string, headers: Record<string, string> = { 'content-type': 'application/json' }) => {
        tables = routes;
        seen.length = 0;
        const res = await server.inject({ method: 'POST', url: '/p', payload, headers });
        return { status: res.statusCode, body: JSON.parse(res.payload), payload: seen[0] };
    };
    const body = '{"inputs": {"x": [[1, 2]]}}';
    t.type((await post([route('tensor')], body)).payload, JsonTensors, 'a tensor route: scanned');
    t.type((await post([route('tensor')], body, {})).payload, JsonTensors, 'no Content-Type is JSON');
    t.type((await post([route('tensor')], body, { 'content-type': 'Application/JSON; charset="UTF-8"' })).payload, JsonTensors, 'a UTF-8 charset');
    t.strictSame((await post([route('tensor')], body, { 'content-type': 'application/json; charset=latin1' })).payload, JSON.parse(body), 'another charset: hapi parses it');
    t.strictSame((await post([route('tensor', true)], body)).payload, JSON.parse(body), 'a pipeline: hapi parses it');
    t.strictSame((await post([route('text')], body)).payload, JSON.parse(body), 'another handler: hapi parses it');
    t.strictSame((await post([route('tensor'), route('text')], body)).payload, JSON.parse(body), 'a tensor route that a reload gave to another handler meanwhile: parsed JSON');
    t.strictSame((await post([route('tensor'), route('tensor', true)], body)).payload, JSON.parse(body), 'or made a pipeline: parsed JSON');
    t.match(await post([route('tensor')], body, { 'content-type': 'application/json; charset=a; charset=b' }), { status: 400, body: { code: 'BAD_REQUEST', message: 'Invalid content-type header: duplicate parameter' } }, 'a Content-Type hapi refuses: its own 400');
    const nope = (await post([undefined], '{"inputs": [')).body;
    for (const routes of [[route('tensor')], [route('tensor'), undefined]]) {
        const invalid = await post(routes, '{"inputs": [');
        t.strictSame(invalid.body, { ...nope, request_id: invalid.body.request_id }, 'invalid JSON: hapi\'s 400, before the route is looked at again');
        t.equal(invalid.payload, undefined, 'nothing reaches the deployment');
    }
    t.match(nope, { statusCode: 400, error: 'Bad Request', message: 'Invalid request payload JSON format', code: 'INVALID_JSON' });
    t.match((await post([route('tensor')], '{"__proto__": {}}')).body, { message: 'Invalid request payload JSON format', code: 'INVALID_JSON' });
    t.strictSame((await post([route('tensor')], '')).payload, null, 'an empty body is null, as hapi makes it');
    seen.length = 0;
    const gzipped = await server.inject({ method: 'POST', url: '/p', payload: zlib.gzipSync(body), headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
    t.equal(gzipped.statusCode, 200);
    t.type(seen[0], JsonTensors, 'a gzipped body: unzipped by hapi, then scanned');
    const large = `{"inputs": [[${'1,'.repeat(600_000)}1]]}`;
    const tooLarge = await post([route('tensor')], large);
    t.strictSame(tooLarge.body, { ...(await post([undefined], large)).body, request_id: tooLarge.body.request_id }, 'a body over the limit: hapi\'s 413, as before');
    t.match(tooLarge.body, { statusCode: 413, code: 'PAYLOAD_TOO_LARGE' });
});

// ---- a real tsserve up

/** A model with one input of each numeric type, [batch, n_<name>] (no shared symbol), each passed through Identity. */
const inputTypes: Record<string, string> = {
    f32: 'float32', f64: 'float64', f16: 'float16', i8: 'int8', u8: 'uint8', i16: 'int16', u16: 'uint16', i32: 'int32', u32: 'uint32',
    i64: 'int64', u64: 'uint64', b: 'bool'
};
function typesModel(): Uint8Array {
    const g = new Graph('types');
    for (const [name, type] of Object.entries(inputTypes)) {
        g.input(name, type as never, ['batch', `n_${name}`]).output(`${name}_out`, type as never, ['batch', `n_${name}`]);
        g.node('Identity', [name], [`${name}_out`]);
    }
    return g.toBytes();
}

/** Exactly representable values of each type, as the JSON body writes them, and as typed arrays for the binary extension. */
const values: Record<string, [string[], ArrayBufferView]> = {
    f32: [['0.5', '-0', '1e-45', '3.4028234663852886e38', '0.10000000149011612', '-2.75'], Float32Array.of(0.5, -0, 1e-45, 3.4028234663852886e38, 0.10000000149011612, -2.75)],
    f64: [['0.1', '-0', '5e-324', '1.7976931348623157e308', '0.48627451062202454', '-1e-300'], Float64Array.of(0.1, -0, 5e-324, 1.7976931348623157e308, 0.48627451062202454, -1e-300)],
    f16: [['0.5', '-0', '65504', '5.960464477539063e-8', '0.0999755859375', '-2'], Uint16Array.from([0.5, -0, 65504, 5.960464477539063e-8, 0.0999755859375, -2], toHalf)],
    i8: [['-128', '127', '0', '-1', '5', '1e1'], Int8Array.of(-128, 127, 0, -1, 5, 10)],
    u8: [['0', '255', '1', '2', '3', '4.0'], Uint8Array.of(0, 255, 1, 2, 3, 4)],
    i16: [['-32768', '32767', '0', '-1', '7', '8'], Int16Array.of(-32768, 32767, 0, -1, 7, 8)],
    u16: [['0', '65535', '1', '2', '3', '4'], Uint16Array.of(0, 65535, 1, 2, 3, 4)],
    i32: [['-2147483648', '2147483647', '0', '-1', '9', '10'], Int32Array.of(-2147483648, 2147483647, 0, -1, 9, 10)],
    u32: [['0', '4294967295', '1', '2', '3', '4'], Uint32Array.of(0, 4294967295, 1, 2, 3, 4)],
    i64: [['-9007199254740991', '9007199254740991', '0', '-1', '11', '12'], BigInt64Array.of(-9007199254740991n, 9007199254740991n, 0n, -1n, 11n, 12n)],
    u64: [['0', '9007199254740991', '1', '2', '3', '4'], BigUint64Array.of(0n, 9007199254740991n, 1n, 2n, 3n, 4n)],
    b: [['true', 'false', '0', '1', 'true', 'true'], Uint8Array.of(1, 0, 0, 1, 1, 1)]
};
const oipNames: Record<string, string> = { float32: 'FP32', float64: 'FP64', float16: 'FP16', int8: 'INT8', uint8: 'UINT8', int16: 'INT16', uint16: 'UINT16', int32: 'INT32', uint32: 'UINT32', int64: 'INT64', uint64: 'UINT64', bool: 'BOOL' };

/** A POST with exactly these headers: its status and body, the request id left out. */
function send(url: string, body: Buffer | string, headers: Record<string, string>): Promise<{ status: number; body: unknown }> {
    return new Promise((resolve, reject) => {
        const req = http.request(url, { method: 'POST', headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => {
                const parsed = JSON.parse(Buffer.concat(chunks).toString());
                delete parsed.request_id;
                resolve({ status: res.statusCode as number, body: parsed });
            });
        });
        req.on('error', reject);
        req.end(body);
    });
}

t.test('a real tsserve up: a JSON body answers as the same tensors in binary, and as hapi\'s own parse of it', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-json-tensor-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, 'types.onnx'), typesModel());
    const s: Served = await serve(dir, `http_options: { host: 127.0.0.1, port: 8000, request_timeout_s: 60 }
applications:
  - name: types
    deployments:
      - { name: model, model: { path: ./types.onnx }, batching: { max_batch_size: 8, batch_wait_timeout_s: 0 } }
`);
    t.teardown(() => s.stop());
    const url = `${s.url}/types/predict`;
    // hapi parses a body whose charset the front door does not know (it reads JSON as UTF-8 whatever the charset): the old path
    const json = { 'content-type': 'application/json' };
    const hapi = { 'content-type': 'application/json; charset=x-hapi' };

    const rows = (name: string, k: number) => `[${Array.from({ length: k }, () => `[${values[name][0].join(', ')}]`).join(', ')}]`;
    const body = (k: number) => `{"inputs": {${Object.keys(inputTypes).map((name) => `"${name}": ${rows(name, k)}`).join(', ')}}}`;
    const binary = (k: number) => {
        const names = Object.keys(inputTypes);
        const chunks = names.map((name) => {
            const v = values[name][1];
            const one = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
            return Buffer.concat(Array.from({ length: k }, () => one));
        });
        const header = Buffer.from(JSON.stringify({ inputs: names.map((name, i) => ({ name, shape: [k, 6], datatype: oipNames[inputTypes[name]], parameters: { binary_data_size: chunks[i].length } })) }));
        return { bytes: Buffer.concat([header, ...chunks]), headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) } };
    };
    for (const k of [1, 3]) {
        const a = await send(url, body(k), json);
        const b = binary(k);
        t.equal(a.status, 200, `${k} row(s): answered`);
        t.strictSame(a, await send(url, b.bytes, b.headers), `${k} row(s) of every type: the same answer as the binary extension's`);
        t.strictSame(a, await send(url, body(k), hapi), `${k} row(s): the same answer as hapi's parse`);
        t.strictSame(a, await send(url, body(k), {}), `${k} row(s), no Content-Type: the same answer`);
    }
    t.match((await send(url, body(1), json)).body, { outputs: { f32_out: [[0.5, -0, Math.fround(1e-45), 3.4028234663852886e38, 0.10000000149011612, -2.75]], i64_out: [[-9007199254740991, 9007199254740991, 0, -1, 11, 12]], b_out: [[1, 0, 0, 1, 1, 1]] } });

    // bodies the ordinary path answers: the same answer, error or not, byte for byte
    const all = body(1);
    const bodies = [
        all.replace('"f32": [[0.5', '"f32": [[true'), all.replace('"i8": [[-128', '"i8": [[-129'), all.replace('"b": [[true', '"b": [[2'),
        all.replace('"u16": [[0,', '"u16": [[0.5,'), all.replace('"f64": [[0.1, ', '"f64": [['), all.replace('"i32": [[', '"i32": [[[').replace('10]]', '10]]]'),
        all.replace('"f16"', '"nope"'), all.replace(', "b": [[true, false, 0, 1, true, true]]', ''), all.replace('{"inputs": {', '{"id": 1, "inputs": {'),
        all.replace('{"inputs": {', '{"inputs": {"__proto__": [[1]], '), all.slice(0, -1), `${all},`, all.replace('0.5', '.5'), '', '{"inputs": [[1]]}',
        all.replace('"f32": [[0.5', '"f32": [[1.7976931348623159e308'), all.replace('"f64": [[0.1', '"f64": [[1e400')
    ];
    for (const b of bodies) {
        const answer = await send(url, b, json);
        t.strictSame(answer, await send(url, b, hapi), `${JSON.stringify(b.slice(0, 60))}...: ${answer.status} ${(answer.body as { code?: string }).code ?? ''}`);
    }
});
