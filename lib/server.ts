// The running appliance: serve.yaml -> controller -> HTTP listener; live reloads; a graceful exit on SIGTERM/SIGINT.
import path from 'node:path';
import type Hapi from '@hapi/hapi';
import { loadFile } from './config';
import { Controller } from './controller';
import { createServer } from './http';
import { ConfigWatcher } from './watcher';
import { log } from './log';
import { leaveNote, removeNote } from './discovery';

export interface UpOptions {
    port?: number;
    host?: string;
}

export interface Appliance {
    controller: Controller;
    watcher: ConfigWatcher;
    server: Hapi.Server;
    url: string;
    stop(): Promise<void>;
}

/** Loads and validates the file (throws ConfigError before anything starts), then starts everything. */
export async function up(file: string, overrides: UpOptions = {}): Promise<Appliance> {
    const abs = path.resolve(file);
    const { config, text } = loadFile(abs);
    const http = { ...config.http_options, ...Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) };
    const controller = new Controller();
    const watcher = new ConfigWatcher(abs, controller);
    log.info(`starting ${config.applications.length} application(s) from ${file}`);
    await watcher.start(config, text);
    log.info(`${controller.deployments.size} deployment(s) started: ${[...controller.deployments.values()].map((d) => `${d.id} ${d.status().status}`).join(', ')}`);
    const server = createServer(controller, watcher, {
        host: http.host, port: http.port, requestTimeoutMs: http.request_timeout_s * 1000, maxBytes: Math.round(http.max_body_size_mb * 1024 * 1024)
    });
    await server.start();
    const url = `http://${http.host}:${server.info.port}`;
    leaveNote(abs, url);
    log.info(`tsserve listening on ${url} (OpenAPI at ${url}/openapi.json, docs at ${url}/docs); watching ${abs} for changes`);
    let stopping: Promise<void> | undefined;
    const stop = () => stopping ??= (async () => {
        const grace = Math.max(...[...controller.deployments.values()].map((d) => d.config.graceful_shutdown_timeout_s)) * 1000;
        log.info(`shutting down: finishing requests in flight (up to ${grace / 1000}s)`);
        await watcher.close();
        await server.stop({ timeout: grace });
        await controller.stop();
        removeNote(abs);
        log.info('stopped');
    })();
    return { controller, watcher, server, url, stop };
}
