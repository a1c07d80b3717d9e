// Shared test helpers: generated fixture models, and a real `tsserve up` process on a free port.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fixedBatch, halves, intInput, lookup, mlp, pairSeq, slow } from '../modelgen/zoo';

export const cli = path.join(__dirname, '..', 'lib', 'cli.ts');

// Tests that load onnxruntime-node in-process keep its telemetry off too (see lib/replica.ts).
process.env.ORT_DISABLE_TELEMETRY ??= '1';

/** A fresh folder holding the fixture models; returns its path. */
export function fixtures(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-test-'));
    const models: Record<string, Uint8Array> = {
        'mlp.onnx': mlp(), 'mlp2.onnx': mlp({ seed: 7 }), 'pair.onnx': pairSeq(), 'fixed.onnx': fixedBatch(),
        'int.onnx': intInput(), 'lookup.onnx': lookup(), 'halves.onnx': halves(), 'slow.onnx': slow({ size: 384, repeats: 4 })
    };
    for (const [name, bytes] of Object.entries(models)) {
        fs.writeFileSync(path.join(dir, name), bytes);
    }
    fs.writeFileSync(path.join(dir, 'broken.onnx'), 'this is not an onnx model');
    return dir;
}

/** Runs the CLI to completion (validate, status), without blocking this process's event loop. */
export function run(args: string[], cwd?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const proc = spawn(process.execPath, [...process.execArgv, cli, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout?.on('data', (d) => stdout += d);
    proc.stderr?.on('data', (d) => stderr += d);
    return new Promise((resolve) => proc.on('close', (code) => resolve({ code, stdout, stderr })));
}

export interface Served {
    url: string;
    proc: ChildProcess;
    /** everything the process printed so far */
    output(): string;
    /** resolves when a line matching re has been printed */
    waitFor(re: RegExp, timeoutMs?: number): Promise<string>;
    /** SIGTERM and wait for exit; resolves with the exit code */
    stop(signal?: NodeJS.Signals): Promise<number | null>;
    post(route: string, body: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any; headers: Headers }>;
    get(route: string): Promise<{ status: number; body: any; headers: Headers }>;
}

/** Starts `tsserve up` on serve.yaml text written into dir, on a free port, and waits until it listens. */
export function serve(dir: string, yaml: string, file = 'serve.yaml'): Promise<Served> {
    const config = path.join(dir, file);
    fs.writeFileSync(config, yaml);
    return start(config);
}

/** Starts `tsserve up` on an existing file, on a free port, and waits until it listens. */
export async function start(config: string): Promise<Served> {
    const proc = spawn(process.execPath, [...process.execArgv, cli, 'up', config, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    // If this test process dies (a tap timeout, say), its server must not outlive it.
    const reap = () => proc.kill('SIGKILL');
    process.once('exit', reap);
    let out = '';
    const waiters: Array<() => void> = [];
    const onData = (d: Buffer) => {
        out += d;
        waiters.forEach((w) => w());
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => {
        process.off('exit', reap);
        resolve(code);
    }));
    const waitFor = (re: RegExp, timeoutMs = 30000) => new Promise<string>((resolve, reject) => {
        const check = () => {
            const m = out.match(re);
            if (m) {
                clearTimeout(timer);
                waiters.splice(waiters.indexOf(check), 1);
                resolve(m[1] ?? m[0]);
            }
        };
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}; output:\n${out}`)), timeoutMs);
        waiters.push(check);
        check();
    });
    // Replicas load first, each compiling TypeScript under the test loader: slow on a loaded 2-core machine.
    const url = await Promise.race([waitFor(/listening on (http:\/\/\S+)/, 120000), exited.then((c) => {
        throw new Error(`tsserve exited with ${c}:\n${out}`);
    })]);
    const call = async (route: string, init?: RequestInit) => {
        const res = await fetch(url + route, init);
        const text = await res.text();
        let body: unknown = text;
        try {
            body = JSON.parse(text);
        }
        catch {}
        return { status: res.status, body, headers: res.headers };
    };
    return {
        url, proc, waitFor,
        output: () => out,
        stop: (signal = 'SIGTERM') => {
            proc.kill(signal);
            return exited;
        },
        post: (route, body, headers = {}) => call(route, {
            method: 'POST', headers: { 'content-type': 'application/json', ...headers },
            body: typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body)
        }),
        get: (route) => call(route)
    };
}

/** A deployment block for serve.yaml, with overrides as YAML flow text. */
export function app(name: string, model: string, extra = ''): string {
    return `  - name: ${name}
    route_prefix: /${name}
    deployments:
      - name: model
        model: { path: ./${model} }
${extra.split('\n').filter(Boolean).map((l) => `        ${l}`).join('\n')}
`;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
