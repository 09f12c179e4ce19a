import type { z } from 'zod';

/** What a handler learns about the task it runs. */
export interface TaskContext {
  /** The worker slot running the task (1, 2, 3, ...). */
  slot: number;
  taskId: string;
}

/**
 * A kind of task: a zod schema for its payload and the function that runs it. The function gets the
 * parsed payload and returns (or resolves to) a JSON value, the task's result. Modules named with
 * `--handlers` export an object of these, keyed by kind name, as `kinds`.
 */
export interface TaskKind<Payload = unknown> {
  schema: z.ZodType<Payload>;
  run(payload: Payload, context: TaskContext): unknown;
}

/** Gives a kind its payload type from its schema without writing the type twice. */
export function defineKind<Schema extends z.ZodType>(
  schema: Schema,
  run: (payload: z.output<Schema>, context: TaskContext) => unknown,
): TaskKind {
  return { schema, run: run as TaskKind['run'] };
}
