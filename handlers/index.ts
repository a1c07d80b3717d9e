// The built-in handlers by the name serve.yaml uses, and the loading of a user's own handler module.
import { custom } from './custom';
import type { Handler, HandlerContext, HandlerFactory } from '../lib/handler';
import { isModule, type HandlerName } from '../schemas/serve';

// Loaded on first use, so that a process serving tensors never loads sharp, a tokenizer or a WAV decoder.
export const builtins: Record<string, () => HandlerFactory> = {
    tensor: () => (require('./tensor') as typeof import('./tensor')).tensor as HandlerFactory,
    text: () => (require('./text') as typeof import('./text')).text as HandlerFactory,
    image: () => (require('./image') as typeof import('./image')).image as HandlerFactory,
    audio: () => (require('./audio') as typeof import('./audio')).audio as HandlerFactory
};

/** A handler for one deployment: a built-in by name, or the module at an absolute path. */
export function create(name: HandlerName, ctx: HandlerContext): Handler {
    return isModule(name) ? custom(name, ctx) : builtins[name]()(ctx);
}
