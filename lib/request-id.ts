// Request ids: the client's x-request-id when it is sane, else one of ours. Each is returned in the x-request-id
// header and in every error body, and appears in every log line about its request, the replica's included.
import crypto from 'node:crypto';

/** A client's id we take as it is: 1 to 128 of these characters (nothing a log or a header could be fooled by). */
const sane = /^[A-Za-z0-9._:-]{1,128}$/;

/** This process's ids: a random prefix, then a counter (cheap, and unique across restarts and processes). */
const prefix = crypto.randomBytes(6).toString('hex');
let next = 0;

/** The request's id: the header's value when sane, else a new one. */
export function requestId(header: unknown): string {
    return typeof header === 'string' && sane.test(header) ? header : `${prefix}-${(next++).toString(36)}`;
}
