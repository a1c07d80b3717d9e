// The config watcher: only what the config is made of schedules a look (never a log or a swap file beside
// serve.yaml, so a server that logs into the folder of its serve.yaml does not reload itself); model files hashed
// without holding the event loop, each read again only when it changed; and /-/status once a valid file follows a
// refused one. In process over a controller that applies nothing, then through real `tsserve up` processes.
import t, { type Test } from 'tap';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { DigestCache } from '../lib/digests';
import { ConfigWatcher, type ReloadResult } from '../lib/watcher';
import { contentDigest, load, loadFile, parse } from '../lib/config';
import { log } from '../lib/log';
import { cli, fixtures, serve, sleep, until, type Served, type UntilOptions } from './helpers';
import type { Changes, Controller } from '../lib/controller';
import type { Status } from '../lib/status';
import type { ServeConfig } from '../schemas/serve';

const dir = fixtures();
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

const mlp = fs.readFileSync(path.join(dir, 'mlp.onnx'));
const sha256 = (data: string | Buffer): string => crypto.createHash('sha256').update(data).digest('hex');

/** A clock a minute ahead: every file's last change is long past, so its identity is trusted at once. */
const ahead = (): number => Date.now() + 60000;

/** Files written into a fresh folder (a Buffer or text each, folders made as needed); returns the folder. */
function folder(files: Record<string, string | Buffer>): string {
    const root = fs.mkdtempSync(path.join(dir, 'case-'));
    for (const [file, content] of Object.entries(files)) {
        fs.mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
        fs.writeFileSync(path.join(root, file), content);
    }
    return root;
}

t.test('digests: a file is read again only when its identity changed', async (t) => {
    const root = folder({ 'a.bin': 'one' });
    const file = path.join(root, 'a.bin');
    const cache = new DigestCache(ahead);
    t.equal(await cache.digest(file), sha256('one'));
    t.equal(cache.reads, 1);
    cache.sweep();
    t.equal(await cache.digest(file), sha256('one'), 'the same digest at the next look');
    t.equal(cache.reads, 1, 'without reading the file again');

    cache.sweep();
    fs.writeFileSync(file, 'three');
    t.equal(await cache.digest(file), sha256('three'), 'another size: read again');
    // the same size, but a new file renamed over the old one: another inode
    cache.sweep();
    fs.writeFileSync(`${file}.tmp`, 'other');
    fs.renameSync(`${file}.tmp`, file);
    t.equal(await cache.digest(file), sha256('other'), 'another inode: read again');
    t.equal(cache.reads, 3);

    cache.sweep();
    cache.sweep();
    t.equal(await cache.digest(file), sha256('other'));
    t.equal(cache.reads, 4, 'a file a look did not use is forgotten');
    await t.rejects(cache.digest(path.join(root, 'nowhere')), { code: 'ENOENT' }, 'a missing file rejects');
});

t.test('digests: a file changed in the last seconds is read once per look, and again at the next', async (t) => {
    const file = path.join(folder({ 'fresh.bin': 'fresh' }), 'fresh.bin');
    const cache = new DigestCache();
    t.equal(await cache.digest(file), sha256('fresh'));
    t.equal(await cache.digest(file), sha256('fresh'));
    t.equal(cache.reads, 1, 'once within a look');
    cache.sweep();
    t.equal(await cache.digest(file), sha256('fresh'));
    t.equal(cache.reads, 2, 'again at the next look: a write in the same tick of the clock would not show in its identity');
});

t.test('a large model is hashed a piece at a time, and the event loop turns meanwhile', async (t) => {
    const data = crypto.randomBytes(8 << 20);
    const root = folder({ 'large.onnx': data });
    const d = parse('applications:\n  - name: m\n    deployments:\n      - { name: d, model: { path: ./large.onnx } }\n', root).applications[0].deployments[0];
    let turns = 0;
    let counting = true;
    const turn = (): void => {
        turns++;
        if (counting) {
            setImmediate(turn);
        }
    };
    setImmediate(turn);
    const digest = await contentDigest(d);
    counting = false;
    t.equal(digest, crypto.createHash('sha256').update('').update('\0').update(sha256(data)).digest('hex'));
    // 8 reads of 1 MiB, each awaited: a read of the whole file at once (readFileSync) would give one turn or none
    t.ok(turns >= 8, 'the event loop turned between the reads', { found: turns, wanted: '>= 8' });
});

t.test('a look reads again only the model files that changed', async (t) => {
    const root = folder({
        'serve.yaml': 'applications:\n  - name: f\n    deployments:\n      - { name: d, model: { path: ./model.onnx } }\n'
            + '  - name: m\n    deployments:\n      - { name: d, model: { path: ./folder } }\n',
        'model.onnx': mlp, 'folder/model.onnx': mlp, 'folder/config.json': '{}'
    });
    const models = ['model.onnx', 'folder/model.onnx', 'folder/config.json'].map((f) => path.join(root, f));
    const saved = { ...log };
    log.info = log.warn = log.error = () => {};
    const watcher = new ConfigWatcher(path.join(root, 'serve.yaml'), idle, new DigestCache(ahead));
    await watcher.start(load(watcher.file));
    // every file opened from here on, whichever way
    const read: string[] = [];
    const { readFileSync } = fs;
    const { open } = fs.promises;
    Object.assign(fs, { readFileSync: (file: fs.PathOrFileDescriptor, ...rest: []) => (read.push(String(file)), readFileSync(file, ...rest)) });
    Object.assign(fs.promises, { open: (file: fs.PathLike, ...rest: []) => (read.push(String(file)), open(file, ...rest)) });
    t.teardown(async () => {
        Object.assign(fs, { readFileSync });
        Object.assign(fs.promises, { open });
        Object.assign(log, saved);
        await watcher.close();
    });
    t.match(await watcher.reload('test'), { result: 'unchanged' });
    t.same(read.filter((f) => models.includes(f)), [], 'a look that finds no change reads no model file');
    fs.writeFileSync(models[2], '{"id2label": {}}');
    t.match(await watcher.reload('test'), { result: 'applied' });
    t.same(read.filter((f) => models.includes(f)), [models[2]], 'a changed file is read, and only it');
});

t.test('a model folder that cannot be read as the watch is worked out: the look is refused, and the watcher goes on', async (t) => {
    const root = folder({ 'serve.yaml': 'applications:\n  - name: m\n    deployments:\n      - { name: d, model: { path: ./folder } }\n', 'folder/model.onnx': mlp });
    const saved = { ...log };
    log.info = log.warn = log.error = () => {};
    const watcher = new ConfigWatcher(path.join(root, 'serve.yaml'), idle);
    await watcher.start(load(watcher.file));
    // the folder gone between a look and the walk of it (made to happen here by failing every read of it)
    const { readdirSync } = fs;
    const gone = Object.assign(new Error(`ENOENT: no such file or directory, scandir '${path.join(root, 'folder')}'`), { code: 'ENOENT' });
    Object.assign(fs, { readdirSync: (dir: fs.PathLike, ...rest: []) => {
        if (String(dir) === path.join(root, 'folder')) {
            throw gone;
        }
        return readdirSync(dir, ...rest);
    } });
    t.teardown(async () => {
        Object.assign(fs, { readdirSync });
        Object.assign(log, saved);
        await watcher.close();
    });
    t.match(await watcher.reload('test'), { result: 'invalid', errors: [/ENOENT/] });
    Object.assign(fs, { readdirSync });
    t.match(await watcher.reload('test'), { result: 'applied', errors: [] }, 'the folder back: the refusal is over');
});

t.test('contentDigest() keeps its values: each file\'s SHA-256 after its path in the model folder', async (t) => {
    const root = folder({ 'm/model.onnx': mlp, 'm/config.json': '{}', 'm/a/b/deep.txt': 'x' });
    const d = parse('applications:\n  - name: m\n    deployments:\n      - { name: d, model: { path: ./m } }\n', root).applications[0].deployments[0];
    const want = crypto.createHash('sha256');
    for (const rel of ['a/b/deep.txt', 'config.json', 'model.onnx']) {
        want.update(rel).update('\0').update(sha256(fs.readFileSync(path.join(root, 'm', rel))));
    }
    t.equal(await contentDigest(d), want.digest('hex'));
    const file = parse(`applications:\n  - name: m\n    deployments:\n      - { name: d, model: { path: ./m/model.onnx } }\n`, root).applications[0].deployments[0];
    t.equal(await contentDigest(file), crypto.createHash('sha256').update('').update('\0').update(sha256(mlp)).digest('hex'), 'a lone file');
});

/** What the in-process watcher was seen doing. */
interface Watched {
    root: string;
    file: string;
    watcher: ConfigWatcher;
    /** each look (reload) the watcher made, in order */
    looks: Array<Promise<ReloadResult>>;
    /** what it logged */
    lines: string[];
}

const nothing = (): Changes => ({ added: [], removed: [], updated: [], replaced: [], unchanged: [], errors: [], notices: [] });

/** A controller that applies nothing: the watcher alone, with no replica to start. */
const idle = { apply: async () => nothing() } as unknown as Controller;

/**
 * Makes an edit again, each second, until done() says it was seen: a watch that is not up yet misses it. done() is
 * asked before each edit, so that none follows the one seen.
 */
async function retried(edit: () => void, done: () => unknown, what: UntilOptions['what']): Promise<void> {
    await until(async () => {
        if (await done()) {
            return true;
        }
        edit();
        return false;
    }, { what, intervalMs: 1000 });
}

/**
 * A watcher, started, on serve.yaml in a folder of these files and links (name: target), over a controller that
 * applies nothing. Its looks and log lines are kept. It returns once it is seen to be watching.
 */
async function watched(t: Test, files: Record<string, string | Buffer>, links: Record<string, string> = {}): Promise<Watched> {
    const root = folder(files);
    for (const [link, target] of Object.entries(links)) {
        fs.symlinkSync(target, path.join(root, link));
    }
    const file = path.join(root, 'serve.yaml');
    const watcher = new ConfigWatcher(file, idle, new DigestCache(ahead));
    const lines: string[] = [];
    const saved = { ...log };
    log.info = log.warn = log.error = (line: string) => lines.push(line);
    t.teardown(async () => {
        Object.assign(log, saved);
        await watcher.close();
    });
    await watcher.start(load(file));
    const looks: Array<Promise<ReloadResult>> = [];
    const reload = watcher.reload.bind(watcher);
    watcher.reload = (trigger) => {
        looks.push(reload(trigger));
        return looks[looks.length - 1];
    };
    // serve.yaml written again as it is, until a look follows
    const text = fs.readFileSync(file);
    await retried(() => fs.writeFileSync(file, text), () => looks.length, 'a first look');
    await Promise.all(looks);
    return { root, file, watcher, looks, lines };
}

/** Makes an edit (again, until it is seen, when `again`), and waits for the look it makes; returns its result. */
async function looked(w: Watched, edit: () => void, what: string, again = false): Promise<ReloadResult> {
    const n = w.looks.length;
    if (again) {
        await retried(edit, () => w.looks.length > n, `a look after ${what}`);
    }
    else {
        edit();
        await until(() => w.looks.length > n, { what: `a look after ${what}` });
    }
    await Promise.all(w.looks);
    return w.looks[n];
}

/**
 * Makes an edit, and checks that it makes no look and logs nothing. Something not happening is only seen by waiting:
 * the watcher's debounce (150 ms) and a look are long over after the sleep.
 */
async function ignored(t: Test, w: Watched, edit: () => void, what: string): Promise<void> {
    const [looks, lines] = [w.looks.length, w.lines.length];
    edit();
    await sleep(800);
    t.equal(w.looks.length, looks, `no look after ${what}`);
    t.same(w.lines.slice(lines), [], 'nothing logged');
}

t.test('only what the config is made of makes a look: serve.yaml, model files and folders, handler modules', async (t) => {
    const w = await watched(t, {
        'serve.yaml': 'applications:\n  - name: f\n    deployments:\n      - { name: d, handler: ./handler.js, model: { path: ./model.onnx } }\n'
            + '  - name: m\n    deployments:\n      - { name: d, model: { path: ./folder } }\n',
        'model.onnx': mlp, 'handler.js': 'module.exports = {};\n',
        'folder/model.onnx': mlp, 'folder/config.json': '{}', 'folder/a/b/deep.txt': 'x', 'folder/a/b/c/too-deep.txt': 'x',
        'blobs/sha1': 'weights', 'blobs/other': 'other'
    }, { 'folder/blob.bin': '../blobs/sha1' });
    const at = (p: string) => path.join(w.root, p);

    await ignored(t, w, () => {
        for (let i = 0; i < 5; i++) {
            fs.appendFileSync(at('tsserve.log'), `line ${i}\n`);
            fs.writeFileSync(at('.serve.yaml.swp'), `swap ${i}`);
            fs.writeFileSync(at(`note-${i}.txt`), 'a note');
        }
        fs.rmSync(at('.serve.yaml.swp'));
        fs.mkdirSync(at('logs'));
    }, 'files and a folder written beside serve.yaml');
    await ignored(t, w, () => {
        fs.writeFileSync(at('folder/a/b/c/too-deep.txt'), 'y');
        fs.mkdirSync(at('folder/a/b/c2'));
        fs.writeFileSync(at('blobs/other'), 'changed');
    }, 'files deeper than a model folder is read, and beside a link\'s target');

    const edits: Record<string, () => void> = {
        'the model file': () => fs.writeFileSync(at('model.onnx'), Buffer.concat([mlp, Buffer.from('x')])),
        'the handler module': () => fs.writeFileSync(at('handler.js'), 'module.exports = { edited: true };\n'),
        'a file of the model folder': () => fs.writeFileSync(at('folder/config.json'), '{"id2label": {}}'),
        'a file two levels down in it': () => fs.writeFileSync(at('folder/a/b/deep.txt'), 'y'),
        'a file added to it': () => fs.writeFileSync(at('folder/a/new.txt'), 'new'),
        'the target of a link in it': () => fs.writeFileSync(at('blobs/sha1'), 'new weights'),
        'serve.yaml, saved by rename': () => {
            fs.writeFileSync(at('serve.yaml.tmp'), fs.readFileSync(w.file, 'utf8').replace('name: m', 'name: n'));
            fs.renameSync(at('serve.yaml.tmp'), w.file);
        }
    };
    for (const [what, edit] of Object.entries(edits)) {
        t.match(await looked(w, edit, what), { result: 'applied' }, what);
    }
});

t.test('links: a ConfigMap update, a loop of links, and the running file put back', async (t) => {
    // Kubernetes' layout: serve.yaml -> ..data/serve.yaml, ..data -> ..v1/, swapped by renaming a new link over it
    const yaml = (n: number) => `applications:\n  - name: k\n    deployments:\n      - { name: d, num_replicas: ${n}, model: { path: ${path.join(dir, 'mlp.onnx')} } }\n`;
    const w = await watched(t, { '..v1/serve.yaml': yaml(1), '..v2/serve.yaml': yaml(2) }, { '..data': '..v1', 'serve.yaml': '..data/serve.yaml' });
    const swap = (to: string) => () => {
        fs.symlinkSync(to, path.join(w.root, '..data_tmp'));
        fs.renameSync(path.join(w.root, '..data_tmp'), path.join(w.root, '..data'));
    };
    t.match(await looked(w, swap('..v2'), 'the ..data link swapped'), { result: 'applied' });
    await ignored(t, w, () => fs.writeFileSync(path.join(w.root, '..v1/serve.yaml'), yaml(3)), 'an edit of the version no longer linked');
    t.match(await looked(w, () => fs.writeFileSync(path.join(w.root, '..v2/serve.yaml'), yaml(3)), 'an edit of the linked version'), { result: 'applied' });

    // ..data made a link to itself: the file cannot be read (and a link that resolves to nothing is no event, so SIGHUP)
    swap('..data')();
    t.match(await w.watcher.reload('SIGHUP'), { result: 'invalid', errors: [/cannot read file: .*ELOOP/] });
    // Linked again to the running version's file, each time in a new folder: the new watch may take in a first swap
    // as it starts (and so see no change in it), not one to another folder.
    let next = 3;
    const back = await looked(w, () => {
        const version = `..v${next++}`;
        fs.mkdirSync(path.join(w.root, version));
        fs.writeFileSync(path.join(w.root, version, 'serve.yaml'), yaml(3));
        swap(version)();
    }, 'the running version linked again', true);
    t.same(back.changes, { ...nothing(), unchanged: ['k/d'] }, 'the running file back: applied, with nothing to change');
    t.match(w.watcher.status(), { reloads: 4, last_reload: { result: 'applied', errors: [] } });
    t.notMatch(JSON.stringify(w.watcher.status()), /ELOOP/, 'the refusal is gone from the status');
});

t.test('a refused file: a model it names that is missing yet is watched for, and a YAML error is refused', async (t) => {
    const w = await watched(t, { 'serve.yaml': 'applications:\n  - name: a\n    deployments:\n      - { name: d, model: { path: ./model.onnx } }\n', 'model.onnx': mlp });
    const from = w.lines.length;
    const late = 'applications:\n  - name: a\n    deployments:\n      - { name: d, model: { path: ./late.onnx } }\n';
    t.match(await looked(w, () => fs.writeFileSync(w.file, late), 'a file naming a missing model'), { result: 'invalid', errors: [/model.path: model file or folder not found/] });
    t.match(await looked(w, () => fs.writeFileSync(path.join(w.root, 'late.onnx'), mlp), 'the missing model written'), { result: 'applied' });
    t.match(await looked(w, () => fs.writeFileSync(w.file, 'applications: [\n'), 'a YAML error'), { result: 'invalid', errors: [/^YAML syntax error/] });
    t.match(await looked(w, () => fs.writeFileSync(w.file, late), 'the running file put back'), { result: 'applied', errors: [] });
    t.match(w.lines.slice(from), [/refused/, /applying/, /applied/, /refused/, /the file is the running version again/]);
});

t.test('a watcher not started, or closed during a look, watches nothing', async (t) => {
    const root = folder({ 'serve.yaml': 'applications: []\n', 'good.yaml': `applications:\n  - name: a\n    deployments:\n      - { name: d, model: { path: ${path.join(dir, 'mlp.onnx')} } }\n` });
    const saved = { ...log };
    log.info = log.warn = log.error = () => {};
    t.teardown(() => Object.assign(log, saved));
    t.match(await new ConfigWatcher(path.join(root, 'serve.yaml'), idle).reload('test'), { result: 'invalid' });
    const w = new ConfigWatcher(path.join(root, 'good.yaml'), idle);
    const look = w.reload('test');
    await w.close();
    t.match(await look, { result: 'applied' }, 'the look ends, and no watch is left open (the test would not end)');
});

t.test('reloads asked for during one share the next; what the controller reports is logged', async (t) => {
    const root = folder({ 'serve.yaml': 'applications:\n  - name: a\n    deployments:\n      - { name: d, model: { path: ./model.onnx } }\n', 'model.onnx': mlp });
    const lines: string[] = [];
    const saved = { ...log };
    log.info = log.warn = log.error = (line: string) => lines.push(line);
    t.teardown(() => Object.assign(log, saved));
    const reports = { apply: async () => ({ ...nothing(), updated: ['a/d'], errors: ['a/d: refused'], notices: ['a notice'] }) } as unknown as Controller;
    const w = new ConfigWatcher(path.join(root, 'serve.yaml'), reports);
    t.teardown(() => w.close());
    const first = w.reload('one');
    const [second, third] = [w.reload('two'), w.reload('three')];
    t.equal(second, third, 'the calls made during a reload share the next one');
    t.match(await first, { trigger: 'one', result: 'applied', errors: ['a/d: refused'] });
    t.match(await second, { trigger: 'two', result: 'unchanged' });
    t.match(lines, [/applying/, /reload applied \(added: -; removed: -; replaced: -; updated: a\/d\)/, 'reload: a/d: refused', 'reload: a notice', /two\): no change/]);
});

/** serve.yaml with one small deployment; n changes in place (batching). */
const small = (n: number) => `applications:\n  - name: s\n    deployments:\n      - { name: d, batching: { max_batch_size: ${n} }, model: { path: ./mlp.onnx } }\n`;
const status = async (s: Served) => (await s.get('/-/status')).body;

t.test('a real server: files written beside serve.yaml do not reload it; an edit after them does, once', async (t) => {
    const root = folder({ 'mlp.onnx': mlp });
    const file = path.join(root, 'serve.yaml');
    const s = await serve(root, small(1));
    t.teardown(() => s.stop());
    // serve.yaml written again as it is, until its look is logged: the watcher is up
    await retried(() => fs.writeFileSync(file, small(1)), () => /reload \(file change\): no change/.test(s.output()), () => `a first look:\n${s.output()}`);
    const mark = s.output().length;
    for (let i = 0; i < 10; i++) {
        fs.appendFileSync(path.join(root, 'tsserve.log'), `line ${i}\n`);
        fs.writeFileSync(path.join(root, '.serve.yaml.swp'), small(i));
        fs.writeFileSync(path.join(root, 'notes.txt'), `note ${i}`);
    }
    fs.rmSync(path.join(root, '.serve.yaml.swp'));
    // That no look follows is only seen by waiting: the watcher's debounce (150 ms) and a look are long over by then.
    await sleep(1000);
    t.equal((await status(s)).config.reloads, 0, 'no reload');
    t.notMatch(s.output().slice(mark), /reload/, 'not even a look: nothing logged');

    fs.writeFileSync(file, small(2));
    await until(async () => (await status(s)).config.reloads === 1, { what: () => `the edit's reload:\n${s.output()}` });
    t.match((await status(s)).config.last_reload, { result: 'applied', changes: { updated: ['s/d'] } });
    t.equal(s.output().slice(mark).match(/reload \(/g)?.length, 1, 'one look, for the edit');
});

t.test('a real server logging into the folder of its serve.yaml reloads once per edit, not for its own log', async (t) => {
    const root = folder({ 'mlp.onnx': mlp, 'serve.yaml': small(1) });
    const file = path.join(root, 'serve.yaml');
    const logFile = path.join(root, 'tsserve.log');
    // `tsserve up serve.yaml >> tsserve.log`, in the folder of serve.yaml
    const fd = fs.openSync(logFile, 'a');
    const proc = spawn(process.execPath, [...process.execArgv, cli, 'up', file, '--port', '0'], { stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    const reap = () => proc.kill('SIGKILL');
    process.once('exit', reap);
    const exited = once(proc, 'exit');
    t.teardown(async () => {
        proc.kill('SIGTERM');
        await exited;
        process.off('exit', reap);
    });
    const output = () => fs.readFileSync(logFile, 'utf8');
    const [, url] = await until(() => output().match(/listening on (http:\/\/\S+)/), { what: () => `the server listening:\n${output()}`, timeoutMs: 120000 });
    // the listener is bound first; the replica then loads
    await until(() => /start-up complete/.test(output()), { what: () => `the start-up over:\n${output()}`, timeoutMs: 120000 });
    const reloads = async () => ((await (await fetch(`${url}/-/status`)).json()) as Status).config.reloads;
    const looks = () => output().match(/reload \(/g)?.length;

    t.equal(await reloads(), 0, 'up, and answering');

    // A look that finds no change (SIGHUP) logs a line: with a watch that any write sets off, that line is a change,
    // whose look logs another, and so on forever.
    proc.kill('SIGHUP');
    await until(() => /reload \(SIGHUP\): no change/.test(output()), { what: () => `the SIGHUP's look:\n${output()}` });
    // That no look follows is only seen by waiting: one would come within the watcher's debounce (150 ms) of the line.
    await sleep(1500);
    t.equal(looks(), 1, 'the look SIGHUP asked for, and no other');

    fs.writeFileSync(file, small(2));
    await until(async () => await reloads() === 1, { what: () => `the edit's reload:\n${output()}` });
    // again, only waiting shows that no look follows the reload's own lines
    await sleep(1500);
    t.equal(await reloads(), 1, 'one reload, and no other');
    t.equal(looks(), 2, 'one look more, for the edit: the log\'s own lines are no change');
});

t.test('a real server: once a valid file follows a refused one, /-/status shows it applied and the refusal is gone', async (t) => {
    const root = folder({ 'mlp.onnx': mlp });
    const file = path.join(root, 'serve.yaml');
    const s = await serve(root, small(1));
    t.teardown(() => s.stop());
    const refusal = /num_replicas/;
    const reloaded = async (n: number) => {
        await until(async () => (await status(s)).config.reloads === n, { what: () => `reload ${n}:\n${s.output()}` });
        return (await status(s)).config;
    };

    fs.writeFileSync(file, small(1).replace('name: d,', 'name: d, num_replicas: -2,'));
    t.match((await reloaded(1)).last_reload, { result: 'invalid', errors: [/num_replicas: .* must be greater than or equal to 1/] });
    // the running version's own file put back
    fs.writeFileSync(file, small(1));
    let config = await reloaded(2);
    t.match(config.last_reload, { result: 'applied', errors: [], changes: { unchanged: ['s/d'] } });
    t.notMatch(JSON.stringify(config), refusal, 'no trace of the refused file in /-/status\'s config');

    // a new valid file, after another refused one
    fs.writeFileSync(file, small(1).replace('name: d,', 'name: d, num_replicas: -2,'));
    t.match((await reloaded(3)).last_reload, { result: 'invalid' });
    fs.writeFileSync(file, small(2));
    config = await reloaded(4);
    t.match(config.last_reload, { result: 'applied', errors: [], changes: { updated: ['s/d'] } });
    t.notMatch(JSON.stringify(config), refusal, 'no trace of the refused file in /-/status\'s config');
});

/** A small serve.yaml for the in-process watcher: one deployment of mlp.onnx with n replicas. */
const replicasOf = (n: number) => `applications:\n  - name: a\n    deployments:\n      - { name: d, num_replicas: ${n}, model: { path: ./mlp.onnx } }\n`;

t.test('a save while a look hashes the models is the next look\'s to apply, not taken for the running file', async (t) => {
    const root = folder({ 'mlp.onnx': mlp, 'serve.yaml': replicasOf(1) });
    const file = path.join(root, 'serve.yaml');
    const applied: Array<number | 'auto'> = [];
    const controller = { apply: async (c: ServeConfig) => (applied.push(c.applications[0].deployments[0].num_replicas), nothing()) } as unknown as Controller;
    // the save of 3 comes while the look that read 2 hashes the model (made to happen there by the cache itself)
    let save: (() => void) | undefined;
    const digests = new (class extends DigestCache {
        override async digest(f: string): Promise<string> {
            const digest = await super.digest(f);
            save?.();
            save = undefined;
            return digest;
        }
    })();
    const saved = { ...log };
    log.info = log.warn = log.error = () => {};
    t.teardown(() => {
        Object.assign(log, saved);
    });
    const watcher = new ConfigWatcher(file, controller, digests);
    await watcher.start(load(file));
    // no watch: the looks are asked for here, one for each save
    await watcher.close();
    fs.writeFileSync(file, replicasOf(2));
    save = () => fs.writeFileSync(file, replicasOf(3));
    t.match(await watcher.reload('test'), { result: 'applied' }, 'the look at 2');
    t.match(await watcher.reload('test'), { result: 'applied' }, 'the look at 3');
    t.same(applied, [1, 2, 3], 'each file applied, the last one included');
});

t.test('a file saved or removed while the first version starts, before the watch is up, is looked at once it is', async (t) => {
    const root = folder({ 'mlp.onnx': mlp });
    const file = path.join(root, 'serve.yaml');
    const saved = { ...log };
    log.info = log.warn = log.error = () => {};
    t.teardown(() => {
        Object.assign(log, saved);
    });
    for (const [what, during, want] of [
        ['saved', () => fs.writeFileSync(file, replicasOf(2)), { result: 'applied', errors: [] }],
        ['removed', () => fs.rmSync(file), { result: 'invalid', errors: [/^cannot read file: ENOENT/] }]
    ] as const) {
        fs.writeFileSync(file, replicasOf(1));
        let applied = 0;
        const controller = { apply: async () => {
            if (!applied++) {
                during();
            }
            return nothing();
        } } as unknown as Controller;
        const watcher = new ConfigWatcher(file, controller);
        const { config, text } = loadFile(file);
        await watcher.start(config, text);
        await until(() => watcher.reloads === 1, { what: `the look at the file ${what} as the server started` });
        t.match(watcher.last, { trigger: 'file change', ...want }, `the file ${what} as the server started: looked at`);
        await watcher.close();
    }
});
