// The public API: what a program embedding tsserve imports.
export { load, parse, validate, ConfigError } from './config';
export { up, type Appliance, type UpOptions } from './server';
export { Controller } from './controller';
export type { Handler, HandlerFactory, HandlerContext } from './handler';
export type { Signature } from './signature';
export type { Tensor, Feeds } from './tensor';
