// tsserve's own version, from package.json (shown by `tsserve --version` and in /openapi.json).
import fs from 'node:fs';
import path from 'node:path';

/** package.json sits two folders above this file, in the source tree (lib/) and in the build (dist/lib/) alike. */
function find(dir: string): string {
    const file = path.join(dir, 'package.json');
    return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version : find(path.dirname(dir));
}

export const version: string = find(__dirname);
