import { performance } from 'node:perf_hooks';
import { describeIssues, ErrorCode, type ErrorData } from '../shared/errors';
import { MAX_MESSAGE_CHARS, type FromWorker, type RunningTask, type TaskOutcome, type TaskSpec, type ToWorker } from '../shared/protocol';
import { encodeValue, type EncodedValue, type StoredOutcome } from '../shared/results-db';
import type { ResultRecord, ResultWriter } from './result-writer';
import type { RunMarker } from './run-marker';
import type { TaskContext, TaskKind } from './task-kind';

export type Send = (message: FromWorker) => void;
type TasksMessage = Extract<ToWorker, { type: 'tasks' }>;

/**
 * How long the runner runs synchronous tasks back to back before it lets the event loop turn:
 * commits then complete, outcomes go out and new tasks come in between CPU-bound tasks, instead of
 * after a whole batch of them.
 */
export const SLICE_MS = 5;
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
}

/** A cancelled task's failure, stored as its row. */
export const CANCELLED_ERROR: ErrorData = { code: ErrorCode.CANCELLED, message: 'the task was cancelled' };

/**
 * What a handler gets as its second argument. Its `signal` is made only when the handler asks for
 * it (most never do): one AbortController per task would cost every task.
 */
class RunContext implements TaskContext {
  private controller: AbortController | undefined;

  constructor(
    readonly slot: number,
    readonly taskId: string,
    private readonly running: Map<string, RunContext>,
  ) {}

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      this.running.set(this.taskId, this);
    }
    return this.controller.signal;
  }

  get aborted(): boolean {
    return this.controller?.signal.aborted === true;
  }

  abort(): void {
    this.controller?.abort(new Error('the task was cancelled'));
  }
}

/**
 * The worker's side of the IPC protocol: runs each task the primary sends, has the writer commit
 * its outcome, and reports outcomes only once they are committed. A task that may have been stored
 * by an earlier worker in this slot (`redelivered`) is looked up first and never run twice.
 *
 * Tasks run in the order they arrive, in slices of SLICE_MS. The primary times a task from when
 * it starts running, so it is told of starts: every asynchronous task's, at the end of the slice
 * that started it (its code may go on to block this thread from a callback); a synchronous task
 * that runs a while blocks this thread, and is reported by the watchdog thread from the RunMarker.
 */
export class TaskRunner {
  /** Tasks received and not yet reported. */
  private pending = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly queue: (Queued | undefined)[] = [];
  private queueHead = 0;
  private sliceScheduled = false;
  /** Asynchronous tasks started in this slice: reported as running at its end. */
  private startedAsync: AsyncRun[] = [];
  private onStorageFailure: (error: Error) => void = () => undefined;
  /** Tasks cancelled before they started: failed CANCELLED when their turn comes. */
  private readonly cancelled = new Set<string>();
  /** Running asynchronous tasks whose handler asked for its signal, by task id. */
  private readonly signalled = new Map<string, RunContext>();

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
    return this.writer.close();
  }

  /** Takes a batch of tasks from the primary (its other message, `shutdown`, is main.ts's). */
  handle(message: TasksMessage): void {
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
  }

  /**
   * The primary's `cancel`: a task not started yet fails CANCELLED when its turn comes; a running
   * one's signal aborts (a handler that never looks at it runs to its end). One already finished
   * is not here any more, and nothing happens.
   */
  cancel(taskIds: readonly string[]): void {
    for (const taskId of taskIds) {
      const running = this.signalled.get(taskId);
      if (running !== undefined) running.abort();
      else if (this.queued(taskId)) this.cancelled.add(taskId);
    }
  }

  private queued(taskId: string): boolean {
    for (let index = this.queueHead; index < this.queue.length; index += 1) {
      if (this.queue[index]?.spec.taskId === taskId) return true;
    }
    return false;
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
   *
   * After a task that alone took a slice or more, the next slice waits until that task's outcome
   * is committed and reported: a commit takes several turns of the event loop, and with a long
   * task in each turn a finished task's outcome came only after the whole burst, its clock still
   * running in the primary.
   */
  private runSlice(): void {
    this.sliceScheduled = false;
    const start = performance.now();
    let ran = 0;
    let last = start;
    this.writer.cork();
    try {
      while (this.queueHead < this.queue.length) {
        const now = ran === 0 ? start : performance.now();
        if (ran > 0 && now - start >= SLICE_MS) {
          this.sliceScheduled = true;
          const longTask = now - last >= SLICE_MS;
          if (longTask) void this.writer.idle().then(() => setImmediate(() => this.runSlice()));
          else setImmediate(() => this.runSlice());
          break;
        }
        last = now;
        const next = this.queue[this.queueHead] as Queued;
        this.queue[this.queueHead] = undefined;
        this.queueHead += 1;
        this.startGuarded(next);
        ran += 1;
      }
    } finally {
      // The slice's outcomes go to SQLite's thread now, in one commit.
      this.writer.uncork();
    }
    if (this.queueHead === this.queue.length) {
      this.queue.length = 0;
      this.queueHead = 0;
    }
    this.reportStartedAsync();
  }

  /**
   * Tells the primary of the asynchronous tasks started in this slice, before this thread runs
   * their callbacks: one of them may block it for good (a loop after an `await`).
   */
  private reportStartedAsync(): void {
    if (this.startedAsync.length === 0) return;
    const now = performance.now();
    const tasks: RunningTask[] = this.startedAsync.map((run) => ({ ordinal: run.ordinal, runningMs: Math.round(now - run.startedAt) }));
    this.startedAsync = [];
    this.send({ type: 'running', tasks });
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

  /**
   * start(), and a failure for its task should it throw all the same: a task taken from the queue
   * must end with an outcome, or its slot would wait for it for good.
   */
  private startGuarded(queued: Queued): void {
    try {
      this.start(queued);
    } catch (error) {
      this.fail(queued.spec, { code: ErrorCode.INTERNAL, message: `the worker could not run the task: ${messageOf(error)}` });
    }
  }

  private start({ spec, ordinal }: Queued): void {
    if (this.cancelled.size > 0 && this.cancelled.delete(spec.taskId)) {
      // Cancelled before it started: a retry that never ran is not an attempt.
      this.fail(spec, CANCELLED_ERROR, false);
      return;
    }
    // Store this failure instead of running the task (cancelled while queued in the primary).
    if (spec.failWith !== undefined) {
      this.fail(spec, spec.failWith);
      return;
    }
    const kind = this.kinds.get(spec.kind);
    if (kind === undefined) {
      this.fail(spec, { code: ErrorCode.UNKNOWN_KIND, message: `unknown task kind "${spec.kind}"` });
      return;
    }
    const parsed = this.parsePayload(spec, kind);
    if (parsed === undefined) return;
    let result: unknown;
    const context = new RunContext(this.slot, spec.taskId, this.signalled);
    this.marker?.begin(ordinal);
    try {
      result = kind.run(parsed.data, context);
    } catch (error) {
      this.signalled.delete(spec.taskId);
      this.fail(spec, handlerError(error));
      return;
    } finally {
      this.marker?.end();
    }
    if (!isThenable(result)) {
      this.signalled.delete(spec.taskId);
      this.succeed(spec, result);
      return;
    }
    this.startedAsync.push({ ordinal, startedAt: performance.now() });
    // A thenable's then() is handler code too: it may throw, or call back twice.
    let settled = false;
    try {
      result.then(
        (value: unknown) => {
          if (settled) return;
          settled = true;
          this.signalled.delete(spec.taskId);
          this.succeed(spec, value);
        },
        (error: unknown) => {
          if (settled) return;
          settled = true;
          this.signalled.delete(spec.taskId);
          // A handler that gave up on its aborted signal was cancelled, whatever it threw.
          this.fail(spec, context.aborted ? CANCELLED_ERROR : handlerError(error));
        },
      );
    } catch (error) {
      if (!settled) {
        settled = true;
        this.fail(spec, handlerError(error));
      }
    }
  }

  /** The payload as the kind's schema gives it; undefined once the task has failed instead. */
  private parsePayload(spec: TaskSpec, kind: TaskKind): { data: unknown } | undefined {
    try {
      const parsed = kind.schema.safeParse(payloadOf(spec));
      if (parsed.success) return parsed;
      this.fail(spec, { code: ErrorCode.BAD_PAYLOAD, message: bounded(describeIssues(parsed.error.issues, 'payload')) });
    } catch (error) {
      // A schema is handler code too (a refine that throws): it fails the task, not the worker.
      this.fail(spec, { code: ErrorCode.HANDLER_FAILED, message: `the payload schema of "${spec.kind}" threw: ${messageOf(error)}` });
    }
    return undefined;
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
      const what =
        typeof value === 'function'
          ? 'the handler returned a function'
          : typeof value === 'symbol'
            ? 'the handler returned a Symbol'
            : 'the handler returned an object whose toJSON gives nothing JSON can hold';
      this.fail(spec, { code: ErrorCode.HANDLER_FAILED, message: `the result is not JSON: ${what}` });
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

  /** @param ran whether this attempt ran (false: cancelled before it started). */
  private fail(spec: TaskSpec, error: ErrorData, ran = true): void {
    if (spec.retry === true && (error.code === ErrorCode.HANDLER_FAILED || error.code === ErrorCode.TIMEOUT)) {
      // It runs again (on another worker, after a while): only its final outcome is stored.
      this.report([{ taskId: spec.taskId, status: 'retry', error }]);
      return;
    }
    const stored = encodeValue(error) as EncodedValue;
    const attempt = spec.attempt ?? 1;
    // An attempt that never ran is not counted (attempts begun, at least 1); the primary is told
    // only when that differs from what it sent.
    const attempts = ran ? attempt : Math.max(1, attempt - 1);
    const outcome: TaskOutcome = { taskId: spec.taskId, status: 'failed', error, ...(attempts === attempt ? {} : { attempts }) };
    this.store(spec, 'failed', stored, outcome, attempts);
  }

  private store(spec: TaskSpec, status: 'done' | 'failed', result: EncodedValue, outcome: TaskOutcome, attempts = spec.attempt ?? 1): void {
    this.writer.add({
      taskId: spec.taskId,
      clientId: spec.clientId,
      kind: spec.kind,
      // The payload came in as JSON: it always has a text.
      task: spec.payloadJson !== undefined ? { text: spec.payloadJson, json: 1 } : (encodeValue(spec.payload) ?? { text: 'null', json: 1 }),
      result,
      status,
      attempts,
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

  /** Sends outcomes in messages of at most MAX_MESSAGE_CHARS of results each. */
  private report(outcomes: TaskOutcome[]): void {
    let start = 0;
    let chars = 0;
    for (let index = 0; index < outcomes.length; index += 1) {
      const outcome = outcomes[index] as TaskOutcome;
      chars += outcome.status === 'done' ? outcome.result.length : outcome.error.message.length;
      if (chars >= MAX_MESSAGE_CHARS || index === outcomes.length - 1) {
        this.send({ type: 'outcomes', outcomes: start === 0 && index === outcomes.length - 1 ? outcomes : outcomes.slice(start, index + 1) });
        start = index + 1;
        chars = 0;
      }
    }
    this.pending -= outcomes.length;
    if (this.pending === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}

/** A task's payload, parsed here when the primary sent it as JSON text. */
function payloadOf(spec: TaskSpec): unknown {
  if (spec.payloadJson === undefined) return spec.payload;
  try {
    return JSON.parse(spec.payloadJson);
  } catch {
    return undefined; // the schema then says what is wrong
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
  return bounded(text);
}

/** At most MAX_ERROR_MESSAGE_CHARS of a message that handler code (or its schema) made. */
function bounded(text: string): string {
  return text.length > MAX_ERROR_MESSAGE_CHARS ? `${text.slice(0, MAX_ERROR_MESSAGE_CHARS)}…` : text;
}

function handlerError(error: unknown): ErrorData {
  return { code: ErrorCode.HANDLER_FAILED, message: messageOf(error) };
}
