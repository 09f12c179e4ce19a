import type { Logger } from '../shared/logger';
import { StandbyReadySchema } from '../shared/protocol';
import { spawnWorker, type WorkerProcess } from './worker-process';

/**
 * How long after the cluster is ready, or after the standby is taken (or lost), a new standby is
 * forked: long enough for the activated one to open its database without competing for the CPU.
 */
export const STANDBY_REFILL_MS = 100;

/**
 * Keeps one worker process forked ahead of need: booting Node and loading zod and sqlite3 takes
 * most of a replacement's 200-500 ms on a 2-core machine, while a standby that is told its slot
 * only opens the database (a few ms). A standby has no database and no tasks; it exits when its
 * channel to the primary closes, so it never outlives the primary.
 */
export class Standby {
  /** The standby, once it has said it is loaded and listening. */
  private standby: WorkerProcess | undefined;
  /** A standby still loading. */
  private loading: WorkerProcess | undefined;
  private refillTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** No standby before start(): it would compete with the first workers for the CPU. */
  private started = false;
  /** Waiting for a standby to be loaded (see loaded). */
  private waiters: (() => void)[] = [];
  constructor(
    private readonly script: string,
    private readonly standbyArgs: readonly string[],
    private readonly logger: Logger,
    private readonly env?: NodeJS.ProcessEnv,
  ) {}

  /** Forks the first standby after STANDBY_REFILL_MS (the workers are ready by then). */
  start(): void {
    this.started = true;
    this.scheduleRefill();
  }

  /**
   * A worker process started with `args`: the standby, told to become it, or a fresh fork (which
   * throws, or emits 'error' with no pid, if the process cannot be made).
   */
  fork(args: readonly string[]): WorkerProcess {
    const standby = this.standby;
    this.standby = undefined;
    this.scheduleRefill();
    if (standby !== undefined && standby.connected && standby.exitCode === null && standby.signalCode === null) {
      for (const event of ['message', 'malformed', 'exit', 'error']) standby.removeAllListeners(event);
      // If this send fails the child is gone: its 'exit' reaches the slot like any worker's death.
      standby.send({ type: 'activate', args: [...args] }, () => undefined);
      return standby;
    }
    return spawnWorker(this.script, args, this.env);
  }

  /**
   * Resolves once a standby is loaded, or after `timeoutMs` (none may come: forks failing). A
   * graceful replacement waits for it, so that it activates a loaded process rather than booting
   * one while the standby that replaced the last worker boots too: a boot takes a few hundred ms
   * of CPU, and two at once on a 2-core machine slow every task the workers run meanwhile.
   */
  loaded(timeoutMs: number): Promise<void> {
    if (this.standby !== undefined || this.closed || !this.started) return Promise.resolve();
    this.scheduleRefill();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      const waiters = this.waiters;
      function done(): void {
        clearTimeout(timer);
        const at = waiters.indexOf(done);
        if (at !== -1) waiters.splice(at, 1);
        resolve();
      }
      waiters.push(done);
    });
  }

  /** Stops the standby and forks no more; safe to call twice. */
  close(): void {
    this.closed = true;
    for (const wake of [...this.waiters]) wake();
    if (this.refillTimer !== undefined) clearTimeout(this.refillTimer);
    this.refillTimer = undefined;
    this.standby?.kill('SIGKILL');
    this.loading?.kill('SIGKILL');
    this.standby = undefined;
    this.loading = undefined;
  }

  private scheduleRefill(): void {
    if (!this.started || this.closed || this.refillTimer !== undefined) return;
    this.refillTimer = setTimeout(() => {
      this.refillTimer = undefined;
      if (this.closed || this.standby !== undefined || this.loading !== undefined) return;
      let child: WorkerProcess;
      try {
        child = spawnWorker(this.script, ['--standby', ...this.standbyArgs], this.env);
      } catch {
        return; // no standby for now; the next taken slot tries again
      }
      this.loading = child;
      child.on('error', () => {
        // A fork that failed (no pid) emits no 'exit': let the next refill try again.
        if (child.pid === undefined && this.loading === child) this.loading = undefined;
      });
      // A standby runs no handler code yet: garbage from it is a fault of its own; it is not used.
      child.on('malformed', () => child.kill('SIGKILL'));
      child.on('message', (raw: unknown) => {
        if (this.loading !== child || !StandbyReadySchema.safeParse(raw).success) return;
        this.loading = undefined;
        this.standby = child;
        this.logger.info('primary', `standby worker pid ${child.pid} loaded, waiting to replace a worker`);
        for (const wake of [...this.waiters]) wake();
      });
      child.once('exit', (code, signal) => {
        if (this.loading === child) this.loading = undefined;
        if (this.standby !== child) return;
        // Killed from outside while waiting: say so and fork another, or the next replacement
        // would boot from nothing.
        this.standby = undefined;
        this.logger.warn('primary', `standby worker pid ${child.pid} exited (${signal ?? `code ${code}`}); forking another`);
        this.scheduleRefill();
      });
    }, STANDBY_REFILL_MS);
    this.refillTimer.unref();
  }
}
