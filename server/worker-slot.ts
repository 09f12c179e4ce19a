import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { describeIssues, ErrorCode } from '../shared/errors';
import type { Logger } from '../shared/logger';
import { FromWorkerSchema, type TaskOutcome, type WorkerState, type WorkerStats } from '../shared/protocol';
import { toSpec, type Outcome, type Task } from './task';

/** A worker that dies sooner than this after it was ready counts as dying young. */
export const MIN_UPTIME_MS = 1_000;
/** Delay before the second young death in a row is respawned; doubles after each, up to the max. */
export const RESPAWN_BACKOFF_BASE_MS = 100;
export const RESPAWN_BACKOFF_MAX_MS = 10_000;
/** Characters of payload a worker may hold at once, whatever --max-inflight-per-worker allows. */
export const MAX_INFLIGHT_CHARS_PER_WORKER = 16 * 1024 * 1024;
/** How long a stopping worker has to exit after `shutdown` before it is killed. */
export const STOP_TIMEOUT_MS = 5_000;

export interface SlotOptions {
  slot: number;
  /** The compiled worker entry point and its arguments. */
  script: string;
  args: readonly string[];
  maxInflight: number;
  maxAttempts: number;
  /**
   * A worker that has not said `ready` this long after it was started (its handlers module hangs,
   * its disk stalls) is killed; its death counts as a young one, so the slot backs off.
   */
  readyTimeoutMs: number;
  logger: Logger;
  events: SlotEvents;
  /** Starts a worker process with `args` (a standby, see StandbyPool); a plain fork when absent. */
  spawn?: (args: readonly string[]) => ChildProcess;
}

/** What a slot tells the dispatcher. */
export interface SlotEvents {
  ready(slot: WorkerSlot, kinds: readonly string[]): void;
  /** Outcomes of tasks, once committed by the worker (or decided by the slot). */
  settled(slot: WorkerSlot, settled: readonly [Task, Outcome][]): void;
  /** Tasks handed to this slot that never reached its worker; someone else may run them. */
  returned(slot: WorkerSlot, tasks: readonly Task[]): void;
  /** The slot can take more tasks. */
  capacity(slot: WorkerSlot): void;
}

/**
 * One worker slot: forks its child, waits for `ready`, hands it tasks in batches, and when the
 * child dies deals with the tasks it held and forks a replacement on the same database, with a
 * backoff if it keeps dying young. Tasks the dead child held are redelivered to the replacement,
 * which looks each one up before running it again; those that have now killed `maxAttempts`
 * workers are stored as WORKER_LOST instead. Tasks that killed a worker once are run alone, so
 * that the next death is known to be theirs.
 */
export class WorkerSlot {
  readonly slot: number;
  state: WorkerState = 'stopped';
  restarts = 0;
  done = 0;
  failed = 0;

  private child: ChildProcess | undefined;
  private readyAt = 0;
  private everReady = false;
  private readonly inflight = new Map<string, Task>();
  private inflightChars = 0;
  private outbox: Task[] = [];
  private flushScheduled = false;
  /** Tasks to hand the next worker first, together. */
  private redeliveries: Task[] = [];
  /** Tasks that were held by a worker that died on its own; handed over one at a time. */
  private suspects: Task[] = [];
  /** The suspect now running alone: nothing else is handed over until it settles. */
  private isolated: Task | undefined;
  /** Ids of the tasks whose time limit made this slot kill its worker. */
  private readonly timedOut = new Set<string>();
  private killedByPrimary = false;
  private youngDeaths = 0;
  private respawnTimer: NodeJS.Timeout | undefined;
  private readyTimer: NodeJS.Timeout | undefined;
  /** Set when the ready timeout killed the worker, for the message of its death. */
  private notReadyIn: number | undefined;
  private firstReady: { resolve: () => void; reject: (error: Error) => void } | undefined;
  private stopping: Promise<void> | undefined;
  private exited: (() => void) | undefined;

  constructor(private readonly options: SlotOptions) {
    this.slot = options.slot;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  /** Tasks this slot holds or owes a reply for: in flight and waiting for a replacement. */
  get heldCount(): number {
    return this.inflight.size + this.redeliveries.length + this.suspects.length;
  }

  /** Forks the first worker; resolves when it is ready, rejects if it dies before. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.firstReady = { resolve, reject };
      this.spawn();
    });
  }

  /** Whether a new task may be handed to this slot now. */
  canTake(): boolean {
    return (
      this.state === 'ready' &&
      this.redeliveries.length === 0 &&
      this.suspects.length === 0 &&
      this.isolated === undefined &&
      !this.killedByPrimary &&
      this.inflight.size < this.options.maxInflight &&
      this.inflightChars < MAX_INFLIGHT_CHARS_PER_WORKER
    );
  }

  assign(task: Task): void {
    task.deadline = performance.now() + task.timeoutMs;
    this.inflight.set(task.taskId, task);
    this.inflightChars += task.chars;
    this.outbox.push(task);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // One IPC message for all the tasks handed over in this turn of the event loop.
      setImmediate(() => this.flush());
    }
  }

  /** Kills the worker if a task it holds is past its deadline; the exit handler does the rest. */
  sweepTimeouts(now: number): void {
    if (this.state !== 'ready' || this.killedByPrimary || this.child === undefined) return;
    for (const task of this.inflight.values()) {
      if (now > task.deadline) this.timedOut.add(task.taskId);
    }
    if (this.timedOut.size === 0) return;
    this.options.logger.warn(
      this.slot,
      `${this.timedOut.size} task(s) ran past their time limit; killing pid ${this.child.pid} to stop them`,
    );
    this.killedByPrimary = true;
    this.child.kill('SIGKILL');
  }

  stats(): WorkerStats {
    return {
      slot: this.slot,
      pid: this.pid,
      state: this.state,
      done: this.done,
      failed: this.failed,
      inflight: this.heldCount,
      restarts: this.restarts,
      uptimeMs: this.state === 'ready' ? Math.round(performance.now() - this.readyAt) : 0,
    };
  }

  /**
   * Asks the worker to finish and close its database, then kills it if it has not exited within
   * `timeoutMs`. Safe to call twice: returns the same promise.
   */
  stop(timeoutMs = STOP_TIMEOUT_MS): Promise<void> {
    this.stopping ??= new Promise<void>((resolve) => {
      if (this.respawnTimer !== undefined) clearTimeout(this.respawnTimer);
      this.clearReadyTimer();
      const child = this.child;
      this.state = 'stopping';
      if (child === undefined) {
        this.state = 'stopped';
        resolve();
        return;
      }
      const killTimer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      this.exited = () => {
        clearTimeout(killTimer);
        resolve();
      };
      child.send({ type: 'shutdown' }, (error) => {
        if (error !== null) child.kill('SIGKILL');
      });
    });
    return this.stopping;
  }

  /** Kills the worker at once (a forced shutdown). */
  kill(): void {
    this.child?.kill('SIGKILL');
  }

  private spawn(): void {
    const { script, args, logger } = this.options;
    this.state = 'starting';
    this.killedByPrimary = false;
    const child = this.options.spawn?.(args) ?? fork(script, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child = child;
    this.notReadyIn = undefined;
    const { readyTimeoutMs } = this.options;
    this.readyTimer = setTimeout(() => {
      this.readyTimer = undefined;
      if (child !== this.child || this.state !== 'starting') return;
      logger.warn(this.slot, `worker pid ${child.pid} is not ready ${readyTimeoutMs} ms after it was started; killing it`);
      this.notReadyIn = readyTimeoutMs;
      child.kill('SIGKILL');
    }, readyTimeoutMs);
    child.on('message', (raw: unknown) => this.receive(child, raw));
    child.on('error', (error) => logger.error(this.slot, `worker error: ${error.message}`));
    child.once('exit', (code, signal) => this.onExit(child, code, signal));
  }

  private receive(child: ChildProcess, raw: unknown): void {
    if (child !== this.child) return;
    const parsed = FromWorkerSchema.safeParse(raw);
    if (!parsed.success) {
      this.options.logger.error(this.slot, `malformed message from worker: ${describeIssues(parsed.error.issues)}`);
      return;
    }
    const message = parsed.data;
    switch (message.type) {
      case 'ready':
        this.onReady(message.pid, message.kinds);
        return;
      case 'outcomes':
        this.onOutcomes(message.outcomes);
        return;
      default: {
        const unreachable: never = message;
        throw new Error(`unhandled message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private onReady(pid: number, kinds: readonly string[]): void {
    // Too late: a worker the ready timeout has killed may still have its `ready` in the pipe.
    if (this.state !== 'starting' || this.notReadyIn !== undefined) return;
    this.clearReadyTimer();
    this.state = 'ready';
    this.readyAt = performance.now();
    this.everReady = true;
    this.options.logger.info(
      this.slot,
      this.restarts === 0 ? `ready, pid ${pid}` : `respawned, ready, pid ${pid} (restart ${this.restarts})`,
    );
    this.firstReady?.resolve();
    this.firstReady = undefined;
    this.options.events.ready(this, kinds);
    this.pump();
  }

  private onOutcomes(outcomes: readonly TaskOutcome[]): void {
    const settled: [Task, Outcome][] = [];
    for (const outcome of outcomes) {
      const task = this.inflight.get(outcome.taskId);
      if (task === undefined) continue;
      this.inflight.delete(outcome.taskId);
      this.inflightChars -= task.chars;
      this.timedOut.delete(outcome.taskId);
      if (task === this.isolated) this.isolated = undefined;
      if (outcome.status === 'done') {
        this.done += 1;
        settled.push([task, { status: 'done', result: outcome.result, worker: this.slot }]);
      } else {
        this.failed += 1;
        settled.push([task, { status: 'failed', error: outcome.error, worker: this.slot }]);
      }
    }
    this.options.events.settled(this, settled);
    this.pump();
  }

  /** Hands waiting redeliveries to a ready worker, then tells the dispatcher if there is room. */
  private pump(): void {
    if (this.state !== 'ready') return;
    const max = this.options.maxInflight;
    while (this.redeliveries.length > 0 && this.inflight.size < max) {
      this.assign(this.redeliveries.shift() as Task);
    }
    if (this.redeliveries.length === 0 && this.suspects.length > 0 && this.inflight.size === 0) {
      this.isolated = this.suspects.shift() as Task;
      this.assign(this.isolated);
    }
    if (this.canTake()) this.options.events.capacity(this);
  }

  private flush(): void {
    this.flushScheduled = false;
    const child = this.child;
    if (this.outbox.length === 0 || child === undefined || !child.connected) return;
    const tasks = this.outbox.map(toSpec);
    this.outbox = [];
    // An error here means the child is gone; its exit handler redelivers what it held.
    child.send({ type: 'tasks', tasks }, () => undefined);
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.child) return;
    this.child = undefined;
    this.clearReadyTimer();
    const how =
      this.notReadyIn !== undefined
        ? `killed: not ready within ${this.notReadyIn} ms`
        : signal === null
          ? `code ${code}`
          : `signal ${signal}`;

    if (this.state === 'stopping' || this.state === 'stopped') {
      this.state = 'stopped';
      this.exited?.();
      return;
    }
    if (!this.everReady) {
      this.state = 'stopped';
      this.firstReady?.reject(new Error(`worker ${this.slot} (pid ${child.pid}) exited (${how}) before it was ready`));
      this.firstReady = undefined;
      return;
    }

    const { logger, events } = this.options;
    const uptime = this.state === 'ready' ? performance.now() - this.readyAt : 0;
    const byPrimary = this.killedByPrimary;
    logger.warn(this.slot, `worker pid ${child.pid} died (${how}) holding ${this.inflight.size} task(s)`);

    const unsent = new Set(this.outbox);
    this.outbox = [];
    const held = [...this.inflight.values()].filter((task) => !unsent.has(task));
    this.inflight.clear();
    this.inflightChars = 0;
    this.isolated = undefined;
    for (const task of held) this.reclaim(task, byPrimary);
    this.timedOut.clear();
    // Tasks that never reached the dead worker may run on any slot, except a redelivered one: it
    // may be stored in this slot's database already, and only that database can tell.
    const returned: Task[] = [];
    for (const task of unsent) {
      if (!task.redelivered) returned.push(task);
      else if (task.failWith === undefined && task.deaths > 0) this.suspects.push(task);
      else this.redeliveries.push(task);
    }

    this.youngDeaths = !byPrimary && uptime < MIN_UPTIME_MS ? this.youngDeaths + 1 : 0;
    const delay =
      this.youngDeaths <= 1 ? 0 : Math.min(RESPAWN_BACKOFF_BASE_MS * 2 ** (this.youngDeaths - 2), RESPAWN_BACKOFF_MAX_MS);
    this.restarts += 1;
    if (delay === 0) {
      this.spawn();
    } else {
      logger.warn(this.slot, `worker keeps dying young (${this.youngDeaths} in a row); respawning in ${delay} ms`);
      this.state = 'backoff';
      this.respawnTimer = setTimeout(() => {
        this.respawnTimer = undefined;
        this.spawn();
      }, delay);
    }
    // Only now, when this slot no longer looks ready, so that they are not handed straight back to
    // it with no worker to send them to.
    if (returned.length > 0) events.returned(this, returned);
  }

  private clearReadyTimer(): void {
    if (this.readyTimer !== undefined) clearTimeout(this.readyTimer);
    this.readyTimer = undefined;
  }

  /** Decides what becomes of a task the dead worker held: stored failure, or run again. */
  private reclaim(task: Task, byPrimary: boolean): void {
    task.redelivered = true;
    if (this.timedOut.has(task.taskId)) {
      task.failWith = { code: ErrorCode.TIMEOUT, message: `task ran past its time limit of ${task.timeoutMs} ms` };
    } else if (!byPrimary) {
      task.deaths += 1;
      if (task.deaths >= this.options.maxAttempts) {
        task.failWith = {
          code: ErrorCode.WORKER_LOST,
          message: `task was running when its worker died ${task.deaths} time${task.deaths === 1 ? '' : 's'}; not trying again`,
        };
      }
    }
    if (task.failWith === undefined && task.deaths > 0) this.suspects.push(task);
    else this.redeliveries.push(task);
  }
}
