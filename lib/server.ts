// The running appliance: serve.yaml -> HTTP listener -> controller; live reloads; a graceful exit on SIGTERM/SIGINT.
// The listener is bound first: /-/healthz answers while the models load, /-/ready once each deployment has a replica
// running, and a model request that comes meanwhile waits for its deployment (lib/deployment.ts, handle()).
import path from 'node:path';
import type { ServerResponse } from 'node:http';
import type Hapi from '@hapi/hapi';
import { loadFile } from './config';
import { Controller } from './controller';
import { createServer } from './http';
import { ConfigWatcher } from './watcher';
import { log } from './log';
import { leaveNote, removeNote } from './discovery';
import type { Deployment } from './deployment';
import type { Replica } from './replica';

export interface UpOptions {
    port?: number;
    host?: string;
}

export interface Appliance {
    controller: Controller;
    watcher: ConfigWatcher;
    server: Hapi.Server;
    url: string;
    /**
     * Resolves once each deployment has a replica running or has failed its first start (the summary of routes is
     * logged then); rejects if the config cannot be applied (a model file gone since it was validated, say).
     */
    started: Promise<void>;
    stop(): Promise<void>;
}

const seconds = (ms: number): string => (ms / 1000).toFixed(2);

/**
 * Loads and validates the file (throws ConfigError before anything starts), binds the listener, then starts the
 * deployments, logging their progress; resolves once the listener is bound.
 */
export async function up(file: string, overrides: UpOptions = {}): Promise<Appliance> {
    const abs = path.resolve(file);
    const { config, text } = loadFile(abs);
    const http = { ...config.http_options, ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) };
    const controller = new Controller();
    const watcher = new ConfigWatcher(abs, controller);
    const server = createServer(controller, watcher, {
        host: http.host, port: http.port, requestTimeoutMs: http.request_timeout_s * 1000, maxBytes: Math.round(http.max_body_size_mb * 1024 * 1024)
    });
    // Requests not answered yet, whatever their route: the listener stays open for them on shutdown (stop()). One that
    // sends `Expect: 100-continue` (curl's, with a large body) comes as 'checkContinue', not 'request': hapi takes both.
    let inflight = 0;
    let idle = () => {};
    const track = (_req: unknown, res: ServerResponse) => {
        inflight++;
        res.once('close', () => {
            if (--inflight === 0) {
                idle();
            }
        });
    };
    server.listener.on('request', track);
    server.listener.on('checkContinue', track);
    await server.start();
    const url = `http://${http.host}:${server.info.port}`;
    leaveNote(abs, url);
    log.info(`tsserve listening on ${url} (OpenAPI at ${url}/openapi.json, docs at ${url}/docs); watching ${abs} for changes`);
    const deployments = config.applications.reduce((n, a) => n + a.deployments.length, 0);
    log.info(`starting ${deployments} deployment(s) of ${config.applications.length} application(s) from ${file}; /-/ready answers 200 once each has a replica running`);
    const began = performance.now();
    const progress = new Map<Deployment, (r: Replica, ready: boolean) => void>();
    void controller.published.then(() => {
        for (const d of controller.deployments.values()) {
            // per deployment: replicas ready out of wanted, and how long since the start-up began
            const report = (r: Replica, ready: boolean) => {
                const running = `${d.id}: ${d.replicas.filter((x) => x.state === 'RUNNING').length}/${d.config.num_replicas} replica(s) ready`;
                const after = seconds(performance.now() - began);
                if (ready) {
                    log.info(`${running} (${r.spec.id} loaded in ${after}s)`);
                }
                else {
                    log.warn(`${running} (${r.spec.id} failed after ${after}s: ${r.lastError}; retried with backoff)`);
                }
            };
            d.events.on('replica', report);
            progress.set(d, report);
        }
    });
    /** no progress lines once the start-up is over, or once shutting down */
    const quiet = () => {
        for (const [d, report] of progress) {
            d.events.off('replica', report);
        }
        progress.clear();
    };
    const started = watcher.start(config, text).then(() => {
        quiet();
        const why = controller.unready();
        const deps = [...controller.deployments.values()];
        const down = deps.filter((d) => why[d.id]);
        log.info(`start-up complete in ${seconds(performance.now() - began)}s: ${deps.length - down.length}/${deps.length} deployment(s) ready`
            + (down.length ? `; not ready: ${down.map((d) => `${d.id} (${why[d.id]})`).join(', ')}` : ''));
        for (const r of [...controller.routes.values()].flatMap((m) => [...m.values()])) {
            log.info(`  ${r.method} ${url}${r.path} -> ${r.deployment.id}`);
        }
        log.info(`  docs: ${url}/docs, OpenAPI: ${url}/openapi.json, status: ${url}/-/status`);
    });
    started.catch((err: Error) => log.error(`start-up failed: ${err.message}`));
    let stopping: Promise<void> | undefined;
    const stop = () => stopping ??= (async () => {
        // Not ready from now on, so that a load balancer sends no new work while what is in flight drains.
        controller.draining = true;
        quiet();
        const grace = Math.max(0, ...[...controller.deployments.values()].map((d) => d.config.graceful_shutdown_timeout_s)) * 1000;
        log.info(`shutting down: /-/ready answers 503; finishing requests in flight (up to ${grace / 1000}s)`);
        await watcher.close();
        // While requests are in flight (up to half the grace period), the listener still takes new ones: /-/ready
        // answers 503 there, and a client that has not seen it yet is still served. Then it closes, and the requests
        // still in flight have the rest of the grace period.
        const since = performance.now();
        if (inflight) {
            await new Promise<void>((resolve) => {
                const timer = setTimeout(resolve, grace / 2);
                idle = () => {
                    clearTimeout(timer);
                    resolve();
                };
            });
        }
        await server.stop({ timeout: Math.max(0, grace - (performance.now() - since)) });
        await controller.stop();
        removeNote(abs);
        log.info('stopped');
    })();
    return { controller, watcher, server, url, started, stop };
}
