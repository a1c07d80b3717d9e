// A user's own handler module (`handler: ./my_handler.js` in serve.yaml). It exports a Handler, or a function
// making one from the HandlerContext, as `default`, `handler` or the module itself. Only preprocess and postprocess
// are required: parse defaults to "the JSON body, validated against requestSchema, is one item". Whatever it throws
// comes back to the client as a clean error: a Boom error keeps its status, anything else is a 400 from parse and a
// 500 HANDLER_ERROR from the replica, and the replica goes on serving.
import path from 'node:path';
import Boom from '@hapi/boom';
import Joi from 'joi';
import { fail } from '../lib/errors';
import type { Handler, HandlerContext } from '../lib/handler';

type Partial = { [K in keyof Handler]?: Handler[K] };

function exported(file: string, ctx: HandlerContext): Partial {
    const mod = require(file) as Record<string, unknown>;
    const found = mod.default ?? mod.handler ?? mod;
    const made = typeof found === 'function' ? (found as (c: HandlerContext) => unknown)(ctx) : found;
    if (!made || typeof made !== 'object' || typeof (made as Partial).preprocess !== 'function' || typeof (made as Partial).postprocess !== 'function') {
        throw new Error(`handler module ${file} must export a handler with preprocess() and postprocess() (or a function returning one), as default, handler or module.exports`);
    }
    return made as Partial;
}

/** Boom errors pass as they are; anything else becomes `fallback` with the handler's own message. */
function guard<A extends unknown[], R>(name: string, fn: (...args: A) => R, fallback: 'BAD_REQUEST' | 'HANDLER_ERROR'): (...args: A) => Promise<Awaited<R>> | R {
    const wrap = (err: unknown): never => {
        throw Boom.isBoom(err) ? err : fail(fallback, `handler ${name}: ${(err as Error)?.message ?? String(err)}`);
    };
    return (...args: A) => {
        try {
            const out = fn(...args);
            return out instanceof Promise ? out.catch(wrap) as Promise<Awaited<R>> : out;
        }
        catch (err) {
            return wrap(err);
        }
    };
}

export function custom(file: string, ctx: HandlerContext): Handler {
    const user = exported(file, ctx);
    const name = path.basename(file);
    const requestSchema = user.requestSchema?.bind(user) ?? (() => Joi.any());
    const handler: Handler = {
        requestSchema,
        responseSchema: user.responseSchema?.bind(user) ?? (() => Joi.any()),
        example: user.example?.bind(user) ?? (() => ({})),
        openapi: user.openapi?.bind(user),
        querySchema: user.querySchema?.bind(user),
        parse: user.parse ? guard(name, user.parse.bind(user), 'BAD_REQUEST') as Handler['parse'] : (req, sig) => {
            const { error, value } = requestSchema(sig).validate(req.payload);
            if (error) {
                throw fail('INVALID_BODY', error.message);
            }
            return { rows: 1, key: '', item: value };
        },
        load: guard(name, (sig) => user.load?.(sig), 'HANDLER_ERROR'),
        preprocess: guard(name, (user.preprocess as Handler['preprocess']).bind(user), 'HANDLER_ERROR'),
        postprocess: guard(name, (user.postprocess as Handler['postprocess']).bind(user), 'HANDLER_ERROR'),
        reconfigure: (userConfig, sig) => user.reconfigure?.(userConfig, sig)
    };
    return handler;
}
