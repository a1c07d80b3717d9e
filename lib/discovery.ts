// How `tsserve status` and `tsserve reload` find a running server without being told its address. `tsserve up` leaves
// a note of the address it listens on, named after the config file's path, in the user's runtime folder (not beside
// serve.yaml, whose folder is watched and may be a read-only ConfigMap), and removes it when it stops.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { alive } from './alive';

/** The address used when nothing else says: serve.yaml's default host and port. */
export const defaultAddress = 'http://127.0.0.1:8000';

interface Note {
    url: string;
    pid: number;
    config: string;
}

const folder = (): string => path.join(process.env.XDG_RUNTIME_DIR || os.tmpdir(), `tsserve-${os.userInfo().uid}`);

/** The note of the server started on `config` (a path; resolved against the working folder). */
export function noteFile(config: string): string {
    const key = crypto.createHash('sha256').update(path.resolve(config)).digest('hex').slice(0, 16);
    return path.join(folder(), `${key}.json`);
}

/** Says where this process serves `config`. */
export function leaveNote(config: string, url: string): void {
    fs.mkdirSync(folder(), { recursive: true, mode: 0o700 });
    const note: Note = { url, pid: process.pid, config: path.resolve(config) };
    fs.writeFileSync(noteFile(config), JSON.stringify(note));
}

function read(config: string): Note | undefined {
    try {
        return JSON.parse(fs.readFileSync(noteFile(config), 'utf8')) as Note;
    }
    catch {
        return undefined;
    }
}

/** Removes this process's note (a later server on the same file may have written its own since: that one stays). */
export function removeNote(config: string): void {
    if (read(config)?.pid === process.pid) {
        fs.rmSync(noteFile(config), { force: true });
    }
}

/** Where to reach the server of `config`: --address, else TSSERVE_ADDRESS, else its note (if its process lives), else the default. */
export function address(explicit: string | undefined, config: string): string {
    const note = read(config);
    return explicit ?? (process.env.TSSERVE_ADDRESS || undefined) ?? (note && alive(note.pid) ? note.url : undefined) ?? defaultAddress;
}
