// The replica process: its model host (lib/model-host.ts), spoken to over the IPC channel its supervisor
// (lib/replica.ts) forked it with.
import { bindLogs, configureLogging, log } from './log';
import { ModelHost } from './model-host';
import { BulkReader } from './bulk';
import type { ToWorker, FromWorker, ReplicaSpec } from './messages';

const spec = JSON.parse(process.env.TSSERVE_REPLICA as string) as ReplicaSpec;
// Each line this process logs names its replica.
bindLogs({ application: spec.id.slice(0, spec.id.indexOf('/')), deployment: spec.name, replica: spec.id });
configureLogging(spec.logging_config);

// the bulk channel (lib/bulk.ts), file descriptor 4 (lib/replica.ts)
const bulk = new BulkReader(4);

const host = new ModelHost(spec, (msg: FromWorker) => {
    if (msg.type === 'failed') {
        // Exit once the message is handed over, so that the supervisor learns why.
        process.send?.(msg, () => process.exit(1));
        return;
    }
    process.send?.(msg);
    if (msg.type === 'result') {
        // (serialized as it was sent: its buffer may take the next batch's bytes)
        bulk.release(msg.id);
    }
}, log, () => {
    // Closing the channel flushes the answers already sent; 'disconnect' below then exits.
    process.disconnect();
});

process.on('message', (msg: ToWorker) => {
    if (msg.type === 'logging') {
        configureLogging(msg.logging_config);
        return;
    }
    if (msg.type === 'batch' && msg.bulk) {
        bulk.restore(msg.id, msg.items, msg.bulk, msg.bulk_bytes as number);
    }
    host.receive(msg);
});

// The supervisor is gone: nobody can receive our answers.
process.on('disconnect', () => process.exit(0));
