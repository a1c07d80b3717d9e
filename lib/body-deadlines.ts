// How long a request's body may take to arrive: a deadline per body, answered at once (408, or 413 for a chunked body
// known to be too large) rather than after the rest of a body that stalls or trickles; and answers written outside
// hapi's lifecycle, on a connection that then closes.
import type http from 'node:http';
import type Hapi from '@hapi/hapi';
import type Boom from '@hapi/boom';
import { fail, shape } from './errors';

/** An error's catalogue body, and the headers that go with it on a connection that closes after it. */
export function closingAnswer(err: Boom.Boom, requestId?: string): { status: number; headers: Record<string, string | number>; body: string } {
    shape(err, requestId);
    const body = JSON.stringify(err.output.payload);
    const headers: Record<string, string | number> = { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), connection: 'close' };
    if (requestId) {
        headers['x-request-id'] = requestId;
    }
    return { status: err.output.statusCode, headers, body };
}

/**
 * Answers a request outside hapi's lifecycle: one whose body has not arrived, while hapi still waits for it. The
 * connection closes once the answer is written (Connection: close), hapi sees the request aborted and writes nothing.
 */
function answerNow(res: http.ServerResponse, err: Boom.Boom, requestId: string): void {
    /* c8 ignore next 4 */
    if (res.headersSent) {
        // hapi answered in the same instant, without the rest of the body (a malformed chunk), and closes the connection itself.
        return;
    }
    const { status, headers, body } = closingAnswer(err, requestId);
    res.writeHead(status, headers).end(body);
}

/** A body being read, and when it must have arrived. */
interface Body {
    req: http.IncomingMessage;
    res: http.ServerResponse;
    requestId: string;
    deadline: number;
    /** bytes of a chunked body seen so far */
    received: number;
}

/**
 * Bounds how long a request's body may take. hapi's own payload timeout answers only once the rest of the body has been
 * read (it drains a refused body, so that the client reads the answer), which a stalled body never gives: this deadline
 * answers at once (408, or 413 for a body already known to be too large) and closes the connection. It ends with the body.
 * One timer for every body, set for the oldest one's deadline (they all have the same limit), rather than a timer per
 * request, which costs the front door a measurable share of its throughput.
 */
export class BodyDeadlines {
    /** bodies being read, oldest first */
    private open = new Set<Body>();
    private timer?: NodeJS.Timeout;

    constructor(private readonly timeoutMs: number, private readonly maxBytes: number) {}

    watch(request: Hapi.Request): void {
        const { req, res } = request.raw;
        const body: Body = { req, res, requestId: request.app.requestId, deadline: performance.now() + this.timeoutMs, received: 0 };
        if (req.headers['content-length'] === undefined) {
            // A chunked body over maxBytes is refused by hapi's reader, which also destroys the stream it reads: the request,
            // so the connection and the answer with it, unless a tap ('peek') stands between them. The tap also counts.
            request.events.on('peek', (chunk: string | Buffer) => {
                body.received += chunk.length;
            });
        }
        this.open.add(body);
        // 'close' comes once the body has been read to its end, or the connection lost.
        req.once('close', () => this.open.delete(body));
        this.timer ??= setTimeout(this.sweep, this.timeoutMs);
    }

    private readonly sweep = (): void => {
        this.timer = undefined;
        // Timers count whole milliseconds, so one may fire a fraction of one early.
        const now = performance.now() + 1;
        for (const body of this.open) {
            if (body.deadline > now) {
                this.timer = setTimeout(this.sweep, body.deadline - now + 1);
                return;
            }
            this.open.delete(body);
            const declared = Number(body.req.headers['content-length'] ?? 0);
            answerNow(body.res, declared > this.maxBytes || body.received > this.maxBytes
                ? fail('PAYLOAD_TOO_LARGE', `Payload content length greater than maximum allowed: ${this.maxBytes}`)
                : fail('CLIENT_TIMEOUT', `the request's body did not arrive within ${this.timeoutMs / 1000} s`), body.requestId);
        }
    };
}
