// Figure 8: what a pipeline route costs per step. A two-step pipeline (the sentiment model's embedder, then its
// classifier head, examples/models) answers one request at a time over one connection; the baseline is the client
// calling the two deployments itself, one after the other (POST the text to the embedder's route, then its embedding
// to the head's route), the same work through the same queues. Rounds alternate A B A B ..., so that a machine that
// drifts during the run affects both sides alike; each side's figure is the median of its rounds' p50s.
import fs from 'node:fs';
import path from 'node:path';
import { jsonBody, post, startServer } from './harness';

export interface ComposeResult {
    /** p50 of the pipeline route, ms (median over rounds) */
    pipelineP50Ms: number;
    /** p50 of the two calls in turn from the client, ms (median over rounds) */
    manualP50Ms: number;
    rounds: number;
    /** requests per side */
    n: number;
    /** the pipeline's answers were equal to the client's two steps (to 1e-5) */
    equal: boolean;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function call(url: string, value: unknown): Promise<any> {
    const res = await post(url, jsonBody(value));
    if (res.status !== 200) {
        throw new Error(`${url} answered ${res.status}: ${res.text.slice(0, 200)}`);
    }
    return JSON.parse(res.text);
}

/** p50 (ms) of `once` run back to back for `seconds`. */
async function p50(seconds: number, once: () => Promise<unknown>): Promise<{ p50: number; n: number }> {
    const times: number[] = [];
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end) {
        const t = performance.now();
        await once();
        times.push(performance.now() - t);
    }
    return { p50: median(times), n: times.length };
}

export async function compose(root: string, dir: string, cli: string, seconds: number, rounds = 4): Promise<ComposeResult> {
    fs.mkdirSync(dir, { recursive: true });
    const models = path.join(root, 'examples', 'models');
    const file = path.join(dir, 'compose.yaml');
    fs.writeFileSync(file, `# written by bench/compose.ts
logging_config: { enable_access_log: false }
applications:
  - name: review
    deployments:
      - { name: embedder, handler: text, model: { path: ${path.join(models, 'sentiment')} }, options: { task: embedding, normalize: false } }
      - { name: head, model: { path: ${path.join(models, 'sentiment-head')} } }
    routes:
      - { path: /logits, pipeline: [embedder, { deployment: head, input: { inputs: { embedding: ["$.embedding"] } } }] }
      - { path: /embed, deployment: embedder }
      - { path: /head, deployment: head }
`);
    const server = await startServer('tsserve (pipeline)', [cli, 'up', file, '--port', '0']);
    try {
        const text = { text: 'a wonderful film, I loved every minute of it' };
        const pipeline = async () => (await call(`${server.url}/review/logits`, text)).outputs.logits[0] as number[];
        const manual = async () => {
            const e = await call(`${server.url}/review/embed`, text);
            return (await call(`${server.url}/review/head`, { inputs: { embedding: [e.embedding] } })).outputs.logits[0] as number[];
        };
        const [a, b] = [await pipeline(), await manual()];
        const equal = a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) <= 1e-5);
        // warm both paths
        await p50(Math.min(1, seconds), pipeline);
        await p50(Math.min(1, seconds), manual);
        const sides = { pipeline: [] as number[], manual: [] as number[] };
        let n = 0;
        for (let r = 0; r < rounds; r++) {
            for (const side of (r % 2 ? ['manual', 'pipeline'] : ['pipeline', 'manual']) as Array<'pipeline' | 'manual'>) {
                const m = await p50(seconds / rounds, side === 'pipeline' ? pipeline : manual);
                sides[side].push(m.p50);
                n += m.n;
            }
        }
        return { pipelineP50Ms: median(sides.pipeline), manualP50Ms: median(sides.manual), rounds, n: Math.round(n / 2), equal };
    }
    finally {
        await server.stop();
    }
}
