import { performance } from 'node:perf_hooks';
import type { Logger } from '../shared/logger';
import type { WorkerStats } from '../shared/protocol';
import { RoundRobin } from './round-robin';
import { StandbyPool } from './standby-pool';
import type { Outcome, Task } from './task';
import { WorkerSlot, type SlotEvents } from './worker-slot';

/** How often in-flight tasks are checked against their deadlines. */
export const TIMEOUT_SWEEP_MS = 50;
/** Characters of payload the queue may hold before clients are no longer read from. */
export const MAX_QUEUED_CHARS = 64 * 1024 * 1024;

export interface DispatcherOptions {
  workers: number;
  script: string;
  /** Arguments for the worker of a slot. */
  args: (slot: number) => string[];
  /** Extra arguments of a standby worker, which learns its slot's when it takes one. */
  standbyArgs?: readonly string[];
  maxInflightPerWorker: number;
  maxQueue: number;
  maxAttempts: number;
  /** How long a started worker has to say `ready` before it is killed (see WorkerSlot). */
  readyTimeoutMs: number;
  logger: Logger;
  /** Told when the queue fills up (stop reading from clients) and when it has room again. */
  onPressure?: (saturated: boolean) => void;
}

/**
 * Hands accepted tasks to worker slots round-robin, queues them (boundedly) when every worker is
 * full, and passes each outcome to the task's owner. Knows which tasks every slot holds, so a
 * worker's death never loses one: see WorkerSlot.
 */
export class Dispatcher implements SlotEvents {
  readonly slots: readonly WorkerSlot[];
  /** Task kinds the workers run, as the first ready worker reported them. */
  kinds: ReadonlySet<string> = new Set();
  accepted = 0;

  private readonly roundRobin: RoundRobin<WorkerSlot>;
  private queue: Task[] = [];
  /** A worker process forked ahead of need, so that a dead worker's replacement is ready sooner. */
  private readonly standbys: StandbyPool;
  private isSaturated = false;
  /** Characters of payload waiting in the queue: a count of tasks alone does not bound memory. */
  private queuedChars = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly options: DispatcherOptions) {
    this.standbys = new StandbyPool(options.script, options.standbyArgs ?? [], options.logger);
    this.slots = Array.from(
      { length: options.workers },
      (_, index) =>
        new WorkerSlot({
          slot: index + 1,
          script: options.script,
          args: options.args(index + 1),
          maxInflight: options.maxInflightPerWorker,
          maxAttempts: options.maxAttempts,
          readyTimeoutMs: options.readyTimeoutMs,
          logger: options.logger,
          events: this,
          spawn: (args) => this.standbys.fork(args),
        }),
    );
    this.roundRobin = new RoundRobin(this.slots);
  }

  /** Starts every worker; resolves when all are ready, rejects if one dies first. */
  async start(): Promise<void> {
    this.sweepTimer = setInterval(() => this.sweep(), TIMEOUT_SWEEP_MS).unref();
    await Promise.all(this.slots.map((slot) => slot.start()));
    this.standbys.start();
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Whether the queue is full: clients are not read from until it has room again. */
  get saturated(): boolean {
    return this.isSaturated;
  }

  /** Tasks accepted and not yet settled. */
  get outstanding(): number {
    let held = this.queue.length;
    for (const slot of this.slots) held += slot.heldCount;
    return held;
  }

  submit(task: Task): void {
    this.accepted += 1;
    if (this.queue.length === 0) {
      const slot = this.roundRobin.next(canTake);
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
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.standbys.close();
    await Promise.all(this.slots.map((slot) => slot.stop(timeoutMs)));
  }

  /** Kills every worker at once. */
  kill(): void {
    this.standbys.close();
    for (const slot of this.slots) slot.kill();
  }

  stats(): WorkerStats[] {
    return this.slots.map((slot) => slot.stats());
  }

  // ---- SlotEvents ------------------------------------------------------------------------------

  ready(_slot: WorkerSlot, kinds: readonly string[]): void {
    if (this.kinds.size === 0) this.kinds = new Set(kinds);
  }

  settled(slot: WorkerSlot, settled: readonly [Task, Outcome][]): void {
    const { logger } = this.options;
    const now = performance.now();
    for (const [task, outcome] of settled) {
      logger.task(slot.slot, () =>
        outcome.status === 'done'
          ? `done ${task.clientId ?? task.taskId} (${task.kind}) in ${(now - task.acceptedAt).toFixed(2)} ms`
          : `failed ${task.clientId ?? task.taskId} (${task.kind}): ${outcome.error.code}`,
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

  capacity(): void {
    this.drain();
  }

  // ----------------------------------------------------------------------------------------------

  private handTo(slot: WorkerSlot, task: Task): void {
    slot.assign(task);
    this.options.logger.task(slot.slot, () => `dispatched ${task.clientId ?? task.taskId} (${task.kind})`);
  }

  private drain(): void {
    while (this.queue.length > 0) {
      const slot = this.roundRobin.next(canTake);
      if (slot === undefined) break;
      const task = this.queue.shift() as Task;
      this.queuedChars -= task.chars;
      this.handTo(slot, task);
    }
    if (this.isSaturated && this.queue.length <= this.options.maxQueue / 2 && this.queuedChars <= MAX_QUEUED_CHARS / 2) {
      this.isSaturated = false;
      this.options.onPressure?.(false);
    }
  }

  private checkIdle(): void {
    if (this.idleWaiters.length === 0 || this.outstanding > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private sweep(): void {
    const now = performance.now();
    for (const slot of this.slots) slot.sweepTimeouts(now);
  }
}

function canTake(slot: WorkerSlot): boolean {
  return slot.canTake();
}

