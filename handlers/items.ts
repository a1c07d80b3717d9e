// A request of several items (texts, images, audios) and the rows of a batch: the front door's cap on how many items
// one request may send, and the way back: the model's outputs as one answer per item, then the answers as one body
// per request. A request that sent one item gets its answer; one that sent a list gets {"results": [...]}, in order.
import Joi from 'joi';
import { fail } from '../lib/errors';
import { toNested, type Feeds } from '../lib/tensor';
import { fixedBatch, type Signature } from '../lib/signature';

/** Front door: a model whose batch dimension is fixed takes at most that many items (`noun`s) in one request. Throws Boom 400. */
export function checkCap(sig: Signature, count: number, noun: string): void {
    const cap = fixedBatch(sig);
    if (cap && count > cap) {
        throw fail('INVALID_BODY', `this model takes at most ${cap} ${noun}${cap > 1 ? 's' : ''} per request; this one sent ${count}`);
    }
}

/** One body per request from one answer per item, in batch order; `count` says how many items a request holds. */
export function perRequest<I extends { list: boolean }>(answers: unknown[], items: I[], count: (item: I) => number): unknown[] {
    let at = 0;
    return items.map((it) => {
        const n = count(it);
        at += n;
        return it.list ? { results: answers.slice(at - n, at) } : answers[at - n];
    });
}

/** The response schema of such a handler: one answer, or {"results": [...]} of them, one per `noun`. */
export function perRequestSchema(one: Joi.Schema, noun: string): Joi.Schema {
    return Joi.alternatives(one, Joi.object({ results: Joi.array().items(one).description(`one per ${noun}, in order`) }));
}

/**
 * Every output as nested arrays, for each of the batch's first `rows` rows: its row of each output whose first
 * dimension is the batch's (the rows a fixed batch size pads with counted), and the whole of any other output.
 */
export function rawAnswers(outputs: Feeds, rows: number, sig: Signature): Array<{ outputs: Record<string, unknown> }> {
    const batch = Math.max(rows, fixedBatch(sig) ?? 0);
    return Array.from({ length: rows }, (_, r) => ({
        outputs: Object.fromEntries(Object.entries(outputs).map(([name, t]) =>
            [name, t.dims[0] === batch ? (toNested(t, r, 1) as unknown[])[0] : toNested(t)]))
    }));
}

/** The response schema of one raw answer: each output's row for this `noun`. */
export function rawSchema(sig: Signature, noun: string): Joi.Schema {
    return Joi.object({
        outputs: Joi.object(Object.fromEntries(sig.outputs.map((o) => [o.name, Joi.any().description(`${o.type} [${o.dims.slice(1).join(', ')}] for this ${noun}`)])))
    });
}
