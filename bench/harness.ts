// Bench plumbing: server child processes, load (autocannon), sequential latency, CPU accounting from /proc.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';

// autocannon ships no types; this is the part of its API the bench uses: a promise that is also an EventEmitter.
interface AutocannonResult {
    errors: number;
    timeouts: number;
}
type Autocannon = (opts: Record<string, unknown>) => Promise<AutocannonResult> & {
    on(event: 'response', fn: (client: unknown, status: number, bytes: number, ms: number) => void): void;
};
const autocannon: Autocannon = require('autocannon');

export interface Body {
    data: string | Buffer;
    headers: Record<string, string>;
}

export const jsonBody = (value: unknown): Body => ({ data: JSON.stringify(value), headers: { 'content-type': 'application/json' } });

/** A port nobody listens on right now. */
export function freePort(): Promise<number> {
    return new Promise((resolve, reject) => {
        const s = net.createServer().once('error', reject).listen(0, '127.0.0.1', () => {
            const { port } = s.address() as net.AddressInfo;
            s.close(() => resolve(port));
        });
    });
}

const live = new Set<ChildProcess>();
process.once('exit', () => live.forEach((c) => c.kill('SIGKILL')));
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => process.exit(130));
}

export interface Server {
    name: string;
    url: string;
    pid: number;
    /** the last lines it printed, for error messages */
    tail: string[];
    stop(): Promise<void>;
}

/**
 * Starts `node <args>` and resolves once it prints "listening on http://..." and is ready: tsserve binds its listener
 * before its models load, so /-/ready is asked until it answers anything but 503 (a baseline has no such route: 404).
 */
export function startServer(name: string, args: string[], timeoutMs = 120_000): Promise<Server> {
    const child = spawn(process.execPath, [...(process.env.BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir=bench/out/prof'] : []), ...args], {
        env: { ...process.env, ORT_DISABLE_TELEMETRY: '1' }, stdio: ['ignore', 'pipe', 'pipe']
    });
    live.add(child);
    const tail: string[] = [];
    const exited = new Promise<void>((resolve) => child.once('exit', () => {
        live.delete(child);
        resolve();
    }));
    const stop = async () => {
        if (child.exitCode === null && child.signalCode === null) {
            child.kill('SIGTERM');
            const kill = setTimeout(() => child.kill('SIGKILL'), 15_000);
            await exited;
            clearTimeout(kill);
        }
    };
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            void stop();
            reject(new Error(`${name} did not start within ${timeoutMs / 1000}s:\n${tail.join('\n')}`));
        }, timeoutMs);
        let buffered = '';
        const onData = (chunk: Buffer) => {
            buffered += chunk.toString();
            const lines = buffered.split('\n');
            buffered = lines.pop() as string;
            for (const line of lines) {
                tail.push(line);
                tail.splice(0, tail.length - 30);
                const m = /listening on (http:\/\/[^\s)]+)/.exec(line);
                if (m) {
                    const url = m[1];
                    void (async () => {
                        while ((await fetch(`${url}/-/ready`).catch(() => undefined))?.status === 503) {
                            await new Promise((r) => setTimeout(r, 50));
                        }
                        clearTimeout(timer);
                        // From here on its stdout (an access-log line per request) is drained, not read: splitting it
                        // would cost the event loop that autocannon runs on. Its stderr is still kept for messages.
                        child.stdout.off('data', onData).on('data', () => undefined);
                        resolve({ name, url, pid: child.pid as number, tail, stop });
                    })();
                }
            }
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        child.once('exit', (code, signal) => {
            clearTimeout(timer);
            reject(new Error(`${name} exited (${signal ?? `code ${code}`}) before listening:\n${tail.join('\n')}`));
        });
    });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

/** One POST over a keep-alive socket; resolves with the status and the body. */
export function post(url: string, body: Body): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
        const req = http.request(url, { method: 'POST', agent, headers: { ...body.headers, 'content-length': Buffer.byteLength(body.data) } }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode as number, text: Buffer.concat(chunks).toString() }));
            res.on('error', reject);
        });
        req.setTimeout(60_000, () => req.destroy(new Error(`no answer from ${url} within 60s`)));
        req.on('error', reject);
        req.end(body.data);
    });
}

export interface Throughput {
    rps: number;
    /** 2xx answers in the window */
    ok: number;
    /** other answers in the window, and errors and timeouts over the whole run */
    non2xx: number;
    errors: number;
    timeouts: number;
    /** latency percentiles of the window's 2xx answers, in ms */
    p50Ms: number;
    p99Ms: number;
}

/**
 * One autocannon run of warm + seconds + 1 s at `connections`; counts only the answers that arrive in
 * [warm, warm + seconds], so the figure is steady state: no ramp-up at the start, no requests cut off at the end.
 */
export async function throughput(url: string, body: Body, connections: number, seconds: number, warm: number): Promise<Throughput> {
    const run = autocannon({ url, method: 'POST', headers: body.headers, body: body.data, connections, duration: warm + seconds + 1, timeout: 30 });
    const start = performance.now();
    const [from, to] = [start + warm * 1000, start + (warm + seconds) * 1000];
    const times: number[] = [];
    let non2xx = 0;
    run.on('response', (_client, status, _bytes, ms) => {
        const now = performance.now();
        if (now >= from && now < to) {
            status >= 200 && status < 300 ? times.push(ms) : non2xx++;
        }
    });
    const r = await run;
    return { rps: times.length / seconds, ok: times.length, non2xx, errors: r.errors, timeouts: r.timeouts, ...percentiles(times) };
}

function percentiles(times: number[]): { p50Ms: number; p90Ms: number; p99Ms: number } {
    times.sort((a, b) => a - b);
    const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))] ?? NaN;
    return { p50Ms: q(0.5), p90Ms: q(0.9), p99Ms: q(0.99) };
}

export interface Latency {
    n: number;
    p50Ms: number;
    p90Ms: number;
    p99Ms: number;
}

/** One connection, one request at a time, for `seconds` (at most maxN requests): exact percentiles from hrtime. */
export async function latency(url: string, body: Body, seconds: number, maxN = 20_000): Promise<Latency> {
    const times: number[] = [];
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end && times.length < maxN) {
        const t = process.hrtime.bigint();
        const res = await post(url, body);
        times.push(Number(process.hrtime.bigint() - t) / 1e6);
        if (res.status !== 200) {
            throw new Error(`${url} answered ${res.status}: ${res.text.slice(0, 200)}`);
        }
    }
    return { n: times.length, ...percentiles(times) };
}

// --- CPU accounting (Linux /proc; zeros elsewhere) ---

const ticksPerSecond = 100; // USER_HZ on Linux

function procTicks(pid: number): number {
    try {
        const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return Number(f[11]) + Number(f[12]); // utime + stime
    }
    catch {
        return 0;
    }
}

function childrenOf(pid: number): number[] {
    const out: number[] = [];
    try {
        for (const d of fs.readdirSync('/proc')) {
            if (/^\d+$/.test(d)) {
                try {
                    const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
                    if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) {
                        out.push(Number(d));
                    }
                }
                catch { /* gone */ }
            }
        }
    }
    catch { /* no /proc */ }
    return out;
}

function machineBusyTicks(): number {
    try {
        const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
        return f[0] + f[1] + f[2] + f[5] + f[6] + f[7]; // user nice system irq softirq steal
    }
    catch {
        return 0;
    }
}

/** Cores used during a measurement: the server's main process, its children (replicas), this process, everything else. */
export interface CpuUse {
    server: number;
    replicas: number;
    bench: number;
    other: number;
}

export async function withCpu<T>(server: Server | undefined, fn: () => Promise<T>): Promise<{ value: T; cpu: CpuUse }> {
    const kids = server ? childrenOf(server.pid) : [];
    const sample = () => ({
        server: server ? procTicks(server.pid) : 0, replicas: kids.reduce((a, k) => a + procTicks(k), 0),
        bench: procTicks(process.pid), machine: machineBusyTicks(), at: performance.now()
    });
    const a = sample();
    const value = await fn();
    const b = sample();
    const s = (b.at - a.at) / 1000 * ticksPerSecond;
    const server_ = (b.server - a.server) / s, replicas = (b.replicas - a.replicas) / s, bench = (b.bench - a.bench) / s;
    const round = (x: number) => Math.round(x * 100) / 100;
    return { value, cpu: { server: round(server_), replicas: round(replicas), bench: round(bench), other: round(Math.max(0, (b.machine - a.machine) / s - server_ - replicas - bench)) } };
}

/** Waits (at most maxSeconds) until processes other than ours use under `cores` cores, so a load starts on a quiet machine. */
export async function waitForQuiet(maxSeconds: number, cores = 0.3): Promise<number> {
    const end = performance.now() + maxSeconds * 1000;
    for (;;) {
        const { cpu } = await withCpu(undefined, () => new Promise((r) => setTimeout(r, 1000)));
        if (cpu.other < cores || performance.now() > end) {
            return cpu.other;
        }
    }
}
