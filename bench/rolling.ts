// Figure 4: latency and errors while serve.yaml rolls a deployment onto a new model, against the same load without.
import fs from 'node:fs';
import path from 'node:path';
import http from 'node:http';
import { startServer } from './harness';
import { mlp } from '../modelgen/zoo';

export interface RollingResult {
    steady: { requests: number; errors: number; p50Ms: number; p99Ms: number };
    update: { requests: number; errors: number; p50Ms: number; p99Ms: number; reloadSeconds: number };
}

const CLIENTS = 8;

function percentile(sorted: number[], q: number): number {
    return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
}

/** Closed-loop clients (one keep-alive connection each) until `until` resolves; latencies and failures. */
async function load(url: string, until: Promise<unknown>): Promise<{ times: number[]; errors: number }> {
    const body = JSON.stringify({ inputs: { x: [[0.1, 0.2, 0.3, 0.4]] } });
    const u = new URL(url);
    let done = false;
    until.then(() => done = true);
    const times: number[] = [];
    let errors = 0;
    await Promise.all(Array.from({ length: CLIENTS }, async () => {
        const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
        while (!done) {
            const t0 = performance.now();
            const status = await new Promise<number>((resolve) => {
                const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
                    res.resume();
                    res.on('end', () => resolve(res.statusCode as number));
                });
                req.on('error', () => resolve(0));
                req.end(body);
            });
            times.push(performance.now() - t0);
            errors += status === 200 ? 0 : 1;
        }
        agent.destroy();
    }));
    return { times: times.sort((a, b) => a - b), errors };
}

const summary = (r: { times: number[]; errors: number }) =>
    ({ requests: r.times.length, errors: r.errors, p50Ms: percentile(r.times, 0.5), p99Ms: percentile(r.times, 0.99) });

export async function rolling(dir: string, cli: string, seconds: number): Promise<RollingResult> {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'a.onnx'), mlp());
    fs.writeFileSync(path.join(dir, 'b.onnx'), mlp({ seed: 7 }));
    const file = path.join(dir, 'rolling.yaml');
    const yaml = (model: string) => `applications:\n  - name: mlp\n    deployments:\n      - name: model\n        model: { path: ./${model} }\n        num_replicas: 2\n        batching: { max_batch_size: 32, batch_wait_timeout_s: 0.002 }\n`;
    fs.writeFileSync(file, yaml('a.onnx'));
    const server = await startServer('tsserve (rolling)', [cli, 'up', file, '--port', '0']);
    const url = `${server.url}/mlp/predict`;
    const reloads = async () => (await (await fetch(`${server.url}/-/status`)).json() as { config: { reloads: number } }).config.reloads;
    try {
        await load(url, new Promise((r) => setTimeout(r, 1000)));
        const steady = await load(url, new Promise((r) => setTimeout(r, seconds * 1000)));
        // Same load while the deployment rolls onto b.onnx (2 replicas, one at a time), and a second after.
        let reloadSeconds = 0;
        const rolled = (async () => {
            await new Promise((r) => setTimeout(r, 500));
            const t0 = performance.now();
            fs.writeFileSync(file, yaml('b.onnx'));
            while (await reloads() < 1) {
                await new Promise((r) => setTimeout(r, 50));
            }
            reloadSeconds = (performance.now() - t0) / 1000;
            await new Promise((r) => setTimeout(r, 1000));
        })();
        const update = await load(url, rolled);
        return { steady: summary(steady), update: { ...summary(update), reloadSeconds } };
    }
    finally {
        await server.stop();
    }
}
