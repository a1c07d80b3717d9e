// A seeded, bounded fuzz of the shipped serve.yaml: 10,000 hostile or broken requests over every handler route and
// admin route. Whatever a client sends, the answer is a clean error of the catalogue (no 5xx but the catalogue's 503
// and 504), no replica crashes, and every route still answers correctly afterwards. Set FUZZ_SEED to replay a run.
import t from 'tap';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { mulberry32 } from '../modelgen/zoo';
import { start, type Served } from './helpers';

const root = path.join(__dirname, '..');
const seed = Number(process.env.FUZZ_SEED ?? 20261202);
const total = 10_000;
/** requests in flight at once */
const concurrency = 16;

const rand = mulberry32(seed);
const int = (n: number): number => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];

const media = {
    png: fs.readFileSync(path.join(root, 'examples', 'seven.png')),
    jpg: fs.readFileSync(path.join(root, 'examples', 'three.jpg')),
    wav: fs.readFileSync(path.join(root, 'examples', 'tone-440hz.wav'))
};

interface Attempt {
    method: string;
    path: string;
    headers: Record<string, string>;
    body?: string | Buffer;
    what: string;
}

const modelRoutes = ['/mlp/predict', '/iris/predict', '/sentiment/predict', '/sentiment/embed', '/digits/predict', '/digits-tfjs/predict', '/tones/predict'];
const adminRoutes: Array<[string, string]> = [
    ['GET', '/-/healthz'], ['GET', '/-/ready'], ['GET', '/-/status'], ['GET', '/openapi.json'], ['GET', '/docs'],
    ['POST', '/-/status'], ['DELETE', '/-/reload'], ['GET', '/-/reload']
];
const docsNames = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', '..%2f..%2fpackage.json', '%00', 'swagger-ui.css', 'x'.repeat(300)];

/** A JSON value of random shape: numbers at the edges, strings, nesting, arrays. */
function value(depth = 0): unknown {
    const leaves = [0, -0, 1, -1, 0.5, 1e308, -1e308, 5e-324, 2 ** 53 + 1, 'NaN', '', 'x'.repeat(int(64)), true, false, null, '\u0000\uffff\ud800'];
    const r = rand();
    if (depth > 4 || r < 0.4) {
        return pick(leaves);
    }
    if (r < 0.7) {
        return Array.from({ length: int(6) }, () => value(depth + 1));
    }
    return Object.fromEntries(Array.from({ length: int(4) }, () => [pick(['inputs', 'x', 'text', 'texts', 'image', 'images', 'audio', 'audios', 'flowers', 'data', '__proto__', 'constructor']), value(depth + 1)]));
}

/** Nested arrays `depth` deep, written as text (JSON.stringify would recurse as deep). */
const deep = (depth: number, leaf = '0'): string => '['.repeat(depth) + leaf + ']'.repeat(depth);

/** Bytes with some of them changed, or cut short. */
function damaged(bytes: Buffer): Buffer {
    const out = Buffer.from(bytes.subarray(0, rand() < 0.5 ? int(bytes.length) : bytes.length));
    for (let k = int(8); k > 0 && out.length; k--) {
        out[int(out.length)] = int(256);
    }
    return out;
}

/** A WAV header that lies: sizes, channels, rates and bit depths at their edges. */
function hostileWav(): Buffer {
    const b = Buffer.from(media.wav.subarray(0, 44 + int(64)));
    const edge = () => pick([0, 1, 0xffff, 0x7fffffff, 0xffffffff, int(2 ** 32)]);
    b.writeUInt32LE(edge(), 4);                   // RIFF size
    b.writeUInt16LE(pick([0, 1, 3, 0xfffe, 7]), 20);  // format
    b.writeUInt16LE(pick([0, 1, 2, 65535]), 22);  // channels
    b.writeUInt32LE(edge(), 24);                  // sample rate
    b.writeUInt16LE(pick([0, 1, 7, 8, 16, 24, 32, 64, 65535]), 34); // bits per sample
    b.writeUInt32LE(edge(), 40);                  // data size
    return b;
}

/** One PNG pixel row stretched: a tiny file that claims a huge or extreme image. */
function hugePng(width: number, height: number): Buffer {
    const png = Buffer.from(media.png);
    // IHDR's width and height sit at bytes 16 and 20; the CRC then no longer matches, which a decoder must refuse.
    png.writeUInt32BE(width, 16);
    png.writeUInt32BE(height, 20);
    return png;
}

const json = (what: string, body: string, route = pick(modelRoutes), type = 'application/json'): Attempt =>
    ({ method: 'POST', path: route, headers: { 'content-type': type }, body, what });

/** The kinds of hostile request, each a generator; every request picks one. */
const kinds: Array<() => Attempt> = [
    () => json('random JSON', JSON.stringify(value())),
    () => json('not JSON', pick(['{', '{"inputs":', 'NaN', '[1,2,', '\u0000', '{"a":1}{"b":2}', 'null', '"string"', ''])),
    () => json('deep nesting', `{"inputs": ${deep(pick([100, 1000, 10000, 50000]))}}`),
    () => json('huge numbers', `{"inputs": [[1e400, -1e400, 1e308, 4]]}`, '/mlp/predict'),
    () => json('huge array', `{"inputs": [${Array(int(20000)).fill('[0,0,0,0]').join(',')}]}`, '/mlp/predict'),
    () => json('wrong types', JSON.stringify(pick([{ inputs: 'x' }, { inputs: { x: 'y' } }, { inputs: [[true, null, '1', {}]] }, { text: 5 }, { texts: [[]] }, { image: 7 }, { audios: [null] }, { flowers: 'many' }]))),
    () => json('OIP with lying shapes', JSON.stringify({ inputs: [{ name: 'x', datatype: pick(['FP32', 'INT64', 'BYTES', 'FP16', 'x']), shape: pick([[1e5, 1e5], [-1, 4], [1, 4], [2 ** 31, 2 ** 31], []]), data: [1, 2, 3, 4] }] }), '/mlp/predict'),
    () => {
        const header = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: pick([[1, 4], [1e6, 4], [0, 4]]), parameters: { binary_data_size: pick([16, 0, 2 ** 40]) } }] });
        const body = Buffer.concat([Buffer.from(header), Buffer.alloc(int(32))]);
        return { method: 'POST', path: '/mlp/predict', headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(pick([header.length, 0, -1, 1e12, 'x'])) }, body, what: 'OIP binary' };
    },
    () => json('wrong content type', JSON.stringify({ inputs: [[1, 2, 3, 4]] }), pick(modelRoutes), pick(['text/plain', 'application/xml', 'image/png', 'audio/wav', 'multipart/form-data', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', ''])),
    () => ({ method: 'POST', path: pick(['/digits/predict', '/digits-tfjs/predict']), headers: { 'content-type': pick(['image/png', 'image/jpeg', 'application/octet-stream']) }, body: damaged(pick([media.png, media.jpg])), what: 'corrupt image' }),
    () => ({ method: 'POST', path: '/digits/predict', headers: { 'content-type': 'image/png' }, body: hugePng(pick([1, 65535, 100000, 1_000_000]), pick([1, 65535, 100000, 1_000_000])), what: 'bomb or extreme aspect ratio' }),
    () => json('base64 junk', JSON.stringify({ [pick(['image', 'audio'])]: pick(['data:image/png;base64,', 'DATA:x;BASE64,####', 'http://example.com/a.png', 'file:///etc/passwd', '=', 'A'.repeat(int(5000))]) }), pick(['/digits/predict', '/tones/predict'])),
    () => ({ method: 'POST', path: '/tones/predict', headers: { 'content-type': pick(['audio/wav', 'audio/x-wav', 'application/octet-stream']) }, body: rand() < 0.5 ? hostileWav() : damaged(media.wav), what: 'hostile WAV' }),
    () => json('long text', JSON.stringify(rand() < 0.5 ? { text: 'word '.repeat(int(20000)) } : { texts: Array.from({ length: int(50) }, () => 'a'.repeat(int(2000))) }), pick(['/sentiment/predict', '/sentiment/embed'])),
    () => ({ method: pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']), path: `/${'a/'.repeat(int(2000))}${pick(modelRoutes)}?${'q='.repeat(int(1000))}`, headers: {}, what: 'long URL' }),
    () => {
        const [method, route] = pick(adminRoutes);
        return { method, path: route, headers: { 'content-type': 'application/json', origin: 'https://evil.example' }, body: method === 'GET' ? undefined : JSON.stringify(value()), what: 'admin route' };
    },
    () => ({ method: 'GET', path: `/docs/${pick(docsNames)}`, headers: {}, what: 'docs file' })
];

/**
 * A request that the client library refuses to send (a header or path it takes for invalid), before anything reaches
 * the server. Any other error (a connection reset or closed before the answer) is the server's doing, and a failure.
 */
const unsendable = (err: NodeJS.ErrnoException): boolean => /^ERR_(INVALID|UNESCAPED)/.test(err.code ?? '');

/**
 * Sends a request over node:http, on connections kept alive, and resolves with its status and body. Cheaper than
 * fetch() for this process (thousands of requests from one loop): the server then has more of the machine. As fetch()
 * does, a body is sent with its Content-Length, and POST and PUT without one send Content-Length: 0; no
 * Accept-Encoding is sent, so the answers come uncompressed.
 */
function send(agent: http.Agent, url: URL, a: Attempt): Promise<{ status: number; body: Buffer }> {
    return new Promise((resolve, reject) => {
        const body = a.body === undefined ? undefined : Buffer.from(a.body);
        const length = body?.length ?? (a.method === 'POST' || a.method === 'PUT' ? 0 : undefined);
        const headers = length === undefined ? a.headers : { ...a.headers, 'content-length': String(length) };
        const req = http.request({ agent, host: url.hostname, port: url.port, method: a.method, path: a.path, headers }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (chunk: Buffer) => chunks.push(chunk));
            res.on('end', () => resolve({ status: res.statusCode as number, body: Buffer.concat(chunks) }));
            res.on('error', reject);
        });
        req.on('error', reject);
        req.end(body);
    });
}

t.test(`fuzz: ${total} hostile requests (seed ${seed}), then every route answers correctly`, async (t) => {
    const s: Served = await start(path.join(root, 'serve.yaml'));
    t.teardown(() => s.stop());
    const url = new URL(s.url);
    const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
    t.teardown(() => agent.destroy());
    // The right answers, before the fuzz.
    const known = {
        mlp: () => s.post('/mlp/predict', { inputs: [[0.5, -1.2, 3.0, 0.1]] }),
        sentiment: () => s.post('/sentiment/predict', { text: 'I loved this film, it was wonderful' }),
        digits: () => s.post('/digits/predict', media.png, { 'content-type': 'image/png' }),
        tones: () => s.post('/tones/predict', media.wav, { 'content-type': 'audio/wav' })
    };
    const before = Object.fromEntries(await Promise.all(Object.entries(known).map(async ([k, f]) => [k, (await f()).body])));

    /** by kind of request: how many were answered badly, and the first of them */
    const bad = new Map<string, { count: number; first: string }>();
    const wrong = (a: Attempt, i: number, said: string): void => {
        const seen = bad.get(a.what) ?? { count: 0, first: `#${i} ${a.method} ${a.path.slice(0, 80)}: ${said.slice(0, 200)}` };
        seen.count++;
        bad.set(a.what, seen);
    };
    const byStatus: Record<number, number> = {};
    /** requests the client library would not send */
    let refused = 0;
    let next = 0;
    const worker = async () => {
        while (next < total) {
            const i = next++;
            const a = pick(kinds)();
            let status: number;
            let body: Buffer;
            try {
                ({ status, body } = await send(agent, url, a));
            }
            catch (err) {
                if (unsendable(err as NodeJS.ErrnoException)) {
                    refused++;
                    continue;
                }
                wrong(a, i, `${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`);
                continue;
            }
            byStatus[status] = (byStatus[status] ?? 0) + 1;
            if (status < 400) {
                // a success needs no code (an answer of the model, as big as the request, is not parsed)
                continue;
            }
            let code: unknown;
            try {
                code = JSON.parse(body.toString()).code;
            }
            catch {}
            const clean = status < 500 || ((status === 503 || status === 504) && typeof code === 'string');
            if (!clean || typeof code !== 'string') {
                wrong(a, i, `${status} ${body.toString()}`);
            }
        }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    t.comment(`answers by status: ${JSON.stringify(byStatus)}; not sent (refused by the client library): ${refused}`);
    t.same(Object.fromEntries(bad), {}, 'every answer is a clean catalogue error (by kind of request: how many were not, and the first)');

    const status = (await s.get('/-/status')).body;
    const replicas = status.applications.flatMap((a: any) => a.deployments.flatMap((d: any) => d.replicas));
    t.same(replicas.filter((r: any) => r.restarts !== 0 || r.state !== 'RUNNING').map((r: any) => `${r.id}: ${r.state}, ${r.restarts} restarts, ${r.last_error}`), [], 'no replica crashed');
    for (const [k, f] of Object.entries(known)) {
        const after = await f();
        t.equal(after.status, 200, `${k} still answers`);
        t.same(after.body, before[k], `${k}: the same answer as before the fuzz`);
    }
});
