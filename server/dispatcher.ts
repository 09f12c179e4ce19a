import { performance } from 'node:perf_hooks';
import { ErrorCode, messageOf, type ErrorData } from '../shared/errors';
import type { Logger } from '../shared/logger';
import type { WorkerStats } from '../shared/protocol';
import { memoryBytesOf } from '../shared/proc';
import { findStoredIn } from '../shared/results-db';
import type { DispatchMode } from './config';
import { RoundRobin } from './round-robin';
import { Standby } from './standby';
import { unattempted, type Outcome, type Task } from './task';
import { retryDelayMs } from './slot-policy';
import { WorkerSlot, type SlotCounts, type SlotEvents } from './worker-slot';

/** How often running tasks are checked against their time limits. */
export const TIMEOUT_SWEEP_MS = 50;
/**
 * A sweep this late means the primary itself was stopped or starved (SIGSTOP, a swapped-out
 * machine): the workers' outcomes and reports are then still unread in the pipes, and deadlines
 * judged now would kill healthy workers. Sweeps wait STALL_GRACE_MS, for the reading to catch up.
 */
export const STALLED_SWEEP_MS = 500;
export const STALL_GRACE_MS = 1_000;
/** Characters of payload the queue may hold before clients are no longer read from. */
export const MAX_QUEUED_CHARS = 64 * 1024 * 1024;
/** How often each worker's resident memory is read, with --max-worker-rss-mb. */
export const RSS_CHECK_MS = 1_000;
/** New workers a graceful replacement starts, one after the other, before it gives up. */
export const REPLACEMENT_STARTS = 2;
/** How long a graceful replacement waits for the standby worker to be loaded before it forks one. */
export const STANDBY_WAIT_MS = 3_000;
/** After a replacement for recycling failed to start, how long that slot's worker serves on first. */
export const RECYCLE_RETRY_MS = 10_000;

export interface DispatcherOptions {
  workers: number;
  script: string;
  /** Arguments for the worker of a slot. */
  args: (slot: number) => string[];
  /** The result file of a slot, which the primary reads when a slot has no worker to ask. */
  file: (slot: number) => string;
  /** Extra arguments of a standby worker, which learns its slot's when it takes one. */
  standbyArgs?: readonly string[];
  /** Environment of the worker processes. */
  env?: NodeJS.ProcessEnv;
  dispatch: DispatchMode;
  maxInflightPerWorker: number;
  maxQueue: number;
  maxAttempts: number;
  /** The delay before a task's first retry (see retryDelayMs). */
  retryBaseMs: number;
  /** How long a started worker has to say `ready` before it is killed (see WorkerSlot). */
  readyTimeoutMs: number;
  /** A worker that has finished this many tasks is replaced gracefully; never when absent. */
  maxTasksPerWorker?: number;
  /** A worker whose resident memory passes this many bytes is replaced gracefully; never when absent. */
  maxWorkerRssBytes?: number;
  logger: Logger;
  /** Told when the queue fills up (stop reading from clients) and when it has room again. */
  onPressure?: (saturated: boolean) => void;
  /** Told of every settled task, with its time from acceptance (ms): where metrics count. */
  onSettled?: (task: Task, outcome: Outcome, ms: number) => void;
  /** Told whenever a slot's state may have changed (often: compare before doing anything costly). */
  onSlotChanged?: (slot: WorkerSlot) => void;
}

/** Where an accepted, unsettled task is. */
export type TaskPlace = { state: 'queued' } | { state: 'running'; worker: number };

/** A rolling reload's outcome: the workers that serve now, and how long it took. */
export interface ReloadReport {
  workers: { slot: number; pid: number | null }[];
  ms: number;
}

/**
 * Hands accepted tasks to worker slots (round-robin, or least-loaded), queues them (boundedly)
 * while the next slot is full, and passes each outcome to the task's owner. Knows which tasks
 * every slot holds, so a worker's death never loses one: see WorkerSlot.
 */
export class Dispatcher implements SlotEvents {
  /** The slot serving each place in the ring; a graceful replacement swaps its entry. */
  private readonly current: WorkerSlot[];
  /** Task kinds the workers run, as the last worker to become ready reported them (see ready). */
  kinds: ReadonlySet<string> = new Set();
  /** Their payloads' JSON Schemas, as the same worker reported them. */
  schemas: Readonly<Record<string, unknown>> = {};
  accepted = 0;

  private readonly ring: RoundRobin<WorkerSlot>;
  private queue: Task[] = [];
  /** A worker process forked ahead of need, so that a dead worker's replacement is ready sooner. */
  private readonly standby: Standby;
  private isSaturated = false;
  /** Characters of payload waiting in the queue: a count of tasks alone does not bound memory. */
  private queuedChars = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private lastSweepAt = 0;
  private sweepsPausedUntil = 0;
  private idleWaiters: (() => void)[] = [];
  /** Slots that were replaced and whose worker finishes what it holds (see WorkerSlot.retire). */
  private readonly retiring = new Set<WorkerSlot>();
  /** A replacement being started, not yet in the ring. */
  private readonly incoming = new Set<WorkerSlot>();
  /** Graceful replacements run one at a time, in the order asked: the end of the line. */
  private handovers: Promise<unknown> = Promise.resolve();
  /** Slots (by number) with a recycle asked for and not yet done. */
  private readonly recycling = new Set<number>();
  /** Slots whose last recycle failed to start a worker: not tried again before this time. */
  private readonly recycleAfter = new Map<number, number>();
  private reloadRunning: Promise<ReloadReport> | undefined;
  private reloadNext: Promise<ReloadReport> | undefined;
  private lastRssCheckAt = 0;
  /** A fresh worker was over --max-worker-rss-mb before it ran anything: the limit is not checked. */
  private rssLimitUnreachable = false;
  private stopped = false;
  /** Tasks waiting out the delay before their next attempt, with its timer: they hold no worker. */
  private readonly waitingRetries = new Map<Task, NodeJS.Timeout>();
  /** The cluster is shutting down: a task to retry runs again at once (see hurryRetries). */
  private hurrying = false;

  constructor(private readonly options: DispatcherOptions) {
    this.standby = new Standby(options.script, options.standbyArgs ?? [], options.logger, options.env);
    this.current = Array.from({ length: options.workers }, (_, index) => this.makeSlot(index + 1));
    // The ring reads this array: a swapped entry is in the ring at once, in the same place.
    this.ring = new RoundRobin(this.current, options.dispatch);
  }

  /** The slots serving now, one per worker place. */
  get slots(): readonly WorkerSlot[] {
    return this.current;
  }

  private makeSlot(slot: number, counts?: SlotCounts): WorkerSlot {
    const { options } = this;
    return new WorkerSlot(
      {
        slot,
        args: options.args(slot),
        maxInflight: options.maxInflightPerWorker,
        maxAttempts: options.maxAttempts,
        readyTimeoutMs: options.readyTimeoutMs,
        ...(options.maxTasksPerWorker === undefined ? {} : { maxTasksPerWorker: options.maxTasksPerWorker }),
        logger: options.logger,
        events: this,
        spawn: (args) => this.standby.fork(args),
        endGroup,
        findStored: (taskIds) => findStoredIn(options.file(slot), taskIds),
      },
      counts,
    );
  }

  /** Every slot with a worker: those serving, those retiring, a replacement starting. */
  private everySlot(): WorkerSlot[] {
    return [...this.current, ...this.retiring, ...this.incoming];
  }

  /** Starts every worker; resolves when all are ready, rejects if one dies first. */
  async start(): Promise<void> {
    this.lastSweepAt = performance.now();
    this.sweepTimer = setInterval(() => this.sweep(), TIMEOUT_SWEEP_MS).unref();
    await Promise.all(this.slots.map((slot) => slot.start()));
    this.standby.start();
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Tasks waiting out the delay before their next attempt. */
  get retrying(): number {
    return this.waitingRetries.size;
  }

  /** Whether the queue is full: clients are not read from until it has room again. */
  get saturated(): boolean {
    return this.isSaturated;
  }

  /** Tasks accepted and not yet settled. */
  get outstanding(): number {
    let held = this.queue.length + this.waitingRetries.size;
    for (const slot of this.current) held += slot.heldCount;
    for (const slot of this.retiring) held += slot.heldCount;
    return held;
  }

  submit(task: Task): void {
    this.accepted += 1;
    if (this.allFailing()) {
      this.settleWithoutWorker([task]);
      return;
    }
    if (this.queue.length === 0) {
      const slot = this.ring.next();
      if (slot !== undefined) {
        this.handTo(slot, task);
        return;
      }
    }
    this.queue.push(task);
    this.queuedChars += task.chars;
    if (!this.isSaturated && (this.queue.length >= this.options.maxQueue || this.queuedChars >= MAX_QUEUED_CHARS)) {
      this.isSaturated = true;
      this.options.onPressure?.(true);
    }
  }

  /** Resolves when no accepted task is waiting for its outcome. */
  idle(): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops every worker (they close their databases); safe to call twice. */
  async stop(timeoutMs?: number): Promise<void> {
    this.stopped = true;
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.standby.close();
    await Promise.all(this.everySlot().map((slot) => slot.stop(timeoutMs)));
  }

  /**
   * Answers every task still outstanding with `error` (the cluster has stopped, its workers are
   * gone): each accepted task gets its one reply, also at a shutdown that cut it short.
   */
  abandon(error: ErrorData): void {
    for (const timer of this.waitingRetries.values()) clearTimeout(timer);
    const unsent = [...this.queue, ...this.waitingRetries.keys()];
    for (const task of unsent) unattempted(task);
    const tasks = [...unsent, ...this.everySlot().flatMap((slot) => slot.abandon())];
    this.waitingRetries.clear();
    this.queue = [];
    this.queuedChars = 0;
    if (tasks.length === 0) return;
    this.settled(undefined, tasks.map((task): [Task, Outcome] => [task, { status: 'failed', error, worker: undefined }]));
  }

  /** Kills every worker at once. */
  kill(): void {
    this.stopped = true;
    this.standby.close();
    for (const slot of this.everySlot()) slot.kill();
  }

  /** Each slot's figures; what a retiring worker still holds counts as its slot's. */
  stats(): WorkerStats[] {
    return this.current.map((slot) => {
      const stats = slot.stats();
      for (const old of this.retiring) if (old.slot === slot.slot) stats.inflight += old.heldCount;
      return stats;
    });
  }

  /**
   * Replaces every worker, one slot at a time, with one that loads the handlers module afresh:
   * each new worker is ready before the old one stops taking tasks, and the old one finishes what
   * it holds, then exits. Rejects, naming the slot and why, when a new worker cannot start (its
   * module does not load): the reload stops there, and the slots not yet replaced keep their
   * workers. A reload asked for while one runs is done once more after it (one for all who asked).
   */
  reload(): Promise<ReloadReport> {
    if (this.reloadRunning === undefined) {
      this.reloadRunning = this.rollingReload().finally(() => (this.reloadRunning = undefined));
      return this.reloadRunning;
    }
    this.reloadNext ??= this.reloadRunning
      .catch(() => undefined)
      .then(() => {
        this.reloadNext = undefined;
        return this.reload();
      });
    return this.reloadNext;
  }

  private async rollingReload(): Promise<ReloadReport> {
    const startedAt = performance.now();
    this.options.logger.info('primary', `reloading: replacing ${this.current.length} worker(s) one at a time`);
    for (let index = 0; index < this.current.length; index += 1) {
      await this.handOver(index, 'reload');
    }
    const ms = Math.round(performance.now() - startedAt);
    this.options.logger.info('primary', `reloaded in ${ms} ms`);
    return { workers: this.current.map((slot) => ({ slot: slot.slot, pid: slot.pid })), ms };
  }

  /**
   * Queues a graceful replacement of the slot at `index`: a new worker is started on its file, and
   * only once it is ready does it take the old one's place in the ring (see WorkerSlot.retire).
   * Replacements run one at a time. Rejects if the new worker cannot start; the old one then serves on.
   */
  private handOver(index: number, why: 'reload' | 'recycle', reason?: string, expected?: WorkerSlot): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.stopped) throw new Error('the cluster is shutting down');
      const old = this.current[index] as WorkerSlot;
      // A recycle asked for a worker that a reload has replaced meanwhile: nothing to do.
      if (expected !== undefined && old !== expected) return;
      let fresh: WorkerSlot | undefined;
      // Twice: a new worker killed from outside while it boots should not stop a reload; a module
      // that does not load fails both.
      for (let attempt = 1; fresh === undefined; attempt += 1) {
        await this.standby.loaded(STANDBY_WAIT_MS);
        if (this.stopped) throw new Error('the cluster is shutting down');
        const candidate = this.makeSlot(old.slot, old.counts);
        this.incoming.add(candidate);
        try {
          await candidate.start(`replacing pid ${old.pid ?? '-'}: ${reason ?? why}`);
          fresh = candidate;
        } catch (error) {
          const failure = messageOf(error).replace(/^worker \d+: /, '');
          if (attempt >= REPLACEMENT_STARTS || this.stopped) throw new Error(`worker ${old.slot}: the new worker could not start (${failure})`);
          this.options.logger.warn(old.slot, `a new worker could not start (${failure}); trying once more`);
        } finally {
          this.incoming.delete(candidate);
        }
      }
      if (this.stopped) {
        await fresh.stop();
        throw new Error('the cluster is shutting down');
      }
      this.current[index] = fresh;
      this.retiring.add(old);
      if (why === 'recycle') old.counts.recycles += 1;
      void old.retire(fresh).then(() => {
        this.retiring.delete(old);
        this.checkIdle();
      });
      this.changed(fresh);
    };
    const done = this.handovers.then(run);
    this.handovers = done.catch(() => undefined);
    return done;
  }

  /** Asks for a graceful replacement of this slot's worker, once (see handOver). */
  private recycle(slot: WorkerSlot, reason: string): void {
    if (this.stopped || slot.retiring || this.recycling.has(slot.slot)) return;
    if ((this.recycleAfter.get(slot.slot) ?? 0) > performance.now()) return;
    const index = this.current.indexOf(slot);
    if (index === -1) return;
    this.recycling.add(slot.slot);
    this.options.logger.info(slot.slot, `recycling worker pid ${slot.pid}: ${reason}`);
    this.handOver(index, 'recycle', reason, slot).then(
      () => this.recycling.delete(slot.slot),
      (error: unknown) => {
        this.recycling.delete(slot.slot);
        if (this.stopped) return;
        this.recycleAfter.set(slot.slot, performance.now() + RECYCLE_RETRY_MS);
        this.options.logger.warn(slot.slot, `${messageOf(error)}; pid ${slot.pid} serves on, tried again in ${RECYCLE_RETRY_MS} ms`);
      },
    );
  }

  /** Reads each worker's resident memory (with --max-worker-rss-mb), recycling those past it. */
  private checkMemory(now: number): void {
    const limit = this.options.maxWorkerRssBytes;
    if (limit === undefined || this.rssLimitUnreachable || now - this.lastRssCheckAt < RSS_CHECK_MS) return;
    this.lastRssCheckAt = now;
    const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(0);
    for (const slot of this.current) {
      const pid = slot.pid;
      if (slot.state !== 'ready' || pid === null || this.recycling.has(slot.slot)) continue;
      const rss = memoryBytesOf(pid)?.rss;
      if (rss === undefined || rss <= limit) continue;
      if (slot.finishedByCurrentWorker === 0) {
        // Over the limit before it ran anything: every new worker would be too, and recycling
        // would only fork workers without end. Said once; memory is no longer checked.
        this.rssLimitUnreachable = true;
        this.options.logger.warn(
          slot.slot,
          `worker pid ${pid} uses ${mb(rss)} MB before running any task, over --max-worker-rss-mb ${mb(limit)}: ` +
            'no worker is recycled for its memory; raise the limit',
        );
        return;
      }
      this.recycle(slot, `its resident memory is ${mb(rss)} MB (--max-worker-rss-mb ${mb(limit)})`);
    }
  }

  // ---- SlotEvents ------------------------------------------------------------------------------

  /**
   * The kinds are those the last worker to become ready reported: each loads the handlers module
   * as it is on disk then, so after a reload (or a respawn) the new module's kinds are the ones known.
   */
  ready(_slot: WorkerSlot, kinds: readonly string[], schemas: Readonly<Record<string, unknown>>): void {
    this.kinds = new Set(kinds);
    this.schemas = schemas;
  }

  settled(slot: WorkerSlot | undefined, settled: readonly [Task, Outcome][]): void {
    const { logger, onSettled } = this.options;
    const now = performance.now();
    for (const [task, outcome] of settled) {
      onSettled?.(task, outcome, now - task.acceptedAt);
      logger.task(slot?.slot ?? 'primary', () =>
        outcome.status === 'done'
          ? `done ${task.owner.label}/${task.clientId ?? task.taskId} (${task.kind}) in ${(now - task.acceptedAt).toFixed(2)} ms`
          : `failed ${task.owner.label}/${task.clientId ?? task.taskId} (${task.kind}): ${outcome.error.code}`,
      );
      task.owner.settle(task, outcome);
    }
    this.checkIdle();
  }

  returned(_slot: WorkerSlot, tasks: readonly Task[]): void {
    this.queue.unshift(...tasks);
    for (const task of tasks) this.queuedChars += task.chars;
    this.drain();
  }

  changed(slot: WorkerSlot): void {
    this.drain();
    // A replacement starting, or a worker retiring, is not what its slot shows.
    if (this.current[slot.slot - 1] === slot) this.options.onSlotChanged?.(slot);
  }

  worn(slot: WorkerSlot, why: string): void {
    this.recycle(slot, why);
  }

  /**
   * An attempt failed and the task may run again: it waits (holding no worker) for a delay that
   * grows with each retry, then goes first in the queue to the next worker in round-robin order.
   * A task cancelled meanwhile is not run again: it is stored as cancelled.
   */
  retry(slot: WorkerSlot, task: Task, error: ErrorData): void {
    if (task.failWith?.code === ErrorCode.CANCELLED) {
      this.requeue(task);
      return;
    }
    // A TIMEOUT decided when its worker was killed is this attempt's outcome, not the next one's.
    task.failWith = undefined;
    task.attempt += 1;
    const delay = this.hurrying ? 0 : retryDelayMs(task.attempt - 1, this.options.retryBaseMs);
    this.options.logger.task(slot.slot, () =>
      `retrying ${task.owner.label}/${task.clientId ?? task.taskId} (${task.kind}) in ${delay} ms: attempt ${task.attempt - 1} failed ${error.code}`,
    );
    const timer = setTimeout(() => {
      this.waitingRetries.delete(task);
      this.requeue(task);
    }, delay);
    this.waitingRetries.set(task, timer);
  }

  /**
   * The cluster is shutting down: tasks waiting for a retry run again now, and so does any later
   * retry, without the delay, so that each is answered with a real outcome within the drain.
   */
  hurryRetries(): void {
    this.hurrying = true;
    const waiting = [...this.waitingRetries];
    this.waitingRetries.clear();
    for (const [task, timer] of waiting) {
      clearTimeout(timer);
      this.requeue(task);
    }
  }

  /** Puts a task first in the queue (it is older than those there) and hands out what can be. */
  private requeue(task: Task): void {
    this.queue.unshift(task);
    this.queuedChars += task.chars;
    this.drain();
  }

  /** Where the task with this id is, if it is accepted and not settled (a scan of the queue). */
  placeOf(taskId: string): TaskPlace | undefined {
    for (const slot of this.everySlot()) {
      const place = slot.placeOf(taskId);
      if (place === 'sent') return { state: 'running', worker: slot.slot };
      if (place === 'waiting') return { state: 'queued' };
    }
    if (this.queue.some((task) => task.taskId === taskId)) return { state: 'queued' };
    for (const task of this.waitingRetries.keys()) if (task.taskId === taskId) return { state: 'queued' };
    return undefined;
  }

  /** The accepted, unsettled task with this id (a scan of the queue and every slot: lookups only). */
  find(taskId: string): Task | undefined {
    for (const slot of this.everySlot()) {
      const task = slot.find(taskId);
      if (task !== undefined) return task;
    }
    for (const task of this.waitingRetries.keys()) if (task.taskId === taskId) return task;
    return this.queue.find((task) => task.taskId === taskId);
  }

  /**
   * Cancels an accepted, unsettled task (see find). A queued one is marked to fail and handed at
   * once to a serving worker, full or not (storing a failure costs it nothing, and the queue is
   * there because every worker is full): the least busy one, not blocked by a synchronous task,
   * stores it as cancelled without running it. With no worker serving, it waits first in line.
   */
  cancel(task: Task, error: ErrorData): 'queued' | 'running' {
    for (const slot of this.everySlot()) if (slot.find(task.taskId) === task) return slot.cancel(task, error);
    task.failWith = error;
    const retryTimer = this.waitingRetries.get(task);
    if (retryTimer !== undefined) {
      clearTimeout(retryTimer);
      this.waitingRetries.delete(task);
      unattempted(task);
    }
    const at = this.queue.indexOf(task);
    if (at !== -1) {
      this.queue.splice(at, 1);
      this.queuedChars -= task.chars;
      unattempted(task);
    }
    let target: WorkerSlot | undefined;
    for (const slot of this.current) {
      if (slot.availability() === 'down') continue;
      if (target === undefined || (target.blocked && !slot.blocked) || (target.blocked === slot.blocked && slot.inflightCount < target.inflightCount)) {
        target = slot;
      }
    }
    if (target !== undefined) this.handTo(target, task);
    else {
      this.queue.unshift(task);
      this.queuedChars += task.chars;
    }
    this.drain();
    return 'queued';
  }

  /** Tasks run again because the worker that held them died. */
  get redeliveries(): number {
    let total = 0;
    for (const slot of this.current) total += slot.redelivered;
    return total;
  }

  // ----------------------------------------------------------------------------------------------

  private handTo(slot: WorkerSlot, task: Task): void {
    slot.assign(task);
    this.options.logger.task(slot.slot, () => `dispatched ${task.owner.label}/${task.clientId ?? task.taskId} (${task.kind})`);
  }

  private drain(): void {
    while (this.queue.length > 0) {
      const slot = this.ring.next();
      if (slot === undefined) break;
      const task = this.queue.shift() as Task;
      this.queuedChars -= task.chars;
      this.handTo(slot, task);
    }
    if (this.queue.length > 0 && this.allFailing()) {
      const tasks = this.queue;
      this.queue = [];
      this.queuedChars = 0;
      this.settleWithoutWorker(tasks);
    }
    if (this.isSaturated && this.queue.length <= this.options.maxQueue / 2 && this.queuedChars <= MAX_QUEUED_CHARS / 2) {
      this.isSaturated = false;
      this.options.onPressure?.(false);
    }
  }

  /**
   * Whether no slot can serve for more than a moment: every one has failed to start a worker
   * several times in a row (a full disk, a file it cannot write, a handlers module that does not
   * load). Tasks would wait for as long as the cause lasts; they fail at once instead, saying why,
   * until a slot serves again.
   */
  private allFailing(): boolean {
    return this.slots.every((slot) => slot.failingToStart);
  }

  private settleWithoutWorker(tasks: readonly Task[]): void {
    const reasons = this.slots.map((slot) => `worker ${slot.slot}: ${slot.problemText ?? 'not ready'}`);
    const error = {
      code: ErrorCode.INTERNAL,
      message: `no worker can run tasks now (${reasons[0]}${reasons.length > 1 ? `; and ${reasons.length - 1} more, see stats` : ''})`,
    };
    this.settled(undefined, tasks.map((task): [Task, Outcome] => [task, { status: 'failed', error, worker: undefined }]));
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0 || this.outstanding > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private sweep(): void {
    const now = performance.now();
    const sinceLast = now - this.lastSweepAt;
    this.lastSweepAt = now;
    if (sinceLast > STALLED_SWEEP_MS) {
      this.sweepsPausedUntil = now + STALL_GRACE_MS;
      this.options.logger.warn('primary', `the primary was stalled for ${Math.round(sinceLast)} ms; time limits are checked again in ${STALL_GRACE_MS} ms`);
    }
    const slots = this.retiring.size === 0 ? this.current : this.everySlot();
    for (const slot of slots) slot.checkStopped(now);
    this.checkMemory(now);
    if (now < this.sweepsPausedUntil) return;
    for (const slot of slots) slot.sweepTimeouts(now);
  }
}

/**
 * SIGKILL to what is left of a dead worker's process group: the processes its handlers started.
 * Workers are forked as group leaders (`detached`); a worker that leads no group has none to end.
 */
function endGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // ESRCH: nothing is left of it.
  }
}
