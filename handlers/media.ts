// How a media body (images, audio) reaches its handler in the front process: one file as the raw body, files as
// multipart/form-data parts, or base64 in JSON ({"<one>": ...} or {"<many>": [...]}, a data: URL prefix allowed);
// and how OpenAPI describes the forms that are not JSON. What a file must be, and the words of its refusals, are the
// handler's.
import { clip, fail, quote } from '../lib/errors';
import type { OpenApiExtras, RequestIn } from '../lib/handler';

/** How a handler takes its files, each made into an item T, and the messages it refuses bodies with. */
export interface MediaForms<T> {
    /** whether a body of this media type is one file, sent as it is */
    raw(type: string): boolean;
    /** that body (empty when it has no bytes) */
    fromRaw(bytes: Buffer): T;
    /** a multipart file part; `at` names it for messages: file part "a", or file part "a" #2 of several named "a" */
    fromFile(bytes: Buffer, at: string): T;
    /** the JSON fields of one file and of a list of them */
    one: string;
    many: string;
    /** a JSON field's value; `index` is its place in the list, undefined for the one-file field */
    fromJson(value: unknown, index?: number): T;
    /** a multipart body without a file part */
    noFile: string;
    /** a JSON body that is not an object with exactly one of the two fields */
    jsonShape: string;
    /** a list field that is not a non-empty array */
    notList: string;
    /** any other media type (415) */
    unsupported(type: string): string;
}

/** A data: URL's prefix ("data:<type>[;<parameter>...]," in any case) and any other URL's scheme, at the string's start. */
const dataUrl = /^\s*data:([^,]*),/i;
const scheme = /^\s*[a-z][a-z0-9+.-]*:/i;

/**
 * The base64 text of a file sent in a JSON field, without its data: URL prefix. Refuses what is not a string, a
 * data: URL that is not base64, and any other URL: tsserve never fetches one (`noFetch` says what to send instead).
 * Only the head of the string is read here; the text itself is checked where it is decoded. `at` names the field.
 */
export function base64Text(value: unknown, at: string, expected: string, noFetch: string): string {
    if (typeof value !== 'string') {
        throw fail('INVALID_BODY', `${at} must be ${expected}`);
    }
    const head = value.slice(0, 256);
    const prefix = dataUrl.exec(head);
    if (prefix) {
        if (!/;base64$/i.test(prefix[1])) {
            throw fail('INVALID_BODY', `${at} is a data: URL without ";base64"; send the file base64-encoded`);
        }
        return value.slice(prefix[0].length);
    }
    if (scheme.test(head)) {
        throw fail('INVALID_BODY', `${at} is a URL; ${noFetch}`);
    }
    return value;
}

/** The files of a request, and whether it sent a list (then its answer is {results: [...]}). Throws Boom 4xx. */
export function collect<T>(req: RequestIn, forms: MediaForms<T>): { items: T[]; list: boolean } {
    const type = req.contentType;
    const body = req.payload;
    if (forms.raw(type)) {
        return { items: [forms.fromRaw(Buffer.isBuffer(body) ? body : Buffer.alloc(0))], list: false };
    }
    if (type === 'multipart/form-data') {
        // Every file part, in order; text fields are ignored.
        const files = Object.entries(Object(body) as Record<string, unknown>).flatMap(([name, v]) =>
            [v].flat().filter(Buffer.isBuffer).map((b, i, all) => forms.fromFile(b, `file part ${quote(name)}${all.length > 1 ? ` #${i + 1}` : ''}`)));
        if (!files.length) {
            throw fail('INVALID_BODY', forms.noFile);
        }
        return { items: files, list: files.length > 1 };
    }
    if (type !== 'application/json') {
        throw fail('UNSUPPORTED_MEDIA_TYPE', forms.unsupported(clip(type)));
    }
    const json = body as Record<string, unknown> | null;
    if (!json || typeof json !== 'object' || Array.isArray(json) || (json[forms.one] === undefined) === (json[forms.many] === undefined)) {
        throw fail('INVALID_BODY', forms.jsonShape);
    }
    if (json[forms.one] !== undefined) {
        return { items: [forms.fromJson(json[forms.one])], list: false };
    }
    const many = json[forms.many];
    if (!Array.isArray(many) || !many.length) {
        throw fail('INVALID_BODY', forms.notList);
    }
    return { items: many.map((v, i) => forms.fromJson(v, i)), list: true };
}

/** OpenAPI's schema of a file's bytes. */
export const binary = { type: 'string', format: 'binary' };

/** OpenAPI extras for one file as the body (of media type `type`) or files as multipart parts (`properties`). */
export function fileBodies(type: string, description: string, multipart: string, properties: Record<string, unknown>): OpenApiExtras {
    return {
        content: {
            [type]: { schema: { ...binary, description } },
            'multipart/form-data': { schema: { type: 'object', description: multipart, properties } }
        }
    };
}
