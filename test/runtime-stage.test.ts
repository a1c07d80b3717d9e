// The Dockerfile's runtime stage, reproduced without Docker (which cannot run here): a clean folder holding only what
// that stage holds, the production dependencies (`npm ci --omit=dev`, no script run) and the compiled output (the
// build of tsconfig.build.json), and `tsserve up` started from there on the example models. Each built-in handler and
// both runtimes answer a request, so a runtime dependency missing from package.json's dependencies (one only a dev
// dependency brings), or a file the build forgot, fails here.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { start, type Served } from './helpers';

const root = path.join(__dirname, '..');
const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'tsserve-runtime-'));

/** Runs a command to its end; rejects with its output when it fails. */
function run(command: string, args: string[], cwd: string): Promise<void> {
    return new Promise((resolve, reject) => {
        const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
        let out = '';
        child.stdout.on('data', (d) => out += d);
        child.stderr.on('data', (d) => out += d);
        child.on('close', (code) => code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} exited ${code}:\n${out.slice(-3000)}`)));
    });
}

let s: Served | undefined;
t.teardown(async () => {
    await s?.stop();
    fs.rmSync(stage, { recursive: true, force: true });
});

t.test('the runtime stage alone serves every handler and runtime', async (t) => {
    for (const f of ['package.json', 'package-lock.json', '.npmrc']) {
        fs.copyFileSync(path.join(root, f), path.join(stage, f));
    }
    // as the Dockerfile does, both at once: the dependencies (from npm's cache, which `npm install` filled) and the build
    const npm = process.env.npm_execpath ? [process.execPath, [process.env.npm_execpath]] as const : ['npm', []] as const;
    await Promise.all([
        run(npm[0], [...npm[1], 'ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'], stage),
        run(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.build.json'), '--outDir', path.join(stage, 'dist')], root)
    ]);
    const modules = fs.readdirSync(path.join(stage, 'node_modules'));
    t.same(['typescript', 'tap', 'autocannon', 'kubernetes-models'].filter((m) => modules.includes(m)), [], 'no dev dependency is installed');
    t.ok(modules.includes('onnxruntime-node') && modules.includes('sharp'), 'the production ones are');
    const files = fs.readdirSync(path.join(stage, 'dist'), { recursive: true }) as string[];
    t.same(files.filter((f) => /\.ts$/.test(f) && !f.endsWith('.d.ts')), [], 'compiled output only');

    const models = path.join(root, 'examples', 'models');
    fs.cpSync(models, path.join(stage, 'models'), { recursive: true });
    fs.writeFileSync(path.join(stage, 'serve.yaml'), `
applications:
  - { name: mlp, deployments: [{ name: m, model: { path: ./models/mlp.onnx } }] }
  - { name: text, deployments: [{ name: m, handler: text, model: { path: ./models/sentiment } }] }
  - { name: image, deployments: [{ name: m, handler: image, model: { path: ./models/digits } }] }
  - { name: tfjs, deployments: [{ name: m, handler: image, model: { runtime: tfjs, path: ./models/digits-tfjs } }] }
  - { name: audio, deployments: [{ name: m, handler: audio, model: { path: ./models/tones } }] }
`);
    s = await start(path.join(stage, 'serve.yaml'), { cli: path.join(stage, 'dist', 'lib', 'cli.js') });
    const png = fs.readFileSync(path.join(root, 'examples', 'seven.png'));
    const wav = fs.readFileSync(path.join(root, 'examples', 'tone-440hz.wav'));
    const answers = [
        await s.post('/mlp/predict', { inputs: [[1, 2, 3, 4]] }),
        await s.post('/text/predict', { text: 'a wonderful film' }),
        await s.post('/image/predict', png, { 'content-type': 'image/png' }),
        await s.post('/tfjs/predict', png, { 'content-type': 'image/png' }),
        await s.post('/audio/predict', wav, { 'content-type': 'audio/wav' })
    ];
    t.same(answers.map((a) => a.status), [200, 200, 200, 200, 200], answers.map((a) => JSON.stringify(a.body).slice(0, 200)).join('\n'));
    t.same([answers[1].body.label, answers[2].body.label, answers[3].body.label, answers[4].body.label], ['positive', '7', '7', 'A4']);
});
