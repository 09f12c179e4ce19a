import { performance } from 'node:perf_hooks';
import { describeIssues, ErrorCode, type ErrorData } from '../shared/errors';
import type { FromWorker, RunningTask, TaskOutcome, TaskSpec, ToWorker } from '../shared/protocol';
import { encodeValue, type EncodedValue, type StoredOutcome } from '../shared/results-db';
import type { ResultRecord, ResultWriter } from './result-writer';
import type { RunMarker } from './run-marker';
import type { TaskKind } from './task-kind';

export type Send = (message: FromWorker) => void;

/**
 * How long the runner runs synchronous tasks back to back before it lets the event loop turn:
 * commits then complete, outcomes go out and new tasks come in between CPU-bound tasks, instead of
 * after a whole batch of them.
 */
export const SLICE_MS = 5;
/** An asynchronous task still running after this long is reported, so the primary times it. */
export const REPORT_RUNNING_AFTER_MS = 100;
/** Characters of a stored result (as JSON, or the string itself); a larger one is refused. */
export const MAX_RESULT_CHARS = 1024 * 1024;
/** Characters of a handler's error message that are kept. */
export const MAX_ERROR_MESSAGE_CHARS = 2_000;

interface Queued {
  spec: TaskSpec;
  ordinal: number;
}

interface AsyncRun {
  ordinal: number;
  startedAt: number;
  settled: boolean;
}

/**
 * The worker's side of the IPC protocol: runs each task the primary sends, has the writer commit
 * its outcome, and reports outcomes only once they are committed. A task that may have been stored
 * by an earlier worker in this slot (`redelivered`) is looked up first and never run twice.
 *
 * Tasks run in the order they arrive, in slices of SLICE_MS. The primary times a task from when
 * it starts running, so it learns of starts that matter: an asynchronous task still running after
 * REPORT_RUNNING_AFTER_MS is reported here; a synchronous one that long blocks this thread, and is
 * reported by the watchdog thread from the RunMarker.
 */
export class TaskRunner {
  /** Tasks received and not yet reported. */
  private pending = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly queue: Queued[] = [];
  private queueHead = 0;
  private sliceScheduled = false;
  /** Asynchronous tasks not yet reported as running, in the order they started. */
  private unreported: AsyncRun[] = [];
  private reportTimer: NodeJS.Timeout | undefined;
  private onStorageFailure: (error: Error) => void = () => undefined;

  constructor(
    private readonly slot: number,
    private readonly kinds: ReadonlyMap<string, TaskKind>,
    private readonly writer: ResultWriter,
    private readonly send: Send,
    private readonly marker?: RunMarker,
  ) {
    writer.listen((records, error) => this.committed(records, error));
  }

  /** Called once a commit has failed: the worker cannot store what it runs and should stop. */
  onStorageFailed(listener: (error: Error) => void): void {
    this.onStorageFailure = listener;
  }

  /** Commits and reports every outcome produced so far, then lets go of the database. */
  close(): Promise<void> {
    if (this.reportTimer !== undefined) clearTimeout(this.reportTimer);
    return this.writer.close();
  }

  handle(message: ToWorker): void {
    switch (message.type) {
      case 'tasks': {
        this.pending += message.tasks.length;
        const redelivered: Queued[] = [];
        for (const [index, spec] of message.tasks.entries()) {
          const queued = { spec, ordinal: message.first + index };
          if (spec.redelivered === true) redelivered.push(queued);
          else this.queue.push(queued);
        }
        if (redelivered.length > 0) void this.resume(redelivered);
        // Run now: this is an I/O callback, and a slice in progress cannot be (it is synchronous).
        if (!this.sliceScheduled) this.runSlice();
        return;
      }
      case 'shutdown':
        return; // main.ts owns the process lifecycle; see there.
      default: {
        const unreachable: never = message;
        throw new Error(`unhandled message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Resolves when every task received so far has been reported. */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Runs queued tasks until SLICE_MS has passed, then yields: the commit of what is finished then
   * starts (it runs in SQLite's thread while the next task runs here), new messages are read, and
   * a CPU-bound burst never runs as one block. Quick tasks run many to a slice and share a commit;
   * yielding after each (to start its commit sooner) cost a fifth of the throughput, measured.
   */
  private runSlice(): void {
    this.sliceScheduled = false;
    const start = performance.now();
    let ran = 0;
    while (this.queueHead < this.queue.length) {
      if (ran > 0 && performance.now() - start >= SLICE_MS) {
        this.sliceScheduled = true;
        setImmediate(() => this.runSlice());
        break;
      }
      const next = this.queue[this.queueHead] as Queued;
      this.queue[this.queueHead] = undefined as unknown as Queued;
      this.queueHead += 1;
      this.start(next);
      ran += 1;
    }
    if (this.queueHead === this.queue.length) {
      this.queue.length = 0;
      this.queueHead = 0;
    }
  }

  private async resume(tasks: Queued[]): Promise<void> {
    let stored: Map<string, StoredOutcome>;
    try {
      stored = await this.writer.findStored(tasks.map(({ spec }) => spec.taskId));
    } catch {
      // Without the lookup we cannot know; running again is better than losing the task, and the
      // INSERT keeps the first row if there was one.
      stored = new Map();
    }
    const replies: TaskOutcome[] = [];
    for (const task of tasks) {
      const found = stored.get(task.spec.taskId);
      if (found !== undefined) replies.push(storedOutcome(task.spec.taskId, found));
      else if (task.spec.failWith !== undefined) this.fail(task.spec, task.spec.failWith);
      else this.queue.push(task);
    }
    if (replies.length > 0) this.report(replies);
    if (!this.sliceScheduled) this.runSlice();
  }

  private start({ spec, ordinal }: Queued): void {
    const kind = this.kinds.get(spec.kind);
    if (kind === undefined) {
      this.fail(spec, { code: ErrorCode.UNKNOWN_KIND, message: `unknown task kind "${spec.kind}"` });
      return;
    }
    const parsed = kind.schema.safeParse(spec.payload);
    if (!parsed.success) {
      this.fail(spec, { code: ErrorCode.BAD_PAYLOAD, message: describeIssues(parsed.error.issues, 'payload') });
      return;
    }
    let result: unknown;
    this.marker?.begin(ordinal);
    try {
      result = kind.run(parsed.data, { slot: this.slot, taskId: spec.taskId });
    } catch (error) {
      this.fail(spec, handlerError(error));
      return;
    } finally {
      this.marker?.end();
    }
    if (!isThenable(result)) {
      this.succeed(spec, result);
      return;
    }
    const run: AsyncRun = { ordinal, startedAt: performance.now(), settled: false };
    this.watchRunning(run);
    // A thenable's then() is handler code too: it may throw, or call back twice.
    try {
      result.then(
        (value: unknown) => {
          if (run.settled) return;
          run.settled = true;
          this.succeed(spec, value);
        },
        (error: unknown) => {
          if (run.settled) return;
          run.settled = true;
          this.fail(spec, handlerError(error));
        },
      );
    } catch (error) {
      if (!run.settled) {
        run.settled = true;
        this.fail(spec, handlerError(error));
      }
    }
  }

  /** Reports asynchronous tasks that are still running REPORT_RUNNING_AFTER_MS after they began. */
  private watchRunning(run: AsyncRun): void {
    this.unreported.push(run);
    if (this.reportTimer === undefined) this.armReportTimer();
  }

  private armReportTimer(): void {
    const oldest = this.unreported.find((run) => !run.settled);
    if (oldest === undefined) {
      this.unreported = [];
      return;
    }
    const wait = Math.max(0, oldest.startedAt + REPORT_RUNNING_AFTER_MS - performance.now());
    this.reportTimer = setTimeout(() => this.reportRunning(), wait);
    this.reportTimer.unref();
  }

  private reportRunning(): void {
    this.reportTimer = undefined;
    const now = performance.now();
    const tasks: RunningTask[] = [];
    let kept = 0;
    for (const run of this.unreported) {
      if (run.settled) continue;
      const runningMs = now - run.startedAt;
      if (runningMs >= REPORT_RUNNING_AFTER_MS) tasks.push({ ordinal: run.ordinal, runningMs: Math.round(runningMs) });
      else this.unreported[kept++] = run;
    }
    this.unreported.length = kept;
    if (tasks.length > 0) this.send({ type: 'running', tasks });
    this.armReportTimer();
  }

  private succeed(spec: TaskSpec, value: unknown): void {
    let result: EncodedValue | undefined;
    try {
      result = encodeValue(value === undefined ? null : value);
    } catch (error) {
      this.fail(spec, { code: ErrorCode.HANDLER_FAILED, message: `the result is not JSON: ${messageOf(error)}` });
      return;
    }
    if (result === undefined) {
      const what = typeof value === 'function' ? 'a function' : typeof value === 'symbol' ? 'a Symbol' : typeof value;
      this.fail(spec, { code: ErrorCode.HANDLER_FAILED, message: `the result is not JSON: the handler returned ${what}` });
      return;
    }
    if (result.text.length > MAX_RESULT_CHARS) {
      this.fail(spec, {
        code: ErrorCode.HANDLER_FAILED,
        message: `the result is ${result.text.length} characters long; at most ${MAX_RESULT_CHARS} are stored`,
      });
      return;
    }
    this.store(spec, 'done', result, { taskId: spec.taskId, status: 'done', result: result.text, json: result.json === 1 });
  }

  private fail(spec: TaskSpec, error: ErrorData): void {
    const stored = encodeValue(error) as EncodedValue;
    this.store(spec, 'failed', stored, { taskId: spec.taskId, status: 'failed', error });
  }

  private store(spec: TaskSpec, status: 'done' | 'failed', result: EncodedValue, outcome: TaskOutcome): void {
    this.writer.add({
      taskId: spec.taskId,
      clientId: spec.clientId,
      kind: spec.kind,
      // The payload came in as JSON: it always has a text.
      task: encodeValue(spec.payload) ?? { text: 'null', json: 1 },
      result,
      status,
      outcome,
    });
  }

  private committed(records: ResultRecord[], error: Error | undefined): void {
    if (error === undefined) {
      this.report(records.map((record) => record.outcome));
      return;
    }
    const lost: ErrorData = { code: ErrorCode.INTERNAL, message: `could not store the result: ${error.message}` };
    this.report(records.map((record) => ({ taskId: record.taskId, status: 'unstored', error: lost })));
    this.onStorageFailure(error);
  }

  private report(outcomes: TaskOutcome[]): void {
    this.send({ type: 'outcomes', outcomes });
    this.pending -= outcomes.length;
    if (this.pending === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}

function storedOutcome(taskId: string, outcome: StoredOutcome): TaskOutcome {
  if (outcome.status === 'failed') return { taskId, status: 'failed', error: outcome.error };
  const encoded = encodeValue(outcome.result) ?? { text: 'null', json: 1 };
  return { taskId, status: 'done', result: encoded.text, json: encoded.json === 1 };
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false;
  try {
    return typeof (value as { then?: unknown }).then === 'function';
  } catch {
    // A `then` getter that throws: not a thenable we can wait for; the value is judged as it is.
    return false;
  }
}

/**
 * Text for anything a handler may throw, without trusting it: an object with no prototype has no
 * toString, and a `message` getter may throw. Reading it must never take the worker down.
 */
export function messageOf(error: unknown): string {
  let text: string | undefined;
  try {
    const message: unknown = error instanceof Error ? error.message : (error as { message?: unknown } | null)?.message;
    if (typeof message === 'string') text = message;
  } catch {
    // A throwing getter: fall through.
  }
  if (text === undefined) {
    try {
      text = typeof error === 'object' && error !== null ? JSON.stringify(error) ?? String(error) : String(error);
    } catch {
      text = undefined;
    }
  }
  if (text === undefined || text === '' || text === '{}') text = 'the handler failed';
  return text.length > MAX_ERROR_MESSAGE_CHARS ? `${text.slice(0, MAX_ERROR_MESSAGE_CHARS)}…` : text;
}

function handlerError(error: unknown): ErrorData {
  return { code: ErrorCode.HANDLER_FAILED, message: messageOf(error) };
}
