// Hostile requests: each is answered with a clean 4xx in the catalogue's form, soon, at little cost, and the server
// keeps serving. Parsing cases are called directly; the wire (stalled, trickling and chunked bodies) is real HTTP, on a
// real `tsserve up` or, where a short time limit is needed, on the front door listening in this process.
import t from 'tap';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import Boom from '@hapi/boom';
import { Tokenizer } from '@huggingface/tokenizers';
import { BODY_TIMEOUT_MS, HEADERS_TIMEOUT_MS, createServer } from '../lib/http';
import { Controller } from '../lib/controller';
import { ConfigWatcher } from '../lib/watcher';
import { clip, quote, shape } from '../lib/errors';
import { fromBytes, fromFlat, fromNested, maxRank } from '../lib/tensor';
import { tensor } from '../handlers/tensor';
import { image, maxResizedPixels, resizedSize, makePlan } from '../handlers/image';
import { text, TextTokenizer } from '../handlers/text';
import { image as imageSchema } from '../schemas/image';
import { text as textSchema } from '../schemas/text';
import { modelFiles } from '../lib/model-files';
import { fixtures, info, serve, type Served } from './helpers';
import type { RequestIn } from '../lib/handler';
import type { Signature } from '../lib/signature';
import type { ServeConfig } from '../schemas/serve';

const root = path.join(__dirname, '..');
const digits = path.join(root, 'examples', 'models', 'digits');
const sentiment = path.join(root, 'examples', 'models', 'sentiment');
const dir = fixtures();

const mlpSig: Signature = { inputs: [info('x', 'float32', ['batch', 4])], outputs: [info('y', 'float32', ['batch', 3])] };
const pairSig: Signature = { inputs: [info('a', 'float32', ['batch', 'seq']), info('b', 'float32', ['batch', 'seq'])], outputs: [] };
const digitsSig: Signature = { inputs: [info('x', 'float32', ['batch', 1, 28, 28])], outputs: [info('logits', 'float32', ['batch', 10])] };

/** An array nested `depth` deep around a 1, built without recursion; and the same as JSON text. */
const nested = (depth: number): unknown => {
    let v: unknown = 1;
    for (let i = 0; i < depth; i++) {
        v = [v];
    }
    return v;
};
const nestedJson = (depth: number) => `${'['.repeat(depth)}1${']'.repeat(depth)}`;

/** The tensor handler's front-door parse of a JSON body. */
const parseTensor = (payload: unknown, sig: Signature = mlpSig) =>
    tensor({ options: {}, model: { file: 'x.onnx' } }).parse({ payload, headers: {}, contentType: 'application/json' }, sig);

/** One long first row, then short ones: dims whose product is `rows` x `first`, in a body of about 2 x (rows + first) bytes. */
const longFirstRow = (rows: number, first: number) => [Array(first).fill(0), ...Array.from({ length: rows - 1 }, () => [])];

/** A black grayscale PNG: a few bytes, however many pixels. */
const blackPng = (width: number, height: number) => sharp({ create: { width, height, channels: 3, background: '#000000' } }).toColourspace('b-w').png().toBuffer();

/** A message that quotes what was sent may be a little longer than the 100 characters quoted, never much. */
const short = 400;

// ---- the wire: raw HTTP

interface Raw {
    /** everything the server sent */
    text: string;
    /** whether the server closed the connection (rather than the wait ending) */
    closed: boolean;
    /** a socket error (ECONNRESET, say) */
    error?: string;
}

/**
 * Sends each part on a fresh TCP connection (a function part is called with the socket, to write as it pleases), then
 * collects what the server answers until it closes the connection, or `waitMs` has passed: a bound on the waiting, not a
 * timing check.
 */
function exchange(port: number, parts: Array<string | Buffer | ((socket: net.Socket) => void)>, waitMs = 30000): Promise<Raw> {
    return new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        let text = '';
        let error: string | undefined;
        const done = (closed: boolean) => {
            clearTimeout(timer);
            socket.destroy();
            resolve({ text, closed, error });
        };
        const timer = setTimeout(() => done(false), waitMs);
        socket.on('data', (d) => text += d.toString('latin1'));
        socket.on('error', (err: NodeJS.ErrnoException) => error = err.code ?? err.message);
        socket.on('close', () => done(true));
        socket.on('connect', () => parts.forEach((p) => typeof p === 'function' ? p(socket) : socket.write(p)));
    });
}

/** The status, headers and JSON body of the first answer in `text`. */
function answer(text: string): { status: number; headers: Record<string, string>; body: any } {
    const [head, ...rest] = text.split('\r\n\r\n');
    const [status, ...lines] = head.split('\r\n');
    const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    const body = rest.join('\r\n\r\n');
    let json: unknown = body;
    try {
        json = JSON.parse(body);
    }
    catch {}
    return { status: Number(status.split(' ')[1]), headers, body: json };
}

/** A POST of `body` with chunked transfer encoding (no Content-Length), through node:http; resolves with the answer or the socket error. */
function chunked(url: string, type: string, body: Buffer): Promise<{ status?: number; body?: any; error?: string }> {
    return new Promise((resolve) => {
        const req = http.request(url, { method: 'POST', headers: { 'content-type': type, 'transfer-encoding': 'chunked' } }, (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d) => text += d).on('end', () => resolve({ status: res.statusCode, body: JSON.parse(text) }));
        });
        req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
        for (let at = 0; at < body.length; at += 64 * 1024) {
            req.write(body.subarray(at, at + 64 * 1024));
        }
        req.end();
    });
}

/** A multipart/form-data body of one file part: [its content type, the body]. */
function multipart(name: string, bytes: Buffer): [string, Buffer] {
    const boundary = 'tsserve-hostile-boundary';
    return [`multipart/form-data; boundary=${boundary}`, Buffer.concat([
        Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${name}"; filename="x.png"\r\ncontent-type: image/png\r\n\r\n`),
        bytes,
        Buffer.from(`\r\n--${boundary}--\r\n`)
    ])];
}

const catalogueKeys = ['statusCode', 'error', 'message', 'code', 'request_id'];

// ---- hostile tensors, parsed directly

t.test('hostile tensor JSON is a 400 from the shape, checked before anything is allocated or recursed through', async (t) => {
    for (const depth of [3, 10000, 100000]) {
        t.throws(() => parseTensor({ inputs: { x: nested(depth) } }), {
            output: { statusCode: 400 }, data: { code: 'INPUT_SHAPE_MISMATCH', input: 'x', expected: ['batch', 4] },
            message: 'input "x" expects shape [batch, 4], received arrays nested more than 2 deep'
        }, `nested ${depth} deep`);
    }
    t.throws(() => parseTensor({ inputs: nested(100000) }), { data: { code: 'INPUT_SHAPE_MISMATCH' }, message: /nested more than 2 deep/ }, 'the one-input form too');
    t.throws(() => parseTensor({ inputs: [[1, 2, 3, nested(100000)]] }), { data: { code: 'INPUT_DTYPE_MISMATCH' }, message: 'input "x" expects float32 values, received an array' }, 'a leaf that is a deep array');

    // 1e10 values named by a 200 KB body: its first row has 100,000 values, the other 99,999 rows none.
    t.throws(() => parseTensor({ inputs: { a: longFirstRow(100000, 100000), b: [[0]] } }, pairSig), { output: { statusCode: 400 }, data: { code: 'INPUT_SHAPE_MISMATCH' }, message: /input "a" is ragged/ }, 'dims multiplying to 1e10');
    t.throws(() => parseTensor({ inputs: { a: [[1, 2], [3, 4]], b: longFirstRow(300, 300) } }, pairSig), { message: /input "b" is ragged/ }, 'found before the allocation, at any depth');
    const big = Array.from({ length: 300 }, () => Array(300).fill(1));
    t.same(parseTensor({ inputs: { a: big, b: big } }, pairSig).item.feeds.a.dims, [300, 300], 'a large rectangular tensor is taken');
    t.throws(() => parseTensor({ inputs: { x: [[1, 2, 3]] } }), { message: 'input "x" expects shape [batch, 4], received [1, 3]' }, 'a fixed dim, before any value is read');

    // The Open Inference Protocol's shape, against the model and then against the data sent.
    const oip = (shape: number[], data: unknown[], sig = mlpSig, name = 'x') => parseTensor({ inputs: [{ name, shape, datatype: 'FP32', data }] }, sig);
    t.throws(() => oip([100000, 100000], [1, 2]), { data: { code: 'INPUT_SHAPE_MISMATCH' }, message: /expects shape \[batch, 4\], received \[100000, 100000\]$/ });
    t.throws(() => oip([100000, 100000], [1, 2], pairSig, 'a'), { message: /declares shape \[100000, 100000\], so "data" must be a flat array of 10000000000 values/ });
    const long = t.throws(() => oip(Array(100000).fill(1), [1])) as Error;
    t.match(long.message, /^input "x" expects shape \[batch, 4\], received \[1, 1, 1\] and more dims$/, 'a shape of 100,000 dims, shown by three');
    t.same((long as any).data.received, [1, 1, 1]);
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [100000, 4], datatype: 'FP32', parameters: { binary_data_size: 16 } }] }));
    t.throws(() => tensor({ options: {}, model: { file: 'x.onnx' } }).parse({ payload: Buffer.concat([header, Buffer.alloc(16)]), headers: { 'inference-header-content-length': String(header.length) }, contentType: 'application/octet-stream' }, mlpSig),
        { message: /has 16 bytes, but shape \[100000, 4\] of float32 needs 1600000/ }, 'binary: the bytes sent');

    // lib/tensor without a model's dims: no deeper than maxRank
    t.throws(() => fromNested(nested(maxRank + 1), 'float32', 'm'), { data: { code: 'INPUT_SHAPE_MISMATCH', input: 'm' }, message: `input "m" is arrays nested more than ${maxRank} deep` });
    t.same(fromNested(nested(maxRank), 'float32', 'm').dims.length, maxRank);
    t.same(fromFlat([1, 2], 'float32', [2], 'f').dims, [2]);
    t.same(fromBytes(Buffer.alloc(8), 'float32', [1, 2], 'b').dims, [1, 2]);
});

t.test('what an error quotes of the input is bounded', async (t) => {
    const huge = 'a'.repeat(5 * 1024 * 1024);
    const cases: Array<[string, () => unknown, RegExp]> = [
        ['a 5 MB string for a float', () => parseTensor({ inputs: { x: [[1, 2, 3, huge]] } }), /^input "x" expects float32 values, received "a{100}…"$/],
        ['a 1 MB input name', () => parseTensor({ inputs: { [huge.slice(0, 1 << 20)]: [[1]] } }), /^unknown input "a{100}…"; the model's inputs are "x"$/],
        ['a 1 MB OIP name', () => parseTensor({ inputs: [{ name: huge.slice(0, 1 << 20), shape: [1], datatype: 'FP32', data: [1] }] }), /^unknown input "a{100}…"/],
        ['a 1 MB content type', () => tensor({ options: {}, model: { file: 'x.onnx' } }).parse({ payload: {}, headers: {}, contentType: huge.slice(0, 1 << 20) }, mlpSig), /not a{100}…$/]
    ];
    const textHandler = text({ options: textSchema.validate({}).value, model: modelFiles({ runtime: 'onnx', path: sentiment }) });
    const parseText = (payload: unknown, contentType = 'application/json') => textHandler.parse({ payload, headers: {}, contentType }, mlpSig);
    cases.push(['a 1 MB field name (text)', () => parseText({ text: 'a', [huge.slice(0, 1 << 20)]: 1 }), /; unknown field "a{100}…"$/]);
    cases.push(['a 1 MB content type (text)', () => parseText({ text: 'a' }, huge.slice(0, 1 << 20)), /not a{100}…; the body must be/]);
    const imageHandler = image({ options: imageSchema.validate({}).value, model: { file: 'x.onnx' } });
    const parseImage = (contentType: string, payload: unknown) => imageHandler.parse({ contentType, payload, headers: {} } as RequestIn, digitsSig);
    cases.push(['a 1 MB multipart part name', () => parseImage('multipart/form-data', { [huge.slice(0, 1 << 20)]: Buffer.from('not an image') }), /^file part "a{100}…" is not a JPEG/]);
    cases.push(['a 1 MB content type (image)', () => parseImage('image' + huge.slice(0, 1 << 20), Buffer.from('x')), /, not imagea{95}…$/]);
    for (const [name, call, message] of cases) {
        const err = t.throws(call, { output: { statusCode: /^4/ }, message: /./ }, name) as Error;
        t.match(err.message, message, `${name}: quoted, cut with an ellipsis`);
        t.ok(err.message.length < short, `${name}: ${err.message.length} characters`);
    }
    t.equal(clip('abc', 2), 'ab…');
    t.equal(clip('abc'), 'abc');
    t.same([quote('x'), quote(2), quote(true), quote(null), quote(undefined), quote([1]), quote({ a: 1 }), quote('"\n')], ['"x"', '2', 'true', 'null', 'undefined', 'an array', 'an object', '"\\"\\n"']);
});

t.test('an error body shows only tsserve\'s own code and details, never a framework\'s objects', async (t) => {
    // hapi's multipart reader wraps the error of a body over the limit in a 400
    const wrapped = Boom.badRequest('Invalid multipart payload format', new Boom.Boom('Maximum size exceeded', { statusCode: 413 }));
    shape(wrapped);
    t.same(wrapped.output.payload, { statusCode: 400, error: 'Bad Request', message: 'Invalid multipart payload format', code: 'BAD_REQUEST' });
    const foreign = new Boom.Boom('Forbidden', { statusCode: 403, data: { code: 'ECONNRESET', socket: { fd: 3 } } });
    shape(foreign);
    t.same(foreign.output.payload, { statusCode: 403, error: 'Forbidden', message: 'Forbidden', code: 'BAD_REQUEST' }, 'a code not in the catalogue is not ours');
});

// ---- images whose resize would be huge

t.test('an image whose resize before the crop would be huge is refused from its header, before the work', async (t) => {
    const h = image({ options: imageSchema.validate({}).value, model: modelFiles({ runtime: 'onnx', path: digits }) });
    await h.load?.(digitsSig);
    const tall = await blackPng(1, 1000000);
    const wide = await blackPng(65535, 1);
    t.ok(tall.length < 4096 && wide.length < 256, `tiny files: ${tall.length} and ${wide.length} bytes`);
    await t.rejects(async () => h.preprocess([{ images: [wide], list: true }], digitsSig), { data: { code: 'INVALID_MEDIA' }, message: /^image 1 of 1 is 65535x1 pixels .* resize it to 1834980x28,/ });
    await t.rejects(async () => h.preprocess([{ images: [tall], list: false }], digitsSig), {
        data: { code: 'INVALID_MEDIA' },
        message: `the image is 1x1000000 pixels (width x height): cropping it to 28x28 would first resize it to 28x28000000, over the ${maxResizedPixels} pixels taken; an aspect ratio this extreme is refused`
    });
    // Not too thin: taken. Letterbox and stretch resize to the target itself, however thin the image.
    const thin = await blackPng(1, 1000);
    t.same((await h.preprocess([{ images: [thin], list: false }], digitsSig)).x.dims, [1, 1, 28, 28]);
    const plan = (o: Record<string, unknown>) => makePlan(imageSchema.validate(o).value, undefined, digitsSig);
    t.same(resizedSize(plan({ resize: 'letterbox' }), 1, 1000000), [28, 28]);
    t.same(resizedSize(plan({ resize: 'stretch' }), 65535, 1), [28, 28]);
    t.same(resizedSize(plan({}), 1, 1000000), [28, 28000000]);
    for (const resize of ['letterbox', 'stretch']) {
        const other = image({ options: imageSchema.validate({ resize }).value, model: { file: 'x.onnx' } });
        t.same((await other.preprocess([{ images: [tall], list: false }], digitsSig)).x.dims, [1, 1, 28, 28], `${resize}: a 1x1000000 image is cheap`);
    }
});

// ---- long texts

t.test('a long text is tokenised only as far as truncation reaches, and keeps the very tokens of the whole text', async (t) => {
    const json = JSON.parse(fs.readFileSync(path.join(sentiment, 'tokenizer.json'), 'utf8'));
    /** The example tokenizer, with max_length and direction; `seen` records the length of each text it tokenises. */
    const make = (maxLength: number, direction = 'Right', whole = false) => {
        const j = { ...json, truncation: { ...json.truncation, direction } };
        const tok = new TextTokenizer(new Tokenizer(j, {}), j, maxLength);
        const seen: number[] = [];
        const tokenize = tok.tokenizer.tokenize.bind(tok.tokenizer);
        tok.tokenizer.tokenize = (s: string) => {
            seen.push(s.length);
            return tokenize(s);
        };
        if (whole) {
            tok.charsPerToken = Infinity;
        }
        return { tok, seen };
    };

    const megabyte = 'the movie was great and the food was awful, '.repeat(24000);
    t.ok(megabyte.length > 1e6);
    const { tok, seen } = make(64);
    const got = tok.encode(megabyte);
    t.equal(got.ids.length, 64);
    t.ok(Math.max(...seen) < 4096, `a 1 MB text: at most ${Math.max(...seen)} characters tokenised`);
    const byHand = megabyte.split(' ').slice(0, 200).join(' ');
    t.same(got, make(64, 'Right', true).tok.encode(byHand), 'the same as the text cut by hand, tokenised whole');

    // Every way a cut is made or grown, single texts and pairs, right and left: the same ids and type ids as the whole texts.
    const words = (word: string, n: number) => Array(n).fill(word).join(' ');
    const unknown = words('x'.repeat(300), 60); // one [UNK] per 301 characters: a first cut holds too few tokens
    const noSpace = `${words('great', 10)} ${'x'.repeat(5000)}`;
    const cases: Array<[string, number, string, string | undefined, string?]> = [
        ['a long text', 12, words('great', 300), undefined],
        ['too few tokens in the first cut', 12, unknown, undefined],
        ['no space past the cut: whole', 12, noSpace, undefined],
        ['left: the end', 12, words('great', 300).replace(/great/g, (w, i) => i % 12 ? w : 'awful'), undefined, 'Left'],
        ['left: double spaces', 12, words('great ', 300), undefined, 'Left'],
        ['left: trailing spaces', 12, words('great', 300) + ' '.repeat(300), undefined, 'Left'],
        ['left: no space before the cut', 12, `${'x'.repeat(5000)} ${words('great', 5)}`, undefined, 'Left'],
        ['left: a pair', 11, words('great', 300), words('bad', 250), 'Left'],
        ['pair: both cut, even budget', 11, words('great', 300), words('awful', 300)],
        ['pair: both cut, odd budget', 10, words('great', 300), words('!', 400)],
        ['pair: both cut, odd budget, the second shorter', 10, words('!', 400), words('great', 300)],
        ['pair: a short first text', 10, words('great', 10), words('great', 300)],
        ['pair: a first text of many tokens', 10, words('!', 80), words('great', 300)],
        ['pair: a short second text', 10, words('great', 300), 'great'],
        ['pair: a second text of many tokens', 10, words('great', 300), words('!', 80)],
        ['pair: both short', 10, 'great', 'bad'],
        ['pair: no space', 10, noSpace, noSpace]
    ];
    for (const [name, max, a, b, direction] of cases) {
        const cut = make(max, direction).tok.encode(a, b);
        t.same(cut, make(max, direction, true).tok.encode(a, b), name);
    }
});

// ---- the front door in process: short time limits, docs names

t.test('the front door answers stalled, trickling and oversized bodies at once, in the catalogue\'s form, and closes', async (t) => {
    const file = path.join(dir, 'empty.yaml');
    fs.writeFileSync(file, 'applications: []\n');
    const controller = new Controller();
    await controller.apply({ http_options: { host: '127.0.0.1', port: 0, request_timeout_s: 1, max_body_size_mb: 1 }, applications: [] } as ServeConfig, new Map());
    const server = createServer(controller, new ConfigWatcher(file, controller), { host: '127.0.0.1', port: 0, requestTimeoutMs: 1000, maxBytes: 1024, headersTimeoutMs: 500, bodyTimeoutMs: 300 });
    await server.start();
    t.teardown(() => server.stop());
    const port = Number(server.info.port);
    t.equal(server.listener.headersTimeout, 500, 'headers have their own limit');
    t.ok(server.listener.requestTimeout > 800, 'Node\'s limit on a whole request is a backstop behind the body\'s');
    t.same([HEADERS_TIMEOUT_MS, BODY_TIMEOUT_MS], [10000, 10000], 'the defaults');

    const post = (headers: string) => `POST /nope HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n${headers}\r\n`;
    const timedOut = { statusCode: 408, code: 'CLIENT_TIMEOUT' };
    // [name, what is sent, the answer's body, its message]; a client still sending when the connection closes may see it reset after the answer
    const cases: Array<[string, Array<string | Buffer | ((s: net.Socket) => void)>, object, RegExp, boolean?]> = [
        ['a body that stalls', [post('content-length: 100\r\n'), '{'], timedOut, /^the request's body did not arrive within 0.3 s$/],
        ['a chunked body that stalls', [post('transfer-encoding: chunked\r\n'), '1\r\n{\r\n'], timedOut, /body did not arrive/],
        ['a body sent a byte at a time', [post('content-length: 100\r\n'), (s) => {
            const drip = setInterval(() => s.writable ? s.write(' ') : clearInterval(drip), 20);
            s.on('close', () => clearInterval(drip));
        }], timedOut, /body did not arrive/, true],
        ['headers that stall', ['POST /nope HTTP/1.1\r\nhost: x\r\n'], timedOut, /^the request's headers did not arrive within 0.5 s$/],
        ['an oversized body that stalls', [post('content-length: 5000\r\n'), 'x'.repeat(10)], { statusCode: 413, code: 'PAYLOAD_TOO_LARGE' }, /maximum allowed: 1024/],
        ['an oversized chunked body that stalls', [post('transfer-encoding: chunked\r\n'), `800\r\n${'x'.repeat(2048)}\r\n`], { statusCode: 413, code: 'PAYLOAD_TOO_LARGE' }, /maximum allowed: 1024/]
    ];
    for (const [name, parts, body, message, stillSending] of cases) {
        const raw = await exchange(port, parts);
        t.equal(raw.closed, true, `${name}: the server closes the connection`);
        if (!stillSending) {
            t.equal(raw.error, undefined, `${name}: no reset`);
        }
        const a = answer(raw.text);
        t.match(a, { status: (body as { statusCode: number }).statusCode, headers: { 'content-type': /^application\/json/, connection: 'close' }, body }, `${name}: answered`);
        t.same(Object.keys(a.body), catalogueKeys, `${name}: the catalogue's body`);
        t.match(a.body.message, message, `${name}: says what`);
    }

    // Two bodies that stall, the second one later: each is answered at its own deadline, by the one timer they share.
    const later = new Promise((resolve) => setTimeout(resolve, 150)).then(() => exchange(port, [post('content-length: 100\r\n'), '{']));
    const both = await Promise.all([exchange(port, [post('content-length: 100\r\n'), '{']), later]);
    t.same(both.map((raw) => answer(raw.text).body.code), ['CLIENT_TIMEOUT', 'CLIENT_TIMEOUT'], 'two stalled bodies, each timed out');

    // A chunked body over the limit, sent whole: read to its end and answered 413 on a connection that stays open.
    const [type, form] = multipart('image', Buffer.alloc(4096, 1));
    for (const [kind, contentType, bytes] of [['JSON', 'application/json', Buffer.from(JSON.stringify({ inputs: Array(2000).fill(0) }))], ['raw', 'image/png', Buffer.alloc(4096, 2)], ['multipart', type, form]] as const) {
        const a = await chunked(`http://127.0.0.1:${port}/nope`, contentType, bytes);
        t.same(a, { status: 413, body: { statusCode: 413, error: 'Request Entity Too Large', message: 'Payload content length greater than maximum allowed: 1024', code: 'PAYLOAD_TOO_LARGE', request_id: a.body.request_id } }, `chunked ${kind}: 413`);
    }
    const small = await chunked(`http://127.0.0.1:${port}/nope`, 'application/json', Buffer.from('{"inputs": [[1, 2, 3, 4]]}'));
    t.match(small, { status: 404, body: { code: 'NOT_FOUND' } }, 'a chunked body under the limit is read');

    // A body that has arrived is not timed out while its answer takes longer than the body's limit.
    server.route({ method: 'POST', path: '/slow', handler: async () => new Promise((resolve) => setTimeout(() => resolve({ slow: true }), 1000)) });
    t.match(answer((await exchange(port, [post('content-length: 2\r\nconnection: close\r\n').replace('/nope', '/slow'), '{}'])).text), { status: 200, body: { slow: true } }, 'a slow answer to a body in time');

    // A client that hangs up mid-body, and a malformed request: the server goes on answering.
    t.equal((await exchange(port, [post('content-length: 100\r\n'), '{', (s) => s.destroy()])).closed, true);
    t.match(answer((await exchange(port, ['this is not HTTP\r\n\r\n'])).text), { status: 400 }, 'a malformed request is hapi\'s 400');
    const after = answer((await exchange(port, ['GET /-/healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n'])).text);
    t.match(after, { status: 200, body: { status: 'ok' } }, 'still serving');
});

t.test('/docs names that are not swagger files are 404s, Object.prototype\'s among them', async (t) => {
    const file = path.join(dir, 'empty.yaml');
    fs.writeFileSync(file, 'applications: []\n');
    const controller = new Controller();
    const server = createServer(controller, new ConfigWatcher(file, controller), { host: '127.0.0.1', port: 0, requestTimeoutMs: 1000, maxBytes: 1024 });
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', '__defineGetter__', 'isPrototypeOf']) {
        const res = await server.inject(`/docs/${name}`);
        t.equal(res.statusCode, 404, name);
        t.same(JSON.parse(res.payload), { statusCode: 404, error: 'Not Found', message: `no file /docs/${name}`, code: 'NOT_FOUND', request_id: res.headers['x-request-id'] }, `${name}: the catalogue's body`);
    }
    const long = await server.inject(`/docs/${'p'.repeat(8000)}`);
    t.match(JSON.parse(long.payload), { code: 'NOT_FOUND', message: /^no file \/docs\/p{100}…$/ }, 'a long path is quoted short');
    // This controller is never given a config: a model route's request waits for one within its timeout, then 504.
    const early = await server.inject(`/${'p'.repeat(8000)}`);
    t.match(JSON.parse(early.payload), { statusCode: 504, code: 'REQUEST_TIMEOUT', message: /^no route is known yet: tsserve was still reading its config's model files after 1s$/ });
});

// ---- end to end, on a real tsserve up

t.test('a real tsserve up answers hostile bodies with 4xx and keeps serving', async (t) => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-hostile-'));
    t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
    fs.copyFileSync(path.join(dir, 'mlp.onnx'), path.join(tmp, 'mlp.onnx'));
    fs.copyFileSync(path.join(dir, 'pair.onnx'), path.join(tmp, 'pair.onnx'));
    const deployment = (name: string, model: string, handler = 'tensor') => `  - name: ${name}
    deployments:
      - name: model
        handler: ${handler}
        model: { path: ${model} }
`;
    const s: Served = await serve(tmp, `http_options: { host: 127.0.0.1, port: 8000, request_timeout_s: 60, max_body_size_mb: 1 }
applications:
${deployment('mlp', './mlp.onnx')}${deployment('pair', './pair.onnx')}${deployment('digits', digits, 'image')}${deployment('sentiment', sentiment, 'text')}`);
    t.teardown(() => s.stop());
    await Promise.all(['mlp', 'pair', 'digits', 'sentiment'].map((app) => s.waitFor(new RegExp(`replica ${app}/model#0 RUNNING`), 120000)));
    const json = { 'content-type': 'application/json' };

    t.test('tensors: deep nesting, dims multiplying to 1e10, a 500 KB string', async (t) => {
        const deep = await s.post('/mlp/predict', `{"inputs": {"x": ${nestedJson(100000)}}}`, json);
        t.match(deep, { status: 400, body: { code: 'INPUT_SHAPE_MISMATCH', message: /nested more than 2 deep/ } }, '100,000 levels deep');
        const huge = await s.post('/pair/predict', { inputs: { a: longFirstRow(100000, 100000), b: [[0]] } });
        t.match(huge, { status: 400, body: { code: 'INPUT_SHAPE_MISMATCH', message: /ragged/ } }, 'dims multiplying to 1e10');
        const echo = await s.post('/mlp/predict', { inputs: { x: [[1, 2, 3, 'b'.repeat(500000)]] } });
        t.match(echo, { status: 400, body: { code: 'INPUT_DTYPE_MISMATCH' } });
        t.ok(JSON.stringify(echo.body).length < short, 'the answer does not echo the string');
        t.same((await s.post('/mlp/predict', { inputs: [[1, 2, 3, 4]] })).status, 200, 'still serving');
    });

    t.test('images: a 2 KB PNG of 1 x 1,000,000 pixels, and a 162-byte one of 65,535 x 1', async (t) => {
        for (const [width, height] of [[1, 1000000], [65535, 1]]) {
            const png = await blackPng(width, height);
            const a = await s.post('/digits/predict', png, { 'content-type': 'image/png' });
            t.match(a, { status: 400, body: { code: 'INVALID_MEDIA', message: new RegExp(`^the image is ${width}x${height} pixels`) } }, `${width}x${height}`);
        }
        const seven = fs.readFileSync(path.join(root, 'examples', 'seven.png'));
        t.match(await s.post('/digits/predict', seven, { 'content-type': 'image/png' }), { status: 200, body: { label: '7' } }, 'still serving');
    });

    t.test('oversized chunked bodies: 413 in the catalogue\'s form, JSON, images, multipart and text alike', async (t) => {
        const mb2 = 2 * 1024 * 1024;
        const [type, form] = multipart('image', Buffer.alloc(mb2, 1));
        const sends: Array<[string, string, string, Buffer]> = [
            ['JSON tensors', '/mlp/predict', 'application/json', Buffer.from(JSON.stringify({ inputs: Array(mb2 / 2).fill(0) }))],
            ['a raw image', '/digits/predict', 'image/png', Buffer.alloc(mb2, 1)],
            ['multipart', '/digits/predict', type, form],
            ['text', '/sentiment/predict', 'application/json', Buffer.from(JSON.stringify({ text: 'great '.repeat(mb2 / 6) }))]
        ];
        for (const [name, route, contentType, bytes] of sends) {
            const a = await chunked(s.url + route, contentType, bytes);
            t.same(a, { status: 413, body: { statusCode: 413, error: 'Request Entity Too Large', message: 'Payload content length greater than maximum allowed: 1048576', code: 'PAYLOAD_TOO_LARGE', request_id: a.body.request_id } }, name);
            t.type(a.body.request_id, 'string', `${name}: the request's id`);
        }
        const sized = await s.post('/digits/predict', form, { 'content-type': type });
        t.same(Object.keys(sized.body), catalogueKeys, 'multipart with a Content-Length: the catalogue\'s body, nothing of the framework');
        t.equal(sized.status, 413);
    });

    t.test('texts: a 1 MB text is answered, as the same text cut by hand', async (t) => {
        const review = 'I loved this film, it was wonderful and the actors were great. ';
        const long = review.repeat(Math.ceil(1e6 / review.length));
        const whole = await s.post('/sentiment/predict', { text: long }, json);
        t.equal(whole.status, 200);
        const byHand = await s.post('/sentiment/predict', { text: review.repeat(20) }, json);
        t.same(whole.body, byHand.body);
    });
});
