// An in-process replica (a deployment's `in_process: true`): its model host (lib/model-host.ts) runs in the front
// process, and acts towards its supervisor (lib/replica.ts) as a forked worker would, so that batching, the hang
// clock, health checks, restarts, calls and metrics work as they do for a process. What it saves is the hop: no
// serialization, no pipe, no second event loop to wake. What it gives up is isolation, as Triton's in-process backends
// do: a model or handler that crashes the process takes tsserve down, and a batch that hangs cannot be killed (its
// replica is replaced, and its requests retried elsewhere, but whatever hangs stays where it is).
import { EventEmitter } from 'node:events';
import { log, type Fields } from './log';
import { ModelHost } from './model-host';
import type { FromWorker, ReplicaSpec, ToWorker } from './messages';
import type { ReplicaChild } from './replica';

export class InProcess extends EventEmitter implements ReplicaChild {
    readonly pid = process.pid;
    connected = true;
    private readonly host: ModelHost;

    constructor(spec: ReplicaSpec, fields: Fields) {
        super();
        // as a replica process is started (lib/replica.ts), unless the operator opted in
        process.env.ORT_DISABLE_TELEMETRY ??= '1';
        // Its records carry its replica's fields, as a replica process's do.
        const logs = { warn: (msg: string, f?: Fields) => log.warn(msg, { ...fields, ...f }), error: (msg: string, f?: Fields) => log.error(msg, { ...fields, ...f }) };
        this.host = new ModelHost(spec, (msg) => this.deliver(msg), logs, () => this.exit(0, null));
    }

    /**
     * A message to the supervisor arrives on a later tick, as one over a channel would: never within the send() that
     * caused it (a ping's pong, say), whose caller has not finished. Nothing arrives once it has exited.
     */
    private deliver(msg: FromWorker): void {
        process.nextTick(() => {
            if (this.connected) {
                this.emit('message', msg);
                if (msg.type === 'failed') {
                    // a replica process whose model failed to load exits (lib/worker.ts)
                    this.exit(1, null);
                }
            }
        });
    }

    /** (Its supervisor sends nothing once it has heard it exit, which follows kill() and the stop at once.) */
    send(msg: ToWorker): boolean {
        // Log records go to the front's log, whose logging_config is the top level's.
        if (msg.type !== 'logging') {
            this.host.receive(msg);
        }
        return true;
    }

    /** Its "process" ends: the supervisor hears it exit, and what it says from now on goes nowhere. */
    kill(signal: NodeJS.Signals): boolean {
        this.exit(null, signal);
        return true;
    }

    private exit(code: number | null, signal: NodeJS.Signals | null): void {
        if (this.connected) {
            this.connected = false;
            this.host.release();
            process.nextTick(() => this.emit('exit', code, signal));
        }
    }
}
