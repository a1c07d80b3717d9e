#!/usr/bin/env node
// The tsserve command: up, validate, status.
import { parseArgs } from 'node:util';
import path from 'node:path';
import { ConfigError, load } from './config';
import { checkModels } from './model-check';
import { address as discover } from './discovery';
import { up } from './server';
import { render, type Status } from './status';
import { log } from './log';
import { version } from './version';
import fs from 'node:fs';
import yaml from 'js-yaml';
import { manifests, render as renderManifests, type K8sOptions } from './k8s';

const usage = `Usage:
  tsserve up [file] [--port N] [--host H]   serve file (default ./serve.yaml); Ctrl-C drains and exits
  tsserve validate [file]                   check file; prints each error with its path, exits 1 if invalid
  tsserve status [file] [--address URL] [--json]
                                            show applications, deployments and replicas of the server of file
  tsserve reload [file] [--address URL]     re-read the served file now (as SIGHUP or a saved edit does)
                                            (the server is found by --address, else $TSSERVE_ADDRESS, else the
                                            note \`tsserve up file\` leaves, else http://127.0.0.1:8000; the key
                                            sent is $TSSERVE_ADMIN_KEY, else $TSSERVE_API_KEY, when set)
  tsserve k8s [file] [--image I] [--namespace N] [--autoscaler hpa|keda] [--prometheus URL]
                                            print Kubernetes manifests for file (ConfigMap, Deployment, Service,
                                            PodDisruptionBudget, ServiceMonitor, and a HorizontalPodAutoscaler or a
                                            KEDA ScaledObject); see README "Running on Kubernetes"
  tsserve --version                         print the version
`;

type Out = (s: string) => void;

/** The key status and reload send: $TSSERVE_ADMIN_KEY, else $TSSERVE_API_KEY, and which variable it came from. */
function adminKey(): { value: string; from: string } | undefined {
    for (const from of ['TSSERVE_ADMIN_KEY', 'TSSERVE_API_KEY']) {
        const value = process.env[from]?.trim();
        if (value) {
            return { value, from };
        }
    }
    return undefined;
}

export async function main(argv: string[], out: Out = (s) => process.stdout.write(s), err: Out = (s) => process.stderr.write(s)): Promise<number> {
    let parsed;
    try {
        parsed = parseArgs({
            args: argv, allowPositionals: true, strict: true,
            options: {
                port: { type: 'string' }, host: { type: 'string' }, address: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' },
                image: { type: 'string' }, namespace: { type: 'string' }, autoscaler: { type: 'string' }, prometheus: { type: 'string' }
            }
        });
    }
    catch (e) {
        err(`${(e as Error).message}\n${usage}`);
        return 2;
    }
    const { values, positionals: [command, file = 'serve.yaml'] } = parsed;
    if (values.help) {
        out(usage);
        return 0;
    }
    if (values.version) {
        out(`tsserve ${version}\n`);
        return 0;
    }
    try {
        switch (command) {
            case 'validate': {
                const config = load(file);
                const issues = await checkModels(config, path.dirname(path.resolve(file)));
                if (issues.length) {
                    throw new ConfigError(path.resolve(file), issues);
                }
                const n = config.applications.reduce((a, app) => a + app.deployments.length, 0);
                out(`${file} is valid: ${config.applications.length} application(s), ${n} deployment(s)\n`);
                return 0;
            }
            case 'k8s': {
                if (values.autoscaler !== undefined && values.autoscaler !== 'hpa' && values.autoscaler !== 'keda') {
                    err(`--autoscaler must be hpa or keda, got "${values.autoscaler}"\n`);
                    return 2;
                }
                // the keys are the pod's, from a Secret: they need not be here
                const config = load(file, { keys: false });
                const options = { image: values.image, namespace: values.namespace, autoscaler: values.autoscaler as K8sOptions['autoscaler'], prometheus: values.prometheus };
                const list = manifests(config, yaml.load(fs.readFileSync(file, 'utf8')), options);
                const flags = Object.entries(options).flatMap(([k, v]) => v === undefined ? [] : [`--${k} ${v}`]);
                out(renderManifests(list, [path.basename(file), ...flags].join(' ')));
                return 0;
            }
            case 'up': {
                const port = values.port === undefined ? undefined : Number(values.port);
                if (port !== undefined && !(/^\d+$/.test(values.port as string) && port < 65536)) {
                    err(`--port must be an integer from 0 to 65535, got "${values.port}"\n`);
                    return 2;
                }
                // resolves once the listener is bound; the deployments start after it (see lib/server.ts)
                const app = await up(file, { port, host: values.host });
                return await new Promise<number>((resolve) => {
                    const onSignal = (signal: string) => {
                        log.info(`${signal} received`);
                        app.stop().then(() => resolve(0));
                    };
                    // a config that cannot be applied after all (its error is logged): stop and exit 1
                    app.started.catch(() => app.stop().then(() => resolve(1)));
                    process.once('SIGINT', onSignal);
                    process.once('SIGTERM', onSignal);
                    process.on('SIGHUP', () => app.watcher.reload('SIGHUP'));
                });
            }
            case 'status':
            case 'reload': {
                const address = discover(values.address, file);
                const key = adminKey();
                if (key && !/^[\x21-\x7e]+$/.test(key.value)) {
                    err(`$${key.from} holds a character a key cannot have (a key is visible ASCII, without spaces)\n`);
                    return 1;
                }
                let res: Response;
                try {
                    res = await fetch(`${address}/-/${command}`, { method: command === 'status' ? 'GET' : 'POST', headers: key ? { authorization: `Bearer ${key.value}` } : {} });
                }
                catch (e) {
                    err(`cannot reach tsserve at ${address}: ${((e as Error).cause as Error)?.message ?? (e as Error).message}\n`);
                    return 1;
                }
                const body = await res.text();
                let answer: Status & { result?: string };
                try {
                    answer = JSON.parse(body);
                }
                catch {
                    err(`${address} is not a tsserve admin address: /-/${command} answered ${res.status} with ${JSON.stringify(body.slice(0, 80))}\n`);
                    return 1;
                }
                if (res.status === 401 || res.status === 403) {
                    const said = (answer as unknown as { message?: unknown }).message;
                    const hint = !key ? 'set TSSERVE_ADMIN_KEY (or TSSERVE_API_KEY) to one of its keys'
                        : res.status === 401 ? `the key in $${key.from} is not one of its keys` : `set TSSERVE_ADMIN_KEY to one of its admin keys`;
                    err(`tsserve at ${address} refused /-/${command} (${res.status}): ${typeof said === 'string' ? said : 'no reason given'}\n${hint}\n`);
                    return 1;
                }
                out(values.json || command === 'reload' ? JSON.stringify(answer, null, 2) + '\n' : render(answer));
                return answer.result === 'invalid' ? 1 : 0;
            }
            default:
                err(usage);
                return 2;
        }
    }
    catch (e) {
        if (e instanceof ConfigError) {
            err(e.message + '\n');
            return 1;
        }
        throw e;
    }
}

if (require.main === module) {
    main(process.argv.slice(2)).then((code) => process.exit(code), (e: Error) => {
        process.stderr.write(`tsserve: ${e.stack}\n`);
        process.exit(1);
    });
}
