/**
 * Ronda from code: `const { connect } = require('ronda')`, or `import { connect } from 'ronda'`.
 *
 *     const client = await connect({ port: 5000 });
 *     const done = await client.submit('fib', { n: 25 }); // { result: 75025, worker: 2, taskId, ms }
 *     await client.close();
 *
 * A thin layer over the connection the `ronda` command uses (client/ronda-connection.ts, the only
 * implementation of the protocol): a failed task rejects with a RondaError whose `code` is the
 * stable error code, and submits beyond the window wait their turn without being written, so
 * memory is bounded by what the caller itself holds.
 */
import { EventEmitter } from 'node:events';
import { ErrorCode, RondaError } from '../shared/errors';
import type { DoneReply, ResultRow, StatsReply } from '../shared/protocol';
import { RondaConnection, type HelloReply, type ResultsOptions } from './ronda-connection';

export { ErrorCode, RondaError } from '../shared/errors';
export type { DoneReply, ResultRow, StatsReply, WorkerStats } from '../shared/protocol';
export type { HelloReply, ResultsOptions } from './ronda-connection';

/** The most submits a client has written and not yet had answered: the server's own cap per connection. */
export const DEFAULT_MAX_IN_FLIGHT = 4096;

export interface ClientOptions {
  /** Default: RONDA_HOST, else 127.0.0.1. */
  host?: string;
  /** Default: RONDA_PORT, else 5000. */
  port?: number;
  /** Sent in the hello when the server has one. Default: RONDA_TOKEN. */
  token?: string;
  /** How long connecting (and the hello) may take. Default 5000 ms. */
  connectTimeoutMs?: number;
  /**
   * Submits written and not yet answered, at most; later ones wait in order, unsent, until one is
   * answered. Default DEFAULT_MAX_IN_FLIGHT, the server's own cap per connection.
   */
  maxInFlight?: number;
}

export interface SubmitOptions {
  /** The task's client id (stored as `client_id`); one is made up when absent. */
  id?: string;
  /** Its time limit, within the server's --min/--max-task-timeout-ms. */
  timeoutMs?: number;
  /**
   * Runs it again after HANDLER_FAILED or TIMEOUT, up to this many times (at most the server's
   * --max-retries), after a growing delay; the reply's `attempts` says how many runs it took.
   */
  retries?: number;
  /**
   * Stops waiting for the reply: the promise rejects with the signal's reason. A task already sent
   * still runs and is stored (find it with results({ taskId })); one still waiting its turn is not
   * sent at all.
   */
  signal?: AbortSignal;
}

/** The `done` reply: the stored result, the worker that ran it, the task's id, and the time taken. */
export type TaskResult = DoneReply;

/** A submit waiting for room in the window. */
interface Queued {
  start: () => void;
  fail: (error: Error) => void;
  /** Given up (its signal aborted): skipped when its turn comes. */
  cancelled: boolean;
}

/**
 * A connection to a Ronda cluster. Events: `close` (with the reason: the server went away, or
 * close() was called), after every pending request has been rejected.
 */
export class RondaClient extends EventEmitter {
  /** Resolves with the reason once the connection is closed, however that happened. */
  readonly closed: Promise<Error>;
  private inFlight = 0;
  private readonly waiting: Queued[] = [];
  private closing: Promise<void> | undefined;
  /** Told when the last waiting submit has been sent (close() waits for it). */
  private sentAll: (() => void) | undefined;

  /** Use connect(). */
  constructor(
    private readonly connection: RondaConnection,
    private readonly maxInFlight: number,
  ) {
    super();
    this.closed = new Promise((resolve) => {
      connection.once('close', (reason: Error) => {
        for (const queued of this.waiting.splice(0)) queued.fail(reason);
        resolve(reason);
        this.emit('close', reason);
      });
    });
    // A protocol error no request was waiting for must not crash the caller's process.
    connection.on('error', () => undefined);
  }

  /** The server's hello: its protocol version, the kinds its workers run and their JSON Schemas. */
  get server(): HelloReply | undefined {
    return this.connection.server;
  }

  /** Runs one task; resolves with its `done` reply, rejects with a RondaError (`code`) otherwise. */
  submit(kind: string, payload: unknown, options: SubmitOptions = {}): Promise<TaskResult> {
    const { signal } = options;
    if (signal?.aborted === true) return Promise.reject(signal.reason);
    if (this.closing !== undefined) {
      return Promise.reject(new RondaError(ErrorCode.SHUTTING_DOWN, 'the client is closing: close() was called before this submit'));
    }
    return new Promise<TaskResult>((resolve, reject) => {
      let settled = false;
      const finish = (outcome: () => void): void => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        outcome();
      };
      const queued: Queued = {
        cancelled: false,
        fail: (error) => finish(() => reject(error)),
        start: () => {
          this.inFlight += 1;
          const sent = {
            ...(options.id === undefined ? {} : { id: options.id }),
            ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
            ...(options.retries === undefined ? {} : { retries: options.retries }),
          };
          this.connection.submit(kind, payload, sent).then(
            (reply) => {
              this.release();
              finish(() => (reply.type === 'done' ? resolve(reply) : reject(new RondaError(reply.error.code, reply.error.message))));
            },
            (error: unknown) => {
              this.release();
              finish(() => reject(error));
            },
          );
        },
      };
      const onAbort = (): void => {
        queued.cancelled = true;
        finish(() => reject(signal?.reason));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      if (this.inFlight < this.maxInFlight && this.waiting.length === 0) queued.start();
      else this.waiting.push(queued);
    });
  }

  /** Stored rows across the workers' files, newest first. */
  results(query: ResultsOptions = {}): Promise<ResultRow[]> {
    return this.connection.results(query);
  }

  stats(): Promise<StatsReply> {
    return this.connection.stats();
  }

  /**
   * Cancels a task in flight by the `id` this client gave it in submit() (or by a task id): a queued
   * task fails CANCELLED at once (stored as such), a running one's handler sees its signal abort.
   * Only this client's own tasks, unless it connected with the cluster's token.
   */
  cancel(taskId: string): Promise<{ taskId: string; state: 'queued' | 'running' }> {
    return this.connection.cancel(taskId);
  }

  /**
   * Replaces every worker of the cluster, one at a time, with one that loads the handlers module
   * afresh (as SIGHUP does); no task fails or waits for it. Resolves with the new workers' pids, or
   * rejects with RELOAD_FAILED when a new worker cannot start: the old ones then serve on.
   */
  reload(): Promise<{ workers: { slot: number; pid: number | null }[]; ms: number }> {
    return this.connection.reload();
  }

  /**
   * Ends the connection gracefully: every submit made before it is sent (those waiting for room in
   * the window too) and answered, then the socket is closed; resolves once it is. Submits made
   * after it reject with SHUTTING_DOWN. Safe to call twice.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.waiting.length > 0 && !this.connection.closed) {
        await Promise.race([new Promise<void>((resolve) => (this.sentAll = resolve)), this.closed]);
      }
      // The server answers what was sent before it closes its side (a half-close).
      await this.connection.close();
    })();
    return this.closing;
  }

  private release(): void {
    this.inFlight -= 1;
    while (this.inFlight < this.maxInFlight && this.waiting.length > 0) {
      const next = this.waiting.shift() as Queued;
      if (!next.cancelled) next.start();
    }
    if (this.waiting.length === 0) this.sentAll?.();
  }
}

/** Connects to a Ronda cluster (and says hello, with the token if there is one). */
export async function connect(options: ClientOptions = {}): Promise<RondaClient> {
  const host = options.host ?? process.env.RONDA_HOST ?? '127.0.0.1';
  const port = options.port ?? portFromEnvironment();
  const token = options.token ?? (process.env.RONDA_TOKEN === '' ? undefined : process.env.RONDA_TOKEN);
  const maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RondaError(ErrorCode.BAD_MESSAGE, `port must be a whole number from 1 to 65535, not ${String(port)}`);
  }
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1) {
    throw new RondaError(ErrorCode.BAD_MESSAGE, `maxInFlight must be a whole number of at least 1, not ${String(maxInFlight)}`);
  }
  const connection = await RondaConnection.connect({
    host,
    port,
    token,
    hello: true,
    ...(options.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: options.connectTimeoutMs }),
  });
  return new RondaClient(connection, maxInFlight);
}

function portFromEnvironment(): number {
  const text = process.env.RONDA_PORT;
  if (text === undefined || text === '') return 5000;
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new RondaError(ErrorCode.BAD_MESSAGE, `RONDA_PORT must be a port number from 1 to 65535, not "${text}"`);
  }
  return port;
}
