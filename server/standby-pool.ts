import { fork, type ChildProcess, type ForkOptions } from 'node:child_process';
import type { Logger } from '../shared/logger';
import { StandbyReadySchema } from '../shared/protocol';

/**
 * How long after the cluster is ready, or after the standby is taken, a new standby is forked:
 * long enough for the activated one to open its database without competing for the CPU.
 */
export const STANDBY_REFILL_MS = 100;

const FORK_OPTIONS: ForkOptions = { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] };

/**
 * Keeps one worker process forked ahead of need: booting Node and loading zod and sqlite3 takes
 * most of a replacement's 200-500 ms on a 2-core machine, while a standby that is told its slot
 * only opens the database (a few ms). A standby has no database and no tasks; it exits with its
 * IPC channel, so it never outlives the primary.
 */
export class StandbyPool {
  /** The standby, once it has said it is loaded and listening. */
  private standby: ChildProcess | undefined;
  /** A standby still loading. */
  private loading: ChildProcess | undefined;
  private refillTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** No standby before start(): it would compete with the first workers for the CPU. */
  private started = false;

  constructor(
    private readonly script: string,
    private readonly standbyArgs: readonly string[],
    private readonly logger: Logger,
  ) {}

  /** Forks the first standby after STANDBY_REFILL_MS (the workers are ready by then). */
  start(): void {
    this.started = true;
    this.scheduleRefill();
  }

  /** A worker process started with `args`: the standby, told to become it, or a fresh fork. */
  fork(args: readonly string[]): ChildProcess {
    const standby = this.standby;
    this.standby = undefined;
    this.scheduleRefill();
    if (standby !== undefined && standby.connected && standby.exitCode === null && standby.signalCode === null) {
      standby.removeAllListeners('message');
      standby.removeAllListeners('exit');
      // If this send fails the child is gone: its 'exit' reaches the slot like any worker's death.
      standby.send({ type: 'activate', args: [...args] }, () => undefined);
      return standby;
    }
    return fork(this.script, args, FORK_OPTIONS);
  }

  /** Stops the standby and forks no more; safe to call twice. */
  close(): void {
    this.closed = true;
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
      const child = fork(this.script, ['--standby', ...this.standbyArgs], FORK_OPTIONS);
      this.loading = child;
      child.on('error', () => undefined); // a failed standby is just not used
      child.on('message', (raw: unknown) => {
        if (this.loading !== child || !StandbyReadySchema.safeParse(raw).success) return;
        this.loading = undefined;
        this.standby = child;
        this.logger.info('primary', `standby worker pid ${child.pid} loaded, waiting to replace a worker`);
      });
      child.once('exit', () => {
        if (this.loading === child) this.loading = undefined;
        if (this.standby === child) this.standby = undefined;
      });
    }, STANDBY_REFILL_MS);
    this.refillTimer.unref();
  }
}
