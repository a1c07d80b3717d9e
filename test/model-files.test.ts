// Model folders: which file a runtime loads from a folder, what the folder's JSON files say, and a folder edited
// in place while it is served (a new version, rolled out like any other).
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { modelContent, modelFile, modelFiles } from '../lib/model-files';
import { contentDigest, parse } from '../lib/config';
import { fixtures, serve, until } from './helpers';

const dir = fixtures();
const mlp = fs.readFileSync(path.join(dir, 'mlp.onnx'));
const folder = (name: string, files: Record<string, string | Buffer>): string => {
    const root = path.join(dir, name);
    for (const [file, content] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
        fs.writeFileSync(path.join(root, file), content);
    }
    return root;
};

t.test('a folder names its model file by runtime; the JSON files beside it are read', async (t) => {
    const flat = folder('flat', { 'model.onnx': mlp, 'config.json': '{"id2label": {"0": "a"}}', 'preprocessor_config.json': '{"size": 28}', 'tokenizer.json': '{}' });
    const nested = folder('nested', { 'onnx/model.onnx': mlp, 'model.json': '{}' });
    const empty = folder('empty', { 'README.md': 'no model here' });
    t.equal(modelFile({ runtime: 'onnx', path: path.join(dir, 'mlp.onnx') }), path.join(dir, 'mlp.onnx'), 'a file is itself');
    t.equal(modelFile({ runtime: 'onnx', path: flat }), path.join(flat, 'model.onnx'));
    t.equal(modelFile({ runtime: 'onnx', path: nested }), path.join(nested, 'onnx', 'model.onnx'));
    t.equal(modelFile({ runtime: 'tfjs', path: nested }), path.join(nested, 'model.json'));
    t.throws(() => modelFile({ runtime: 'onnx', path: empty }), { message: `model folder ${empty} holds no model.onnx or onnx/model.onnx (runtime: onnx)` });
    t.throws(() => modelFile({ runtime: 'onnx', path: path.join(dir, 'nowhere') }), { message: /model file or folder not found/ });

    t.same(modelFiles({ runtime: 'onnx', path: flat }), {
        file: path.join(flat, 'model.onnx'), dir: flat, tokenizer: path.join(flat, 'tokenizer.json'),
        config: { id2label: { 0: 'a' } }, preprocessor: { size: 28 }
    });
    t.same(modelFiles({ runtime: 'onnx', path: nested }), { file: path.join(nested, 'onnx', 'model.onnx'), dir: nested, tokenizer: undefined, config: undefined, preprocessor: undefined });
    t.same(modelFiles({ runtime: 'onnx', path: path.join(dir, 'mlp.onnx') }), { file: path.join(dir, 'mlp.onnx') }, 'a lone file\'s folder is not read');
    const broken = folder('broken-config', { 'model.onnx': mlp, 'config.json': '{ "id2label": ' });
    t.throws(() => modelFiles({ runtime: 'onnx', path: broken }), { message: /config.json is not valid JSON/ });

    const deep = folder('deep', { 'a/b/c/too-deep.txt': 'x', 'a/b/kept.txt': 'y', 'model.onnx': mlp });
    t.same(modelContent({ runtime: 'onnx', path: deep }).map((f) => path.relative(deep, f)), ['a/b/kept.txt', 'model.onnx'], 'read two levels deep, in order');
});

t.test('a config names a folder; its version follows every file in it', async (t) => {
    const root = folder('versioned', { 'model.onnx': mlp, 'config.json': '{}' });
    const yaml = 'applications:\n  - name: m\n    deployments:\n      - { name: d, model: { path: ./versioned } }\n';
    const d = () => parse(yaml, dir).applications[0].deployments[0];
    const before = await contentDigest(d());
    fs.writeFileSync(path.join(root, 'config.json'), '{"id2label": {}}');
    t.not(await contentDigest(d()), before);
    t.throws(() => parse(yaml.replace('versioned', 'empty'), dir), { message: /model.path: model folder .* holds no model.onnx/ });
});

t.test('editing a file inside a served folder rolls out a new version', async (t) => {
    const root = folder('served', { 'model.onnx': mlp, 'config.json': '{}' });
    const s = await serve(dir, 'applications:\n  - name: m\n    deployments:\n      - { name: d, model: { path: ./served } }\n');
    t.teardown(() => s.stop());
    const dep = async () => (await s.get('/-/status')).body.applications[0].deployments[0];
    const first = await dep();
    t.equal((await s.post('/m/predict', { inputs: [[1, 2, 3, 4]] })).status, 200);
    fs.writeFileSync(path.join(root, 'config.json'), '{"edited": true}');
    const next = await until(async () => {
        const d = await dep();
        return d.version !== first.version && d;
    }, { what: () => `a new version after the edit:\n${s.output()}` });
    t.not(next.version, first.version, 'a new version');
    t.match((await s.get('/-/status')).body.config.last_reload, { result: 'applied', changes: { replaced: ['m/d'] } });
    t.equal((await s.post('/m/predict', { inputs: [[1, 2, 3, 4]] })).status, 200);
});
