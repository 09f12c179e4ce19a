import path from 'node:path';
import { z } from 'zod';
import { KindSchema } from '../shared/protocol';
import { BUILTIN_KINDS } from './builtin-kinds';
import type { TaskKind } from './task-kind';

/** A kind's JSON Schema is left out of `ready` above this many characters. */
export const MAX_SCHEMA_CHARS = 4_096;

/**
 * The built-in kinds plus those of the operator's `--handlers` module, which exports
 * `kinds: { [name]: { schema, run } }` (CommonJS or a default export). Throws with a message that
 * names the module (and, for a syntax error, the line) when it cannot be loaded or does not have
 * that shape; built-in kinds cannot be replaced.
 */
export function loadKinds(handlersModule: string | undefined): Map<string, TaskKind> {
  const kinds = new Map(Object.entries(BUILTIN_KINDS));
  if (handlersModule === undefined) return kinds;

  const file = path.resolve(handlersModule);
  let loaded: unknown;
  try {
    // The module is named at run time, so it cannot be a static import.
    loaded = require(file);
  } catch (error) {
    throw new Error(`cannot load the handlers module ${file}: ${describeLoadError(error, file)}`);
  }
  const exported = pick(loaded, 'kinds') ?? pick(pick(loaded, 'default'), 'kinds');
  if (typeof exported !== 'object' || exported === null) {
    throw new Error(`the handlers module ${file} must export "kinds", an object of { schema, run } by kind name`);
  }
  for (const [name, kind] of Object.entries(exported)) {
    if (!KindSchema.safeParse(name).success) {
      throw new Error(`the handlers module ${file}: kind "${name}" must be lowercase letters, digits, "-" or "_"`);
    }
    if (kinds.has(name)) {
      throw new Error(`the handlers module ${file}: kind "${name}" is built in and cannot be replaced`);
    }
    if (!isTaskKind(kind)) {
      throw new Error(`the handlers module ${file}: kind "${name}" must be { schema: a zod schema, run: a function }`);
    }
    kinds.set(name, kind);
  }
  return kinds;
}

/**
 * Each kind's payload schema as JSON Schema, for clients to check what a person types before it
 * is sent. A schema zod cannot express (or not a zod 4 schema) is left out; the worker still
 * checks every payload itself.
 */
export function kindSchemas(kinds: ReadonlyMap<string, TaskKind>): Record<string, unknown> {
  const schemas: Record<string, unknown> = {};
  for (const [name, kind] of kinds) {
    try {
      const schema = z.toJSONSchema(kind.schema as z.ZodType, { unrepresentable: 'any', io: 'input' });
      delete schema.$schema;
      if (JSON.stringify(schema).length <= MAX_SCHEMA_CHARS) schemas[name] = schema;
    } catch {
      // Not expressible; left out.
    }
  }
  return schemas;
}

/** One line on why `require` failed: where a syntax error is, and what to do about a package. */
function describeLoadError(error: unknown, file: string): string {
  if (!(error instanceof Error)) return String(error);
  const first = error.message.split('\n')[0] ?? error.message;
  if ((error as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') {
    const missing = /Cannot find module '([^']+)'/.exec(first)?.[1];
    if (missing !== undefined && path.resolve(missing) === file) return 'no such file';
    return `${first} (install it where the module can find it: npm install ${missing ?? '<package>'} in ${path.dirname(file)}; zod needs no install, it is Ronda's own)`;
  }
  // Node puts the place of a syntax error on the first line of the stack (`/path/file.js:3`); any
  // other error names it in the first frame inside the module.
  const stack = error.stack ?? '';
  const where =
    error instanceof SyntaxError
      ? /^(\S+:\d+)\n/.exec(stack)?.[1]
      : stack
          .split('\n')
          .find((line) => line.includes(file))
          ?.match(/(\/[^():]+:\d+)(?::\d+)?\)?$/)?.[1];
  return `${error.name}: ${first}${where === undefined ? '' : ` (at ${where})`}`;
}

function pick(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
}

function isTaskKind(value: unknown): value is TaskKind {
  return typeof pick(pick(value, 'schema'), 'safeParse') === 'function' && typeof pick(value, 'run') === 'function';
}
