// The log: one record a line on stdout, through pino. JSON (one object a line: what production sees, and what a log
// pipeline reads) or TEXT (time, level, message, then the fields as key=value, for a person: the default on a
// terminal). logging_config in serve.yaml sets the encoding, the level and the access log (lib/access-log.ts), live.
import pino from 'pino';
import { LineBatch } from './log-batch';
import type { LoggingConfig } from '../schemas/serve';

export type Fields = Record<string, unknown>;

/** serve.yaml's level names (Ray Serve's, Python's) in pino's */
const levels = { DEBUG: 'debug', INFO: 'info', WARNING: 'warn', ERROR: 'error', CRITICAL: 'fatal' } as const;

// Access-log lines, one per request, are batched (lib/log-batch.ts); any other record leaves at once, after the lines
// that wait (their order is kept), so that what happens to the server is seen when it happens. SonicBoom writes them
// (partial writes, a full pipe) and pino flushes it at exit. What waits in the batch goes to it first: this exit
// handler is registered before pino's.
const batch = new LineBatch((chunk) => out.write(chunk));
process.on('exit', () => batch.flush());
const out = pino.destination({ dest: 1, sync: false });
/** TEXT rather than JSON */
let text = process.stdout.isTTY === true;
let accessOn = true;

/** A JSON record as a line for a person: `<ISO time> <LEVEL> <msg> key=value ...`; an error's stack stays on the line. */
export function toText(line: string): string {
    const { time, level, msg, ...fields } = JSON.parse(line) as Fields & { time: number; level: string; msg?: string };
    let s = `${new Date(time).toISOString()} ${level.toUpperCase().padEnd(5)} ${msg ?? ''}`;
    for (const [k, v] of Object.entries(fields)) {
        const value = typeof v === 'object' && v !== null && 'stack' in v ? (v as { stack: string }).stack : v;
        s += ` ${k}=${typeof value === 'string' && /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value)}`;
    }
    return `${s}\n`;
}

const root = pino({
    base: undefined,
    level: 'info',
    formatters: { level: (label) => ({ level: label }) }
}, {
    write: (line: string) => {
        batch.write(text ? toText(line) : line);
        batch.flush();
    }
});
/** the root, or its child carrying this process's fields (bindLogs()) */
let logger: pino.Logger = root;

/** Every record this process writes from now on carries `fields` (a replica's application, deployment and replica). */
export function bindLogs(fields: Fields): void {
    logger = root.child(fields);
}

/** Applies a logging_config: encoding (absent: TEXT on a terminal, else JSON), level and access log. */
export function configureLogging(config: LoggingConfig = {}): void {
    text = config.encoding ? config.encoding === 'TEXT' : process.stdout.isTTY === true;
    logger.level = root.level = levels[config.log_level ?? 'INFO'];
    accessOn = config.enable_access_log ?? true;
}

/**
 * Whether access-log lines are written: logging_config.enable_access_log (`on`, a deployment's own, else the top
 * level's), and info records written at all.
 */
export function accessLogOn(on = accessOn): boolean {
    return on && logger.isLevelEnabled('info');
}

/**
 * Writes an info record made by the caller: `fields` is its fields as JSON, without the braces (`"a":1,"b":"x"`). The
 * line is the one pino would write for them, with no generic serializer on the way: the access log writes one per
 * request (lib/access-log.ts), and it waits up to 50 ms for others like it. Only for a process that binds no fields
 * (the front).
 */
export function writeInfo(fields: string, msg: string): void {
    const line = `{"level":"info","time":${Date.now()},${fields},"msg":${JSON.stringify(msg)}}\n`;
    batch.write(text ? toText(line) : line);
}

/** Writes a record; `fields` (a request's id, an error as `err`, ...) go into it as they are. */
const at = (level: 'debug' | 'info' | 'warn' | 'error') => (msg: string, fields?: Fields): void => {
    fields ? logger[level](fields, msg) : logger[level](msg);
};

export const log = {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error')
};
