/**
 * The decisions a worker slot makes when its worker dies, as pure functions, so that each can be
 * table-tested without a process (PM2 keeps its restart arithmetic apart from the daemon the same
 * way). server/worker-slot.ts applies them.
 */

/** A worker that dies sooner than this after it was ready counts as dying young. */
export const MIN_UPTIME_MS = 1_000;
/** Delay before the second young death in a row is respawned; doubles after each, up to the max. */
export const RESPAWN_BACKOFF_BASE_MS = 100;
export const RESPAWN_BACKOFF_MAX_MS = 10_000;
/**
 * Workers in a row that could not be started (a failed fork, a database it cannot write, a
 * handlers module that does not load, not ready in time) before the tasks the slot holds for its
 * next worker are settled another way (see WorkerSlot.releaseHeld).
 */
export const MAX_START_FAILURES = 3;

/** How a worker ended, as far as the slot can tell. */
export interface Death {
  /** It had said `ready` (it was serving), rather than failing to start. */
  wasReady: boolean;
  /** Milliseconds from its `ready` to its death (0 if it never was ready). */
  uptimeMs: number;
  /** The primary killed it because a task ran past its time limit. */
  killedForTimeLimit: boolean;
  /** It said why it stopped (a `fatal` message: its file cannot be written), then exited. */
  toldWhy: boolean;
}

/**
 * Young deaths in a row after this one: a death after a long life resets the count; a kill for a
 * time limit leaves it as it was (the worker was fine, its task was not), neither growing the
 * backoff nor hiding a crash loop.
 */
export function youngDeathsAfter(youngDeaths: number, death: Death): number {
  if (death.killedForTimeLimit) return youngDeaths;
  if (!death.wasReady || death.toldWhy || death.uptimeMs < MIN_UPTIME_MS) return youngDeaths + 1;
  return 0;
}

/** How long to wait before forking the next worker: none for the first young death in a row. */
export function respawnDelayMs(youngDeaths: number): number {
  if (youngDeaths <= 1) return 0;
  return Math.min(RESPAWN_BACKOFF_BASE_MS * 2 ** (youngDeaths - 2), RESPAWN_BACKOFF_MAX_MS);
}

/**
 * Whether the tasks a dead worker held count it against them. Not when the primary killed it for
 * a time limit, nor when it said why it stopped: neither death was caused by the tasks it held.
 */
export function blamesTasks(death: Death): boolean {
  return death.wasReady && !death.killedForTimeLimit && !death.toldWhy;
}

/** The longest a retry waits, however many came before it. */
export const MAX_RETRY_DELAY_MS = 60_000;

/**
 * How long the `retry`-th retry of a task (from 1) waits: `base` doubled for each retry before it,
 * at most MAX_RETRY_DELAY_MS, of which a random half ("equal jitter"): tasks that failed together
 * (a database down for a moment) do not all come back at the same instant.
 */
export function retryDelayMs(retry: number, base: number, random: () => number = Math.random): number {
  const ceiling = Math.min(base * 2 ** Math.max(0, retry - 1), MAX_RETRY_DELAY_MS);
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** What becomes of one task the dead worker held. */
export type Reclaim =
  /** Store TIMEOUT: this task's time limit is why the worker was killed. */
  | 'timeout'
  /** Store WORKER_LOST: it was held by dying workers `maxAttempts` times. */
  | 'lost'
  /** Run it again alone on the next worker, so that a second death is known to be its own. */
  | 'suspect'
  /** Hand it to the next worker with the others (it looks itself up first). */
  | 'redeliver';

export function reclaim(task: { deaths: number; timedOut: boolean }, maxAttempts: number): Reclaim {
  if (task.timedOut) return 'timeout';
  if (task.deaths >= maxAttempts) return 'lost';
  return task.deaths > 0 ? 'suspect' : 'redeliver';
}
