import type { z } from 'zod';

/** What a handler learns about the task it runs. */
export interface TaskContext {
  /** The worker slot running the task (1, 2, 3, ...). */
  readonly slot: number;
  readonly taskId: string;
  /**
   * Aborts when the task is cancelled. A handler that can stop early listens to it and rejects
   * (with anything): the task then fails CANCELLED. One that ignores it runs to its end, and its
   * result is stored as any other; a synchronous handler cannot see it before it returns.
   */
  readonly signal: AbortSignal;
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
