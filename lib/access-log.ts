// The access log: one line per request, once it is answered (lib/http.ts; lib/shed.ts for a refusal before hapi).
import { accessLogOn, log } from './log';

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
        log.info(`${method} ${path} ${status}`, {
            request_id: requestId, method, path, application, deployment, status, bytes_in: bytesIn, bytes_out: bytesOut,
            total_ms: Math.round(totalMs * 1000) / 1000, queue_ms: queueMs === undefined ? undefined : Math.round(queueMs * 1000) / 1000, batch_size: batchRows
        });
    }
}
