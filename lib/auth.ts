// API keys, and who may call which route. serve.yaml's `auth:` section names where the keys are (an environment
// variable or a file), never the keys; they are read at each load of the config, kept only as SHA-256 digests, and a
// presented key's digest is compared with every one of them in constant time. Also: the rule that keeps another
// site's page, in an operator's browser, from changing the server (an admin POST whose Origin is not the server).
import crypto from 'node:crypto';
import fs from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import type Boom from '@hapi/boom';
import { clip, fail } from './errors';
import type { AuthConfig, KeySource } from '../schemas/serve';

/** The shortest key taken: a shorter one is guessable. */
export const minKeyLength = 16;

/** The largest key file read: it holds keys, one a line, not data. */
const maxFileBytes = 1 << 20;

/** Routes anyone may call, by their hapi route path: the probes, and the API's description (Swagger UI fetches it without a key). */
export const openRoutes: ReadonlySet<string> = new Set(['/-/healthz', '/-/ready', '/-/ready/{application}', '/openapi.json', '/docs', '/docs/{file}']);

/** Admin routes outside /-/ (every route under /-/ is one, but the open probes). */
export const adminRoutes: ReadonlySet<string> = new Set(['/metrics']);

/** What a route needs: nothing (open), an admin key (admin: /-/reload, /-/status, ...), an API key (model: anything else). */
export type Access = 'open' | 'admin' | 'model';

/** What a route needs, by its hapi route path. Any route not named is a model route: the catch-all, a 404 too. */
export function access(routePath: string): Access {
    if (openRoutes.has(routePath)) {
        return 'open';
    }
    return routePath.startsWith('/-/') || adminRoutes.has(routePath) ? 'admin' : 'model';
}

/** The SHA-256 of a key, as hex: all that is kept of it (`printf %s "$KEY" | sha256sum` says the same). */
export const digestOf = (key: string): string => crypto.createHash('sha256').update(key).digest('hex');

const hashed = /^sha256:([0-9a-f]{64})$/i;

/** Visible ASCII without commas: what a header carries as it is, and what the lists of keys do not split. */
const keyChars = /^[\x21-\x2b\x2d-\x7e]+$/;

/** Keys read from a source: their digests, and why the source cannot be used, if it cannot (a message each). */
export interface ReadKeys {
    digests: string[];
    problems: string[];
}

/** The digests of keys (`sha256:<hex>` is a key given by its digest); `where(i)` names the i-th in a message, never its value. */
function digestsOf(keys: string[], where: (i: number) => string): ReadKeys {
    const digests = new Set<string>();
    const problems: string[] = [];
    keys.forEach((key, i) => {
        const h = hashed.exec(key);
        if (h) {
            digests.add(h[1].toLowerCase());
        }
        else if (/^sha256:/i.test(key)) {
            problems.push(`${where(i)} starts with "sha256:" but is not followed by the 64 hexadecimal digits of a SHA-256 digest`);
        }
        else if (!keyChars.test(key)) {
            problems.push(`${where(i)} holds a character a key cannot have: a key is visible ASCII (letters, digits, punctuation), without spaces or commas`);
        }
        else if (key.length < minKeyLength) {
            problems.push(`${where(i)} is shorter than ${minKeyLength} characters, too short to be safe (make one with: openssl rand -hex 32)`);
        }
        else {
            digests.add(digestOf(key));
        }
    });
    return { digests: [...digests], problems };
}

/**
 * Reads the keys of a source: an environment variable (keys separated by commas or whitespace), or a file (one key a
 * line; blank lines and lines starting with # are ignored). `file` is its path, `written` how serve.yaml names it
 * (what messages say). A source that holds no key, cannot be read or holds a bad key is a problem; a message says
 * which variable, file, key or line, never a key.
 */
export function readKeys(source: Pick<KeySource, 'env' | 'file'>, written = source.file, env: NodeJS.ProcessEnv = process.env): ReadKeys {
    if (source.env !== undefined) {
        const keys = (env[source.env] ?? '').split(/[\s,]+/).filter(Boolean);
        if (!keys.length) {
            return { digests: [], problems: [`environment variable ${source.env} is not set or holds no key (keys are separated by commas or whitespace)`] };
        }
        return digestsOf(keys, (i) => `key ${i + 1} of environment variable ${source.env}`);
    }
    const file = source.file as string;
    let text: string;
    try {
        const stat = fs.statSync(file);
        if (!stat.isFile()) {
            return { digests: [], problems: [`key file ${written} is not a file`] };
        }
        if (stat.size > maxFileBytes) {
            return { digests: [], problems: [`key file ${written} is over 1 MiB: it should hold keys, one a line`] };
        }
        text = fs.readFileSync(file, 'utf8');
    }
    catch (err) {
        // the code only (ENOENT, EACCES): the error's message would name the absolute path
        return { digests: [], problems: [`cannot read key file ${written} (${(err as NodeJS.ErrnoException).code})`] };
    }
    const lines = text.split(/\r?\n/).map((l, n) => ({ key: l.trim(), n })).filter((l) => l.key && !l.key.startsWith('#'));
    if (!lines.length) {
        return { digests: [], problems: [`key file ${written} holds no key (one a line; blank lines and lines starting with # are ignored)`] };
    }
    return digestsOf(lines.map((l) => l.key), (i) => `line ${lines[i].n + 1} of key file ${written}`);
}

/**
 * Whether `presented` (a digest) is one of `digests`. Each comparison is constant-time (crypto.timingSafeEqual, on
 * digests of equal length), and every digest is compared, whether or not one already matched: how long it takes says
 * nothing of which key, or whether one, matched.
 */
export function matches(digests: readonly Buffer[], presented: Buffer): boolean {
    let found = false;
    for (const d of digests) {
        found = crypto.timingSafeEqual(d, presented) || found;
    }
    return found;
}

/** The key a request presents: `Authorization: Bearer <key>`, else `X-API-Key: <key>`. */
export function presented(headers: IncomingHttpHeaders): string | undefined {
    const authorization = headers.authorization;
    if (authorization !== undefined && authorization.slice(0, 7).toLowerCase() === 'bearer ') {
        return authorization.slice(7).trim();
    }
    const key = headers['x-api-key'];
    return typeof key === 'string' ? key.trim() : undefined;
}

const toBuffers = (source: KeySource | undefined): Buffer[] | undefined => source?.digests.map((d) => Buffer.from(d, 'hex'));

const realm = 'Bearer realm="tsserve"';

function unauthorized(message: string): Boom.Boom {
    const err = fail('UNAUTHORIZED', message);
    err.output.headers['WWW-Authenticate'] = realm;
    return err;
}

/** The request a gate looks at: hapi's, or what a test makes of one. */
export interface Asked {
    method: string;
    path: string;
    headers: IncomingHttpHeaders;
}

/**
 * The keys in force, read from `current()` (the config in force, which a reload replaces): a request on a route that
 * needs a key gets through only with one. Its digests are made again only when the config object changes.
 */
export class Gate {
    private seen?: AuthConfig;
    private api?: Buffer[];
    private admin?: Buffer[];

    constructor(private readonly current: () => AuthConfig | undefined) {}

    private refresh(): void {
        const config = this.current();
        if (config !== this.seen) {
            this.seen = config;
            this.api = toBuffers(config?.api_keys);
            this.admin = toBuffers(config?.admin_keys);
        }
    }

    /** Whether any route needs a key. When none does, this look is all a request costs. */
    get on(): boolean {
        this.refresh();
        return this.api !== undefined || this.admin !== undefined;
    }

    /** Whether the model routes need a key (what /openapi.json declares). */
    get models(): boolean {
        this.refresh();
        return this.api !== undefined;
    }

    /**
     * Why a request on a route of this access may not go on (401 UNAUTHORIZED without a valid key, 403 FORBIDDEN with
     * an API key where an admin key is needed), or undefined when it may. Model routes take an API key or an admin
     * key when api_keys is set; admin routes an admin key when admin_keys is set, else an API key.
     */
    refuse(kind: Access, asked: Asked): Boom.Boom | undefined {
        this.refresh();
        const needed = kind === 'open' ? undefined : kind === 'admin' ? this.admin ?? this.api : this.api;
        if (!needed) {
            return undefined;
        }
        const what = `${clip(asked.method.toUpperCase())} ${clip(asked.path)}`;
        const adminKey = kind === 'admin' && this.admin !== undefined;
        const key = presented(asked.headers);
        if (!key) {
            return unauthorized(`${what} needs ${adminKey ? 'an admin key' : 'an API key'}: send it as "Authorization: Bearer <key>" or "X-API-Key: <key>"`);
        }
        const digest = crypto.createHash('sha256').update(key).digest();
        // both sets compared, whichever the route needs
        const isAdmin = matches(this.admin ?? [], digest);
        const isApi = matches(this.api ?? [], digest);
        if (adminKey ? isAdmin : isApi || isAdmin) {
            return undefined;
        }
        if (adminKey && isApi) {
            return fail('FORBIDDEN', `${what} needs an admin key; the key sent is an API key`);
        }
        return unauthorized(`the key sent is not valid for ${what}`);
    }
}

/** Methods that change nothing (admin GETs read status). */
const safe = new Set(['get', 'head', 'options']);

/**
 * Why a state-changing request on an admin route (POST /-/reload) may not go on: it comes from another site's page
 * (its Origin is not the host and port the request was sent to), which a browser would send with an operator's
 * access. No Origin (curl, tsserve reload) is no page, and goes on; so does a safe method.
 */
export function crossSite(asked: Asked): Boom.Boom | undefined {
    const origin = asked.headers.origin;
    if (origin === undefined || safe.has(asked.method)) {
        return undefined;
    }
    let same = false;
    try {
        const from = new URL(origin);
        // The Host header read as a URL of the origin's scheme, so that a default port compares as the origin's does.
        const host = asked.headers.host;
        same = /^https?:$/.test(from.protocol) && host !== undefined && new URL(`${from.protocol}//${host}`).host === from.host;
    }
    catch {
        // not a URL ("null", from a sandboxed page or a file): not this server
    }
    if (same) {
        return undefined;
    }
    const host = JSON.stringify(clip(asked.headers.host ?? ''));
    return fail('FORBIDDEN', `${clip(asked.method.toUpperCase())} ${clip(asked.path)} is refused from another site's page: its Origin, ${JSON.stringify(clip(origin))}, is not this server (${host})`);
}
