// The built-in handlers, registered in one place: by the name serve.yaml gives each, its factory (loaded on first
// use), the schema of its `options:` and the media types the front door hands it as raw bytes. The serve.yaml schema
// (allowed names, their options), the HTTP front door (raw bodies) and handlers/index.ts (making one) all read this
// table; adding a built-in handler is its file(s) and one line here.
import type Joi from 'joi';
import type { HandlerFactory } from '../lib/handler';
import { text } from '../schemas/text';
import { image } from '../schemas/image';
import { audio } from '../schemas/audio';

/** One built-in handler. */
export interface Builtin {
    /** its factory; a require() on first use, so that a process serving tensors never loads sharp, a tokenizer or a WAV decoder */
    factory(): HandlerFactory;
    /** the schema of its `options:` (defaults filled by validation); none: it takes no options */
    options?: Joi.ObjectSchema;
    /**
     * media types whose bodies reach it as raw bytes rather than parsed by hapi: exact ("audio/wav") or a whole
     * top-level type ("image/*"). The handler refuses, with its own 415, the ones it cannot decode.
     */
    raw?: readonly string[];
    /** it declares how a GET route's query string becomes its input (Handler.querySchema) */
    query?: boolean;
}

/** Checks every entry against Builtin while keeping the names as a union of literals. */
const builtins = <Name extends string>(entries: Record<Name, Builtin>): Readonly<Record<Name, Builtin>> => entries;

export const registry = builtins({
    tensor: { factory: () => (require('./tensor') as typeof import('./tensor')).tensor },
    text: { factory: () => (require('./text') as typeof import('./text')).text, options: text, query: true },
    image: { factory: () => (require('./image') as typeof import('./image')).image, options: image, raw: ['image/*'] },
    audio: { factory: () => (require('./audio') as typeof import('./audio')).audio, options: audio, raw: ['audio/*'] }
});

/** The name of a built-in handler. */
export type BuiltinName = keyof typeof registry;

/** The built-in handlers' names, in the order of the registry. */
export const builtinNames = Object.keys(registry) as BuiltinName[];

/** Whether a deployment's handler is a built-in (else it is a module of the user's own). */
export const isBuiltin = (handler: string): handler is BuiltinName => Object.hasOwn(registry, handler);

/** Whether a deployment's handler is a module of the user's own rather than a built-in. */
export const isModule = (handler: string): boolean => !isBuiltin(handler);

/** A media type as a regular expression, its "top/*" form taking every subtype of top/. */
const mediaPattern = (type: string): string => type.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&').replace(/\\\*$/, '[a-z0-9.+-]+');

/** Every built-in's raw media types as one expression, compiled once: the front door tests each request against it. */
const rawMedia = new RegExp(`^(${builtinNames.flatMap((name) => registry[name].raw ?? []).map(mediaPattern).join('|')})$`);

/** Whether a body of this media type (lowercase, without parameters) is handed to handlers as raw bytes. */
export const takesRaw = (mime: string): boolean => rawMedia.test(mime);
