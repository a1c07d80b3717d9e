// The autoscaling decision rule: Ray Serve's default policy (replica_queue_length_autoscaling_policy) over samples
// of a deployment's ongoing requests. Pure: samples and the time come in, a target replica count goes out; it starts
// and stops nothing (lib/deployment.ts does, within the CPU budget of lib/cpu-budget.ts).
import type { AutoscalingConfig } from '../schemas/serve';

/** The deployment's ongoing requests (queued at it, and in flight at its replicas) at a moment, in ms. */
export interface Sample {
    at: number;
    ongoing: number;
}

/** A change of the target: when (ms), from what to what, and why. */
export interface Decision {
    at: number;
    from: number;
    to: number;
    reason: string;
}

/** The replicas a deployment starts with: initial_replicas, else min_replicas. */
export const initialReplicas = (c: AutoscalingConfig): number => c.initial_replicas ?? c.min_replicas;

const clamp = (n: number, c: AutoscalingConfig): number => Math.min(c.max_replicas, Math.max(c.min_replicas, n));

/** ceil(), deaf to the last bits of a floating-point sum (a mean of 2s that comes out as 2.0000000000000004). */
const ceil = (x: number): number => Math.ceil(x - 1e-9);

/** The samples' mean, max or min (the samples are evenly spaced, so their mean is the time-weighted one). */
export function aggregate(samples: readonly Sample[], fn: AutoscalingConfig['aggregation_function']): number {
    const values = samples.map((s) => s.ongoing);
    return fn === 'max' ? Math.max(...values) : fn === 'min' ? Math.min(...values) : values.reduce((a, b) => a + b, 0) / values.length;
}

/**
 * Ray's desired count: the running replicas times the error ratio (ongoing per replica / target), the ratio's
 * distance from 1 scaled by upscaling_factor or downscaling_factor, rounded up, within [min_replicas, max_replicas].
 * When a small factor would hold the count where it is although the load alone would lower it, it goes down by one.
 */
export function desiredReplicas(c: AutoscalingConfig, ongoing: number, running: number): number {
    const ratio = ongoing / running / c.target_ongoing_requests;
    const factor = ratio >= 1 ? c.upscaling_factor : c.downscaling_factor;
    let desired = ceil(running * (1 + (ratio - 1) * factor));
    if (desired === running && ceil(running * ratio) < running) {
        desired--;
    }
    return clamp(desired, c);
}

/** One deployment's autoscaler: its samples, its target, and how long the load has pointed one way. */
export class Autoscaler {
    target: number;
    last?: Decision;
    /** the aggregated ongoing requests at the last decide() */
    ongoing = 0;
    private samples: Sample[] = [];
    /** which way the desired count has pointed at each decide() since `since` (ms) */
    private trend?: { up: boolean; since: number };

    constructor(public config: AutoscalingConfig, target = initialReplicas(config)) {
        this.target = clamp(target, config);
    }

    /** A sample; those older than look_back_period_s before it are dropped. */
    record(at: number, ongoing: number): void {
        this.samples.push({ at, ongoing });
        const from = at - this.config.look_back_period_s * 1000;
        while (this.samples[0].at <= from) {
            this.samples.shift();
        }
    }

    /** A new config, in place: the target stays where it is, within the new bounds. */
    reconfigure(config: AutoscalingConfig, at: number): Decision | undefined {
        this.config = config;
        return this.move(at, clamp(this.target, config), `autoscaling_config changed: min_replicas ${config.min_replicas}, max_replicas ${config.max_replicas}`);
    }

    /** A request for a deployment scaled to zero: replicas at once (Ray's scale from zero: ceil(upscaling_factor), at least 1). */
    wake(at: number): Decision | undefined {
        return this.target ? undefined : this.move(at, clamp(Math.max(1, ceil(this.config.upscaling_factor)), this.config), 'a request arrived while scaled to zero');
    }

    /**
     * The decision at `at`, with `running` replicas serving: the samples of the last look_back_period_s aggregated,
     * the desired count computed from them, and the target moved to it once the desired count has stayed above it
     * for upscale_delay_s, or below it for downscale_delay_s (downscale_to_zero_delay_s from 1 to 0; from more than
     * 1, the way down stops at 1 first). With no replica running (all starting), only requests can raise it.
     */
    decide(at: number, running: number): Decision | undefined {
        const c = this.config;
        if (!this.samples.length) {
            return undefined;
        }
        const ongoing = aggregate(this.samples, c.aggregation_function);
        this.ongoing = ongoing;
        const why = `${+ongoing.toFixed(2)} ongoing request(s) (${c.aggregation_function} over ${c.look_back_period_s}s) on ${running} running replica(s), target ${c.target_ongoing_requests} each`;
        if (!running) {
            this.trend = undefined;
            return ongoing > 0 ? this.move(at, Math.max(this.target, clamp(Math.max(1, ceil(c.upscaling_factor)), c)), why) : undefined;
        }
        let desired = desiredReplicas(c, ongoing, running);
        if (desired === this.target) {
            this.trend = undefined;
            return undefined;
        }
        const up = desired > this.target;
        if (this.trend?.up !== up) {
            this.trend = { up, since: at };
        }
        let delay = c.upscale_delay_s;
        if (!up) {
            const toZero = this.target === 1;
            delay = toZero ? c.downscale_to_zero_delay_s ?? c.downscale_delay_s : c.downscale_delay_s;
            desired = toZero ? desired : Math.max(1, desired);
        }
        return at - this.trend.since >= delay * 1000 ? this.move(at, desired, why) : undefined;
    }

    private move(at: number, to: number, reason: string): Decision | undefined {
        if (to === this.target) {
            return undefined;
        }
        this.last = { at, from: this.target, to, reason };
        this.target = to;
        this.trend = undefined;
        return this.last;
    }
}
