// Shared test helpers: generated fixture models, a real `tsserve up` process on a free port, waiting for a
// condition, and the checks several test files make (closeness, a valid OpenAPI document).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { spawn, type ChildProcess } from 'node:child_process';
import { dtypes, fixedBatch, halves, intInput, lookup, mlp, oipExample, pairSeq, slow } from '../modelgen/zoo';
import type { TensorInfo } from '../lib/signature';

export const cli = path.join(__dirname, '..', 'lib', 'cli.ts');

// Tests that load onnxruntime-node in-process keep its telemetry off too (see lib/replica.ts).
process.env.ORT_DISABLE_TELEMETRY ??= '1';

/** A fresh folder holding the fixture models; returns its path. */
export function fixtures(): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-test-'));
    const models: Record<string, Uint8Array> = {
        'mlp.onnx': mlp(), 'mlp2.onnx': mlp({ seed: 7 }), 'pair.onnx': pairSeq(), 'fixed.onnx': fixedBatch(),
        'int.onnx': intInput(), 'lookup.onnx': lookup(), 'halves.onnx': halves(), 'slow.onnx': slow({ size: 384, repeats: 4 }),
        'dtypes.onnx': dtypes(), 'mymodel.onnx': oipExample()
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

export interface StartOptions {
    /**
     * Wait for the start-up to be over too (true, the default): each deployment has a replica running or has failed
     * its first start, as the line "start-up complete" says. false: only until the listener is bound, which comes first.
     */
    started?: boolean;
    /** a compiled CLI (dist/lib/cli.js) to run as it is, without this process's TypeScript loader; default: lib/cli.ts */
    cli?: string;
}

/** Starts `tsserve up` on serve.yaml text written into dir, on a free port, and waits until it has started. */
export function serve(dir: string, yaml: string, file = 'serve.yaml', options: StartOptions = {}): Promise<Served> {
    const config = path.join(dir, file);
    fs.writeFileSync(config, yaml);
    return start(config, options);
}

/** Starts `tsserve up` on an existing file, on a free port, and waits until it listens, and until it has started. */
export async function start(config: string, { started = true, cli: compiled }: StartOptions = {}): Promise<Served> {
    const args = compiled ? [compiled] : [...process.execArgv, cli];
    const proc = spawn(process.execPath, [...args, 'up', config, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], ...compiled && { env: { ...process.env, NODE_OPTIONS: '' } } });
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
    // The listener is bound first, then the replicas load, each compiling TypeScript under the test loader: slow on a
    // loaded 2-core machine.
    const failed = exited.then((c) => {
        throw new Error(`tsserve exited with ${c}:\n${out}`);
    });
    const url = await Promise.race([waitFor(/listening on (http:\/\/\S+)/, 120000), failed]);
    if (started) {
        await Promise.race([waitFor(/start-up complete/, 120000), failed]);
    }
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

/**
 * The tsserve command in this process (lib/cli.ts's main()), answering as run() does: for `status` and `reload`
 * against a running server, without a CLI process to start (and compile) each time. Call it at the top of a test
 * file: loading lib/cli.ts compiles much of lib/ and holds this process's event loop for seconds, which must not
 * happen while requests are in flight.
 */
export function cliHere(): (args: string[]) => Promise<{ code: number; stdout: string; stderr: string }> {
    const { main } = require('../lib/cli') as typeof import('../lib/cli');
    return async (args) => {
        let stdout = '';
        let stderr = '';
        const code = await main(args, (s) => stdout += s, (s) => stderr += s);
        return { code, stdout, stderr };
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

/**
 * A pause. To wait for something to happen, use until(); a sleep is only for seeing that something does NOT happen
 * (a second reload, say), and its caller says so.
 */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface UntilOptions {
    /** what is awaited, for the failure message; a function is called only on failure (to add a server's output, say) */
    what: string | (() => string);
    /** how long to keep looking; long, since a loaded 2-core machine is slow, and only a failure waits it out */
    timeoutMs?: number;
    /** the pause between looks */
    intervalMs?: number;
}

type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>;

/**
 * Resolves with the first truthy value fn() returns, looking again every intervalMs; rejects, naming `what` and the
 * last value seen, once timeoutMs has passed. An error thrown by fn() is not retried: it rejects at once.
 */
export async function until<T>(fn: () => T | Promise<T>, { what, timeoutMs = 60000, intervalMs = 20 }: UntilOptions): Promise<Truthy<T>> {
    const end = Date.now() + timeoutMs;
    for (;;) {
        const value = await fn();
        if (value) {
            return value as Truthy<T>;
        }
        if (Date.now() >= end) {
            const last = inspect(value, { depth: 3, breakLength: Infinity }).slice(0, 500);
            throw new Error(`timed out after ${timeoutMs}ms waiting for ${typeof what === 'function' ? what() : what} (last seen: ${last})`);
        }
        await sleep(intervalMs);
    }
}

/**
 * Runs fn while process pid is stopped (SIGSTOP), then lets it run again (SIGCONT), even when fn fails. A replica held
 * so keeps what it was sent in flight and leaves the rest queued, however fast or slow this machine is. Give its
 * deployment a long health_check_timeout_s, or a hold past it (30 s by default) is taken for a hang and killed.
 * A promise that needs the process running (a request's answer, say) comes back wrapped, `return { answer }`: one
 * returned as it is would be waited for, by fn and by held(), while the process is stopped.
 */
export async function held<T>(pid: number, fn: () => Promise<T>): Promise<T> {
    process.kill(pid, 'SIGSTOP');
    try {
        return await fn();
    }
    finally {
        try {
            process.kill(pid, 'SIGCONT');
        }
        catch {
            // gone meanwhile: what fn or the checks after it saw says why
        }
    }
}

/**
 * Whether got is within eps of want, element by element (same length): an absolute eps for values up to 1 in size,
 * relative above (|got - want| <= eps * max(1, |want|)). Numbers or arrays of them (a typed array, say).
 * Pass got and want to t.ok as { found, wanted }, so that a failure shows both: t.ok(near(a, b), msg, { found: a, wanted: b }).
 */
export function near(got: number | ArrayLike<number>, want: number | ArrayLike<number>, eps = 1e-5): boolean {
    const a = typeof got === 'number' ? [got] : Array.from(got);
    const b = typeof want === 'number' ? [want] : Array.from(want);
    return a.length === b.length && b.every((w, i) => Math.abs(a[i] - w) <= eps * Math.max(1, Math.abs(w)));
}

/** A model input or output as a runtime reports it. */
export const info = (name: string, type: string, dims: Array<number | string>): TensorInfo => ({ name, type, dims });

/** The part of tap's `t` that validOpenApi() uses. */
export interface Same {
    same(found: unknown, wanted: unknown, message: string): boolean;
}

/**
 * Asserts that doc is a valid OpenAPI document, by a real validator (@readme/openapi-parser). Its validate() resolves
 * {valid: false, errors} on an invalid document rather than rejecting, so the whole result is compared: a failure
 * shows the validator's errors. The document itself is not touched (the validator dereferences what it is given).
 */
export async function validOpenApi(t: Same, doc: unknown, message = 'a valid OpenAPI document'): Promise<boolean> {
    // loaded here, not by every test file that imports these helpers
    const { validate: validateOpenApi } = await import('@readme/openapi-parser');
    const result = await validateOpenApi(structuredClone(doc) as Parameters<typeof validateOpenApi>[0]);
    return t.same(result, { valid: true, warnings: [], specification: 'OpenAPI' }, message);
}

/** Rows for the identity model slow.onnx ([batch, 1]): n rows of the value v. */
export const slowRows = (n: number, v: number): number[][] => Array.from({ length: n }, () => [v]);

/**
 * Load on the route of an identity model (slow.onnx) from 8 clients, each request 3 rows of its own value and its
 * answer checked: 20 answers, then `strike(round)` (kill replicas, say), `rounds` times, then 20 answers more.
 * Resolves with how many requests were answered and how many of them wrongly (each of those is shown as a comment).
 */
export async function strikesUnderLoad(s: Served, route: string, comment: (line: string) => void, strike: (round: number) => Promise<void>, rounds = 3): Promise<{ done: number; failed: number }> {
    let failed = 0;
    let done = 0;
    let running = true;
    const client = async (c: number) => {
        for (let i = 0; running; i++) {
            const v = c * 1000 + i;
            const a = await s.post(route, { inputs: slowRows(3, v) });
            if (a.status !== 200 || !near(a.body.outputs.y.flat(), [v, v, v], 1e-2)) {
                failed++;
                comment(`failed: ${a.status} ${JSON.stringify(a.body)}`);
            }
            done++;
        }
    };
    const clients = Array.from({ length: 8 }, (_, c) => client(c));
    // Some answers between strikes, so that each comes at another point of the load.
    const answered = async (n: number, after: string) => {
        const mark = done;
        await until(() => done >= mark + n, { what: `${n} answers ${after}` });
    };
    for (let k = 0; k < rounds; k++) {
        await answered(20, k ? `since strike ${k}` : 'to start with');
        await strike(k);
    }
    await answered(20, 'since the last strike');
    running = false;
    await Promise.all(clients);
    return { done, failed };
}
