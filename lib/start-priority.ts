// Start priority: a replica that a rolling update starts while the old version still serves takes its start-up (node's
// boot, requiring modules, loading the model, the warm-up run) at a low CPU priority, so that it does not take the
// cores from the requests being served; once ready, it serves at the normal one. Linux's nice value belongs to each
// thread, and a thread starts with its creator's: the main thread is lowered first (whatever it creates from then on
// starts low), then every thread the process already has (/proc/<pid>/task). Raising a priority back needs
// CAP_SYS_NICE. A process without it lowers nothing: a replica left at low priority for good would be worse than the
// slower start it spares. Elsewhere than Linux it does nothing.
import fs from 'node:fs';
import os from 'node:os';
import { log } from './log';

/** CAP_SYS_NICE's bit in the capability sets of /proc/<pid>/status */
const capSysNice = 23n;
/** how far below the server's own priority a starting replica runs */
const lowerBy = 10;

/**
 * Whether a /proc/<pid>/status text's effective capabilities (CapEff) hold CAP_SYS_NICE. Being root is not enough:
 * a container's root lacks it unless it is granted (Docker's default set leaves it out), and then a nice value cannot
 * be lowered again.
 */
export function hasSysNice(status: string): boolean {
    const hex = /^CapEff:\s*([0-9a-f]+)\s*$/im.exec(status)?.[1];
    return hex !== undefined && ((BigInt(`0x${hex}`) >> capSysNice) & 1n) === 1n;
}

/** What it is given to lower: a replica just started (its pid is set), which emits 'ready' and 'exit'. */
export interface Starting {
    readonly pid?: number;
    once(event: 'ready' | 'exit', listener: () => void): unknown;
    off(event: 'ready' | 'exit', listener: () => void): unknown;
}

export interface StartPriorityOptions {
    /** default: this process's */
    platform?: NodeJS.Platform;
    /** the text of /proc/self/status; read only on Linux */
    status?: () => string;
}

export class StartPriority {
    /** why replicas start at the normal priority, when they do (not Linux, no CAP_SYS_NICE); absent when they start low */
    readonly off?: string;
    /** the nice value of this process, which a replica forked from it has, and gets back once ready */
    private readonly normal = os.getPriority();
    /** the one a rolling update's replica starts at (19 is the lowest there is) */
    private readonly low = Math.min(19, this.normal + lowerBy);

    constructor({ platform = process.platform, status = () => fs.readFileSync('/proc/self/status', 'utf8') }: StartPriorityOptions = {}) {
        if (platform !== 'linux') {
            this.off = `not on Linux (${platform})`;
        }
        else if (!hasSysNice(status())) {
            this.off = 'this process lacks CAP_SYS_NICE, without which a lowered priority cannot be raised again';
            log.info(`a rolling update's new replicas start at the normal CPU priority: ${this.off}`);
        }
    }

    /**
     * Lowers `replica`, just started, until its 'ready', when it is raised back. A process that exits before then is
     * forgotten: its restart (Replica.start() again) is forked from this process, at the normal priority, and the pid
     * that was lowered is no longer its. A replica without a process of its own (an in-process one, whose pid is this
     * process's; or one whose fork failed) is left alone: lowering it would lower the server itself.
     */
    untilReady(replica: Starting): void {
        const pid = replica.pid;
        if (this.off || pid === undefined || pid === process.pid) {
            return;
        }
        this.set(pid, this.low);
        const ready = () => {
            replica.off('exit', exited);
            this.set(pid, this.normal);
        };
        const exited = () => replica.off('ready', ready);
        replica.once('ready', ready);
        replica.once('exit', exited);
    }

    /** Gives every thread of `pid` the nice value `nice`: the main thread first, for the threads it creates meanwhile. */
    private set(pid: number, nice: number): void {
        // A process or a thread that is gone (ESRCH, ENOENT) has no priority left to matter. (EACCES cannot come:
        // without CAP_SYS_NICE nothing is lowered, and with it anything may be raised.)
        const renice = (id: number | string): void => {
            try {
                os.setPriority(Number(id), nice);
            }
            catch {}
        };
        renice(pid);
        let threads: string[] = [];
        try {
            threads = fs.readdirSync(`/proc/${pid}/task`);
        }
        catch {}
        threads.forEach(renice);
    }
}

let shared: StartPriority | undefined;

/** This process's, made on first use (the first rolling update): its capability is looked up, and told, once. */
export const startPriority = (): StartPriority => shared ??= new StartPriority();
