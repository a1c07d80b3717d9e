// Figure 7: scale from zero. The time to the answer of a request sent to a deployment scaled to zero (it starts a
// replica and waits in the queue for it), against that replica's own start time (fork to ready, as tsserve measures
// it in status: autoscaling.last_replica_start_s), and against the start of the deployment's first replica, when it
// was first brought up.
import fs from 'node:fs';
import path from 'node:path';
import { startServer } from './harness';
import { mlp } from '../modelgen/zoo';

export interface Wake {
    /** seconds from the request's send to its answer */
    answerS: number;
    /** seconds the replica it woke took from its start to ready */
    replicaStartS: number;
    status: number;
}

export interface ScaleResult {
    /** seconds the first replica took to start when the deployment was first brought up */
    firstStartS: number;
    wakes: Wake[];
    answerMedianS: number;
    replicaStartMedianS: number;
}

interface DeploymentStatus {
    status: string;
    autoscaling: { last_replica_start_s?: number; scaled_from_zero: number };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function scaleFromZero(dir: string, cli: string, rounds: number): Promise<ScaleResult> {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'mlp.onnx'), mlp());
    const file = path.join(dir, 'scale.yaml');
    // one replica, stopped once it has been idle half a second
    fs.writeFileSync(file, `applications:
  - name: mlp
    deployments:
      - name: model
        model: { path: ./mlp.onnx }
        autoscaling_config: { min_replicas: 0, initial_replicas: 1, max_replicas: 1, metrics_interval_s: 0.1, look_back_period_s: 0.5, downscale_delay_s: 0.5, downscale_to_zero_delay_s: 0.5 }
`);
    const server = await startServer('tsserve (scale from zero)', [cli, 'up', file, '--port', '0']);
    const deployment = async (): Promise<DeploymentStatus> =>
        ((await (await fetch(`${server.url}/-/status`)).json()) as { applications: Array<{ deployments: DeploymentStatus[] }> }).applications[0].deployments[0];
    const until = async (ok: (d: DeploymentStatus) => boolean): Promise<DeploymentStatus> => {
        for (;;) {
            const d = await deployment();
            if (ok(d)) {
                return d;
            }
            await sleep(50);
        }
    };
    try {
        const first = await until((d) => d.autoscaling.last_replica_start_s !== undefined);
        const wakes: Wake[] = [];
        for (let i = 0; i < rounds; i++) {
            await until((d) => d.status === 'SCALED_TO_ZERO');
            const t0 = performance.now();
            const res = await fetch(`${server.url}/mlp/predict`, {
                method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: { x: [[0.1, 0.2, 0.3, 0.4]] } })
            });
            await res.text();
            const answerS = (performance.now() - t0) / 1000;
            const d = await deployment();
            wakes.push({ answerS, replicaStartS: d.autoscaling.last_replica_start_s as number, status: res.status });
        }
        return {
            firstStartS: first.autoscaling.last_replica_start_s as number, wakes,
            answerMedianS: median(wakes.map((w) => w.answerS)), replicaStartMedianS: median(wakes.map((w) => w.replicaStartS))
        };
    }
    finally {
        await server.stop();
    }
}
