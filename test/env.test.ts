// serve.yaml values from the environment: ${VAR}, ${VAR:-default}, $${...}, and an unset variable named at its path.
import t from 'tap';
import fs from 'node:fs';
import { ConfigError, parse } from '../lib/config';
import { substitute } from '../lib/env';
import { fixtures } from './helpers';

const dir = fixtures();
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

t.test('references in string values, at any depth; keys, numbers and other text are left alone', async (t) => {
    const env = { HOST: '0.0.0.0', EMPTY: '' };
    const doc = { a: '${HOST}', list: ['x-${HOST}-y', 7, true, null], nested: { b: '${EMPTY:-fallback}', c: '${UNSET:-}' }, '${HOST}': 'k', d: '$${HOST}', e: 'cost: $5 {braces}' };
    t.strictSame(substitute(doc, env), {
        value: { a: '0.0.0.0', list: ['x-0.0.0.0-y', 7, true, null], nested: { b: 'fallback', c: '' }, '${HOST}': 'k', d: '${HOST}', e: 'cost: $5 {braces}' },
        issues: []
    });
    t.strictSame(substitute({ x: ['${NOPE}', 'and ${ALSO_NOT}'] }, {}).issues, [
        { at: ['x', 0], message: 'environment variable NOPE is not set (write ${NOPE:-default} to give a default)' },
        { at: ['x', 1], message: 'environment variable ALSO_NOT is not set (write ${ALSO_NOT:-default} to give a default)' }
    ]);
});

t.test('serve.yaml takes its port and model path from the environment, converted by the schema', async (t) => {
    process.env.TSSERVE_TEST_PORT = '9123';
    process.env.TSSERVE_TEST_MODEL = 'mlp.onnx';
    t.teardown(() => {
        delete process.env.TSSERVE_TEST_PORT;
        delete process.env.TSSERVE_TEST_MODEL;
    });
    // In YAML's flow style ({...}) a reference is quoted, since "{" opens a mapping there; in block style it need not be.
    const yaml = `http_options:
  port: \${TSSERVE_TEST_PORT}
  request_timeout_s: "\${TSSERVE_TEST_TIMEOUT:-12}"
applications:
  - name: app
    deployments: [{ name: m, model: { path: "./\${TSSERVE_TEST_MODEL}" } }]
`;
    const config = parse(yaml, dir);
    t.equal(config.http_options.port, 9123);
    t.equal(config.http_options.request_timeout_s, 12);
    t.equal(config.applications[0].deployments[0].model.path, `${dir}/mlp.onnx`);

    delete process.env.TSSERVE_TEST_PORT;
    const err = t.throws(() => parse(yaml, dir, 'serve.yaml')) as ConfigError;
    t.strictSame(err.issues, [{ path: 'http_options.port', message: 'environment variable TSSERVE_TEST_PORT is not set (write ${TSSERVE_TEST_PORT:-default} to give a default)' }]);
});
