/**
 * Recovery: kill -9 one worker of a cluster the bench started, while tasks are flowing, and time
 * (a) its replacement being ready and (b) the completion of every task in flight at the kill,
 * those the dead worker held included. When the primary noticed the death and when the
 * replacement was ready come from `stats` (`lastDeathAt`, `readyAt`: the primary's wall clock, the
 * one the kill is timed with on the same machine).
 */
import { performance } from 'node:perf_hooks';
import type { WorkerStats } from '../shared/protocol';
import { Failures, withDeadline } from './load';
import type { RondaConnection, TaskReply } from '../client/ronda-connection';

/** A worker younger than this at its death counts as dying young (WorkerSlot's MIN_UPTIME_MS). */
const MIN_VICTIM_UPTIME_MS = 1_100;
const POLL_MS = 5;
const READY_TIMEOUT_MS = 10_000;
const HELD_TIMEOUT_MS = 30_000;
/** Tasks each connection keeps in flight while a worker is killed. */
const BACKGROUND_WINDOW = 32;
/**
 * How long the load runs before the kill, so that every worker holds tasks. It also spaces the
 * kills: one death at a time is measured, not a burst (the primary's standby worker, forked ahead
 * of need, takes about half a second to be there again after it replaced one).
 */
const WARM_MS = 1_000;

export interface RecoveryResult {
  /** From the kill to the replacement's `ready`. */
  readyMs: number;
  /** From the primary noticing the death to the replacement's `ready`. */
  diedToReadyMs: number | undefined;
  /** From the kill to the reply of the last task that was in flight at the kill. */
  heldDoneMs: number;
  /** Tasks the victim held at the kill (per `stats` just before it). */
  held: number;
  /** Tasks in flight anywhere at the kill. */
  inflightAtKill: number;
  failed: number;
  firstFailure: string | undefined;
}

export async function measureRecovery(connections: readonly RondaConnection[]): Promise<RecoveryResult> {
  const control = connections[0] as RondaConnection;
  const victim = await pickVictim(control);
  const failures = new Failures();
  const inflight = new Set<Promise<void>>();
  let running = true;

  const lane = async (connection: RondaConnection): Promise<void> => {
    let n = 0;
    while (running && !connection.closed) {
      const reply = connection.submit('text', `recovery ${n++}`).then(
        (result: TaskReply) => failures.note(result),
        (error: unknown) => failures.note(error instanceof Error ? error : new Error(String(error))),
      );
      inflight.add(reply);
      await reply;
      inflight.delete(reply);
    }
  };
  const load = Promise.all(
    connections.flatMap((connection) => Array.from({ length: BACKGROUND_WINDOW }, () => lane(connection))),
  );

  try {
    await new Promise((resolve) => setTimeout(resolve, WARM_MS));
    const before = (await control.stats()).workers.find((worker) => worker.slot === victim.slot);
    const atKill = [...inflight];
    const killWallMs = Date.now();
    const killAt = performance.now();
    process.kill(victim.pid, 'SIGKILL');
    const heldDone = withDeadline(
      Promise.all(atKill).then(() => performance.now() - killAt),
      HELD_TIMEOUT_MS,
    );
    const replacement = await waitForReplacement(control, victim.slot, victim.pid);
    const heldDoneMs = await heldDone;
    if (heldDoneMs === undefined) throw new Error(`tasks in flight at the kill were not answered within ${HELD_TIMEOUT_MS} ms`);

    const readyWall = replacement.readyAt;
    const diedWall = replacement.lastDeathAt;
    return {
      readyMs: readyWall === undefined ? replacement.seenAt - killAt : Math.max(0, readyWall - killWallMs),
      diedToReadyMs: readyWall !== undefined && diedWall !== undefined ? readyWall - diedWall : undefined,
      heldDoneMs,
      held: before?.inflight ?? 0,
      inflightAtKill: atKill.length,
      failed: failures.count,
      firstFailure: failures.first,
    };
  } finally {
    running = false;
    await withDeadline(load, HELD_TIMEOUT_MS);
  }
}

/** The oldest ready worker, once it is old enough that its death does not count as dying young. */
async function pickVictim(control: RondaConnection): Promise<{ slot: number; pid: number }> {
  const deadline = performance.now() + READY_TIMEOUT_MS;
  while (performance.now() < deadline) {
    const workers = (await control.stats()).workers.filter(
      (worker): worker is WorkerStats & { pid: number } => worker.state === 'ready' && worker.pid !== null,
    );
    const oldest = workers.sort((a, b) => b.uptimeMs - a.uptimeMs)[0];
    if (oldest !== undefined && oldest.uptimeMs >= MIN_VICTIM_UPTIME_MS) return { slot: oldest.slot, pid: oldest.pid };
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('no worker has been ready long enough to be killed');
}

/** Polls `stats` until the slot has a new, ready worker; returns its pid and when it was seen. */
async function waitForReplacement(
  control: RondaConnection,
  slot: number,
  oldPid: number,
): Promise<{ pid: number; seenAt: number; readyAt: number | undefined; lastDeathAt: number | undefined }> {
  const deadline = performance.now() + READY_TIMEOUT_MS;
  while (performance.now() < deadline) {
    const worker = (await control.stats()).workers.find((candidate) => candidate.slot === slot);
    if (worker?.state === 'ready' && worker.pid !== null && worker.pid !== oldPid) {
      return { pid: worker.pid, seenAt: performance.now(), readyAt: worker.readyAt, lastDeathAt: worker.lastDeathAt };
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  throw new Error(`worker ${slot} was not replaced within ${READY_TIMEOUT_MS} ms`);
}
