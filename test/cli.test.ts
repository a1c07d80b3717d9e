// The tsserve command line: main() in-process, plus a few real subprocess runs. Starts no server.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { main } from '../lib/cli';
import { render, type Status } from '../lib/status';
import { fixtures, run } from './helpers';

const dir = fixtures();
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

const validYaml = `applications:
  - name: mlp
    deployments:
      - name: model
        model: { path: ./mlp.onnx }
  - name: multi
    deployments:
      - { name: a, model: { path: ./mlp.onnx } }
      - { name: b, model: { path: ./mlp2.onnx } }
    routes:
      - { path: /a, deployment: a }
      - { path: /b, deployment: b }
`;

const invalidYaml = `http_options: { port: 99999 }
applications:
  - name: mlp
    deployments:
      - name: model
        num_replicas: 0
        model: { path: ./missing.onnx }
`;

function write(name: string, text: string): string {
    const file = path.join(dir, name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, text);
    return file;
}

const valid = write('valid.yaml', validYaml);
const invalid = write('invalid.yaml', invalidYaml);
const invalidPaths = ['http_options.port', 'applications[0].deployments[0].num_replicas'];

/** main() with its output collected. */
async function tsserve(argv: string[], entry = main): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const code = await entry(argv, (s) => { out += s; }, (s) => { err += s; });
    return { code, out, err };
}

t.test('validate of a valid file', async (t) => {
    const r = await tsserve(['validate', valid]);
    t.strictSame(r, { code: 0, out: `${valid} is valid: 2 application(s), 3 deployment(s)\n`, err: '' });
});

t.test('validate loads each model in its runtime: a file of another format is an error at its path', async (t) => {
    const file = write('formats.yaml', `applications:
  - name: broken
    deployments: [{ name: m, model: { path: ./broken.onnx } }]
  - name: again
    deployments: [{ name: m, model: { path: ./broken.onnx } }]
  - name: notjson
    deployments: [{ name: m, model: { path: ./mlp.onnx, runtime: tfjs } }]
  - name: fine
    deployments: [{ name: m, model: { path: ./mlp.onnx } }]
`);
    const r = await tsserve(['validate', file]);
    t.equal(r.code, 1);
    t.equal(r.out, '');
    const lines = r.err.split('\n').filter((l) => l.startsWith('  - '));
    t.same(lines.map((l) => l.split(': ')[0]), [
        '  - applications[0].deployments[0].model.path',
        '  - applications[1].deployments[0].model.path',
        '  - applications[2].deployments[0].model.path'
    ]);
    t.match(lines[0], /: broken\.onnx does not load as an ONNX model: .*Protobuf parsing failed/);
    t.equal(lines[1].split(': ').slice(1).join(': '), lines[0].split(': ').slice(1).join(': '), 'a file named twice is loaded once and reported twice');
    t.match(lines[2], /: mlp\.onnx does not load as a TensorFlow\.js model: mlp\.onnx is not a TensorFlow\.js model\.json/);
    t.notMatch(lines.join('\n'), dir, 'paths are shown relative to the file\'s folder');
});

t.test('validate of an invalid file prints every error path and returns 1', async (t) => {
    const r = await tsserve(['validate', invalid]);
    t.equal(r.code, 1);
    t.equal(r.out, '');
    t.match(r.err, `Invalid config ${invalid}:\n`);
    for (const p of invalidPaths) {
        t.match(r.err, `  - ${p}: "${p}" must be`, p);
    }
    t.notMatch(r.err, 'model.path', 'schema errors come first; file checks run only on a valid schema');
});

t.test('validate of a missing file', async (t) => {
    const missing = path.join(dir, 'none.yaml');
    const r = await tsserve(['validate', missing]);
    t.equal(r.code, 1);
    t.match(r.err, `Invalid config ${missing}:\n  - cannot read file: ENOENT`);
});

t.test('validate reads ./serve.yaml by default', async (t) => {
    const cwd = path.join(dir, 'default');
    write('default/serve.yaml', validYaml.replace(/\.\/mlp/g, '../mlp'));
    t.chdir(cwd);
    t.strictSame(await tsserve(['validate']), { code: 0, out: 'serve.yaml is valid: 2 application(s), 3 deployment(s)\n', err: '' });
    t.chdir(dir);
    const r = await tsserve(['validate']);
    t.equal(r.code, 1);
    t.match(r.err, `Invalid config ${path.join(dir, 'serve.yaml')}:\n  - cannot read file`);
});

t.test('usage', async (t) => {
    const none = await tsserve([]);
    t.equal(none.code, 2, 'no command');
    t.equal(none.out, '');
    t.match(none.err, /^Usage:\n {2}tsserve up \[file\]/);
    t.match(none.err, 'tsserve validate [file]');
    t.match(none.err, 'tsserve status [file] [--address URL] [--json]');
    t.match(none.err, 'tsserve --version');

    const version = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')).version;
    t.strictSame(await tsserve(['--version']), { code: 0, out: `tsserve ${version}\n`, err: '' }, '--version');
    t.strictSame(await tsserve(['-v']), { code: 0, out: `tsserve ${version}\n`, err: '' }, '-v');

    const help = await tsserve(['--help']);
    t.strictSame(help, { code: 0, out: none.err, err: '' }, '--help prints usage on out');
    t.strictSame(await tsserve(['-h']), help, '-h');

    t.strictSame(await tsserve(['deploy']), none, 'unknown command');

    const unknown = await tsserve(['validate', valid, '--verbose']);
    t.equal(unknown.code, 2, 'unknown option');
    t.equal(unknown.out, '');
    t.match(unknown.err, /^Unknown option '--verbose'/);
    t.match(unknown.err, `\n${none.err}`, 'followed by usage');

    const missingValue = await tsserve(['up', '--port']);
    t.equal(missingValue.code, 2, 'option without its value');
    t.match(missingValue.err, /--port/);
});

t.test('up --port must be a port number', async (t) => {
    // a missing file: should the check regress, nothing gets started
    const file = path.join(dir, 'none.yaml');
    for (const port of ['abc', '65536', '1.5', '-1']) {
        const r = await tsserve(['up', file, `--port=${port}`]);
        t.strictSame(r, { code: 2, out: '', err: `--port must be an integer from 0 to 65535, got "${port}"\n` }, port);
    }
});

t.test('up --port with an empty value is refused', async (t) => {
    t.strictSame(await tsserve(['up', invalid, '--port=']), { code: 2, out: '', err: '--port must be an integer from 0 to 65535, got ""\n' });
});

t.test('up of an invalid file returns 1 without starting anything', async (t) => {
    const { main: mocked } = t.mockRequire<typeof import('../lib/cli')>('../lib/cli', {
        '../lib/controller': {
            Controller: class {
                constructor() {
                    throw new Error('a controller was started');
                }
            }
        }
    });
    const r = await tsserve(['up', invalid, '--port', '0'], mocked);
    t.equal(r.code, 1);
    t.equal(r.out, '');
    for (const p of invalidPaths) {
        t.match(r.err, `  - ${p}: `, p);
    }
    t.equal((await tsserve(['up', path.join(dir, 'none.yaml')], mocked)).code, 1, 'missing file');
    await t.rejects(tsserve(['up', valid, '--port', '0'], mocked), { message: 'a controller was started' }, 'a valid file gets that far');
});

t.test('up serves until SIGINT or SIGTERM, then stops and returns 0', async (t) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) {
        const calls: unknown[][] = [];
        const logged: string[] = [];
        let stopped = 0;
        const { main: mocked } = t.mockRequire<typeof import('../lib/cli')>('../lib/cli', {
            '../lib/server': {
                up: async (...args: unknown[]) => {
                    calls.push(args);
                    return { started: new Promise(() => {}), stop: async () => { stopped++; } };
                }
            },
            '../lib/log': { log: { info: (m: string) => logged.push(m), warn: () => {}, error: () => {} } }
        });
        const before = { SIGINT: process.listeners('SIGINT'), SIGTERM: process.listeners('SIGTERM') };
        const running = tsserve(['up', 'x.yaml', '--port', '8123', '--host', '0.0.0.0'], mocked);
        // wait until main has its signal handlers
        for (let i = 0; i < 100 && process.listeners(signal).length === before[signal].length; i++) {
            await new Promise((r) => setImmediate(r));
        }
        const added = process.listeners(signal).filter((l) => !before[signal].includes(l));
        t.equal(added.length, 1, `${signal} handler installed`);
        // call main's handler directly: emitting the signal would also reach tap's own handlers
        (added[0] as (s: string) => void)(signal);
        t.strictSame(await running, { code: 0, out: '', err: '' });
        t.strictSame(calls, [['x.yaml', { port: 8123, host: '0.0.0.0' }]], 'port as a number, host as given');
        t.equal(stopped, 1);
        t.strictSame(logged, [`${signal} received`]);
        for (const s of ['SIGINT', 'SIGTERM'] as const) {
            for (const l of process.listeners(s).filter((l) => !before[s].includes(l))) {
                process.removeListener(s, l);
            }
        }
    }

    // no --port or --host: up() gets undefined and keeps serve.yaml's values
    const calls: unknown[][] = [];
    const { main: mocked } = t.mockRequire<typeof import('../lib/cli')>('../lib/cli', {
        '../lib/server': {
            up: async (...args: unknown[]) => {
                calls.push(args);
                throw new Error('stop here');
            }
        }
    });
    await t.rejects(tsserve(['up'], mocked), { message: 'stop here' }, 'errors other than ConfigError propagate');
    t.strictSame(calls, [['serve.yaml', { port: undefined, host: undefined }]]);
});

t.test('up whose config cannot be applied after the listener is bound stops and returns 1', async (t) => {
    let stopped = 0;
    const { main: mocked } = t.mockRequire<typeof import('../lib/cli')>('../lib/cli', {
        '../lib/server': {
            // what lib/server.ts logs of it is not main()'s to print again
            up: async () => ({ started: Promise.reject(new Error('a model file is gone')), stop: async () => { stopped++; } })
        }
    });
    const before = { SIGINT: process.listeners('SIGINT'), SIGTERM: process.listeners('SIGTERM') };
    t.strictSame(await tsserve(['up', 'x.yaml'], mocked), { code: 1, out: '', err: '' });
    t.equal(stopped, 1, 'stopped first');
    for (const s of ['SIGINT', 'SIGTERM'] as const) {
        for (const l of process.listeners(s).filter((l) => !before[s].includes(l))) {
            process.removeListener(s, l);
        }
    }
});

t.test('status when nothing listens', async (t) => {
    // fetch refuses port 1 itself ("bad port"), before connecting
    const r = await tsserve(['status', '--address', 'http://127.0.0.1:1']);
    t.strictSame(r, { code: 1, out: '', err: 'cannot reach tsserve at http://127.0.0.1:1: bad port\n' });

    // a port that was free a moment ago: the connection is refused
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const refused = await tsserve(['status', '--address', `http://127.0.0.1:${port}`]);
    t.equal(refused.code, 1);
    t.equal(refused.out, '');
    t.match(refused.err, new RegExp(`^cannot reach tsserve at http://127\\.0\\.0\\.1:${port}: connect ECONNREFUSED`));

    const garbled = await tsserve(['status', '--address', 'not a url']);
    t.equal(garbled.code, 1);
    t.match(garbled.err, /^cannot reach tsserve at not a url: /);
});

t.test('status prints what /-/status answers', async (t) => {
    const status: Status = {
        started_at: '2025-01-01T00:00:00.000Z', ready: true,
        http_options: { host: '127.0.0.1', port: 9000, request_timeout_s: 30, max_body_size_mb: 16 },
        config: {
            file: '/srv/serve.yaml', version: 'feedc0ffee12', reloads: 2,
            last_reload: { at: '2025-01-01T00:01:00.000Z', trigger: 'SIGHUP', result: 'invalid', config_version: 'feedc0ffee12', errors: ['applications[0].name: is required'] }
        },
        applications: [{
            name: 'mlp', route_prefix: '/mlp', routes: [{ method: 'POST', path: '/mlp/predict', deployment: 'model' }], deployments: [{
                name: 'model', status: 'RUNNING', version: 'abc123def456', handler: 'tensor', model: { runtime: 'onnx', path: 'mlp.onnx' },
                target_replicas: 1, running_replicas: 1, replicas_by_version: { abc123def456: 1 }, queued_requests: 0,
                traffic: { window_s: 60, requests: 7230, requests_per_s: 120.5, errors_per_s: 0, p50_ms: 3.052, p99_ms: 25.4 },
                replicas: [{ id: 'model#1', pid: 42, state: 'RUNNING', version: 'abc123def456', restarts: 0, inflight_requests: 0, backend: 'cpu' }]
            }, {
                name: 'auto', status: 'RUNNING', version: 'abc123def456', handler: 'tensor', model: { runtime: 'onnx', path: 'mlp.onnx' },
                target_replicas: 3, running_replicas: 2, replicas_by_version: { abc123def456: 2 }, queued_requests: 5,
                traffic: { window_s: 60, requests: 90, requests_per_s: 1.5, errors_per_s: 0, p50_ms: 1250, p99_ms: 4000 },
                autoscaling: {
                    target_replicas: 3, pending_replicas: 1, ongoing_requests: 7.5, scaled_from_zero: 0,
                    last_decision: { at: '2025-01-01T00:02:00.000Z', from: 2, to: 3, reason: 'ongoing 7.5 per 2 replicas > target 2' }
                },
                replicas: []
            }, {
                name: 'cold', status: 'SCALED_TO_ZERO', version: 'abc123def456', handler: 'tensor', model: { runtime: 'onnx', path: 'mlp.onnx' },
                target_replicas: 0, running_replicas: 0, replicas_by_version: {}, queued_requests: 0,
                traffic: { window_s: 60, requests: 0, requests_per_s: 0, errors_per_s: 0 },
                autoscaling: { target_replicas: 0, pending_replicas: 0, ongoing_requests: 0, scaled_from_zero: 0 },
                replicas: []
            }]
        }]
    };
    const urls: string[] = [];
    const realFetch = globalThis.fetch;
    // a fake fetch: these tests start no server
    globalThis.fetch = (async (url: string) => {
        urls.push(url);
        return new Response(JSON.stringify(status), { headers: { 'content-type': 'application/json' } });
    }) as typeof fetch;
    t.teardown(() => {
        globalThis.fetch = realFetch;
    });

    const json = await tsserve(['status', '--json', '--address', 'http://127.0.0.2:9000']);
    t.equal(json.code, 0);
    t.strictSame(JSON.parse(json.out), status);
    t.equal(json.out, JSON.stringify(status, null, 2) + '\n');

    const table = await tsserve(['status']);
    t.equal(table.code, 0);
    t.match(table.out, /^tsserve: READY \(since 2025-01-01T00:00:00\.000Z\)\n/);
    t.match(table.out, /\nconfig: \/srv\/serve.yaml \(version feedc0ffee12, 2 reload\(s\); last 2025-01-01T00:01:00.000Z by SIGHUP: invalid\)\n  ! applications\[0\].name: is required\n/);
    t.match(table.out, /mlp \(\/mlp\) +model +RUNNING +1\/1 +0 +120\.5 +3\.05ms +25ms +abc123def456/, 'rate and latency');
    t.match(table.out, /mlp \(\/mlp\) +auto +RUNNING +2\/3 +5 +1\.5 +1\.3s +4\.0s +abc123def456/);
    t.match(table.out, /mlp \(\/mlp\) +cold +SCALED_TO_ZERO +0\/0 +0 +0 +- +- +abc123def456/, 'no request: no latency');
    t.match(table.out, /\nAUTOSCALING +TARGET +PENDING +ONGOING +LAST DECISION\nmlp\/auto +3 +1 +7\.5 +2025-01-01T00:02:00\.000Z: 2 -> 3 \(ongoing 7\.5 per 2 replicas > target 2\)\nmlp\/cold +0 +0 +0 +-\n/, 'the autoscalers');
    const [app] = status.applications;
    t.notMatch(render({ ...status, applications: [{ ...app, deployments: [app.deployments[0]] }] }), /AUTOSCALING/, 'without an autoscaler, no such table');
    t.match(table.out, /model#1 +RUNNING +42 +abc123def456 +0 +cpu/);
    t.strictSame(urls, ['http://127.0.0.2:9000/-/status', 'http://127.0.0.1:8000/-/status'], '--address, then the default');

    globalThis.fetch = (async () => {
        throw new Error('no route to host');
    }) as typeof fetch;
    t.strictSame(await tsserve(['status']), { code: 1, out: '', err: 'cannot reach tsserve at http://127.0.0.1:8000: no route to host\n' }, 'an error without a cause');

    globalThis.fetch = (async () => new Response('<html>', { status: 502 })) as typeof fetch;
    const notJson = await tsserve(['status']);
    t.equal(notJson.code, 1, 'a body that is not JSON');
    t.match(notJson.err, /is not a tsserve admin address: \/-\/status answered 502 with "<html>"/);
});

t.test('the real command in a subprocess', async (t) => {
    write('sub/serve.yaml', validYaml.replace(/\.\/mlp/g, '../mlp'));
    // the processes run side by side: each takes a second or so to start
    const byDefault = run(['validate'], path.join(dir, 'sub'));
    // a port already taken is an error main() does not expect: it exits 1 with the stack
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    t.teardown(() => taken.close());
    const crashed = run(['up', valid, '--port', String((taken.address() as net.AddressInfo).port)], dir);
    const bad = await run(['validate', invalid]);
    t.equal(bad.code, 1);
    t.equal(bad.stdout, '');
    for (const p of invalidPaths) {
        t.match(bad.stderr, `  - ${p}: `, p);
    }
    const crash = await crashed;
    t.equal(crash.code, 1, 'unexpected errors exit 1');
    t.match(crash.stderr, /^tsserve: Error: listen EADDRINUSE.*\n {4}at /, 'with the stack');
    t.strictSame(await byDefault, { code: 0, stdout: 'serve.yaml is valid: 2 application(s), 3 deployment(s)\n', stderr: '' }, 'default file, from the cwd');
});

t.test('the shipped example configs are valid', async (t) => {
    const root = path.join(__dirname, '..');
    for (const file of ['serve.yaml', 'config/production.yaml']) {
        const r = await tsserve(['validate', path.join(root, file)]);
        t.equal(r.code, 0, `${file}: ${r.err}`);
    }
});
