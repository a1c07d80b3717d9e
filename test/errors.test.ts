// The error catalogue and the README's error table say the same: every code with its status, both ways.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { catalogue } from '../lib/errors';

/** The rows of the table under "## Errors": each code in the first column with the status in the same place of the second. */
function readmeCodes(): Map<string, number> {
    const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
    const section = readme.split(/^## Errors$/m)[1].split(/^## /m)[0];
    const codes = new Map<string, number>();
    for (const line of section.split('\n').filter((l) => /^\| `/.test(l))) {
        const [names, statuses] = line.split('|').slice(1, 3).map((cell) => cell.split('/').map((s) => s.trim()));
        names.forEach((name, i) => codes.set(name.replace(/`/g, ''), Number(statuses[statuses.length === 1 ? 0 : i])));
    }
    return codes;
}

t.test('every catalogue code is in the README table with its status, and the table has no other', async (t) => {
    const documented = readmeCodes();
    const catalogued = new Map(Object.entries(catalogue).map(([code, e]) => [code, e.status as number]));
    t.same([...documented.keys()].sort(), [...catalogued.keys()].sort(), 'the same codes');
    for (const [code, status] of catalogued) {
        t.equal(documented.get(code), status, `${code}: ${status}`);
    }
});
