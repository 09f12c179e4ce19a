/**
 * The benchmark's load generators, all over RondaConnection with `text` tasks: closed-loop
 * saturation (a fixed window in flight per connection), open-loop pacing at a fixed offered rate
 * (sends follow the clock, not the replies, so a slow server cannot slow the load down and hide
 * its own latency), and the seed's one-task-at-a-time client.
 */
import { performance } from 'node:perf_hooks';
import { RondaConnection, type TaskReply } from '../client/ronda-connection';
import { Histogram } from './histogram';

export interface Endpoint {
  host: string;
  port: number;
  token?: string | undefined;
}

/** How long a phase waits for its last replies before it gives up on them. */
const REPLY_GRACE_MS = 30_000;
/** The open-loop pacer's tick; sends due within a tick go out together. */
const PACING_TICK_MS = 1;

export async function connectAll(endpoint: Endpoint, count: number): Promise<RondaConnection[]> {
  return Promise.all(Array.from({ length: count }, () => RondaConnection.connect(endpoint)));
}

export async function closeAll(connections: readonly RondaConnection[]): Promise<void> {
  await Promise.all(connections.map((connection) => connection.close()));
}

/** Counts replies that were not `done`; a benchmark of failing tasks measures nothing. */
export class Failures {
  count = 0;
  first: string | undefined;

  /** `done`: a chain whose replies say nothing more (the bare chain's). */
  note(reply: TaskReply | Error | 'done'): void {
    if (reply === 'done' || (!(reply instanceof Error) && reply.type === 'done')) return;
    this.count += 1;
    this.first ??= reply instanceof Error ? reply.message : `${reply.error.code}: ${reply.error.message}`;
  }
}

export interface SaturationResult {
  tasksPerS: number;
  tasks: number;
  elapsedMs: number;
  failed: number;
  firstFailure: string | undefined;
}

/**
 * Closed loop: `tasks` tasks spread over the connections, each keeping `window` in flight, as
 * fast as the cluster answers.
 */
export async function saturate(
  connections: readonly RondaConnection[],
  tasks: number,
  window: number,
  onProgress?: (done: number) => void,
): Promise<SaturationResult> {
  const failures = new Failures();
  let submitted = 0;
  let completed = 0;
  const startedAt = performance.now();
  await Promise.all(
    connections.map(async (connection) => {
      const lane = async (): Promise<void> => {
        while (submitted < tasks && !connection.closed) {
          const n = submitted++;
          try {
            failures.note(await connection.submit('text', `bench ${n}`));
          } catch (error) {
            failures.note(error instanceof Error ? error : new Error(String(error)));
          }
          completed += 1;
          if (onProgress !== undefined && completed % 5_000 === 0) onProgress(completed);
        }
      };
      await Promise.all(Array.from({ length: window }, lane));
    }),
  );
  const elapsedMs = performance.now() - startedAt;
  return {
    tasksPerS: (completed / elapsedMs) * 1000,
    tasks: completed,
    elapsedMs,
    failed: failures.count,
    firstFailure: failures.first,
  };
}

export interface LatencyResult {
  offeredPerS: number;
  /** Completions per second over the send period. */
  achievedPerS: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Largest delay of a send behind its schedule: a big one means the pacer, not the server, fell behind. */
  maxSendLagMs: number;
  tasks: number;
  failed: number;
  firstFailure: string | undefined;
}

/**
 * Open loop: sends `ratePerS` tasks a second for `durationMs`, round-robin over the connections,
 * whatever the replies do, and records each task's time from send to reply.
 */
export function paced(connections: readonly RondaConnection[], ratePerS: number, durationMs: number): Promise<LatencyResult> {
  return pacedBy(
    (n) => (connections[n % connections.length] as RondaConnection).submit('text', `paced ${n}`),
    ratePerS,
    durationMs,
  );
}

/**
 * The open-loop pacer itself, for any chain: `send(n)` sends task n and resolves with its reply
 * (or an Error: a failure). The bare chain (floor.ts) is paced by the same code as Ronda.
 */
export async function pacedBy(
  send: (n: number) => Promise<TaskReply | Error | 'done'>,
  ratePerS: number,
  durationMs: number,
): Promise<LatencyResult> {
  const histogram = new Histogram();
  const failures = new Failures();
  const total = Math.max(1, Math.round((ratePerS * durationMs) / 1000));
  const replies: Promise<void>[] = [];
  let sent = 0;
  let answered = 0;
  let maxSendLagMs = 0;
  const startedAt = performance.now();

  const sendOne = (): void => {
    const sentAt = performance.now();
    replies.push(
      send(sent).then(
        (reply) => {
          answered += 1;
          histogram.record(performance.now() - sentAt);
          failures.note(reply);
        },
        (error: unknown) => {
          answered += 1;
          failures.note(error instanceof Error ? error : new Error(String(error)));
        },
      ),
    );
    sent += 1;
  };

  await new Promise<void>((resolve) => {
    const tick = (): void => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - startedAt) * ratePerS) / 1000) + 1);
      if (due > sent) maxSendLagMs = Math.max(maxSendLagMs, now - startedAt - (sent * 1000) / ratePerS);
      while (sent < due) sendOne();
      if (sent >= total) resolve();
      else setTimeout(tick, PACING_TICK_MS);
    };
    tick();
  });
  const sendPeriodMs = performance.now() - startedAt;
  await withDeadline(Promise.all(replies), REPLY_GRACE_MS);
  return {
    offeredPerS: ratePerS,
    achievedPerS: (histogram.count / Math.max(sendPeriodMs, 1)) * 1000,
    p50: histogram.percentile(50),
    p90: histogram.percentile(90),
    p99: histogram.percentile(99),
    max: histogram.max,
    maxSendLagMs,
    tasks: histogram.count,
    // Tasks still unanswered after the grace period count as failed too.
    failed: failures.count + (total - answered),
    firstFailure: failures.first,
  };
}

export interface SerialResult {
  tasksPerS: number;
  p50: number;
  p99: number;
  tasks: number;
  failed: number;
  firstFailure: string | undefined;
}

/** The seed's client: one connection, one task at a time, each sent after the last one's answer. */
export async function serial(connection: RondaConnection, durationMs: number): Promise<SerialResult> {
  const histogram = new Histogram();
  const failures = new Failures();
  const startedAt = performance.now();
  const endAt = startedAt + durationMs;
  let n = 0;
  while (performance.now() < endAt && !connection.closed) {
    const sentAt = performance.now();
    try {
      failures.note(await connection.submit('text', `serial ${n++}`));
      histogram.record(performance.now() - sentAt);
    } catch (error) {
      failures.note(error instanceof Error ? error : new Error(String(error)));
    }
  }
  const elapsedMs = performance.now() - startedAt;
  return {
    tasksPerS: (histogram.count / elapsedMs) * 1000,
    p50: histogram.percentile(50),
    p99: histogram.percentile(99),
    tasks: histogram.count,
    failed: failures.count,
    firstFailure: failures.first,
  };
}

/** Waits for `promise`, or for `ms` at most (it then resolves with undefined). */
export async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
