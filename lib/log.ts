// One line per event, with time and level, on stdout (what `tsserve up` shows an operator).
type Level = 'info' | 'warn' | 'error';

function write(level: Level, msg: string): void {
    process.stdout.write(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${msg}\n`);
}

export const log = {
    info: (msg: string) => write('info', msg),
    warn: (msg: string) => write('warn', msg),
    error: (msg: string) => write('error', msg)
};
