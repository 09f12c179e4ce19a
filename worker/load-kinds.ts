import path from 'node:path';
import { KindSchema } from '../shared/protocol';
import { BUILTIN_KINDS } from './builtin-kinds';
import type { TaskKind } from './task-kind';

/**
 * The built-in kinds plus those of the operator's `--handlers` module, which exports
 * `kinds: { [name]: { schema, run } }` (CommonJS or a default export). Throws with a clear message
 * when the module does not have that shape; built-in kinds cannot be replaced.
 */
export function loadKinds(handlersModule: string | undefined): Map<string, TaskKind> {
  const kinds = new Map(Object.entries(BUILTIN_KINDS));
  if (handlersModule === undefined) return kinds;

  const file = path.resolve(handlersModule);
  // The module is named at run time, so it cannot be a static import.
  const loaded: unknown = require(file);
  const exported = pick(loaded, 'kinds') ?? pick(pick(loaded, 'default'), 'kinds');
  if (typeof exported !== 'object' || exported === null) {
    throw new Error(`${handlersModule} must export "kinds", an object of { schema, run } by kind name`);
  }
  for (const [name, kind] of Object.entries(exported)) {
    if (!KindSchema.safeParse(name).success) {
      throw new Error(`${handlersModule}: kind "${name}" must be lowercase letters, digits, "-" or "_"`);
    }
    if (kinds.has(name)) throw new Error(`${handlersModule}: kind "${name}" is built in and cannot be replaced`);
    if (!isTaskKind(kind)) {
      throw new Error(`${handlersModule}: kind "${name}" must be { schema: a zod schema, run: a function }`);
    }
    kinds.set(name, kind);
  }
  return kinds;
}

function pick(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
}

function isTaskKind(value: unknown): value is TaskKind {
  return typeof pick(pick(value, 'schema'), 'safeParse') === 'function' && typeof pick(value, 'run') === 'function';
}
