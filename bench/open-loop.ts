// An open-loop load: requests sent at a fixed rate whatever becomes of them, as independent clients arrive. A closed
// loop (autocannon, one request per connection at a time) never offers more than the server answers, and autocannon's
// own rate limit sends each connection's share at the start of every second, in bursts; neither can offer 4 or 10
// times a server's capacity evenly, which is what the overload figure needs.
import http from 'node:http';
import type { Body } from './harness';

export interface OpenLoopResult {
    /** requests sent per second in the window */
    offered: number;
    /** 2xx answers arriving per second in the window: the goodput */
    ok: number;
    /** 503 answers arriving per second in the window */
    refused: number;
    /** answers of any other status, and errors (connection, timeout), over the whole run; those still open at its end are neither */
    other: number;
    errors: number;
    /** latency of the window's 2xx and of its 503 answers, ms */
    okP50Ms: number;
    okP99Ms: number;
    refusedP50Ms: number;
    refusedP99Ms: number;
}

const q = (xs: number[], p: number) => xs.sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? NaN;

/**
 * Sends `rate` requests per second, evenly (a 1 ms tick sends what is due), for warm + seconds + 1 s, each on a pool
 * of keep-alive connections as large as it needs; counts the answers that arrive in [warm, warm + seconds].
 */
export async function openLoop(url: string, body: Body, rate: number, seconds: number, warm: number): Promise<OpenLoopResult> {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4096 });
    const headers = { ...body.headers, 'content-length': String(Buffer.byteLength(body.data)) };
    const start = performance.now();
    const [from, to, end] = [start + warm * 1000, start + (warm + seconds) * 1000, start + (warm + seconds + 1) * 1000];
    const ok: number[] = [];
    const refused: number[] = [];
    let sentInWindow = 0, sent = 0, other = 0, errors = 0, over = false;
    const send = () => {
        const t0 = performance.now();
        sent++;
        sentInWindow += t0 >= from && t0 < to ? 1 : 0;
        const req = http.request(url, { method: 'POST', agent, headers }, (res) => {
            res.resume();
            res.on('end', () => {
                const now = performance.now();
                if (res.statusCode === 200 || res.statusCode === 503) {
                    if (now >= from && now < to) {
                        (res.statusCode === 200 ? ok : refused).push(now - t0);
                    }
                }
                else {
                    other++;
                }
            });
        });
        req.setTimeout(60_000, () => req.destroy(new Error('timeout')));
        // Requests still open when the run ends are cut off with it; they are not errors.
        req.on('error', () => errors += over ? 0 : 1);
        req.end(body.data);
    };
    await new Promise<void>((resolve) => {
        const tick = setInterval(() => {
            const now = performance.now();
            if (now >= end) {
                clearInterval(tick);
                resolve();
                return;
            }
            // At most 50 ms of requests at once, should this process fall behind.
            for (let due = Math.min(Math.floor((now - start) * rate / 1000) - sent, Math.ceil(rate / 20)); due > 0; due--) {
                send();
            }
        }, 1);
    });
    over = true;
    agent.destroy();
    return {
        offered: sentInWindow / seconds, ok: ok.length / seconds, refused: refused.length / seconds, other, errors,
        okP50Ms: q(ok, 0.5), okP99Ms: q(ok, 0.99), refusedP50Ms: q(refused, 0.5), refusedP99Ms: q(refused, 0.99)
    };
}
