// The access log: one line per request, once it is answered (lib/http.ts; lib/shed.ts for a refusal before hapi).
import { accessLogOn, writeInfo } from './log';

/** A request's bytes in, as its Content-Length declares them (a chunked body's are not counted: 0). */
export const bytesIn = (contentLength: string | undefined): number => contentLength === undefined ? 0 : Number(contentLength);

/**
 * Logs one answered request, if the access log is on: logging_config.enable_access_log, the deployment's own when the
 * request was for one (`on`), else the top level's. Times in ms; queueMs and batchRows only for a request that a batch
 * answered.
 */
export function logAccess(
    on: boolean | undefined, requestId: string, method: string, path: string, application: string | undefined, deployment: string | undefined,
    status: number, bytesIn: number, bytesOut: number, totalMs: number, queueMs: number | undefined, batchRows: number | undefined
): void {
    if (accessLogOn(on)) {
        // pino's own line for these fields (undefined ones left out), built here: a generic serializer costs the front
        // ~10% of its throughput at one line per request
        const str = JSON.stringify;
        writeInfo(`"request_id":${str(requestId)},"method":${str(method)},"path":${str(path)}${application === undefined ? '' : `,"application":${str(application)},"deployment":${str(deployment)}`}`
            + `,"status":${status},"bytes_in":${bytesIn},"bytes_out":${bytesOut},"total_ms":${str(ms(totalMs))}${queueMs === undefined ? '' : `,"queue_ms":${str(ms(queueMs))}`}`
            + `${batchRows === undefined ? '' : `,"batch_size":${batchRows}`}`, `${method} ${path} ${status}`);
    }
}

/** ms to the µs */
const ms = (v: number) => Math.round(v * 1000) / 1000;
