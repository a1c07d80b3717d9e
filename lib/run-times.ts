// How long a deployment version's batches take, and the deadline past which one is taken to be stuck: its replica has
// hung (a stopped process, a deadlock, a handler that never returns), and lib/replica.ts kills it so that the
// requests it holds run elsewhere, well within their timeout. The replicas of one version share one record: what one
// has been taking, another will take too, and a retry that moves to another replica keeps what was learnt.

/**
 * No deadline is shorter: a GC pause, a container's CPU quota, a burst of other work on a loaded machine must never
 * pass for a hang, whatever the recent batches took. Still well within a request's timeout (30 s by default), and
 * far sooner than the health check finds a hang (40 s by default).
 */
export const floorMs = 5_000;

/** The deadline before any batch of the version has finished: nothing says yet what is normal for its model. */
export const firstDeadlineMs = 30_000;

/** How many times what its recent batches took a batch may take before it is called stuck. */
export const slack = 5;

/**
 * Each finished batch scales the recent peaks by this, so that one slow batch is forgotten gradually (its weight halves
 * in about 35 batches) rather than at once: a decaying maximum, which follows the slow tail the way a high
 * percentile does, for one multiplication per batch.
 */
export const decay = 0.98;

export class RunTimes {
    /** the slowest recent batch (ms), decaying */
    private batchMs = 0;
    /** the slowest recent time per row (ms), decaying: a larger batch is given proportionally longer */
    private rowMs = 0;
    private seen = false;

    /** A batch of `rows` rows ran for `ms` milliseconds (or was given up on after that long). */
    record(ms: number, rows: number): void {
        this.batchMs = Math.max(ms, this.batchMs * decay);
        this.rowMs = Math.max(ms / rows, this.rowMs * decay);
        this.seen = true;
    }

    /**
     * How long a batch of `rows` rows may run before it is taken to be stuck (ms): `slack` times the larger of the
     * recent peak per batch (a fixed cost) and per row (a cost that grows with the batch), at least `floorMs`; before
     * any history, `firstDeadlineMs`. A batch given up on is recorded at its deadline, so a model that is merely slow
     * gets `slack` times longer on its retry and after: it is not killed in a loop.
     */
    deadline(rows: number): number {
        return this.seen ? Math.max(floorMs, slack * Math.max(this.batchMs, rows * this.rowMs)) : firstDeadlineMs;
    }
}
