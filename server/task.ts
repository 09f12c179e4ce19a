import { randomBytes } from 'node:crypto';
import type { ErrorData } from '../shared/errors';
import type { TaskSpec } from '../shared/protocol';

/**
 * How a task ended, as the primary tells its owner. A `done` result is the text stored in its row
 * (`json`: whether that text is JSON, or a string stored as it is), carried through untouched so
 * that the reply is made from exactly what was stored.
 */
export type Outcome =
  | { status: 'done'; result: string; json: boolean; worker: number }
  | { status: 'failed'; error: ErrorData; worker: number | undefined };

/** Whoever submitted a task and waits for its outcome: a client connection, or a test. */
export interface TaskOwner {
  /** Names the owner in log lines: a connection's `#12`. */
  readonly label: string;
  /**
   * The owners that are one client for `cancel`: every HTTP request is the HTTP door (it has no
   * connection to tell them apart), while each TCP connection is its own.
   */
  readonly door?: 'http';
  settle(task: Task, outcome: Outcome): void;
}

/** A task as its connection accepted it: what to run, and whom to answer. Never changes. */
export interface TaskRequest {
  /** Unique across the cluster's lifetime and restarts; the key of the stored row. */
  readonly taskId: string;
  /** The id the client chose, if any; replies carry it. */
  readonly clientId: string | undefined;
  readonly kind: string;
  /** The payload; undefined when it is kept as `payloadJson`. */
  readonly payload: unknown;
  /** A large payload that is not a string, as its JSON text (see TaskSpecSchema). */
  readonly payloadJson: string | undefined;
  /** Length of the line it came in: what it costs to hold, for the byte budgets. */
  readonly chars: number;
  readonly timeoutMs: number;
  /** Runs after the first that a HANDLER_FAILED or TIMEOUT may have (the submit's `retries`). */
  readonly retries: number;
  readonly owner: TaskOwner;
  /** performance.now() when accepted. */
  readonly acceptedAt: number;
}

/**
 * A task from submit to reply: its request, and what its attempts so far say about it, which only
 * the WorkerSlots write. What one attempt alone knows (when the task started in its worker) stays
 * in the slot running it; what follows the task from slot to slot (deaths, failed stores) is here.
 */
export interface Task extends TaskRequest {
  /**
   * Its place among the tasks sent to the worker that holds it (see OrdinalSchema); -1 until sent.
   * The slot's, kept here because a field costs nothing per task where a map would cost a lookup.
   */
  ordinal: number;
  /** How many workers died while holding it. */
  deaths: number;
  /** Whether an earlier worker of its slot may have stored it. */
  redelivered: boolean;
  /** Store this failure instead of running it again. */
  failWith: ErrorData | undefined;
  /** How many times it ran but its outcome could not be stored (see the `unstored` outcome). */
  storeFailures: number;
  /** Which run this is, from 1: each retry adds one (see Dispatcher.retry). */
  attempt: number;
}

/**
 * A task's attempt state before its first attempt: a task is `{ ...request, ...NO_ATTEMPTS }`,
 * spread into the one object literal that accepts it (no second object per task).
 */
export const NO_ATTEMPTS: Readonly<Omit<Task, keyof TaskRequest>> = Object.freeze({
  ordinal: -1,
  deaths: 0,
  redelivered: false,
  failWith: undefined,
  storeFailures: 0,
  attempt: 1,
});

/**
 * The attempt a task waits for will not run (cancelled, or abandoned at a forced stop, before a
 * worker started it): its count goes back to the attempts begun, which is never below 1.
 */
export function unattempted(task: Task): void {
  if (task.attempt > 1) task.attempt -= 1;
}

/** Makes task ids unique across restarts: a per-boot random prefix and a counter. */
export function taskIdGenerator(): () => string {
  const boot = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
  let sequence = 0;
  return () => `${boot}-${(sequence++).toString(36)}`;
}

export function toSpec(task: Task): TaskSpec {
  const spec: TaskSpec =
    task.payloadJson === undefined
      ? { taskId: task.taskId, kind: task.kind, payload: task.payload }
      : { taskId: task.taskId, kind: task.kind, payloadJson: task.payloadJson };
  if (task.clientId !== undefined) spec.clientId = task.clientId;
  if (task.redelivered) spec.redelivered = true;
  if (task.failWith !== undefined) spec.failWith = task.failWith;
  if (task.attempt <= task.retries) spec.retry = true;
  if (task.attempt > 1) spec.attempt = task.attempt;
  return spec;
}
