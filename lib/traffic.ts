// A deployment's recent traffic, for /-/status and `tsserve status`: requests answered over the last minute, their
// rate, their errors and their latency percentiles. /metrics has the same since start-up (histograms, for Prometheus to
// take rates of); this is what a person asks of a running server without one. Recording a request is one array
// increment: a second's slot holds a count per latency bucket, and a summary merges the minute's slots.

/** the window a summary covers, in seconds */
export const windowS = 60;

/** Latency buckets: upper edges from 50 µs, each 25% above the last, up to ~10 minutes (any longer falls in the last). */
const edges: number[] = [];
for (let ms = 0.05; ms < 600_000; ms *= 1.25) {
    edges.push(ms);
}
const logStep = Math.log(1.25);

/** The bucket of a latency: the first whose upper edge is at least ms. */
function bucket(ms: number): number {
    return ms <= edges[0] ? 0 : Math.min(edges.length - 1, Math.ceil(Math.log(ms / edges[0]) / logStep - 1e-9));
}

interface Slot {
    /** the second (since the epoch) it counts; another second's slot is cleared before it counts again */
    at: number;
    requests: number;
    errors: number;
    buckets: Uint32Array;
}

export interface TrafficSummary {
    /** the seconds it covers: the window, or less when the deployment is younger */
    window_s: number;
    /** requests answered in it */
    requests: number;
    requests_per_s: number;
    /** answers with a status of 500 or more, a second */
    errors_per_s: number;
    /** latency percentiles (ms, the upper edge of their bucket: at most 25% above), absent without a request */
    p50_ms?: number;
    p99_ms?: number;
}

export class Traffic {
    private readonly slots: Slot[] = Array.from({ length: windowS }, () => ({ at: -1, requests: 0, errors: 0, buckets: new Uint32Array(edges.length) }));

    constructor(private readonly since = Date.now()) {}

    /** A request answered after ms, with this status. */
    record(ms: number, status: number, now = Date.now()): void {
        const second = Math.floor(now / 1000);
        const slot = this.slots[second % windowS];
        if (slot.at !== second) {
            slot.at = second;
            slot.requests = slot.errors = 0;
            slot.buckets.fill(0);
        }
        slot.requests++;
        slot.errors += status >= 500 ? 1 : 0;
        slot.buckets[bucket(ms)]++;
    }

    summary(now = Date.now()): TrafficSummary {
        const second = Math.floor(now / 1000);
        const merged = new Uint32Array(edges.length);
        let requests = 0;
        let errors = 0;
        for (const slot of this.slots) {
            // the window is the current second and the 59 before it
            if (slot.at > second - windowS) {
                requests += slot.requests;
                errors += slot.errors;
                slot.buckets.forEach((n, i) => {
                    merged[i] += n;
                });
            }
        }
        const window = Math.min(windowS, Math.max(1, (now - this.since) / 1000));
        const percentile = (q: number) => {
            let seen = 0;
            const i = merged.findIndex((n) => (seen += n) >= q * requests);
            return Math.round(edges[i] * 1000) / 1000;
        };
        const rate = (n: number) => Math.round(n / window * 100) / 100;
        return {
            window_s: Math.round(window), requests, requests_per_s: rate(requests), errors_per_s: rate(errors),
            ...(requests && { p50_ms: percentile(0.5), p99_ms: percentile(0.99) })
        };
    }
}
