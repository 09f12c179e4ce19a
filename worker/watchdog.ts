/**
 * The watchdog thread of a worker process (a worker_thread, started by worker/main.ts). It runs
 * beside the worker's event loop, so it can act while a handler blocks that loop for seconds:
 * - it tells the primary, on the side channel, which synchronous task is running and for how
 *   long, so that the primary can time a task from when it started rather than when it was sent;
 * - it notices that the primary is gone (the parent pid changes) and ends the worker's process
 *   group, the worker and whatever its handlers started, instead of waiting for the event loop to
 *   see the IPC channel close.
 */
import { writeSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import type { WatchdogReport } from '../shared/protocol';
import { RunMarker } from './run-marker';

export interface WatchdogData {
  marker: SharedArrayBuffer;
  /** The primary's pid, as the worker saw it at start. */
  parentPid: number;
  /** The side channel's file descriptor in this process, or undefined when there is none. */
  reportFd: number | undefined;
}

/** How often the thread looks; bounds how late a report or the notice of an orphan comes. */
export const WATCHDOG_POLL_MS = 100;
/** A synchronous task is reported once it has run this long (quick ones never are). */
export const REPORT_RUNNING_AFTER_MS = 100;
/** After the primary is gone, how long the event loop has to close the database by itself. */
export const ORPHAN_GRACE_MS = 300;

function watch({ marker, parentPid, reportFd }: WatchdogData): never {
  const running = new RunMarker(marker);
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const sleep = (ms: number): void => void Atomics.wait(sleeper, 0, 0, ms);
  let fd = reportFd;
  let reported = -1;
  for (;;) {
    sleep(WATCHDOG_POLL_MS);
    if (process.ppid !== parentPid) {
      sleep(ORPHAN_GRACE_MS);
      endProcessGroup();
    }
    const now = running.read();
    if (fd === undefined || now === undefined || now.ordinal === reported) continue;
    if (now.runningMs < REPORT_RUNNING_AFTER_MS) continue;
    reported = now.ordinal;
    const report: WatchdogReport = { type: 'running', ordinal: now.ordinal, runningMs: Math.round(now.runningMs) };
    try {
      writeSync(fd, `${JSON.stringify(report)}\n`);
    } catch {
      // The primary's end is closed: it is gone, which the parent check above will see.
      fd = undefined;
    }
  }
}

/**
 * SIGKILL to the worker's process group (a worker is forked as a group leader, `detached`), which
 * takes its handlers' child processes along; then to the worker alone, in case it leads none.
 */
export function endProcessGroup(): never {
  try {
    process.kill(-process.pid, 'SIGKILL');
  } catch {
    // No group of ours: not started detached.
  }
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable: SIGKILL did not end the process');
}

function isWatchdogData(value: unknown): value is WatchdogData {
  if (typeof value !== 'object' || value === null) return false;
  const { marker, parentPid } = value as Partial<Record<keyof WatchdogData, unknown>>;
  return marker instanceof SharedArrayBuffer && typeof parentPid === 'number';
}

const data: unknown = workerData;
if (isWatchdogData(data)) watch(data);
