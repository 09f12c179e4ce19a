import { performance } from 'node:perf_hooks';

/**
 * What the worker's event loop is doing, in shared memory that the watchdog thread reads while
 * the loop itself may be blocked by a handler: the ordinal of the synchronous task running now
 * (0 when none, else ordinal + 1) and when it started. Two stores per task, no allocation.
 */
export class RunMarker {
  static readonly BYTES = 16;
  private readonly running: Int32Array;
  private readonly since: Float64Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(RunMarker.BYTES)) {
    this.running = new Int32Array(buffer, 0, 1);
    this.since = new Float64Array(buffer, 8, 1);
  }

  /** The synchronous part of the task with this ordinal starts now. */
  begin(ordinal: number): void {
    // The time first: the watchdog reads the ordinal (atomically) and then the time.
    this.since[0] = now();
    Atomics.store(this.running, 0, ordinal + 1);
  }

  end(): void {
    Atomics.store(this.running, 0, 0);
  }

  /** The task running now, and for how long; undefined when none is. For the watchdog. */
  read(): { ordinal: number; runningMs: number } | undefined {
    const mark = Atomics.load(this.running, 0);
    if (mark === 0) return undefined;
    return { ordinal: mark - 1, runningMs: Math.max(0, now() - (this.since[0] as number)) };
  }
}

/** This thread's clock origin, read once (a getter) for the per-task `now()`. */
const ORIGIN = performance.timeOrigin;

/** Milliseconds on a clock that the worker's threads share (each thread has its own timeOrigin). */
function now(): number {
  return ORIGIN + performance.now();
}
