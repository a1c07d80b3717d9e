// How `tsserve status` and `reload` find a server started with --port: the note `tsserve up` leaves, and what wins over it.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { address, defaultAddress, leaveNote, noteFile, removeNote } from '../lib/discovery';
import { app, fixtures, run, serve } from './helpers';

const dir = fixtures();
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

t.test('--address, then TSSERVE_ADDRESS, then a live note, then the default', async (t) => {
    const config = path.join(dir, 'noted.yaml');
    const saved = process.env.TSSERVE_ADDRESS;
    t.teardown(() => {
        // process.env keeps strings only: assigning undefined would set "undefined".
        if (saved !== undefined) {
            process.env.TSSERVE_ADDRESS = saved;
        }
        removeNote(config);
    });
    delete process.env.TSSERVE_ADDRESS;
    t.equal(address(undefined, config), defaultAddress, 'no note');
    leaveNote(config, 'http://127.0.0.1:1234');
    t.equal(address(undefined, config), 'http://127.0.0.1:1234', 'the note of a live process');
    t.equal(address(undefined, path.relative(process.cwd(), config)), 'http://127.0.0.1:1234', 'the same file named relative to the working folder');
    process.env.TSSERVE_ADDRESS = 'http://127.0.0.2:9';
    t.equal(address(undefined, config), 'http://127.0.0.2:9', 'TSSERVE_ADDRESS wins over the note');
    t.equal(address('http://127.0.0.3:7', config), 'http://127.0.0.3:7', '--address wins over both');
    delete process.env.TSSERVE_ADDRESS;

    // A note whose process is gone (killed -9, say) is not believed.
    fs.writeFileSync(noteFile(config), JSON.stringify({ url: 'http://127.0.0.1:1', pid: 2 ** 22 + 1, config }));
    t.equal(address(undefined, config), defaultAddress, 'a dead process\'s note');
    removeNote(config);
    t.ok(fs.existsSync(noteFile(config)), 'another process\'s note is not removed');
    fs.writeFileSync(noteFile(config), 'not json');
    t.equal(address(undefined, config), defaultAddress, 'a garbled note');
});

t.test('a server on --port 0: status and reload find it, /-/status says its port, the note goes when it stops', async (t) => {
    const s = await serve(dir, `applications:\n${app('mlp', 'mlp.onnx')}`, 'found.yaml');
    const config = path.join(dir, 'found.yaml');
    const port = Number(new URL(s.url).port);
    t.not(port, 8000);
    const status = (await s.get('/-/status')).body;
    t.equal(status.http_options.port, port, '/-/status: the port it listens on, not serve.yaml\'s');
    t.equal(status.http_options.request_timeout_s, 30);
    t.equal(status.http_options.max_body_size_mb, 16);

    const shown = await run(['status', 'found.yaml', '--json'], dir);
    t.equal(shown.code, 0, shown.stderr);
    t.equal(JSON.parse(shown.stdout).http_options.port, port, 'tsserve status <file>, run from its folder, reaches it');
    const reloaded = await run(['reload', config]);
    t.equal(reloaded.code, 0, reloaded.stderr);
    t.equal(JSON.parse(reloaded.stdout).result, 'unchanged');

    t.equal(await s.stop(), 0);
    t.notOk(fs.existsSync(noteFile(config)), 'the note is removed on a clean stop');
});
