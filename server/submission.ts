/**
 * What every door of the primary checks before it accepts a task, and how it makes one: the TCP
 * connection and the HTTP API refuse the same things with the same codes and words.
 */
import { performance } from 'node:perf_hooks';
import { ErrorCode, type ErrorData } from '../shared/errors';
import type { StatsReply } from '../shared/protocol';
import { NO_ATTEMPTS, type Task, type TaskOwner } from './task';

/** The refusal of anything new while the cluster stops. */
export const SHUTTING_DOWN: ErrorData = { code: ErrorCode.SHUTTING_DOWN, message: 'the server is shutting down' };
/** A payload on a line this long that is not a string is kept as its JSON text (see newTask). */
const PAYLOAD_AS_TEXT_CHARS = 16 * 1024;

export interface TimeLimits {
  minTimeoutMs: number;
  maxTimeoutMs: number;
  /** The most `retries` a submit may ask for (--max-retries). */
  maxRetries: number;
}

/** What every door of the primary (a TCP connection, the HTTP API) needs from the rest of it. */
export interface Door extends TimeLimits {
  token: string | undefined;
  defaultTimeoutMs: number;
  /** Worker slots of the cluster, for checking a query's `worker`. */
  workers: number;
  kinds(): ReadonlySet<string>;
  schemas(): Readonly<Record<string, unknown>>;
  /** False once the server is shutting down. */
  accepting(): boolean;
  /** The primary's queue is full: no door hands it a task until it has room again. */
  queueFull(): boolean;
  nextTaskId(): string;
  submit(task: Task): void;
  stats(): StatsReply;
  /** A failed authentication from this address; resolves how long to wait before answering it. */
  authFailed(address: string, why: string): number;
  authSucceeded(address: string): void;
}

/** Why `timeoutMs` is not one a client may ask for, if it is not (a BAD_MESSAGE). */
export function timeoutProblem(timeoutMs: number, { minTimeoutMs, maxTimeoutMs }: TimeLimits): string | undefined {
  if (!Number.isInteger(timeoutMs)) return `timeoutMs must be a whole number of ms from ${minTimeoutMs} to ${maxTimeoutMs}`;
  if (timeoutMs > maxTimeoutMs) return `timeoutMs must be at most ${maxTimeoutMs} (the server's --max-task-timeout-ms)`;
  if (timeoutMs < minTimeoutMs) return `timeoutMs must be at least ${minTimeoutMs} (the server's --min-task-timeout-ms)`;
  return undefined;
}

/** Why `retries` is not a number of retries a client may ask for, if it is not (a BAD_MESSAGE). */
export function retriesProblem(retries: number, { maxRetries }: TimeLimits): string | undefined {
  if (Number.isInteger(retries) && retries >= 0 && retries <= maxRetries) return undefined;
  return `retries must be a whole number from 0 to ${maxRetries} (the server's --max-retries)`;
}

/** Why a task of this kind cannot be accepted now, if it cannot. */
export function kindRefusal(kind: string, kinds: ReadonlySet<string>, accepting: boolean): ErrorData | undefined {
  if (!accepting) return SHUTTING_DOWN;
  if (!kinds.has(kind)) {
    return { code: ErrorCode.UNKNOWN_KIND, message: `unknown task kind "${kind}"; known: ${[...kinds].join(', ')}` };
  }
  return undefined;
}

export interface NewTask {
  taskId: string;
  clientId: string | undefined;
  kind: string;
  payload: unknown;
  timeoutMs: number;
  retries: number;
  /** Length of the request it came in: what it costs to hold, for the byte budgets. */
  chars: number;
  owner: TaskOwner;
}

export function newTask({ taskId, clientId, kind, payload, timeoutMs, retries, chars, owner }: NewTask): Task {
  // 1 MiB of `[{},{},...]` is 25 MB of objects: held as its text, it is 1 MiB.
  const asText = chars >= PAYLOAD_AS_TEXT_CHARS && typeof payload === 'object' && payload !== null;
  return {
    chars,
    taskId,
    clientId,
    kind,
    payload: asText ? undefined : payload,
    payloadJson: asText ? JSON.stringify(payload) : undefined,
    timeoutMs,
    retries,
    owner,
    acceptedAt: performance.now(),
    ...NO_ATTEMPTS,
  };
}
