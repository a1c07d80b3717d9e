// The built-in handlers, by the name serve.yaml uses.
import { tensor } from './tensor';
import type { Handler } from './handler';
import type { HandlerName } from '../schemas/serve';

export const builtins: Record<HandlerName, Handler> = { tensor } as Record<HandlerName, Handler>;

export function resolve(name: HandlerName): Handler {
    return builtins[name];
}
