// Soak: the example serve.yaml under minutes of mixed load (every handler, good and bad requests), sampling the RSS of
// the front process and every replica; memory must stop growing once warmed up, and no request may fail unexpectedly.
import fs from 'node:fs';
import path from 'node:path';
import { startServer, withCpu, type CpuUse } from './harness';
import type { Status } from '../lib/status';

// autocannon ships no types; the part used here: a request sequence per connection, with a callback per answer.
interface AutocannonRequest {
    method: string;
    path: string;
    headers: Record<string, string>;
    body?: string | Buffer;
    onResponse(status: number): void;
}
type Autocannon = (opts: Record<string, unknown>) => Promise<{ errors: number; timeouts: number }> & { stop(): void };
const autocannon: Autocannon = require('autocannon');

/** One kind of request and the status it must get: 200 for the good ones, its 4xx for the bad ones. */
interface Kind {
    name: string;
    method: 'GET' | 'POST';
    path: string;
    headers: Record<string, string>;
    body?: string | Buffer;
    expect: number;
}

/** A group of closed-loop connections, each cycling through the kinds in order. */
interface Stream {
    name: string;
    connections: number;
    kinds: Kind[];
}

export interface SoakProcess {
    /** "front" or the replica id; with its pid, as a replica restarted would be a new series */
    name: string;
    pid: number;
    samples: number;
    /** MiB: the first sample after warm-up, the last sample, the largest sample of the whole run */
    warmMiB: number;
    endMiB: number;
    maxMiB: number;
    /** MiB: medians of the first and the last 10% of the samples after warm-up (at least 3 each), for information */
    startMedianMiB: number;
    endMedianMiB: number;
    /**
     * MiB: the largest sample of the first and of the second half after warm-up. A process with a garbage-collected
     * heap saws up and down over minutes (heaps grow, then are collected and shrink); a leak raises the peaks.
     */
    firstPeakMiB: number;
    lastPeakMiB: number;
    /** (lastPeak - firstPeak) / firstPeak; NaN with too few samples after warm-up */
    growth: number;
    /** least-squares slope of the samples after warm-up, MiB per minute: a leak climbs steadily, a heap resize steps once */
    slopeMiBPerMin: number;
}

export interface SoakResult {
    seconds: number;
    warmSeconds: number;
    intervalSeconds: number;
    connections: number;
    requests: number;
    rps: number;
    /** answers with the status their kind expects: 200, or the bad requests' 4xx */
    ok: number;
    expected4xx: Record<string, number>;
    /** wrong statuses (any 5xx, a 4xx to a good request, ...) by status, and connection errors and timeouts */
    unexpected: { total: number; byStatus: Record<string, number>; errors: number; timeouts: number };
    kinds: Array<{ stream: string; name: string; expect: number; statuses: Record<string, number> }>;
    processes: SoakProcess[];
    restarts: Array<{ replica: string; fromPid: number; toPid: number; atSeconds: number }>;
    /** replicas' restart counters from /-/status at the end (all 0 when none died) */
    restartCounters: Record<string, number>;
    /** samples that could not read /-/status (the front answers it between requests: none expected) */
    sampleFailures: number;
    cpu: CpuUse;
    /** seconds since the load started, and RSS in MiB by series name */
    series: Array<{ t: number; rss: Record<string, number> }>;
}

const TEXT = 'I loved this film, it was wonderful';
const LONG = Array.from({ length: 2000 }, (_, i) => ['the', 'staff', 'was', 'friendly', 'and', 'the', 'pizza', 'delicious', 'but', 'boring'][i % 10]).join(' ');

function multipart(files: Array<{ field: string; name: string; type: string; data: Buffer }>): { body: Buffer; type: string } {
    const boundary = 'tsserve-soak-boundary';
    const parts = files.flatMap((f) => [
        Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${f.field}"; filename="${f.name}"\r\ncontent-type: ${f.type}\r\n\r\n`), f.data, Buffer.from('\r\n')
    ]);
    return { body: Buffer.concat([...parts, Buffer.from(`--${boundary}--\r\n`)]), type: `multipart/form-data; boundary=${boundary}` };
}

/** The mix: about 20 connections, most on cheap routes, one or two on each heavy one, two on requests that must fail. */
function streams(root: string): Stream[] {
    const file = (name: string) => fs.readFileSync(path.join(root, 'examples', name));
    const json = (value: unknown) => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) });
    const post = (name: string, p: string, b: { headers: Record<string, string>; body: string | Buffer }, expect = 200): Kind => ({ name, method: 'POST', path: p, ...b, expect });
    const raw = (type: string, body: Buffer) => ({ headers: { 'content-type': type }, body });
    const png = file('seven.png');
    const jpeg = file('three.jpg');
    const wav = file('tone-440hz.wav');
    const images = multipart([{ field: 'image', name: 'seven.png', type: 'image/png', data: png }, { field: 'image', name: 'three.jpg', type: 'image/jpeg', data: jpeg }]);
    const audios = multipart([{ field: 'a', name: 'c4.wav', type: 'audio/wav', data: file('tone-c4-44k-stereo.wav') }, { field: 'b', name: 'e4.wav', type: 'audio/wav', data: file('tone-e4-8k.wav') }]);
    const rows = (n: number) => Array.from({ length: n }, (_, i) => [0.1 * i, -1.2, 3.0, 0.5 - 0.01 * i]);
    return [
        { name: 'mlp', connections: 6, kinds: [
            post('mlp 1 row', '/mlp/predict', json({ inputs: { x: rows(1) } })),
            post('mlp 8 rows', '/mlp/predict', json({ inputs: { x: rows(8) } })),
            post('mlp OIP JSON', '/mlp/predict', json({ inputs: [{ name: 'x', shape: [2, 4], datatype: 'FP32', data: rows(2).flat() }] }))
        ] },
        { name: 'iris', connections: 2, kinds: [post('iris', '/iris/predict', json({ flowers: [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]] }))] },
        { name: 'sentiment', connections: 3, kinds: [
            post('sentiment text', '/sentiment/predict', json({ text: TEXT })),
            post('sentiment texts', '/sentiment/predict', json({ texts: ['what a boring and awful movie', ['the staff was friendly', 'and the pizza delicious']] })),
            post('sentiment long text', '/sentiment/predict', json({ text: LONG }))
        ] },
        { name: 'embed', connections: 2, kinds: [
            post('embed text', '/sentiment/embed', json({ text: TEXT })),
            post('embed texts', '/sentiment/embed', json({ texts: [TEXT, 'what a boring and awful movie'] }))
        ] },
        { name: 'digits', connections: 2, kinds: [
            post('digits PNG', '/digits/predict', raw('image/png', png)),
            post('digits multipart', '/digits/predict', raw(images.type, images.body)),
            post('digits base64', '/digits/predict', json({ image: `data:image/png;base64,${png.toString('base64')}` }))
        ] },
        { name: 'digits-tfjs', connections: 1, kinds: [post('digits-tfjs JPEG', '/digits-tfjs/predict', raw('image/jpeg', jpeg))] },
        { name: 'tones', connections: 2, kinds: [
            post('tones WAV', '/tones/predict', raw('audio/wav', wav)),
            post('tones multipart', '/tones/predict', raw(audios.type, audios.body))
        ] },
        { name: 'bad', connections: 2, kinds: [
            post('invalid JSON', '/mlp/predict', { headers: { 'content-type': 'application/json' }, body: '{"inputs": {"x": [[1, 2' }, 400),
            post('wrong shape', '/mlp/predict', json({ inputs: [[1, 2, 3]] }), 400),
            { name: 'unknown route', method: 'GET', path: '/nope', headers: {}, expect: 404 },
            post('wrong content type', '/mlp/predict', raw('text/plain', Buffer.from('hello')), 415),
            post('empty text', '/sentiment/predict', json({ text: '   ' }), 400),
            post('truncated PNG', '/digits/predict', raw('image/png', png.subarray(0, 300)), 400),
            post('not a WAV', '/tones/predict', raw('audio/wav', Buffer.from('RIFF? no, this is text '.repeat(20))), 400),
            post('negative iris', '/iris/predict', json({ flowers: [[-5.1, 3.5, 1.4, 0.2]] }), 422)
        ] }
    ];
}

/** The shipped serve.yaml with its relative paths made absolute, so it is served from its own folder. */
function writeYaml(root: string, dir: string): string {
    const text = fs.readFileSync(path.join(root, 'serve.yaml'), 'utf8').replace(/\b((?:path|handler):\s*)\.\//g, `$1${root}/`);
    if (/:\s*\.\//.test(text.replace(/#.*$/gm, ''))) {
        throw new Error('serve.yaml has a relative path that bench/soak.ts does not rewrite');
    }
    const file = path.join(dir, 'serve.yaml');
    fs.writeFileSync(file, `# written by bench/soak.ts: ${path.join(root, 'serve.yaml')} with absolute paths\n${text}`);
    return file;
}

/** VmRSS of a process in MiB, undefined once it is gone. */
function rssMiB(pid: number): number | undefined {
    try {
        const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
        return m ? Number(m[1]) / 1024 : undefined;
    }
    catch {
        return undefined;
    }
}

const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Least-squares slope of v over t. */
function slope(points: Array<{ t: number; v: number }>): number {
    const mt = points.reduce((a, p) => a + p.t, 0) / points.length;
    const mv = points.reduce((a, p) => a + p.v, 0) / points.length;
    return points.reduce((a, p) => a + (p.t - mt) * (p.v - mv), 0) / points.reduce((a, p) => a + (p.t - mt) ** 2, 0);
}

/**
 * Runs the soak for `seconds` against `tsserve up` (the build `cli`) on a copy of `root`/serve.yaml written in `dir`.
 * The first 20% of the run (at least 30 s, or half the run when shorter) is warm-up; RSS is sampled every 5 s (every
 * seconds / 60, at least 1 s, in a shorter run).
 */
export async function soak(root: string, dir: string, cli: string, seconds: number, log: (line: string) => void = console.log): Promise<SoakResult> {
    fs.mkdirSync(dir, { recursive: true });
    const warmSeconds = Math.max(0.2 * seconds, Math.min(30, 0.5 * seconds));
    const intervalSeconds = Math.min(5, Math.max(1, seconds / 60));
    const all = streams(root);
    const server = await startServer('tsserve (soak)', [cli, 'up', writeYaml(root, dir), '--port', '0']);
    const status = async () => await (await fetch(`${server.url}/-/status`, { signal: AbortSignal.timeout(10_000) })).json() as Status;
    try {
        // Every kind once, so that a body the server does not take fails here and not as 10 minutes of errors.
        for (const kind of all.flatMap((s) => s.kinds)) {
            const res = await fetch(`${server.url}${kind.path}`, { method: kind.method, headers: kind.headers, body: kind.body });
            const text = await res.text();
            if (res.status !== kind.expect) {
                throw new Error(`soak: ${kind.name} (${kind.method} ${kind.path}) answered ${res.status}, not ${kind.expect}: ${text.slice(0, 300)}`);
            }
        }
        const connections = all.reduce((a, s) => a + s.connections, 0);
        log(`  ${connections} connections (${all.map((s) => `${s.name} ${s.connections}`).join(', ')}), ${seconds} s; warm-up ${warmSeconds} s; RSS every ${intervalSeconds} s`);

        const tallies = all.flatMap((s) => s.kinds.map((kind) => ({ stream: s.name, kind, statuses: new Map<number, number>() })));
        const series: SoakResult['series'] = [];
        const pids = new Map<string, number>();
        const restarts: SoakResult['restarts'] = [];
        const t0 = performance.now();
        const elapsed = () => (performance.now() - t0) / 1000;
        const sample = async () => {
            const t = elapsed();
            const rss: Record<string, number> = {};
            const front = rssMiB(server.pid);
            if (front !== undefined) {
                rss[`front (pid ${server.pid})`] = front;
            }
            const replicas = (await status()).applications.flatMap((a) => a.deployments.flatMap((d) => d.replicas));
            for (const r of replicas.filter((x) => x.pid !== undefined)) {
                const pid = r.pid as number;
                const before = pids.get(r.id);
                if (before !== undefined && before !== pid) {
                    restarts.push({ replica: r.id, fromPid: before, toPid: pid, atSeconds: Math.round(t) });
                    log(`  ! replica ${r.id} has a new pid at ${Math.round(t)} s: ${before} -> ${pid}`);
                }
                pids.set(r.id, pid);
                const v = rssMiB(pid);
                if (v !== undefined) {
                    rss[`${r.id} (pid ${pid})`] = v;
                }
            }
            series.push({ t: Math.round(t * 10) / 10, rss });
        };

        const runs = all.map((s) => autocannon({
            url: server.url, connections: s.connections, duration: seconds, timeout: 30,
            requests: s.kinds.map((kind): AutocannonRequest => {
                const counts = tallies.find((x) => x.kind === kind)?.statuses as Map<number, number>;
                return { method: kind.method, path: kind.path, headers: kind.headers, body: kind.body, onResponse: (st) => counts.set(st, (counts.get(st) ?? 0) + 1) };
            })
        }));
        const finished = Promise.all(runs);
        let done = false;
        let died: Error | undefined;
        let sampleFailures = 0;
        const sampling = (async () => {
            let reported = -Infinity;
            for (let tick = 1; !done; tick++) {
                await sample().catch((err: Error) => {
                    sampleFailures++;
                    log(`  ! sampling at ${Math.round(elapsed())} s failed: ${err.message}`);
                });
                if (rssMiB(server.pid) === undefined) {
                    died = new Error(`soak: tsserve exited during the load, at ${Math.round(elapsed())} s:\n${server.tail.join('\n')}`);
                    runs.forEach((r) => r.stop());
                    return;
                }
                if (elapsed() - reported >= seconds / 10) {
                    reported = elapsed();
                    const last = Object.values(series[series.length - 1]?.rss ?? {});
                    const requests = tallies.reduce((a, x) => a + [...x.statuses.values()].reduce((b, c) => b + c, 0), 0);
                    log(`  ${Math.round(elapsed())} s: ${requests} answers; RSS of ${last.length} processes ${Math.min(...last).toFixed(0)}-${Math.max(...last).toFixed(0)} MiB, ${last.reduce((a, b) => a + b, 0).toFixed(0)} MiB in all`);
                }
                await Promise.race([finished, new Promise((r) => setTimeout(r, Math.max(0, t0 + tick * intervalSeconds * 1000 - performance.now())))]);
            }
        })();
        const { value: ac, cpu } = await withCpu(server, () => finished.finally(() => done = true));
        await sampling;
        if (died) {
            throw died;
        }
        const end = await status();

        const byStatus: Record<string, number> = {};
        const expected4xx: Record<string, number> = {};
        let ok = 0;
        let requests = 0;
        for (const { kind, statuses } of tallies) {
            for (const [st, n] of statuses) {
                requests += n;
                if (st !== kind.expect) {
                    byStatus[st] = (byStatus[st] ?? 0) + n;
                }
                else if (st >= 400) {
                    expected4xx[st] = (expected4xx[st] ?? 0) + n;
                }
                else {
                    ok += n;
                }
            }
        }
        const errors = ac.reduce((a, r) => a + r.errors - r.timeouts, 0);
        const timeouts = ac.reduce((a, r) => a + r.timeouts, 0);
        const wrong = Object.values(byStatus).reduce((a, b) => a + b, 0);

        const names = [...new Set(series.flatMap((s) => Object.keys(s.rss)))];
        const processes = names.map((name): SoakProcess => {
            const points = series.filter((s) => s.rss[name] !== undefined).map((s) => ({ t: s.t, v: s.rss[name] }));
            const late = points.filter((p) => p.t >= warmSeconds);
            const after = late.map((p) => p.v);
            const k = Math.max(3, Math.ceil(after.length / 10));
            const first = after.length >= 2 * k ? median(after.slice(0, k)) : NaN;
            const last = after.length >= 2 * k ? median(after.slice(-k)) : NaN;
            const half = Math.floor(after.length / 2);
            const [firstPeak, lastPeak] = after.length >= 2 * k ? [Math.max(...after.slice(0, half)), Math.max(...after.slice(half))] : [NaN, NaN];
            return {
                name: name.replace(/ \(pid \d+\)$/, ''), pid: Number(/pid (\d+)/.exec(name)?.[1]), samples: points.length,
                warmMiB: after[0] ?? NaN, endMiB: after[after.length - 1] ?? NaN, maxMiB: Math.max(...points.map((p) => p.v)),
                startMedianMiB: first, endMedianMiB: last, firstPeakMiB: firstPeak, lastPeakMiB: lastPeak, growth: (lastPeak - firstPeak) / firstPeak,
                slopeMiBPerMin: 60 * slope(late)
            };
        });
        const restartCounters = Object.fromEntries(end.applications.flatMap((a) => a.deployments.flatMap((d) => d.replicas.map((r) => [r.id, r.restarts]))));
        return {
            seconds, warmSeconds, intervalSeconds, connections, requests, rps: requests / seconds, ok, expected4xx,
            unexpected: { total: wrong + errors + timeouts, byStatus, errors, timeouts },
            kinds: tallies.map((x) => ({ stream: x.stream, name: x.kind.name, expect: x.kind.expect, statuses: Object.fromEntries(x.statuses) })),
            processes, restarts, restartCounters, sampleFailures, cpu, series
        };
    }
    finally {
        await server.stop();
    }
}

const mib = (x: number) => Number.isFinite(x) ? `${x.toFixed(1)}` : '-';
const sign = (x: number) => Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(2)}` : '-';
const pct = (x: number) => Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%` : '-';
const counts = (r: Record<string, number>) => Object.entries(r).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none';

/** The process whose RSS grew most after warm-up (a series without enough samples counts as the worst). */
export function worstProcess(r: SoakResult): SoakProcess {
    return r.processes.reduce((a, b) => (Number.isFinite(b.growth) ? b.growth : Infinity) > (Number.isFinite(a.growth) ? a.growth : Infinity) ? b : a);
}

/** RSS growth under 10% for every process, no unexpected failure, no replica restarted. */
export function soakPassed(r: SoakResult, maxGrowth = 0.1): boolean {
    const restarted = r.restarts.length + Object.values(r.restartCounters).reduce((a, b) => a + b, 0);
    return r.processes.every((p) => p.growth < maxGrowth) && r.unexpected.total === 0 && restarted === 0;
}

/** Check lines for the summary: the load and its failures, then one line per process. */
export function soakLines(r: SoakResult, maxGrowth = 0.1): string[] {
    const restarted = Object.entries(r.restartCounters).filter(([, n]) => n > 0);
    const over = r.processes.filter((p) => !(p.growth < maxGrowth));
    return [
        `soak (${r.seconds} s, ${r.connections} connections, mixed): ${r.requests} answers, ${r.rps.toFixed(0)} req/s; ${r.unexpected.total} unexpected failures (target 0: `
            + `wrong statuses ${counts(r.unexpected.byStatus)}; connection errors ${r.unexpected.errors}; timeouts ${r.unexpected.timeouts}); `
            + `expected 4xx to the bad requests: ${counts(r.expected4xx)}; replica restarts ${restarted.length ? restarted.map(([id, n]) => `${id}: ${n}`).join(', ') : 0} (target 0)`
            + `${r.restarts.length ? `, new pids ${r.restarts.map((x) => `${x.replica} at ${x.atSeconds} s`).join(', ')}` : ''}${r.sampleFailures ? `; ${r.sampleFailures} samples failed` : ''}`,
        `soak RSS growth after ${Math.round(r.warmSeconds)} s of warm-up (the peak of the second half of the samples after warm-up against the peak of the first half; target < ${100 * maxGrowth}% each): `
            + `${over.length ? `${over.length} over (${over.map((p) => p.name).join(', ')})` : `all ${r.processes.length} processes under`}`,
        ...r.processes.map((p) => `soak RSS ${p.name} (pid ${p.pid}): ${pct(p.growth)} (peaks ${mib(p.firstPeakMiB)} -> ${mib(p.lastPeakMiB)} MiB; medians of the first and last 10% ${mib(p.startMedianMiB)} -> ${mib(p.endMedianMiB)}, trend ${sign(p.slopeMiBPerMin)} MiB/min); `
            + `${mib(p.warmMiB)} MiB after warm-up, ${mib(p.endMiB)} at the end, max ${mib(p.maxMiB)}`)
    ];
}
