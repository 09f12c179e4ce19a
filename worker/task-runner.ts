import { describeIssues, ErrorCode, type ErrorData } from '../shared/errors';
import type { FromWorker, TaskOutcome, TaskSpec, ToWorker } from '../shared/protocol';
import { encodeValue, type EncodedValue, type StoredOutcome } from '../shared/results-db';
import type { ResultRecord, ResultWriter } from './result-writer';
import type { TaskKind } from './task-kind';

export type Send = (message: FromWorker) => void;

/**
 * The worker's side of the IPC protocol: runs each task the primary sends, has the writer commit
 * its outcome, and reports outcomes only once they are committed. A task that may have been stored
 * by an earlier worker in this slot (`redelivered`) is looked up first and never run twice.
 */
export class TaskRunner {
  /** Tasks received and not yet reported. */
  private pending = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly slot: number,
    private readonly kinds: ReadonlyMap<string, TaskKind>,
    private readonly writer: ResultWriter,
    private readonly send: Send,
  ) {
    writer.listen((records, error) => this.committed(records, error));
  }

  /** Commits and reports every outcome produced so far, then lets go of the database. */
  close(): Promise<void> {
    return this.writer.close();
  }

  private committed(records: ResultRecord[], error: Error | undefined): void {
    const outcomes: TaskOutcome[] = records.map((record) =>
      error === undefined
        ? toOutcome(record.taskId, record.outcome)
        : {
            taskId: record.taskId,
            status: 'failed',
            error: { code: ErrorCode.INTERNAL, message: `could not store the result: ${error.message}` },
          },
    );
    this.report(outcomes);
  }

  handle(message: ToWorker): void {
    switch (message.type) {
      case 'tasks': {
        this.pending += message.tasks.length;
        const redelivered = message.tasks.filter((task) => task.redelivered === true);
        for (const task of message.tasks) {
          if (task.redelivered !== true) this.start(task);
        }
        if (redelivered.length > 0) void this.resume(redelivered);
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

  private async resume(tasks: TaskSpec[]): Promise<void> {
    let stored: Map<string, StoredOutcome>;
    try {
      stored = await this.writer.findStored(tasks.map((task) => task.taskId));
    } catch {
      // Without the lookup we cannot know; running again is better than losing the task, and the
      // INSERT keeps the first row if there was one.
      stored = new Map();
    }
    const replies: TaskOutcome[] = [];
    for (const task of tasks) {
      const found = stored.get(task.taskId);
      if (found !== undefined) replies.push(toOutcome(task.taskId, found));
      else if (task.failWith !== undefined) this.store(task, { status: 'failed', error: task.failWith });
      else this.start(task);
    }
    if (replies.length > 0) this.report(replies);
  }

  private start(task: TaskSpec): void {
    const kind = this.kinds.get(task.kind);
    if (kind === undefined) {
      this.fail(task, { code: ErrorCode.UNKNOWN_KIND, message: `unknown task kind "${task.kind}"` });
      return;
    }
    const parsed = kind.schema.safeParse(task.payload);
    if (!parsed.success) {
      this.fail(task, { code: ErrorCode.BAD_PAYLOAD, message: describeIssues(parsed.error.issues, 'payload') });
      return;
    }
    let result: unknown;
    try {
      result = kind.run(parsed.data, { slot: this.slot, taskId: task.taskId });
    } catch (error) {
      this.fail(task, handlerError(error));
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (value: unknown) => this.store(task, { status: 'done', result: value ?? null }),
        (error: unknown) => this.fail(task, handlerError(error)),
      );
    } else {
      this.store(task, { status: 'done', result: result ?? null });
    }
  }

  private fail(task: TaskSpec, error: ErrorData): void {
    this.store(task, { status: 'failed', error });
  }

  private store(task: TaskSpec, outcome: StoredOutcome): void {
    let result: EncodedValue;
    try {
      result = encodeValue(outcome.status === 'done' ? outcome.result : outcome.error);
    } catch (error) {
      outcome = { status: 'failed', error: handlerError(new Error(`the result is not JSON: ${messageOf(error)}`)) };
      result = encodeValue(outcome.error);
    }
    this.writer.add({
      taskId: task.taskId,
      clientId: task.clientId,
      kind: task.kind,
      task: encodeValue(task.payload),
      result,
      outcome,
    });
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

function toOutcome(taskId: string, outcome: StoredOutcome): TaskOutcome {
  return outcome.status === 'done'
    ? { taskId, status: 'done', result: outcome.result }
    : { taskId, status: 'failed', error: outcome.error };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function handlerError(error: unknown): ErrorData {
  const message = messageOf(error);
  return { code: ErrorCode.HANDLER_FAILED, message: message === '' ? 'the handler failed' : message };
}
