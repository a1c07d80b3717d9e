// Pipeline routes (Triton's ensemble, in serve.yaml): a route names deployments of its application that run in turn,
// each step's JSON answer the next step's body, as it is or through the step's `input` template. Every step goes
// through its own deployment's queue and batcher, within what is left of the request's timeout.
import Boom from '@hapi/boom';
import { fail } from './errors';
import type { Client, Trace } from './scheduler';
import type { Deployment } from './deployment';
import type { RequestIn } from './handler';
import type { PipelineStep } from '../schemas/serve';

/** The deployment a step names. */
export const stepName = (step: PipelineStep): string => typeof step === 'string' ? step : step.deployment;

/** Makes a step's body from the previous step's answer. */
export type Template = (answer: unknown) => unknown;

/** One part of a reference: a key of an object, or an index of an array. */
type Part = string | number;

/** `$`, then `.key` or `[index]` parts: a key is letters, digits, "_" or "-". */
const reference = /^\$((\.[A-Za-z0-9_-]+|\[\d+\])*)$/;

/** The parts of a reference ("$.a[0].b": a, 0, b); undefined for a string that is not one. */
function parts(text: string): Part[] | undefined {
    const m = reference.exec(text);
    return m ? [...m[1].matchAll(/\.([A-Za-z0-9_-]+)|\[(\d+)\]/g)].map((p) => p[1] ?? Number(p[2])) : undefined;
}

/**
 * A step's `input` as a function of the previous answer. Any JSON value; in it, a string that begins with "$" is a
 * reference into the answer: "$" the whole of it, "$.embedding" a field, "$.results[0].label" deeper. "$$" begins a
 * string that is meant literally ("$$5" is "$5"). Throws, naming it, for a "$" string that is not a reference.
 */
export function template(input: unknown): Template {
    if (typeof input === 'string' && input.startsWith('$')) {
        if (input.startsWith('$$')) {
            const literal = input.slice(1);
            return () => literal;
        }
        const path = parts(input);
        if (!path) {
            throw new Error(`${JSON.stringify(input)} is not a reference: write "$", "$.field" or "$.list[0]" (and "$$" for a literal "$")`);
        }
        return (answer) => path.reduce<unknown>((at, p, i) => {
            const next = at !== null && typeof at === 'object' && Object.hasOwn(at, p) ? (at as Record<Part, unknown>)[p] : undefined;
            if (next === undefined) {
                throw fail('PIPELINE_ERROR', `the previous step's answer has no ${JSON.stringify(`$${path.slice(0, i + 1).map((q) => typeof q === 'number' ? `[${q}]` : `.${q}`).join('')}`)} (the step's input template refers to it)`);
            }
            return next;
        }, answer);
    }
    if (Array.isArray(input)) {
        const items = input.map(template);
        return (answer) => items.map((make) => make(answer));
    }
    if (input !== null && typeof input === 'object') {
        const fields = Object.entries(input).map(([k, v]) => [k, template(v)] as const);
        return (answer) => Object.fromEntries(fields.map(([k, make]) => [k, make(answer)]));
    }
    return () => input;
}

/** A step as the route runs it: its deployment, and how its body is made (absent: the previous answer as it is). */
export interface Step {
    deployment: Deployment;
    input?: Template;
}

/** The error a step answered with, saying which step: a later step refusing its body is the pipeline's fault, not the client's. */
function stepError(err: unknown, k: number, step: Step): Boom.Boom {
    const boom = err as Boom.Boom;
    const where = `pipeline step ${k + 1} ("${step.deployment.config.name}")`;
    const status = boom.output.statusCode;
    if (k > 0 && status < 499 && status >= 400) {
        return fail('PIPELINE_ERROR', `${where} refused the previous step's answer: ${boom.message}`, { step: k + 1, deployment: step.deployment.config.name, cause: (boom.data as { code?: string }).code });
    }
    const wrapped = new Boom.Boom(`${where}: ${boom.message}`, { statusCode: status, data: boom.data });
    Object.assign(wrapped.output.headers, boom.output.headers);
    return wrapped;
}

/**
 * Runs the steps in turn; resolves with the last step's JSON body. The first step takes the request as it came; each
 * later one a JSON body made from the answer before, with what is left of timeoutMs. A step's error comes back naming
 * the step.
 */
export async function runPipeline(steps: readonly Step[], req: RequestIn, timeoutMs: number, client?: Client, trace?: Trace): Promise<string> {
    const deadline = performance.now() + timeoutMs;
    let body = '';
    for (let k = 0; k < steps.length; k++) {
        const step = steps[k];
        try {
            const answer: unknown = k ? JSON.parse(body) : undefined;
            const next = k ? { payload: step.input ? step.input(answer) : answer, headers: req.headers, contentType: 'application/json' } : req;
            // (past the deadline, the step's queue answers 504 at once)
            body = await step.deployment.handle(next, Math.max(1, deadline - performance.now()), client, trace);
        }
        catch (err) {
            throw stepError(err, k, step);
        }
    }
    return body;
}
