// A paced load in its own process, for the ceiling of figure 3a (bench/run.ts): while the bench process runs
// onnxruntime flat out, a load generator inside it would be starved, so this one runs beside it.
// Usage: node build/bench/pace.js <url> <requests per second> <seconds> <body file> <headers as JSON>
import fs from 'node:fs';

const autocannon = require('autocannon');

const [url, rate, seconds, bodyFile, headers] = process.argv.slice(2);
autocannon({
    url, method: 'POST', headers: JSON.parse(headers), body: fs.readFileSync(bodyFile),
    connections: 32, overallRate: Number(rate), duration: Number(seconds), timeout: 30
}).then((r: { requests: { average: number }; non2xx: number }) => {
    process.stdout.write(`${JSON.stringify({ rps: r.requests.average, non2xx: r.non2xx })}\n`);
});
