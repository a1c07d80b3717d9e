// The catalogue of request-time errors. Each has a stable code; codes are never reused.
import http from 'node:http';
import Boom from '@hapi/boom';

export const catalogue = {
    BAD_REQUEST: { status: 400, message: 'Bad request' },
    INVALID_JSON: { status: 400, message: 'Request body is not valid JSON' },
    INVALID_BODY: { status: 400, message: 'Request body does not match the route\'s schema' },
    INVALID_MEDIA: { status: 400, message: 'The image or audio cannot be decoded' },
    INPUT_SHAPE_MISMATCH: { status: 400, message: 'Input has the wrong shape' },
    INPUT_DTYPE_MISMATCH: { status: 400, message: 'Input has the wrong type' },
    UNAUTHORIZED: { status: 401, message: 'This route needs a valid key' },
    FORBIDDEN: { status: 403, message: 'Not allowed' },
    NOT_FOUND: { status: 404, message: 'No route' },
    METHOD_NOT_ALLOWED: { status: 405, message: 'Method not allowed' },
    CLIENT_TIMEOUT: { status: 408, message: 'The request did not arrive in time' },
    PAYLOAD_TOO_LARGE: { status: 413, message: 'Request body too large' },
    UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Unsupported content type' },
    CLIENT_CLOSED_REQUEST: { status: 499, message: 'The client closed the connection before the answer' },
    INTERNAL: { status: 500, message: 'Internal error' },
    MODEL_ERROR: { status: 500, message: 'The model failed on this input' },
    HANDLER_ERROR: { status: 500, message: 'The handler failed on this input' },
    REPLICA_CRASHED: { status: 500, message: 'The replica died twice while running this request' },
    PIPELINE_ERROR: { status: 500, message: 'A step of the pipeline could not take the previous step\'s answer' },
    QUEUE_FULL: { status: 503, message: 'Deployment queue is full' },
    REPLICA_UNAVAILABLE: { status: 503, message: 'No replica of this deployment is available' },
    REQUEST_TIMEOUT: { status: 504, message: 'Request timed out' }
} as const;

export type ErrorCode = keyof typeof catalogue;

/** A Boom error carrying its catalogue code (and optional details) in `data`. */
export function fail(code: ErrorCode, message?: string, details?: Record<string, unknown>): Boom.Boom {
    const entry = catalogue[code];
    return new Boom.Boom(message ?? entry.message, { statusCode: entry.status, data: { code, ...details } });
}

const byStatus: Record<number, ErrorCode> = { 400: 'BAD_REQUEST', 404: 'NOT_FOUND', 405: 'METHOD_NOT_ALLOWED', 408: 'CLIENT_TIMEOUT', 413: 'PAYLOAD_TOO_LARGE', 415: 'UNSUPPORTED_MEDIA_TYPE' };

/** Text a client sent (a name, a path, a media type), cut to `max` characters with an ellipsis, for a message to quote. */
export function clip(text: string, max = 100): string {
    return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** A value a client sent, as a message quotes it: a string as JSON, cut by clip(); a number, boolean or null as it is; only the kind of an array or object. */
export function quote(value: unknown): string {
    if (typeof value === 'string') {
        return JSON.stringify(clip(value));
    }
    if (value !== null && typeof value === 'object') {
        return Array.isArray(value) ? 'an array' : 'an object';
    }
    return clip(String(value));
}

/**
 * The catalogue's body for an error answered without a Boom error, which costs its stack trace: what shape() makes
 * of fail(code, message). For refusals under load (lib/shed.ts), which must cost the front door little.
 */
export function body(code: ErrorCode, message: string, requestId?: string): string {
    const status = catalogue[code].status;
    return JSON.stringify({ statusCode: status, error: http.STATUS_CODES[status], message, code, request_id: requestId });
}

/** The one JSON error body every route returns: `{statusCode, error, message, code, details?, request_id}`. */
export function shape(err: Boom.Boom, requestId?: string): void {
    // hapi's own errors carry other data (a framework error, a response, or none): only ours, with a catalogue code, is shown.
    const data = err.data as { code?: unknown } | null | undefined;
    const ours = typeof data?.code === 'string' && Object.hasOwn(catalogue, data.code);
    const { code, ...details } = ours ? data as { code: ErrorCode } : { code: undefined };
    const payload = err.output.payload as unknown as Record<string, unknown>;
    payload.code = code ?? (/payload JSON/.test(err.message) ? 'INVALID_JSON' : byStatus[err.output.statusCode] ?? (err.output.statusCode < 500 ? 'BAD_REQUEST' : 'INTERNAL'));
    if (code) {
        // Boom hides 5xx messages; ours come from the catalogue or a model's own error, and are meant for the client.
        payload.message = err.message;
    }
    if (Object.keys(details).length) {
        payload.details = details;
    }
    payload.request_id = requestId;
    if (err.output.statusCode === 503) {
        err.output.headers['Retry-After'] = '1';
    }
}

/** Errors that cross the replica boundary travel as plain data. */
export interface WireError {
    code: ErrorCode;
    message: string;
    details?: Record<string, unknown>;
    /** a user handler's own HTTP status, where it differs from the code's */
    status?: number;
}

/** A Boom error from a handler keeps its code (or, from a user's handler, its status); anything else is the model's. */
export function toWire(err: unknown): WireError {
    if (Boom.isBoom(err)) {
        const { code, ...details } = { ...(err.data as { code?: ErrorCode }) };
        const status = err.output.statusCode;
        const known = code && code in catalogue ? code : byStatus[status] ?? (status < 500 ? 'BAD_REQUEST' : 'HANDLER_ERROR');
        return {
            code: known,
            message: err.message,
            details: Object.keys(details).length ? details : undefined,
            status: status === catalogue[known].status ? undefined : status
        };
    }
    return { code: 'MODEL_ERROR', message: (err as Error)?.message ?? String(err) };
}

export function fromWire(w: WireError): Boom.Boom {
    return new Boom.Boom(w.message, { statusCode: w.status ?? catalogue[w.code].status, data: { code: w.code, ...w.details } });
}
