// Security: API keys (serve.yaml's auth:, lib/auth.ts) against a real tsserve process over real HTTP, applied and
// rotated live; the rule that refuses another site's page a state-changing admin request; and /-/status naming files
// as serve.yaml does, never by where they lie on this machine. Then the parts in process.
import t from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fixtures, serve, cliHere, until, validOpenApi, type Served } from './helpers';
import { access, crossSite, digestOf, Gate, matches, presented, readKeys } from '../lib/auth';
import { relative, reloaded, render, shown, type Status } from '../lib/status';
import type { AuthConfig } from '../schemas/serve';

const dir = fixtures();
const tsserve = cliHere();

const newKey = () => crypto.randomBytes(16).toString('hex');
const [apiKey, apiKey2, adminKey, adminKey2, wrongKey] = [newKey(), newKey(), newKey(), newKey(), newKey()];
/** A key too short to be taken (13 characters): it must not appear anywhere either. */
const shortKey = 'short-key-123';
const allKeys = [apiKey, apiKey2, adminKey, adminKey2, wrongKey, shortKey];
/** No key, nor the digest of one, in a text (output, a body): the digest is what the server keeps. */
const noKeyIn = (text: string): boolean => allKeys.every((k) => !text.includes(k) && !text.includes(digestOf(k)));

// The server's environment is this process's: one key in clear, one as its digest.
process.env.TSSERVE_TEST_API_KEYS = `${apiKey}, sha256:${digestOf(apiKey2)}`;
process.env.TSSERVE_TEST_ADMIN_KEYS = adminKey;
delete process.env.TSSERVE_TEST_UNSET_KEYS;

interface Answer { status: number; body: any; headers: Headers }

/** A request with headers of our choosing. */
async function call(s: Served, method: string, route: string, headers: Record<string, string> = {}, body?: unknown): Promise<Answer> {
    const res = await fetch(s.url + route, {
        method, headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
        body: body === undefined ? undefined : JSON.stringify(body)
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
        parsed = JSON.parse(text);
    }
    catch {}
    return { status: res.status, body: parsed, headers: res.headers };
}

/** A request through node:http, whose Host header is ours to set (fetch sets its own). */
function raw(s: Served, method: string, route: string, headers: Record<string, string>): Promise<{ status: number; body: any }> {
    return new Promise((resolve, reject) => {
        const req = http.request(s.url + route, { method, headers }, (res) => {
            let text = '';
            res.on('data', (d) => text += d);
            res.on('end', () => resolve({ status: res.statusCode as number, body: JSON.parse(text) }));
        });
        req.on('error', reject);
        req.end();
    });
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
const probe = { inputs: [[1, 2, 3, 4]] };

/** Runs `tsserve` in this process with these key variables set (and the others unset). */
async function withKeys<T>(keys: { TSSERVE_ADMIN_KEY?: string; TSSERVE_API_KEY?: string }, fn: () => Promise<T>): Promise<T> {
    const saved = { TSSERVE_ADMIN_KEY: process.env.TSSERVE_ADMIN_KEY, TSSERVE_API_KEY: process.env.TSSERVE_API_KEY };
    delete process.env.TSSERVE_ADMIN_KEY;
    delete process.env.TSSERVE_API_KEY;
    Object.assign(process.env, keys);
    try {
        return await fn();
    }
    finally {
        for (const [k, v] of Object.entries(saved)) {
            if (v === undefined) {
                delete process.env[k];
            }
            else {
                process.env[k] = v;
            }
        }
    }
}

// The served folder: serve.yaml with its models and handler below it, and a model beside it (../).
const site = path.join(dir, 'site');
fs.mkdirSync(path.join(site, 'models'), { recursive: true });
fs.mkdirSync(path.join(site, 'handlers'));
fs.copyFileSync(path.join(dir, 'mlp.onnx'), path.join(site, 'models', 'mlp.onnx'));
// A handler module that is not one: its replica fails to load, naming the module's path in its error.
fs.writeFileSync(path.join(site, 'handlers', 'incomplete.js'), 'module.exports = { postprocess: () => [] };');
const adminFile = path.join(site, 'admin-keys.txt');
const keyFile = (...lines: string[]) => fs.writeFileSync(adminFile, ['# tsserve admin keys: one a line, sha256:<hex> for a hashed one', '', ...lines, ''].join('\n'));

const authYaml = (apiEnv = 'TSSERVE_TEST_API_KEYS') => `auth:
  api_keys: { env: ${apiEnv} }
  admin_keys: { file: ./admin-keys.txt }
applications:
  - name: m
    deployments:
      - { name: model, model: { path: ./models/mlp.onnx } }
  - name: beside
    deployments:
      - { name: model, model: { path: ../mlp2.onnx } }
  - name: bad
    deployments:
      - { name: model, handler: ./handlers/incomplete.js, model: { path: ./models/mlp.onnx } }
`;

t.test('API keys on a real server: env keys, hashed keys from a file, admin routes, rotation', async (t) => {
    keyFile(`sha256:${digestOf(adminKey)}`);
    const s = await serve(site, authYaml());
    t.teardown(() => s.stop());
    await s.waitFor(/replica m\/model#0 RUNNING/);
    await s.waitFor(/replica beside\/model#0 RUNNING/);

    t.test('model routes: no key or a wrong one is 401 with WWW-Authenticate and the catalogue body; a valid one, either header, gets through', async (t) => {
        for (const [name, headers, message] of [
            ['no key', {}, /^POST \/m\/predict needs an API key: send it as "Authorization: Bearer <key>" or "X-API-Key: <key>"$/],
            ['a wrong key', bearer(wrongKey), /^the key sent is not valid for POST \/m\/predict$/],
            ['a wrong x-api-key', { 'x-api-key': wrongKey }, /not valid/],
            ['an empty Bearer', { authorization: 'Bearer ' }, /needs an API key/],
            ['another scheme', { authorization: `Basic ${Buffer.from(`u:${apiKey}`).toString('base64')}` }, /needs an API key/]
        ] as const) {
            const r = await call(s, 'POST', '/m/predict', headers, probe);
            t.equal(r.status, 401, `${name}: 401`);
            t.equal(r.headers.get('www-authenticate'), 'Bearer realm="tsserve"', `${name}: WWW-Authenticate`);
            t.match(r.body, { statusCode: 401, error: 'Unauthorized', code: 'UNAUTHORIZED', message }, `${name}: the catalogue body`);
        }
        for (const [name, headers] of [
            ['Bearer, an env key', bearer(apiKey)],
            ['bearer in lower case', { authorization: `bearer ${apiKey}` }],
            ['X-API-Key, an env key given by its digest', { 'x-api-key': apiKey2 }],
            ['an admin key', bearer(adminKey)],
            ['a wrong Authorization scheme beside a good X-API-Key', { authorization: 'Basic eDp5', 'x-api-key': apiKey }]
        ] as const) {
            const r = await call(s, 'POST', '/m/predict', headers, probe);
            t.equal(r.status, 200, name);
            t.match(r.body, { outputs: { y: [[Number, Number, Number]] } }, `${name}: the model's answer`);
        }
        t.match(await call(s, 'POST', '/nowhere', {}, probe), { status: 401 }, 'a route that does not exist needs a key too (whether it exists is not told)');
        t.match(await call(s, 'POST', '/nowhere', bearer(apiKey), probe), { status: 404, body: { code: 'NOT_FOUND' } }, 'and with one, it does not exist');
        t.match(await call(s, 'POST', '/m/predict', {}, 'x'.repeat(4 << 20)), { status: 401 }, 'a big body without a key: 401, the body unread');
    });

    t.test('admin routes need an admin key: an API key is 403, no key or a wrong one 401', async (t) => {
        for (const [method, route] of [['GET', '/-/status'], ['POST', '/-/reload'], ['GET', '/-/status/'], ['GET', '/-/%73tatus']]) {
            const what = `${method} ${route}`;
            t.match(await call(s, method, route), { status: 401, body: { code: 'UNAUTHORIZED', message: /needs an admin key/ } }, `${what}: no key`);
            t.match(await call(s, method, route, bearer(wrongKey)), { status: 401, body: { code: 'UNAUTHORIZED' } }, `${what}: a wrong key`);
            const forbidden = await call(s, method, route, bearer(apiKey));
            t.match(forbidden, { status: 403, body: { code: 'FORBIDDEN', message: /needs an admin key; the key sent is an API key$/ } }, `${what}: an API key`);
            t.equal(forbidden.headers.get('www-authenticate'), null, `${what}: 403 asks for no credentials`);
            t.equal((await call(s, method, route, bearer(adminKey))).status, 200, `${what}: the admin key`);
            t.equal((await call(s, method, route, { 'x-api-key': adminKey })).status, 200, `${what}: the admin key as X-API-Key`);
        }
    });

    t.test('the probes, /openapi.json and /docs are open; the document declares how to send a key', async (t) => {
        t.same((await call(s, 'GET', '/-/healthz')).body, { status: 'ok' });
        t.match(await call(s, 'GET', '/-/ready'), { status: 503, body: { code: 'REPLICA_UNAVAILABLE' } }, '/-/ready answers (not ready: one deployment cannot load)');
        t.equal((await call(s, 'GET', '/docs')).status, 200);
        t.equal((await call(s, 'GET', '/docs/swagger-ui.css')).status, 200);
        const doc = (await call(s, 'GET', '/openapi.json')).body;
        await validOpenApi(t, doc);
        t.same(doc.components.securitySchemes, {
            bearer: { type: 'http', scheme: 'bearer', description: 'Authorization: Bearer <key>' },
            apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' }
        });
        const op = doc.paths['/m/predict'].post;
        t.same(op.security, [{ bearer: [] }, { apiKey: [] }], 'either one');
        t.match(op.responses[401], { description: /key/ });
    });

    t.test('/-/status names files as serve.yaml does, relative to its folder, and shows where the keys come from', async (t) => {
        await until(async () => (await call(s, 'GET', '/-/status', bearer(adminKey))).body.applications[2].deployments[0].last_error, { what: 'the bad handler\'s error' });
        const status = (await call(s, 'GET', '/-/status', bearer(adminKey))).body;
        const deps = status.applications.map((a: any) => a.deployments[0]);
        t.same(deps.map((d: any) => d.model.path), ['./models/mlp.onnx', '../mlp2.onnx', './models/mlp.onnx']);
        t.same(deps.map((d: any) => d.handler), ['tensor', 'tensor', './handlers/incomplete.js']);
        t.match(deps[2].last_error, /handler module \.\/handlers\/incomplete\.js must export a handler/, 'an error names the module as serve.yaml does');
        t.equal(status.config.file, 'serve.yaml');
        const snapshot = deps[0].replicas[0].snapshot;
        t.match(snapshot, new RegExp(`^${deps[0].version}-\\w+$`), 'a snapshot by its folder\'s name: the version it holds');
        t.same(status.auth, { api_keys: { env: 'TSSERVE_TEST_API_KEYS', keys: 2 }, admin_keys: { file: './admin-keys.txt', keys: 1 } });
        const text = JSON.stringify(status);
        t.notOk(text.includes(dir), 'no path of this machine anywhere in it');
        t.ok(noKeyIn(text), 'no key, nor its digest');

        const table = await withKeys({ TSSERVE_ADMIN_KEY: adminKey }, () => tsserve(['status', '--address', s.url]));
        t.equal(table.code, 0, table.stderr);
        t.match(table.stdout, /\nconfig: serve\.yaml \(version \w{12}, /);
        t.match(table.stdout, /\nauth: API keys: 2 from \$TSSERVE_TEST_API_KEYS; admin keys: 1 from \.\/admin-keys\.txt\n/);
        t.match(table.stdout, /bad\/model#0 .*handler module \.\/handlers\/incomplete\.js must export/);
        t.notOk(table.stdout.includes(dir), 'nor in the table');
    });

    t.test('tsserve status and reload send $TSSERVE_ADMIN_KEY, else $TSSERVE_API_KEY; a refusal is said and exits 1', async (t) => {
        const reload = await withKeys({ TSSERVE_ADMIN_KEY: adminKey, TSSERVE_API_KEY: wrongKey }, () => tsserve(['reload', '--address', s.url]));
        t.equal(reload.code, 0, reload.stderr);
        t.equal(JSON.parse(reload.stdout).result, 'unchanged', 'TSSERVE_ADMIN_KEY first');
        t.strictSame(await withKeys({}, () => tsserve(['status', '--address', s.url])), {
            code: 1, stdout: '',
            stderr: `tsserve at ${s.url} refused /-/status (401): GET /-/status needs an admin key: send it as "Authorization: Bearer <key>" or "X-API-Key: <key>"\nset TSSERVE_ADMIN_KEY (or TSSERVE_API_KEY) to one of its keys\n`
        }, 'no key');
        t.strictSame(await withKeys({ TSSERVE_API_KEY: apiKey }, () => tsserve(['reload', '--address', s.url])), {
            code: 1, stdout: '',
            stderr: `tsserve at ${s.url} refused /-/reload (403): POST /-/reload needs an admin key; the key sent is an API key\nset TSSERVE_ADMIN_KEY to one of its admin keys\n`
        }, 'an API key where an admin key is needed');
        t.strictSame(await withKeys({ TSSERVE_ADMIN_KEY: wrongKey }, () => tsserve(['status', '--address', s.url, '--json'])), {
            code: 1, stdout: '',
            stderr: `tsserve at ${s.url} refused /-/status (401): the key sent is not valid for GET /-/status\nthe key in $TSSERVE_ADMIN_KEY is not one of its keys\n`
        }, 'a wrong key');
        const garbled = await withKeys({ TSSERVE_ADMIN_KEY: `${adminKey}\nX-Injected: 1` }, () => tsserve(['status', '--address', s.url]));
        t.strictSame(garbled, { code: 1, stdout: '', stderr: '$TSSERVE_ADMIN_KEY holds a character a key cannot have (a key is visible ASCII, without spaces)\n' }, 'a key no header can carry, not sent and not shown');
    });

    t.test('rotation: an edited key file is picked up like an edit of serve.yaml; bad key setups are refused and the old keys keep working', async (t) => {
        const admin = (key: string) => call(s, 'GET', '/-/status', bearer(key));
        const reloads = (await admin(adminKey)).body.config.reloads;
        const lastReload = async (key: string, n: number) => until(async () => {
            const st = (await admin(key)).body;
            return st.config.reloads >= n && st.config.last_reload;
        }, { what: () => `reload ${n}:\n${s.output()}` });

        // the new key in, as its digest, and the old one out
        keyFile(`sha256:${digestOf(adminKey2)}`, `${apiKey}-but-longer`);
        await until(async () => (await admin(adminKey2)).status === 200, { what: () => `the new admin key taken:\n${s.output()}` });
        t.match(await lastReload(adminKey2, reloads + 1), { trigger: 'file change', result: 'applied', changes: { unchanged: ['m/model', 'beside/model', 'bad/model'] } }, 'no deployment touched');
        t.equal((await admin(adminKey)).status, 401, 'the old admin key is refused');
        t.equal((await admin(`${apiKey}-but-longer`)).status, 200, 'a key in clear in the file works too');
        t.equal((await call(s, 'POST', '/m/predict', bearer(apiKey), probe)).status, 200, 'the API keys as they were');

        // a key too short: refused, saying which line of which file, never the key
        keyFile(shortKey);
        let last = await lastReload(adminKey2, reloads + 2);
        t.match(last, { result: 'invalid', errors: ['auth.admin_keys.file: line 3 of key file ./admin-keys.txt is shorter than 16 characters, too short to be safe (make one with: openssl rand -hex 32)'] });
        t.equal((await admin(adminKey2)).status, 200, 'the keys in force keep working');
        t.equal((await admin(shortKey)).status, 401, 'the refused key is not taken');

        // the file gone: refused, and its return is watched for
        fs.rmSync(adminFile);
        last = await lastReload(adminKey2, reloads + 3);
        t.match(last, { result: 'invalid', errors: ['auth.admin_keys.file: cannot read key file ./admin-keys.txt (ENOENT)'] });
        t.equal((await admin(adminKey2)).status, 200);
        keyFile(adminKey);
        await until(async () => (await admin(adminKey)).status === 200, { what: () => `the file back:\n${s.output()}` });
        t.equal((await admin(adminKey2)).status, 401, 'the file back, with the first key again');

        // serve.yaml naming a variable that is not set: refused, naming it
        fs.writeFileSync(path.join(site, 'serve.yaml'), authYaml('TSSERVE_TEST_UNSET_KEYS'));
        const byReload = await call(s, 'POST', '/-/reload', bearer(adminKey));
        t.match(byReload.body, { result: 'invalid', errors: ['auth.api_keys.env: environment variable TSSERVE_TEST_UNSET_KEYS is not set or holds no key (keys are separated by commas or whitespace)'] });
        t.equal((await call(s, 'POST', '/m/predict', bearer(apiKey), probe)).status, 200, 'the API keys in force keep working');
        t.equal((await call(s, 'POST', '/m/predict', {}, probe)).status, 401, 'and are still needed');
        fs.writeFileSync(path.join(site, 'serve.yaml'), authYaml());
        // (the watcher may have seen it first: then this reload finds nothing new)
        t.match((await call(s, 'POST', '/-/reload', bearer(adminKey))).body, { result: /^(applied|unchanged)$/ }, 'the running file back');
        t.match((await admin(adminKey)).body.config.last_reload, { result: 'applied', changes: { unchanged: ['m/model', 'beside/model', 'bad/model'] } }, 'in force again');
    });

    t.test('a cross-site POST /-/reload is refused even with the admin key', async (t) => {
        const r = await call(s, 'POST', '/-/reload', { ...bearer(adminKey), origin: 'http://evil.example' });
        t.match(r, { status: 403, body: { code: 'FORBIDDEN', message: /is refused from another site's page/ } });
    });

    t.test('no key, nor its digest, in the server\'s output or in what a client was told', async (t) => {
        t.ok(noKeyIn(s.output()), 'not in the log');
        const wrong = await call(s, 'POST', '/m/predict', bearer(wrongKey), probe);
        t.ok(noKeyIn(JSON.stringify(wrong.body)), 'not in an error body');
    });
});

t.test('tsserve validate refuses key setups that cannot work, clearly and without a key', async (t) => {
    const bad = path.join(dir, 'bad-auth.yaml');
    fs.writeFileSync(bad, `auth:
  api_keys: { env: TSSERVE_TEST_UNSET_KEYS }
  admin_keys: { file: ./no-such-keys.txt }
applications:
  - name: m
    deployments: [{ name: model, model: { path: ./mlp.onnx } }]
`);
    const missing = await tsserve(['validate', bad]);
    t.equal(missing.code, 1);
    t.equal(missing.stderr, `Invalid config ${bad}:
  - auth.api_keys.env: environment variable TSSERVE_TEST_UNSET_KEYS is not set or holds no key (keys are separated by commas or whitespace)
  - auth.admin_keys.file: cannot read key file ./no-such-keys.txt (ENOENT)
`);

    process.env.TSSERVE_TEST_SHORT_KEYS = `${apiKey} ${shortKey}`;
    t.teardown(() => delete process.env.TSSERVE_TEST_SHORT_KEYS);
    fs.writeFileSync(bad, `auth: { api_keys: { env: TSSERVE_TEST_SHORT_KEYS } }
applications:
  - name: m
    deployments: [{ name: model, model: { path: ./mlp.onnx } }]
`);
    const short = await tsserve(['validate', bad]);
    t.equal(short.code, 1);
    t.match(short.stderr, 'auth.api_keys.env: key 2 of environment variable TSSERVE_TEST_SHORT_KEYS is shorter than 16 characters');
    t.ok(noKeyIn(missing.stderr + short.stderr + missing.stdout + short.stdout), 'no key in what it says');

    for (const [auth, message] of [
        ['{}', 'auth: "auth" must set api_keys, admin_keys or both (leave auth out for none)'],
        [`{ api_keys: [${apiKey}] }`, 'auth.api_keys: "auth.api_keys" must name an environment variable (env: VARIABLE) or a file (file: ./keys.txt) that holds the keys: keys are never written in serve.yaml itself'],
        ['{ api_keys: {} }', 'auth.api_keys: "auth.api_keys" must name an environment variable (env: VARIABLE) or a file (file: ./keys.txt)'],
        ['{ api_keys: { env: A, file: b } }', 'auth.api_keys: "auth.api_keys" takes env or file, not both'],
        ['{ admin_keys: { env: "not a name" } }', 'auth.admin_keys.env: "auth.admin_keys.env" must be the name of an environment variable (letters, digits, "_")']
    ]) {
        fs.writeFileSync(bad, `auth: ${auth}\napplications:\n  - name: m\n    deployments: [{ name: model, model: { path: ./mlp.onnx } }]\n`);
        const r = await tsserve(['validate', bad]);
        t.equal(r.stderr, `Invalid config ${bad}:\n  - ${message}\n`, auth.replace(apiKey, '<key>'));
    }
    fs.writeFileSync(bad, 'auth: { api_keys: { env: TSSERVE_TEST_API_KEYS }, admin_keys: { env: TSSERVE_TEST_ADMIN_KEYS } }\napplications:\n  - name: m\n    deployments: [{ name: model, model: { path: ./mlp.onnx } }]\n');
    const good = await tsserve(['validate', bad]);
    t.equal(good.code, 0, good.stderr);
});

t.test('tsserve status says a refusal without a reason too (a 401 from something else)', async (t) => {
    const other = http.createServer((_req, res) => res.writeHead(401, { 'content-type': 'application/json' }).end('{}'));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    t.teardown(() => other.close());
    const address = `http://127.0.0.1:${(other.address() as { port: number }).port}`;
    t.strictSame(await withKeys({ TSSERVE_API_KEY: apiKey }, () => tsserve(['status', '--address', address])), {
        code: 1, stdout: '', stderr: `tsserve at ${address} refused /-/status (401): no reason given\nthe key in $TSSERVE_API_KEY is not one of its keys\n`
    });
});

t.test('without keys: a cross-site admin POST is refused, anything else goes; keys added and removed live', async (t) => {
    const file = path.join(dir, 'open.yaml');
    const apps = 'applications:\n  - name: m\n    deployments: [{ name: model, model: { path: ./mlp.onnx } }]\n';
    const s = await serve(dir, apps, 'open.yaml');
    t.teardown(() => s.stop());
    const host = new URL(s.url).host;

    t.test('POST /-/reload: another site\'s Origin is 403; its own, none, or a safe method goes', async (t) => {
        for (const [name, origin] of [
            ['another host', 'http://evil.example'],
            ['another port', `http://127.0.0.1:${Number(new URL(s.url).port) + 1}`],
            ['another name for the same machine', `http://localhost:${new URL(s.url).port}`],
            ['an opaque origin (a sandboxed page, a file)', 'null'],
            ['not http', `ftp://${host}`]
        ]) {
            const r = await call(s, 'POST', '/-/reload', { origin });
            t.equal(r.status, 403, name);
            t.same(r.body, {
                statusCode: 403, error: 'Forbidden', code: 'FORBIDDEN',
                message: `POST /-/reload is refused from another site's page: its Origin, ${JSON.stringify(origin)}, is not this server (${JSON.stringify(host)})`,
                request_id: r.headers.get('x-request-id')
            }, `${name}: says why`);
        }
        t.match(await call(s, 'POST', '/-/reload', { origin: s.url }), { status: 200, body: { result: 'unchanged' } }, 'the same origin');
        t.match(await call(s, 'POST', '/-/reload'), { status: 200, body: { result: 'unchanged' } }, 'no Origin (curl, tsserve reload)');
        t.equal((await raw(s, 'POST', '/-/reload', { host: 'localhost:80', origin: 'http://localhost' })).status, 200, 'a default port written or not');
        t.equal((await raw(s, 'POST', '/-/reload', { origin: 'http://evil.example', host: '' })).status, 403, 'an empty Host');
        t.equal((await call(s, 'GET', '/-/status', { origin: 'http://evil.example' })).status, 200, 'GET changes nothing');
        t.equal((await call(s, 'POST', '/m/predict', { origin: 'http://evil.example' }, probe)).status, 200, 'a model route is no admin route');
        t.match(await call(s, 'POST', '/%E0%A4%A', { origin: 'http://evil.example' }, probe), { status: 400, body: { code: 'BAD_REQUEST' } }, 'a path the router refuses: its own 400');
    });

    t.test('no keys: every route open, nothing declared; then admin keys alone protect the admin routes only', async (t) => {
        const doc = (await call(s, 'GET', '/openapi.json')).body;
        t.equal(doc.components.securitySchemes, undefined);
        t.equal(doc.paths['/m/predict'].post.security, undefined);
        t.equal((await call(s, 'GET', '/-/status')).body.auth, undefined);
        const table = await withKeys({}, () => tsserve(['status', '--address', s.url]));
        t.match(table.stdout, /\nauth: none, every route is open\n/);

        fs.writeFileSync(file, `auth:\n  admin_keys: { env: TSSERVE_TEST_ADMIN_KEYS }\n${apps}`);
        t.match((await call(s, 'POST', '/-/reload')).body, { result: 'applied' });
        t.match(await call(s, 'GET', '/-/status'), { status: 401, body: { code: 'UNAUTHORIZED' } }, 'an admin route needs the admin key at once');
        const st = (await call(s, 'GET', '/-/status', bearer(adminKey))).body;
        t.same(st.auth, { admin_keys: { env: 'TSSERVE_TEST_ADMIN_KEYS', keys: 1 } });
        t.match(render(st), /\nauth: API keys: none; admin keys: 1 from \$TSSERVE_TEST_ADMIN_KEYS\n/);
        t.equal((await call(s, 'POST', '/m/predict', {}, probe)).status, 200, 'model routes stay open');
        t.equal((await call(s, 'GET', '/openapi.json')).body.components.securitySchemes, undefined, 'and are declared open');
        t.equal((await call(s, 'GET', '/-/healthz')).status, 200);
        t.equal((await call(s, 'POST', '/-/reload', bearer(apiKey))).status, 401, 'an API key is no key here');

        fs.writeFileSync(file, apps);
        t.match((await call(s, 'POST', '/-/reload', bearer(adminKey))).body, { result: 'applied' });
        t.equal((await call(s, 'GET', '/-/status')).status, 200, 'auth gone: open again');
    });
});

t.test('in process: the key rules', async (t) => {
    t.test('matches() compares each stored digest in constant time, all of them, whether or not one matched', async (t) => {
        const stored = [apiKey, apiKey2, adminKey].map((k) => crypto.createHash('sha256').update(k).digest());
        const digest = (k: string) => crypto.createHash('sha256').update(k).digest();
        const real = crypto.timingSafeEqual;
        const compared: Buffer[] = [];
        // a spy: the real comparison runs, and each one is counted
        (crypto as { timingSafeEqual: typeof real }).timingSafeEqual = (a, b) => {
            compared.push(Buffer.from(a as Uint8Array));
            return real(a, b);
        };
        t.teardown(() => {
            (crypto as { timingSafeEqual: typeof real }).timingSafeEqual = real;
        });
        for (const [key, want] of [[apiKey, true], [adminKey, true], [wrongKey, false]] as const) {
            compared.length = 0;
            t.equal(matches(stored, digest(key)), want, `${key === wrongKey ? 'a wrong key' : 'a stored key'}: ${want}`);
            t.same(compared, stored, 'every stored digest compared, in turn, the first match no exit');
        }
        t.equal(matches([], digest(apiKey)), false, 'no digest, no match');
    });

    t.test('readKeys(): the forms of an environment variable and of a file; each problem named, never a key', async (t) => {
        const env = { A: ` ${apiKey},${apiKey2}\n\tSHA256:${digestOf(adminKey).toUpperCase()} ,, ${apiKey}` };
        t.strictSame(readKeys({ env: 'A' }, undefined, env), { digests: [digestOf(apiKey), digestOf(apiKey2), digestOf(adminKey)], problems: [] }, 'commas and whitespace, a digest (sha256: in any case), a repeat once');
        for (const [value, problem] of [
            [undefined, 'environment variable B is not set or holds no key (keys are separated by commas or whitespace)'],
            [' , \n', 'environment variable B is not set or holds no key (keys are separated by commas or whitespace)'],
            [`${apiKey} sha256:abc`, 'key 2 of environment variable B starts with "sha256:" but is not followed by the 64 hexadecimal digits of a SHA-256 digest'],
            [`${apiKey}é`, 'key 1 of environment variable B holds a character a key cannot have: a key is visible ASCII (letters, digits, punctuation), without spaces or commas'],
            [shortKey, 'key 1 of environment variable B is shorter than 16 characters, too short to be safe (make one with: openssl rand -hex 32)']
        ] as const) {
            t.strictSame(readKeys({ env: 'B' }, undefined, { B: value }).problems, [problem], problem);
        }

        const keys = path.join(dir, 'keys.txt');
        fs.writeFileSync(keys, `# comment\r\n\r\n  ${apiKey}  \r\n#${apiKey2}\r\nsha256:${digestOf(adminKey)}\r\n`);
        t.strictSame(readKeys({ file: keys }, 'keys.txt'), { digests: [digestOf(apiKey), digestOf(adminKey)], problems: [] }, 'comments, blank lines, CRLF, spaces around');
        fs.writeFileSync(keys, `${apiKey}\n\n${shortKey}\nhas a space inside it\n`);
        t.strictSame(readKeys({ file: keys }, './keys.txt').problems, [
            'line 3 of key file ./keys.txt is shorter than 16 characters, too short to be safe (make one with: openssl rand -hex 32)',
            'line 4 of key file ./keys.txt holds a character a key cannot have: a key is visible ASCII (letters, digits, punctuation), without spaces or commas'
        ], 'each bad line by its number');
        fs.writeFileSync(keys, '# only a comment\n\n');
        t.strictSame(readKeys({ file: keys }, 'keys.txt').problems, ['key file keys.txt holds no key (one a line; blank lines and lines starting with # are ignored)']);
        t.strictSame(readKeys({ file: dir }, 'the-folder').problems, ['key file the-folder is not a file']);
        fs.writeFileSync(keys, Buffer.alloc((1 << 20) + 1, 'a'));
        t.strictSame(readKeys({ file: keys }).problems, [`key file ${keys} is over 1 MiB: it should hold keys, one a line`], 'named as written: the path when nothing else says');
        fs.chmodSync(keys, 0);
        fs.truncateSync(keys, 0);
        if (process.getuid?.() !== 0) {
            t.strictSame(readKeys({ file: keys }, 'keys.txt').problems, ['cannot read key file keys.txt (EACCES)']);
        }
        fs.rmSync(keys);
        t.strictSame(readKeys({ file: keys }, 'keys.txt').problems, ['cannot read key file keys.txt (ENOENT)']);
    });

    t.test('presented(): a Bearer token, else X-API-Key', async (t) => {
        t.equal(presented({ authorization: 'Bearer  abc ' }), 'abc');
        t.equal(presented({ authorization: 'BEARER abc', 'x-api-key': 'other' }), 'abc', 'Bearer first');
        t.equal(presented({ authorization: 'Basic abc', 'x-api-key': ' key ' }), 'key');
        t.equal(presented({ authorization: 'Bearer' }), undefined, 'a scheme with no token, no header else');
        t.equal(presented({}), undefined);
    });

    t.test('access(): open probes and docs, admin routes under /-/ and /metrics, model routes otherwise', async (t) => {
        t.same(['/-/healthz', '/-/ready', '/openapi.json', '/docs', '/docs/{file}'].map(access), ['open', 'open', 'open', 'open', 'open']);
        t.same(['/-/reload', '/-/status', '/metrics', '/-/anything-new'].map(access), ['admin', 'admin', 'admin', 'admin']);
        t.same(['/{path*}', '/mlp/predict', '/metrics/more'].map(access), ['model', 'model', 'model']);
    });

    t.test('a Gate reads the keys in force, each time they are replaced', async (t) => {
        let config: AuthConfig | undefined;
        const gate = new Gate(() => config);
        const asked = (headers: Record<string, string>) => ({ method: 'get', path: '/-/status', headers });
        t.equal(gate.on, false, 'no config: off');
        t.equal(gate.refuse('admin', asked({})), undefined);
        config = { api_keys: { env: 'A', digests: [digestOf(apiKey)] } };
        t.equal(gate.on, true);
        t.equal(gate.models, true);
        t.equal(gate.refuse('admin', asked(bearer(apiKey))), undefined, 'an API key for an admin route when there is no admin key');
        t.equal(gate.refuse('open', asked({})), undefined);
        config = { admin_keys: { env: 'A', digests: [digestOf(adminKey)] } };
        t.equal(gate.models, false, 'replaced: model routes open');
        t.equal(gate.refuse('model', asked({})), undefined);
        t.equal(gate.refuse('admin', asked(bearer(apiKey)))?.output.statusCode, 401, 'the API keys gone with their config');
    });

    t.test('crossSite(): Origin against Host, scheme and default port understood', async (t) => {
        const asked = (method: string, headers: Record<string, string>) => ({ method, path: '/-/reload', headers });
        t.equal(crossSite(asked('post', { host: 'a:8000' })), undefined, 'no Origin');
        t.equal(crossSite(asked('get', { host: 'a:8000', origin: 'http://b' })), undefined, 'a safe method');
        t.equal(crossSite(asked('post', { host: 'A:8000', origin: 'http://a:8000' })), undefined, 'host names in any case');
        t.equal(crossSite(asked('post', { host: 'a:443', origin: 'https://a' })), undefined, 'https\'s default port');
        t.equal(crossSite(asked('post', { host: '[::1]:8000', origin: 'http://[::1]:8000' })), undefined, 'IPv6');
        t.equal(crossSite(asked('post', { host: 'a:443', origin: 'http://a' }))?.output.statusCode, 403, 'a default port is the scheme\'s');
        t.equal(crossSite(asked('post', { origin: 'http://a' }))?.output.statusCode, 403, 'no Host');
        t.equal(crossSite(asked('post', { host: 'a b', origin: 'http://a' }))?.output.statusCode, 403, 'a Host that is no host');
    });
});

t.test('in process: status paths relative to serve.yaml\'s folder, whatever the status holds', async (t) => {
    const folder = '/srv/site';
    const status: Status = {
        started_at: '2025-01-01T00:00:00.000Z', ready: false,
        http_options: { host: '127.0.0.1', port: 8000, request_timeout_s: 30, max_body_size_mb: 16 },
        config: {
            file: '/srv/site/serve.yaml', version: 'feedc0ffee12', reloads: 1,
            last_reload: {
                at: '2025-01-01T00:01:00.000Z', trigger: 'SIGHUP', result: 'applied', config_version: 'feedc0ffee12', errors: ['m/model: /srv/site/models/a.onnx is gone'],
                changes: { added: [], removed: [], updated: [], replaced: [], unchanged: [], errors: ['m/model: /srv/site/models/a.onnx is gone'], notices: ['see /srv/site/x'] }
            }
        },
        applications: [{
            name: 'm', route_prefix: '/srv', routes: [{ method: 'POST', path: '/srv/site/predict', deployment: 'model' }], deployments: [{
                name: 'model', status: 'UNHEALTHY', version: 'abc123def456', handler: '/srv/site/h.js', model: { runtime: 'onnx', path: '/srv/models/a.onnx' },
                target_replicas: 2, running_replicas: 0, replicas_by_version: { abc123def456: 2 }, queued_requests: 0, last_error: 'cannot load /srv/site/h.js',
                traffic: { window_s: 60, requests: 0, requests_per_s: 0, errors_per_s: 0 },
                replicas: [
                    { id: 'm/model#0', state: 'BACKOFF', version: 'abc123def456', restarts: 1, inflight_requests: 0, last_error: 'in /srv/site/h.js', notice: 'from /srv/site/h.js', snapshot: '/tmp/tsserve-snapshots-1-x/m/model/abc123def456-q1' },
                    { id: 'm/model#1', state: 'RUNNING', version: 'abc123def456', restarts: 1, inflight_requests: 0, last_failure: { error: 'in /srv/site/h.js', at: '2025-01-01T00:00:01.000Z' } }
                ]
            }]
        }],
        auth: { api_keys: { file: '/srv/keys.txt', keys: 1 }, admin_keys: { env: 'K', keys: 2 } }
    };
    const before = structuredClone(status);
    const shownStatus = relative(status, folder);
    t.same(status, before, 'the status itself is left as it was');
    t.same(shownStatus.config, {
        file: 'serve.yaml', version: 'feedc0ffee12', reloads: 1,
        last_reload: { ...status.config.last_reload, errors: ['m/model: ./models/a.onnx is gone'], changes: { ...status.config.last_reload?.changes, errors: ['m/model: ./models/a.onnx is gone'], notices: ['see ./x'] } }
    });
    const d = shownStatus.applications[0].deployments[0];
    t.same([d.handler, d.model.path, d.last_error], ['./h.js', '../models/a.onnx', 'cannot load ./h.js']);
    t.same(d.replicas.map((r) => [r.last_error, r.notice, r.snapshot, r.last_failure?.error]), [['in ./h.js', 'from ./h.js', 'abc123def456-q1', undefined], [undefined, undefined, undefined, 'in ./h.js']]);
    t.same(shownStatus.applications[0].routes, status.applications[0].routes, 'a route is no file, whatever it looks like');
    t.equal(shownStatus.applications[0].route_prefix, '/srv');
    t.same(shownStatus.auth, { api_keys: { file: '../keys.txt', keys: 1 }, admin_keys: { env: 'K', keys: 2 } });
    t.match(render(shownStatus), /\nauth: API keys: 1 from \.\.\/keys\.txt; admin keys: 2 from \$K\n/);

    const atRoot = relative(status, '/');
    t.equal(atRoot.applications[0].deployments[0].last_error, 'cannot load /srv/site/h.js', 'serve.yaml at / : texts as they are');
    t.equal(atRoot.applications[0].deployments[0].model.path, './srv/models/a.onnx');
    t.same(reloaded({ at: 'x', trigger: 'SIGHUP', result: 'unchanged', config_version: 'v' }, folder), { at: 'x', trigger: 'SIGHUP', result: 'unchanged', config_version: 'v' }, 'a reload with no errors and no changes');
    t.equal(shown('/srv/site/a/b.onnx', folder), './a/b.onnx');
    t.equal(shown('/srv/..x/b.onnx', folder), '../..x/b.onnx');
    t.equal(shown('/srv', folder), '..');
});
