// Figure 5: goodput under overload. One replica of a model whose replica, not the front door, is the bottleneck,
// offered 1, 4 and 10 times what it answers (an open loop): the requests it answers per second, against its capacity
// (a closed loop that keeps it busy). A server at 10 times its capacity should keep serving at close to it and refuse
// the rest cheaply. Also, for information, the front-bound case: the tiny MLP on one replica at 32 connections, at
// 256 and at 1024, where every refused client asks again at once.
import fs from 'node:fs';
import path from 'node:path';
import { jsonBody, startServer, throughput, freePort, type CpuUse, type Server } from './harness';
import { openLoop, type OpenLoopResult } from './open-loop';
import { mlp, slow } from '../modelgen/zoo';

/** How run.ts measures on a quiet machine (its stable()): the value, the CPU split, the attempts. */
export type Measure = <T>(s: Server, fn: () => Promise<T>) => Promise<{ value: T; cpu: CpuUse; attempts: number }>;

export interface OverloadResult {
    /** the slow model's closed-loop throughput: its capacity */
    capacity: { rps: number; connections: number; cpu: CpuUse };
    /** open loops at these multiples of capacity */
    open: Array<{ factor: number; rate: number; result: OpenLoopResult; cpu: CpuUse; frontUsPerRequest: number }>;
    /** the MLP on one replica, closed loop, at these connection counts */
    closed: Array<{ connections: number; rps: number; non2xx: number; cpu: CpuUse }>;
}

export const FACTORS = [1, 4, 10];
/** the MLP's closed loops: its peak, then more connections than it holds (64 ongoing + 256 queued) and far more */
export const CLOSED_CONNECTIONS = [32, 256, 1024];
/** enough to keep the replica's two pipelined batches full and the queue never empty */
const CAPACITY_CONNECTIONS = 64;

function yaml(dir: string, name: string, model: string, batch: number): string {
    const file = path.join(dir, `${name}.yaml`);
    fs.writeFileSync(file, `# written by bench/overload.ts: one replica, the default queue limits
applications:
  - name: ${name}
    deployments:
      - name: model
        model: { path: ./${model} }
        num_replicas: 1
        batching: { max_batch_size: ${batch} }
`);
    return file;
}

export async function overload(dir: string, cli: string, seconds: number, warm: number, measure: Measure, log: (line: string) => void): Promise<OverloadResult> {
    fs.mkdirSync(dir, { recursive: true });
    // y = x at a few ms of one core per row; batches of 4 keep a request's wait short without changing the cost per row much
    fs.writeFileSync(path.join(dir, 'slow.onnx'), slow({ size: 512, repeats: 2 }));
    fs.writeFileSync(path.join(dir, 'mlp.onnx'), mlp());
    const result: OverloadResult = { capacity: { rps: 0, connections: CAPACITY_CONNECTIONS, cpu: {} as CpuUse }, open: [], closed: [] };
    const start = async (name: string, file: string) => startServer(name, [cli, 'up', file, '--port', String(await freePort())]);

    let s = await start('tsserve slow, 1 replica', yaml(dir, 'slow', 'slow.onnx', 4));
    try {
        const url = `${s.url}/slow/predict`;
        const body = jsonBody({ inputs: { x: [[0.5]] } });
        const server = s;
        const cap = await measure(server, () => throughput(url, body, CAPACITY_CONNECTIONS, seconds, warm));
        result.capacity = { rps: cap.value.rps, connections: CAPACITY_CONNECTIONS, cpu: cap.cpu };
        log(`  capacity (closed loop, ${CAPACITY_CONNECTIONS} connections): ${cap.value.rps.toFixed(1)} req/s, p50 ${cap.value.p50Ms.toFixed(1)} ms; cpu front ${cap.cpu.server} replica ${cap.cpu.replicas} bench ${cap.cpu.bench} other ${cap.cpu.other}`);
        for (const factor of FACTORS) {
            const rate = factor * cap.value.rps;
            const r = await measure(server, () => openLoop(url, body, rate, seconds, warm + 1));
            const answered = r.value.ok + r.value.refused;
            const frontUsPerRequest = answered ? r.cpu.server * 1e6 / answered : 0;
            result.open.push({ factor, rate, result: r.value, cpu: r.cpu, frontUsPerRequest });
            log(`  ${factor}x (${rate.toFixed(0)} req/s offered, ${r.value.offered.toFixed(0)} sent): ${r.value.ok.toFixed(1)} answered/s (p50 ${r.value.okP50Ms.toFixed(0)} ms), `
                + `${r.value.refused.toFixed(0)} refused/s (p50 ${r.value.refusedP50Ms.toFixed(2)} ms), ${r.value.other} other, ${r.value.errors} errors; `
                + `front ${frontUsPerRequest.toFixed(0)} µs of CPU per answer; cpu front ${r.cpu.server} replica ${r.cpu.replicas} bench ${r.cpu.bench} other ${r.cpu.other}`);
        }
    }
    finally {
        await s.stop();
    }

    s = await start('tsserve mlp, 1 replica', yaml(dir, 'mlp', 'mlp.onnx', 32));
    try {
        const url = `${s.url}/mlp/predict`;
        const body = jsonBody({ inputs: { x: [[0.1, 0.2, 0.3, 0.4]] } });
        const server = s;
        for (const connections of CLOSED_CONNECTIONS) {
            const r = await measure(server, () => throughput(url, body, connections, seconds, warm));
            result.closed.push({ connections, rps: r.value.rps, non2xx: r.value.non2xx / seconds, cpu: r.cpu });
            log(`  mlp, closed loop, ${connections} connections: ${r.value.rps.toFixed(0)} answered/s, ${(r.value.non2xx / seconds).toFixed(0)} refused/s; cpu front ${r.cpu.server} replica ${r.cpu.replicas} bench ${r.cpu.bench} other ${r.cpu.other}`);
        }
    }
    finally {
        await s.stop();
    }
    return result;
}
