// The machine's CPU budget: the CPUs (resources.cpus) that replicas may take together. The autoscaler grows a
// deployment only within it; the replicas it wants beyond it stay pending (lib/deployment.ts).
import os from 'node:os';
import type { DeploymentConfig, ServeConfig } from '../schemas/serve';

/** What takes CPUs from the budget: a deployment, by its replicas. */
export interface CpuUser {
    readonly cpusTaken: number;
}

export class CpuBudget {
    /** set from serve.yaml on each apply (cpuBudget()) */
    limit = Infinity;
    private readonly users = new Set<CpuUser>();

    join(user: CpuUser): void {
        this.users.add(user);
    }

    leave(user: CpuUser): void {
        this.users.delete(user);
    }

    get used(): number {
        let n = 0;
        for (const u of this.users) {
            n += u.cpusTaken;
        }
        return n;
    }

    /** CPUs not taken yet (negative when fixed replicas alone take more) */
    get room(): number {
        return this.limit - this.used;
    }
}

/** The replicas serve.yaml asks a deployment for: num_replicas, or its autoscaling_config's initial_replicas (else min_replicas). */
export function configuredReplicas(d: DeploymentConfig): number {
    const a = d.autoscaling_config;
    return a ? a.initial_replicas ?? a.min_replicas : d.num_replicas as number;
}

/** The CPUs the replicas serve.yaml asks for take together. */
export function configuredCpus(config: ServeConfig): number {
    return config.applications.flatMap((a) => a.deployments).reduce((n, d) => n + configuredReplicas(d) * d.resources.cpus, 0);
}

/** The budget: max_cpus, else the machine's cores or what the configured replicas take, whichever is larger. */
export function cpuBudget(config: ServeConfig, cores = os.availableParallelism()): number {
    return config.max_cpus ?? Math.max(cores, configuredCpus(config));
}
