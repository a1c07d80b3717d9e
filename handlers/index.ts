// Making a deployment's handler: a built-in by the name serve.yaml uses (handlers/registry.ts), or a user's own module.
import { custom } from './custom';
import { isBuiltin, registry } from './registry';
import type { Handler, HandlerContext } from '../lib/handler';

/** A handler for one deployment: a built-in by name, or the module at an absolute path. */
export function create(name: string, ctx: HandlerContext): Handler {
    return isBuiltin(name) ? registry[name].factory()(ctx) : custom(name, ctx);
}
