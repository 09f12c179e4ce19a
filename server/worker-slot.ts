import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { describeIssues, ErrorCode, type ErrorData, messageOf } from '../shared/errors';
import { fastOutcome, fastOutcomes } from '../shared/fast-checks';
import { LineSplitter } from '../shared/framing';
import type { Logger } from '../shared/logger';
import {
  FromWorkerSchema,
  MAX_MESSAGE_CHARS,
  TaskOutcomeSchema,
  WatchdogReportSchema,
  type RunningTask,
  type WorkerState,
  type WorkerStats,
} from '../shared/protocol';
import { encodeValue, type StoredOutcome } from '../shared/results-db';
import type { Availability } from './round-robin';
import {
  blamesTasks,
  MAX_START_FAILURES,
  reclaim,
  respawnDelayMs,
  youngDeathsAfter,
  type Death,
} from './slot-policy';
import { toSpec, unattempted, type Outcome, type Task } from './task';
import type { WorkerProcess } from './worker-process';

/** Characters of payload a worker may hold at once, whatever --max-inflight-per-worker allows. */
export const MAX_INFLIGHT_CHARS_PER_WORKER = 16 * 1024 * 1024;
/** How long a stopping worker has to exit after `shutdown` before it is killed, by default. */
export const STOP_TIMEOUT_MS = 5_000;
/** A worker holding tasks that has said nothing this long is checked for being stopped. */
const STOPPED_SILENCE_MS = 500;
const STOPPED_CHECK_EVERY_MS = 250;
/** After a worker's exit, how long its IPC channel is given to deliver what it sent last. */
const EXIT_DRAIN_MS = 200;
/** Longest line the watchdog side channel may carry; its reports are a few dozen bytes. */
const MAX_WATCHDOG_LINE_BYTES = 1024;

/** What a slot counts over its workers' lives (see WorkerSlot.counts). */
export interface SlotCounts {
  done: number;
  failed: number;
  /** Workers that died (or could not start) and were replaced. */
  restarts: number;
  /** Workers replaced gracefully for --max-tasks-per-worker or --max-worker-rss-mb. */
  recycles: number;
  redelivered: number;
}

export interface SlotOptions {
  slot: number;
  /** The worker's arguments. */
  args: readonly string[];
  maxInflight: number;
  maxAttempts: number;
  /**
   * A worker that has not said `ready` this long after it was started (its handlers module hangs,
   * its disk stalls) is killed; its death counts as a young one, so the slot backs off.
   */
  readyTimeoutMs: number;
  /** A worker that has finished this many tasks is reported `worn` (--max-tasks-per-worker). */
  maxTasksPerWorker?: number;
  logger: Logger;
  events: SlotEvents;
  /** Starts a worker process with `args`; may throw, or emit 'error' with no pid, if it cannot. */
  spawn: (args: readonly string[]) => WorkerProcess;
  /** Ends what is left of a dead worker's process group (what its handlers started). */
  endGroup: (pid: number) => void;
  /** Reads the slot's file for tasks stored there, when there is no worker to ask. */
  findStored: (taskIds: readonly string[]) => Promise<Map<string, StoredOutcome>>;
}

/** What a slot tells the dispatcher. */
export interface SlotEvents {
  ready(slot: WorkerSlot, kinds: readonly string[], schemas: Readonly<Record<string, unknown>>): void;
  /** Outcomes of tasks, once committed by the worker (or decided by the slot). */
  settled(slot: WorkerSlot, settled: readonly [Task, Outcome][]): void;
  /** Tasks this slot will not run after all (never sent, or never stored); any slot may. */
  returned(slot: WorkerSlot, tasks: readonly Task[]): void;
  /** The slot can take more tasks, or has gone down or come back: the queue may move. */
  changed(slot: WorkerSlot): void;
  /** The worker has finished `maxTasksPerWorker` tasks: it should be replaced (see retire). */
  worn(slot: WorkerSlot, why: string): void;
  /** This attempt of a task failed, unstored, and the task has retries left (see TaskSpec.retry). */
  retry(slot: WorkerSlot, task: Task, error: ErrorData): void;
}

/**
 * One worker slot: forks its child, waits for `ready`, hands it tasks in batches, and when the
 * child dies deals with the tasks it held and forks a replacement on the same database, with a
 * backoff if it keeps dying young. Tasks the dead child held are redelivered to the replacement,
 * which looks each one up before running it again; those that have now killed `maxAttempts`
 * workers are stored as WORKER_LOST instead. Tasks that killed a worker once are run alone, so
 * that the next death is known to be theirs.
 *
 * Time limits count from when a task starts running: the worker reports a task that runs a
 * while (an asynchronous one itself, a synchronous one through its watchdog thread, which can
 * speak while the task blocks the worker), and the primary's sweep kills a worker holding a task
 * past its limit.
 */
export class WorkerSlot {
  readonly slot: number;
  state: WorkerState = 'stopped';
  /** Counted over every worker this slot has had; a successor (see retire) counts on from them. */
  readonly counts: SlotCounts;

  private child: WorkerProcess | undefined;
  /** Tasks sent to the current child so far: the next one's ordinal. */
  private sentToChild = 0;
  private readyAt = 0;
  /** Date.now() of the current worker's `ready`, and of the last exit of a worker here. */
  private readyWallAt: number | undefined;
  private lastDeathAt: number | undefined;
  private everReady = false;
  private readonly inflight = new Map<string, Task>();
  private inflightChars = 0;
  /**
   * Tasks in flight whose worker has said they are running, with performance.now() when they
   * started there: the ones with a clock (a time limit counts from a task's start, not its send).
   */
  private readonly running = new Map<Task, number>();
  /** Running tasks a sweep found past their limit: killed for it if the next sweep does too. */
  private readonly overdue = new Set<Task>();
  /** The synchronous task the watchdog last reported running, until it leaves the worker. */
  private blockedBy: Task | undefined;
  private outbox: Task[] = [];
  private flushScheduled = false;
  /** flush(), bound once: not a closure per batch. */
  private readonly flushNow = (): void => this.flush();
  /** Tasks to hand the next worker first, together. */
  private redeliveries: Task[] = [];
  /** Tasks that were held by a worker that died on its own; handed over one at a time. */
  private suspects: Task[] = [];
  /** The suspect now running alone: nothing else is handed over until it settles. */
  private isolated: Task | undefined;
  /** Ids of the tasks whose time limit made this slot kill its worker. */
  private readonly timedOut = new Set<string>();
  private killedByPrimary = false;
  /** The worker cannot store what it runs (it said so): no new task goes to it. */
  private failing = false;
  /** The worker has exited; what it sent last is being read before its death is dealt with. */
  private exitSeen = false;
  /** The worker wrote garbage on a channel and is being killed for it. */
  private corrupt = false;
  /** performance.now() of the last word from the worker (a message or a watchdog report). */
  private lastHeardAt = 0;
  private lastStopCheckAt = 0;
  /** The worker process is stopped (SIGSTOP, a debugger): passed over until it continues. */
  private stopped = false;
  /** What the current worker said when it gave up (a `fatal` message). */
  private fatalReason: string | undefined;
  private youngDeaths = 0;
  /** Workers in a row that died before they were ready, or could not be forked at all. */
  private startFailures = 0;
  /** Why the slot is not serving, or was not lately: shown in `stats` until a worker is ready. */
  private problem: string | undefined;
  private respawnTimer: NodeJS.Timeout | undefined;
  private readyTimer: NodeJS.Timeout | undefined;
  /** Set when the ready timeout killed the worker, for the message of its death. */
  private notReadyIn: number | undefined;
  private firstReady: { resolve: () => void; reject: (error: Error) => void } | undefined;
  /** What the first worker was started for (see start). */
  private startedFor: string | undefined;
  /** Resolves retire()'s promise: the retiring worker has exited. */
  private retired: (() => void) | undefined;
  private stopping: Promise<void> | undefined;
  private exited: (() => void) | undefined;

  /** The slot serving in this one's place: this one takes no new task and stops once empty. */
  private successor: WorkerSlot | undefined;
  /** Tasks the current worker has finished: what --max-tasks-per-worker counts. */
  private finishedByWorker = 0;

  constructor(
    private readonly options: SlotOptions,
    counts: SlotCounts = { done: 0, failed: 0, restarts: 0, recycles: 0, redelivered: 0 },
  ) {
    this.slot = options.slot;
    this.counts = counts;
  }

  get done(): number {
    return this.counts.done;
  }

  get failed(): number {
    return this.counts.failed;
  }

  get restarts(): number {
    return this.counts.restarts;
  }

  /** Tasks handed to this slot's worker again because the one before it died holding them. */
  get redelivered(): number {
    return this.counts.redelivered;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /**
   * Where this slot has the task: `sent` to its worker (or running there), `waiting` to be
   * redelivered to the next one (a scan: for lookups, not the task path).
   */
  placeOf(taskId: string): 'sent' | 'waiting' | undefined {
    if (this.inflight.has(taskId)) return 'sent';
    const waiting = (task: Task): boolean => task.taskId === taskId;
    if (this.redeliveries.some(waiting) || this.suspects.some(waiting) || this.isolated?.taskId === taskId) return 'waiting';
    return undefined;
  }

  /** The task with this id, if this slot has it (a scan of what waits: for lookups only). */
  find(taskId: string): Task | undefined {
    const sent = this.inflight.get(taskId);
    if (sent !== undefined) return sent;
    const waiting = (task: Task): boolean => task.taskId === taskId;
    return this.redeliveries.find(waiting) ?? this.suspects.find(waiting);
  }

  /**
   * Cancels a task this slot has: one sent to the worker is told to stop (its handler's signal
   * aborts), one waiting for redelivery is failed as it is handed over. Either way, should the
   * worker die first, the replacement stores it as cancelled rather than running it again.
   */
  cancel(task: Task, error: ErrorData): 'queued' | 'running' {
    task.failWith = error;
    // Not sent yet (the worker gets it with the failure to store): a retry that never ran is not an attempt.
    if (this.outbox.includes(task)) unattempted(task);
    if (!this.inflight.has(task.taskId)) return 'queued';
    const child = this.child;
    if (child !== undefined && child.connected && !this.exitSeen) {
      // An error here means the child is gone; its exit handler redelivers the task, failWith set.
      child.send({ type: 'cancel', taskIds: [task.taskId] });
    }
    return 'running';
  }

  get inflightCount(): number {
    return this.inflight.size;
  }

  /**
   * The worker is busy with a synchronous task its watchdog reported as running a while: what it
   * holds besides waits behind it.
   */
  get blocked(): boolean {
    return this.blockedBy !== undefined;
  }

  /** Tasks this slot holds or owes a reply for: in flight and waiting for a replacement. */
  get heldCount(): number {
    return this.inflight.size + this.redeliveries.length + this.suspects.length;
  }

  /**
   * Forks the first worker; resolves when it is ready, rejects if it dies before (or the slot is
   * stopped first). `why` is said in its `ready` line: a successor says whom it replaces.
   */
  start(why?: string): Promise<void> {
    this.startedFor = why;
    return new Promise((resolve, reject) => {
      this.firstReady = { resolve, reject };
      this.spawn();
    });
  }

  /**
   * Hands this slot over to `successor`, whose worker is ready on the same file: this one takes no
   * new task, gives the tasks waiting for its next worker to the successor, lets its worker finish
   * what it holds, then stops it. Should its worker die first, what it held goes to the successor
   * (which looks each task up in the file, as any replacement does). Resolves once it has exited.
   */
  retire(successor: WorkerSlot): Promise<void> {
    this.successor = successor;
    const retired = new Promise<void>((resolve) => (this.retired = resolve));
    if (this.respawnTimer !== undefined) clearTimeout(this.respawnTimer);
    this.respawnTimer = undefined;
    this.handOverWaiting();
    this.options.events.changed(this);
    this.stopIfRetired();
    return retired;
  }

  /**
   * Takes tasks a retiring slot held for its next worker: they wait here for this one's. A slot
   * that is retiring itself (a second reload came before the first one's old workers were done)
   * passes them on to its own successor, the one that serves.
   */
  adopt(redeliveries: readonly Task[], suspects: readonly Task[]): void {
    if (this.successor !== undefined) {
      this.successor.adopt(redeliveries, suspects);
      return;
    }
    this.redeliveries.push(...redeliveries);
    this.suspects.push(...suspects);
    this.pump();
    this.options.events.changed(this);
  }

  /** Tasks the current worker has finished. */
  get finishedByCurrentWorker(): number {
    return this.finishedByWorker;
  }

  /** Whether a successor serves in this slot's place (see retire). */
  get retiring(): boolean {
    return this.successor !== undefined;
  }

  private handOverWaiting(): void {
    const successor = this.successor;
    if (successor === undefined) return;
    const redeliveries = this.redeliveries;
    const suspects = this.suspects;
    this.redeliveries = [];
    this.suspects = [];
    if (redeliveries.length + suspects.length > 0) successor.adopt(redeliveries, suspects);
  }

  /** A retiring slot whose worker holds nothing more is stopped (see retire). */
  private stopIfRetired(): void {
    if (this.successor === undefined || this.inflight.size > 0 || this.stopping !== undefined) return;
    void this.stop().then(() => this.retired?.());
  }

  /**
   * `open`: a new task may be handed over now. `full`: the worker serves but holds all it may;
   * round-robin waits for it. `down`: no worker serves (starting, backing off, being killed,
   * unable to store) or the slot is busy redelivering: round-robin passes it over.
   */
  availability(): Availability {
    if (
      this.state !== 'ready' ||
      this.successor !== undefined ||
      this.killedByPrimary ||
      this.failing ||
      this.exitSeen ||
      this.corrupt ||
      this.stopped ||
      this.redeliveries.length > 0 ||
      this.suspects.length > 0 ||
      this.isolated !== undefined
    ) {
      return 'down';
    }
    return this.inflight.size < this.options.maxInflight && this.inflightChars < MAX_INFLIGHT_CHARS_PER_WORKER
      ? 'open'
      : 'full';
  }

  /**
   * Workers have failed to start here MAX_START_FAILURES times in a row (its file cannot be
   * written, its handlers do not load, forks fail): not a passing hiccup. Why is in `stats`.
   */
  get failingToStart(): boolean {
    return this.startFailures >= MAX_START_FAILURES;
  }

  /** Why the slot is not serving, if it has said (see stats' `problem`). */
  get problemText(): string | undefined {
    return this.problem;
  }

  /** Whether a new task may be handed to this slot now. */
  canTake(): boolean {
    return this.availability() === 'open';
  }

  assign(task: Task): void {
    // Its ordinal here is set when it is sent; one from another worker must not be matched meanwhile.
    task.ordinal = -1;
    this.inflight.set(task.taskId, task);
    this.inflightChars += task.chars;
    this.outbox.push(task);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // One IPC message for all the tasks handed over in this turn of the event loop. A worker
      // that held nothing gets them as soon as the code that handed them over is done (the
      // client's lines of this read, say): it waits for no other client's I/O first.
      if (this.inflight.size === 1) process.nextTick(this.flushNow);
      else setImmediate(this.flushNow);
    }
  }

  /** Kills the worker if a task it runs is past its time limit; the exit handler does the rest. */
  sweepTimeouts(now: number): void {
    if (this.state !== 'ready' || this.killedByPrimary || this.exitSeen || this.child === undefined) return;
    if (this.running.size === 0) return;
    for (const [task, startedAt] of this.running) {
      if (now - startedAt <= task.timeoutMs) {
        this.overdue.delete(task);
      } else if (this.overdue.has(task)) {
        this.timedOut.add(task.taskId);
      } else {
        // Overdue as far as the primary knows; its outcome may be unread in the pipe (the primary
        // was busy, or stopped). The next sweep comes after the pipes have been read: only a task
        // overdue then too has run past its limit.
        this.overdue.add(task);
      }
    }
    if (this.timedOut.size === 0) return;
    this.options.logger.warn(
      this.slot,
      `${this.timedOut.size} task(s) ran past their time limit; killing pid ${this.child.pid} to stop them`,
    );
    this.killedByPrimary = true;
    this.child.kill('SIGKILL');
    this.options.events.changed(this);
  }

  /**
   * Notices a worker process that is stopped (SIGSTOP, a debugger's breakpoint): it holds tasks
   * and has said nothing for a while, and the kernel says its state is `T`. Round-robin waits for
   * a full worker, so a stopped one would hold up every client; it is passed over instead, its
   * tasks waiting for it, until it continues. Linux only (it reads /proc); elsewhere it is not seen.
   */
  checkStopped(now: number): void {
    if (this.state !== 'ready' || this.child?.pid === undefined) return;
    if (!this.stopped && (this.inflight.size === 0 || now - this.lastHeardAt < STOPPED_SILENCE_MS)) return;
    if (now - this.lastStopCheckAt < STOPPED_CHECK_EVERY_MS) return;
    this.lastStopCheckAt = now;
    const stopped = processIsStopped(this.child.pid);
    if (stopped === this.stopped) return;
    this.stopped = stopped;
    const { pid } = this.child;
    if (stopped) {
      this.problem = `worker pid ${pid} is stopped (SIGSTOP?): passed over, its ${this.inflight.size} task(s) wait for it`;
      this.options.logger.warn(this.slot, this.problem);
    } else {
      this.options.logger.info(this.slot, `worker pid ${pid} continues; serving again`);
      this.problem = undefined;
    }
    this.options.events.changed(this);
  }

  private heard(): void {
    this.lastHeardAt = performance.now();
  }

  stats(): WorkerStats {
    const stats: WorkerStats = {
      slot: this.slot,
      pid: this.pid,
      state: this.state,
      done: this.counts.done,
      failed: this.counts.failed,
      inflight: this.heldCount,
      restarts: this.counts.restarts,
      recycles: this.counts.recycles,
      uptimeMs: this.state === 'ready' ? Math.round(performance.now() - this.readyAt) : 0,
    };
    if (this.state === 'ready' && this.readyWallAt !== undefined) stats.readyAt = this.readyWallAt;
    if (this.lastDeathAt !== undefined) stats.lastDeathAt = this.lastDeathAt;
    const suspects = this.suspects.length + (this.isolated === undefined ? 0 : 1);
    if (this.problem !== undefined) stats.problem = this.problem;
    else if (suspects > 0) {
      // Ready, yet taking no new task: say why.
      stats.problem = `running ${suspects} task(s) that a dying worker held, one at a time, to find any that kills it`;
    }
    return stats;
  }

  /**
   * Asks the worker to finish and close its database, then kills it if it has not exited within
   * `timeoutMs`. Safe to call twice: returns the same promise.
   */
  stop(timeoutMs = STOP_TIMEOUT_MS): Promise<void> {
    this.stopping ??= new Promise<void>((resolve) => {
      if (this.respawnTimer !== undefined) clearTimeout(this.respawnTimer);
      this.clearReadyTimer();
      this.firstReady?.reject(new Error(`worker ${this.slot}: stopped before it was ready`));
      this.firstReady = undefined;
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
      if (!child.connected) return; // it is exiting already; its 'exit' resolves this
      child.send({ type: 'shutdown' }, (error) => {
        if (error !== null) child.kill('SIGKILL');
      });
    });
    return this.stopping;
  }

  /**
   * Lets go of every task the slot still holds (the cluster has stopped) and returns them, to be
   * answered by the caller; an outcome that comes for one later is ignored.
   */
  abandon(): Task[] {
    const held = [...this.inflight.values(), ...this.redeliveries, ...this.suspects];
    this.inflight.clear();
    this.inflightChars = 0;
    this.running.clear();
    this.overdue.clear();
    this.outbox = [];
    this.redeliveries = [];
    this.suspects = [];
    this.isolated = undefined;
    return held;
  }

  /** Kills the worker at once (a forced shutdown); none replaces it. */
  kill(): void {
    this.state = 'stopping';
    this.child?.kill('SIGKILL');
  }

  // ---- a worker's life ---------------------------------------------------------------------------

  private spawn(): void {
    const { args, logger, readyTimeoutMs } = this.options;
    this.state = 'starting';
    this.killedByPrimary = false;
    this.failing = false;
    this.exitSeen = false;
    this.corrupt = false;
    this.stopped = false;
    this.fatalReason = undefined;
    this.notReadyIn = undefined;
    let child: WorkerProcess;
    try {
      child = this.options.spawn(args);
    } catch (error) {
      // fork() throws for some failures and reports others as an 'error' event: both are deaths
      // of a worker that never started, retried with the same backoff.
      this.child = undefined;
      setImmediate(() => this.onStartFailure(`could not start a worker process: ${errorText(error)}`));
      return;
    }
    this.child = child;
    this.sentToChild = 0;
    this.finishedByWorker = 0;
    let ended = false;
    const end = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error): void => {
      if (ended) return;
      ended = true;
      this.onExit(child, code, signal, spawnError);
    };
    this.readyTimer = setTimeout(() => {
      this.readyTimer = undefined;
      if (child !== this.child || this.state !== 'starting') return;
      logger.warn(this.slot, `worker pid ${child.pid} is not ready ${readyTimeoutMs} ms after it was started; killing it`);
      this.notReadyIn = readyTimeoutMs;
      child.kill('SIGKILL');
    }, readyTimeoutMs);
    child.on('message', (raw: unknown) => this.receive(child, raw));
    child.on('malformed', (what: string) => this.onCorrupt(child, `its channel carried ${what}`));
    child.on('error', (error) => {
      // With no pid, the process was never made (EMFILE, EAGAIN): no 'exit' will follow.
      if (child.pid === undefined) end(null, null, error);
      else logger.error(this.slot, `worker error: ${error.message}`);
    });
    child.once('exit', (code, signal) => {
      if (child === this.child) this.exitSeen = true;
      // What the worker sent just before it exited (its `fatal`, its last outcomes) may still be
      // unread in the channel: wait for the channel to close, or a moment if a child of the
      // worker keeps its end open.
      if (!child.connected) {
        end(code, signal);
        return;
      }
      const timer = setTimeout(() => end(code, signal), EXIT_DRAIN_MS);
      child.once('disconnect', () => {
        clearTimeout(timer);
        end(code, signal);
      });
    });
    this.listenToWatchdog(child);
  }

  /** The worker's watchdog thread reports synchronous tasks that run a while on stdio fd 4. */
  private listenToWatchdog(child: WorkerProcess): void {
    const channel = child.watchdog;
    if (channel === undefined) return;
    const splitter = new LineSplitter(MAX_WATCHDOG_LINE_BYTES);
    channel.on('error', () => undefined); // it closes with the worker; 'exit' says the rest
    channel.on('data', (chunk: Buffer) => {
      if (child !== this.child) return;
      this.heard();
      for (const line of splitter.push(chunk)) {
        let report: unknown;
        try {
          report = line.ok ? JSON.parse(line.text) : undefined;
        } catch {
          report = undefined;
        }
        const parsed = WatchdogReportSchema.safeParse(report);
        if (parsed.success) this.onRunning([parsed.data], true);
        else this.onCorrupt(child, 'its watchdog channel carried something that is not a report');
      }
    });
  }

  /**
   * The worker wrote something that is not a message on a channel of ours: handler code did (only
   * it can), and the stream may be out of step. It is killed as if it had died on its own, so the
   * tasks it held are blamed (one of them did this) and run again, alone.
   */
  private onCorrupt(child: WorkerProcess, what: string): void {
    if (child !== this.child || this.corrupt) return;
    this.corrupt = true;
    this.fatalReason = `killed: ${what}`;
    this.options.logger.error(this.slot, `worker pid ${child.pid}: ${what}; killing it`);
    child.kill('SIGKILL');
    this.options.events.changed(this);
  }

  private receive(child: WorkerProcess, raw: unknown): void {
    if (child !== this.child || this.corrupt) return;
    this.heard();
    // Nearly every message is a batch of outcomes, which a few property reads tell (see fast-checks).
    const outcomes = fastOutcomes(raw);
    if (outcomes !== undefined) {
      this.onOutcomes(outcomes.outcomes);
      return;
    }
    const parsed = FromWorkerSchema.safeParse(raw);
    if (!parsed.success) {
      this.onCorrupt(child, `it sent a message that is not one (${describeIssues(parsed.error.issues)})`);
      return;
    }
    const message = parsed.data;
    switch (message.type) {
      case 'ready':
        this.onReady(message.pid, message.kinds, message.schemas ?? {});
        return;
      case 'outcomes':
        this.onOutcomes(message.outcomes);
        return;
      case 'running':
        this.onRunning(message.tasks);
        return;
      case 'fatal':
        this.fatalReason = message.message;
        if (!this.failing && this.state === 'ready') {
          this.failing = true;
          this.options.events.changed(this);
        }
        return;
      default: {
        const unreachable: never = message;
        throw new Error(`unhandled message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private onReady(pid: number, kinds: readonly string[], schemas: Readonly<Record<string, unknown>>): void {
    // Too late: a worker the ready timeout has killed may still have its `ready` in the pipe.
    if (this.state !== 'starting' || this.notReadyIn !== undefined) return;
    this.clearReadyTimer();
    this.state = 'ready';
    this.readyAt = performance.now();
    this.readyWallAt = Date.now();
    this.heard();
    this.everReady = true;
    this.startFailures = 0;
    if (this.problem !== undefined) {
      this.options.logger.info(this.slot, `serving again (it had: ${this.problem})`);
      this.problem = undefined;
    }
    this.options.logger.info(
      this.slot,
      this.startedFor !== undefined
        ? `ready, pid ${pid} (${this.startedFor})`
        : this.counts.restarts === 0
          ? `ready, pid ${pid}`
          : `respawned, ready, pid ${pid} (restart ${this.counts.restarts})`,
    );
    this.startedFor = undefined;
    this.firstReady?.resolve();
    this.firstReady = undefined;
    this.options.events.ready(this, kinds, schemas);
    this.pump();
    this.options.events.changed(this);
  }

  /** @param synchronous from the watchdog: the worker's thread is busy with this task. */
  private onRunning(tasks: readonly RunningTask[], synchronous = false): void {
    const now = performance.now();
    // Tasks are kept by id; an index by ordinal is made for a report only (one per slice that
    // started asynchronous tasks, one per long synchronous task), never on the per-task path.
    const byOrdinal = new Map<number, Task>();
    for (const task of this.inflight.values()) byOrdinal.set(task.ordinal, task);
    for (const { ordinal, runningMs } of tasks) {
      const task = byOrdinal.get(ordinal);
      if (task === undefined) continue;
      if (synchronous) this.blockedBy = task;
      if (!this.running.has(task)) this.running.set(task, now - runningMs);
    }
  }

  private onOutcomes(raws: readonly unknown[]): void {
    const settled: [Task, Outcome][] = [];
    const rerun: Task[] = [];
    let malformed: string | undefined;
    for (const raw of raws) {
      // One by one: a malformed outcome costs the rest of the batch nothing. Its worker is
      // replaced below, and its task redelivered (answered from its row if it was stored).
      let outcome = fastOutcome(raw);
      if (outcome === undefined) {
        const parsed = TaskOutcomeSchema.safeParse(raw);
        if (!parsed.success) {
          malformed ??= describeIssues(parsed.error.issues);
          continue;
        }
        outcome = parsed.data;
      }
      const task = this.inflight.get(outcome.taskId);
      if (task === undefined) continue;
      this.release(task);
      switch (outcome.status) {
        case 'done':
          if (outcome.json && !isJson(outcome.result)) {
            // Handler code runs in the worker and may have broken its JSON.stringify: a reply is
            // spliced around this text, and must stay one valid line.
            this.counts.failed += 1;
            const error = { code: ErrorCode.INTERNAL, message: 'the worker reported a result that is not JSON' };
            settled.push([task, { status: 'failed', error, worker: this.slot }]);
            break;
          }
          this.counts.done += 1;
          settled.push([task, { status: 'done', result: outcome.result, json: outcome.json, worker: this.slot }]);
          break;
        case 'failed':
          this.counts.failed += 1;
          // The row counts fewer attempts than were sent (a retry cancelled before it started).
          if (outcome.attempts !== undefined) task.attempt = outcome.attempts;
          settled.push([task, { status: 'failed', error: outcome.error, worker: this.slot }]);
          break;
        case 'unstored':
          // Nothing of it is in the file: it may run on any slot, a bounded number of times.
          this.failing = true;
          task.storeFailures += 1;
          if (task.storeFailures >= this.options.maxAttempts) {
            this.counts.failed += 1;
            settled.push([task, { status: 'failed', error: outcome.error, worker: this.slot }]);
          } else {
            task.redelivered = false;
            rerun.push(task);
          }
          break;
        case 'retry':
          // Nothing was stored: it runs again later, on whichever worker is next.
          task.redelivered = false;
          this.options.events.retry(this, task, outcome.error);
          break;
        default: {
          const unreachable: never = outcome;
          throw new Error(`unhandled outcome ${JSON.stringify(unreachable)}`);
        }
      }
    }
    if (settled.length > 0) this.options.events.settled(this, settled);
    if (rerun.length > 0) this.options.events.returned(this, rerun);
    if (malformed !== undefined && this.child !== undefined) this.onCorrupt(this.child, `it sent an outcome that is not one (${malformed})`);
    this.finishedByWorker += settled.length;
    const { maxTasksPerWorker } = this.options;
    if (maxTasksPerWorker !== undefined && this.finishedByWorker >= maxTasksPerWorker && this.successor === undefined) {
      this.options.events.worn(this, `it has finished ${this.finishedByWorker} tasks (--max-tasks-per-worker ${maxTasksPerWorker})`);
    }
    this.pump();
  }

  /** Forgets a task that has left the worker. */
  private release(task: Task): void {
    this.inflight.delete(task.taskId);
    this.inflightChars -= task.chars;
    this.running.delete(task);
    this.overdue.delete(task);
    if (task === this.blockedBy) this.blockedBy = undefined;
    this.timedOut.delete(task.taskId);
    if (task === this.isolated) this.isolated = undefined;
  }

  /** Hands waiting redeliveries to a ready worker, then tells the dispatcher if there is room. */
  private pump(): void {
    if (this.successor !== undefined) {
      this.stopIfRetired();
      return;
    }
    if (this.state !== 'ready' || this.failing) return;
    const max = this.options.maxInflight;
    while (this.redeliveries.length > 0 && this.inflight.size < max) {
      this.assign(this.redeliveries.shift() as Task);
    }
    if (this.redeliveries.length === 0 && this.suspects.length > 0 && this.inflight.size === 0) {
      this.isolated = this.suspects.shift() as Task;
      this.assign(this.isolated);
    }
    if (this.canTake()) this.options.events.changed(this);
  }

  /** Sends the outbox, in messages of at most MAX_MESSAGE_CHARS of payload each. */
  private flush(): void {
    this.flushScheduled = false;
    const child = this.child;
    if (this.outbox.length === 0 || child === undefined || !child.connected || this.exitSeen) return;
    const outbox = this.outbox;
    this.outbox = [];
    for (let start = 0; start < outbox.length; ) {
      const first = this.sentToChild;
      const tasks = [];
      let chars = 0;
      for (; start < outbox.length && (tasks.length === 0 || chars < MAX_MESSAGE_CHARS); start += 1) {
        const task = outbox[start] as Task;
        task.ordinal = first + tasks.length;
        chars += task.chars;
        tasks.push(toSpec(task));
      }
      this.sentToChild += tasks.length;
      // An error here means the child is gone; its exit handler redelivers what it held.
      child.send({ type: 'tasks', first, tasks });
    }
  }

  private onExit(child: WorkerProcess, code: number | null, signal: NodeJS.Signals | null, spawnError?: Error): void {
    if (child !== this.child) return;
    this.child = undefined;
    this.clearReadyTimer();
    if (child.pid !== undefined) this.options.endGroup(child.pid);
    if (this.state === 'stopping' || this.state === 'stopped') {
      this.state = 'stopped';
      this.exited?.();
      return;
    }
    this.lastDeathAt = Date.now();
    this.readyWallAt = undefined;
    const how =
      spawnError !== undefined
        ? `could not be started: ${spawnError.message}`
        : this.fatalReason ??
          (this.notReadyIn !== undefined
            ? `killed: not ready within ${this.notReadyIn} ms`
            : signal === null
              ? `code ${code}`
              : `signal ${signal}`);
    if (this.state !== 'ready') {
      this.onStartFailure(child.pid === undefined ? how : `worker pid ${child.pid} exited before it was ready (${how})`);
      return;
    }

    const { logger } = this.options;
    const death: Death = {
      wasReady: true,
      uptimeMs: performance.now() - this.readyAt,
      killedForTimeLimit: this.killedByPrimary,
      // A worker killed for garbage on its channel did not say why: a task of its made it.
      toldWhy: this.fatalReason !== undefined && !this.corrupt,
    };
    logger.warn(this.slot, `worker pid ${child.pid} died (${how}) holding ${this.inflight.size} task(s)`);
    const returned = this.reclaimAll(blamesTasks(death), death.toldWhy);
    if (this.successor !== undefined) {
      // Retiring: no replacement here; the successor's worker takes what this one held.
      this.state = 'stopped';
      this.handOverWaiting();
      if (returned.length > 0) this.options.events.returned(this, returned);
      this.retired?.();
      return;
    }
    const youngDeaths = youngDeathsAfter(this.youngDeaths, death);
    if (death.toldWhy || youngDeaths > 1) this.problem = `worker pid ${child.pid} died (${how})`;
    this.scheduleRespawn(youngDeaths);
    // Only now, when this slot no longer looks ready, so that they are not handed straight back to
    // it with no worker to send them to.
    if (returned.length > 0) this.options.events.returned(this, returned);
    this.options.events.changed(this);
  }

  /**
   * A worker that never became ready: a failed fork, a `fatal` before `ready`, a death while
   * starting, the ready timeout. Before the cluster has ever been ready this fails start(); later
   * it counts as a young death, and after MAX_START_FAILURES in a row the slot stops holding its
   * tasks for a worker that may not come.
   */
  private onStartFailure(reason: string): void {
    this.child = undefined;
    this.clearReadyTimer();
    if (this.state === 'stopping' || this.state === 'stopped') {
      this.state = 'stopped';
      this.exited?.();
      return;
    }
    if (!this.everReady) {
      this.state = 'stopped';
      this.firstReady?.reject(new Error(`worker ${this.slot}: ${reason}`));
      this.firstReady = undefined;
      return;
    }
    this.problem = reason;
    this.startFailures += 1;
    this.options.logger.warn(this.slot, `${reason}`);
    // Tasks handed over while it was starting never reached it.
    const returned = this.reclaimAll(false);
    this.scheduleRespawn(youngDeathsAfter(this.youngDeaths, { wasReady: false, uptimeMs: 0, killedForTimeLimit: false, toldWhy: false }));
    if (this.startFailures >= MAX_START_FAILURES && this.redeliveries.length + this.suspects.length > 0) {
      void this.releaseHeld(reason);
    }
    if (returned.length > 0) this.options.events.returned(this, returned);
    this.options.events.changed(this);
  }

  /**
   * Decides what becomes of every task the dead worker held (see slot-policy's reclaim), and
   * returns those that never reached it: they may run on any slot, except a redelivered one,
   * which may be stored in this slot's file already, and only that file can tell.
   */
  private reclaimAll(blame: boolean, stoppedUnstoring = false): Task[] {
    const unsent = new Set(this.outbox);
    this.outbox = [];
    const held = [...this.inflight.values()].filter((task) => !unsent.has(task));
    this.inflight.clear();
    this.inflightChars = 0;
    this.running.clear();
    this.overdue.clear();
    this.blockedBy = undefined;
    this.isolated = undefined;
    for (const task of held) {
      task.redelivered = true;
      if (blame) task.deaths += 1;
      // A worker that stopped because it could not store (it said why) held this task too: a
      // handler that breaks the worker's JSON makes every commit fail, and must not loop forever.
      else if (stoppedUnstoring) task.storeFailures += 1;
      this.place(task, this.timedOut.has(task.taskId));
    }
    this.timedOut.clear();
    const returned: Task[] = [];
    for (const task of unsent) {
      if (!task.redelivered) returned.push(task);
      else this.place(task, false);
    }
    return returned;
  }

  private place(task: Task, timedOut: boolean): void {
    task.ordinal = -1;
    if (task.storeFailures >= this.options.maxAttempts && task.failWith === undefined) {
      task.failWith = {
        code: ErrorCode.INTERNAL,
        message: `its result could not be stored: ${task.storeFailures} workers holding it stopped, unable to store; not trying again`,
      };
    }
    const decision = reclaim({ deaths: task.deaths, timedOut }, this.options.maxAttempts);
    switch (decision) {
      case 'timeout':
        task.failWith = { code: ErrorCode.TIMEOUT, message: `task ran past its time limit of ${task.timeoutMs} ms` };
        this.redeliveries.push(task);
        return;
      case 'lost':
        task.failWith ??= {
          code: ErrorCode.WORKER_LOST,
          message: `task was running when its worker died ${task.deaths} time${task.deaths === 1 ? '' : 's'}; not trying again`,
        };
        this.redeliveries.push(task);
        return;
      case 'suspect':
        if (task.failWith === undefined) {
          this.counts.redelivered += 1;
          this.suspects.push(task);
        } else this.redeliveries.push(task);
        return;
      case 'redeliver':
        this.counts.redelivered += 1;
        this.redeliveries.push(task);
        return;
      default: {
        const unreachable: never = decision;
        throw new Error(`unhandled reclaim ${String(unreachable)}`);
      }
    }
  }

  private scheduleRespawn(youngDeaths: number): void {
    this.youngDeaths = youngDeaths;
    const delay = respawnDelayMs(youngDeaths);
    this.counts.restarts += 1;
    if (delay === 0) {
      this.spawn();
      return;
    }
    this.options.logger.warn(this.slot, `worker keeps dying young (${youngDeaths} in a row); respawning in ${delay} ms`);
    this.state = 'backoff';
    this.respawnTimer = setTimeout(() => {
      this.respawnTimer = undefined;
      this.spawn();
    }, delay);
  }

  /**
   * The slot could not start a worker MAX_START_FAILURES times in a row: its held tasks stop
   * waiting for one. The slot's file says which are stored (answered from their rows); the rest
   * were never stored here, so another slot runs them, or a failure this slot was to store is
   * answered without a row. If the file cannot be read either, they fail with WORKER_LOST.
   */
  private async releaseHeld(reason: string): Promise<void> {
    const held = [...this.redeliveries, ...this.suspects];
    this.redeliveries = [];
    this.suspects = [];
    let stored: Map<string, StoredOutcome> | undefined;
    let readError: string | undefined;
    try {
      stored = await this.options.findStored(held.map((task) => task.taskId));
    } catch (error) {
      readError = errorText(error);
    }
    const settled: [Task, Outcome][] = [];
    const returned: Task[] = [];
    for (const task of held) {
      const found = stored?.get(task.taskId);
      if (found !== undefined) settled.push([task, storedOutcome(found, this.slot)]);
      else if (stored === undefined) {
        const error: ErrorData = {
          code: ErrorCode.WORKER_LOST,
          message: `worker ${this.slot} could not be started (${reason}) and its file could not be read (${readError}); the task may have been stored before`,
        };
        settled.push([task, { status: 'failed', error, worker: this.slot }]);
      } else if (task.failWith !== undefined) {
        settled.push([task, { status: 'failed', error: task.failWith, worker: this.slot }]);
      } else {
        task.redelivered = false;
        returned.push(task);
      }
    }
    this.options.logger.warn(
      this.slot,
      `no worker could be started ${MAX_START_FAILURES} times in a row: ${settled.length} held task(s) answered, ` +
        `${returned.length} given to other workers`,
    );
    for (const [, outcome] of settled) {
      if (outcome.status === 'done') this.counts.done += 1;
      else this.counts.failed += 1;
    }
    if (settled.length > 0) this.options.events.settled(this, settled);
    if (returned.length > 0) this.options.events.returned(this, returned);
  }

  private clearReadyTimer(): void {
    if (this.readyTimer !== undefined) clearTimeout(this.readyTimer);
    this.readyTimer = undefined;
  }
}

/** Whether the kernel has the process stopped (`T`, or `t` under a tracer); false if unknown. */
function processIsStopped(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return state === 'T' || state === 't';
  } catch {
    return false;
  }
}

function storedOutcome(found: StoredOutcome, slot: number): Outcome {
  if (found.status === 'failed') return { status: 'failed', error: found.error, worker: slot };
  const encoded = encodeValue(found.result) ?? { text: 'null', json: 1 };
  return { status: 'done', result: encoded.text, json: encoded.json === 1, worker: slot };
}

/** Valid JSON on one line (JSON.stringify never writes a newline; a replaced one might). */
function isJson(text: string): boolean {
  if (text.includes('\n')) return false;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

function errorText(error: unknown): string {
  return messageOf(error);
}
