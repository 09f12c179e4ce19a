/**
 * A client's connection to a Ronda server, with no presentation: framing, request/reply matching
 * by id, and close handling. The CLI, the benchmark and the tests all use this alone.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { describeIssues, ErrorCode, RondaError, type ErrorData } from '../shared/errors';
import { LineSplitter } from '../shared/framing';
import {
  MAX_LINE_BYTES,
  ResultsQuerySchema,
  ServerMessageSchema,
  type DoneReply,
  type FailedReply,
  type ResultRow,
  type ServerMessage,
  type StatsReply,
} from '../shared/protocol';

/** Longest reply line a client accepts (a `results` reply can carry many large rows). */
export const MAX_REPLY_BYTES = 256 * 1024 * 1024;

export interface ConnectOptions {
  host: string;
  port: number;
  /** Sent in a `hello` first when set. */
  token?: string | undefined;
  /** Say hello even without a token, to learn the server's kinds (see `server`). */
  hello?: boolean;
  connectTimeoutMs?: number;
}

export interface SubmitOptions {
  /** The task's id; one is made up when absent. Must not be in flight already. */
  id?: string;
  timeoutMs?: number;
}

export type TaskReply = DoneReply | FailedReply;
export type HelloReply = Extract<ServerMessage, { type: 'hello' }>;

export interface RetryOptions {
  /** Connection attempts in all, the first one included. */
  attempts: number;
  /** Delay before the second attempt; doubled after each failure up to maxDelayMs. */
  delayMs?: number;
  maxDelayMs?: number;
  /** Called before each attempt (1-based), so that a person can see the count. */
  onAttempt?: (attempt: number, attempts: number) => void;
  /** Called after each failed attempt with its error. */
  onFailure?: (error: Error, attempt: number, attempts: number) => void;
  /** Resolving it stops further attempts (the person gave up). */
  cancel?: Promise<void>;
}

/**
 * Errors after which the server closes the connection: when one arrives unasked, it is the reason
 * the connection ends, and pending requests are rejected with it rather than a bare "closed".
 */
const CLOSING_CODES: ReadonlySet<string> = new Set([
  ErrorCode.UNAUTHORIZED,
  ErrorCode.TOO_MANY_CONNECTIONS,
  ErrorCode.SHUTTING_DOWN,
  ErrorCode.IDLE_TIMEOUT,
  ErrorCode.LINE_TOO_LONG,
]);

type Waiter<T> = { resolve: (value: T) => void; reject: (error: Error) => void };

/**
 * Events: `error` (a protocol error the server sent that no request is waiting for, as a
 * RondaError), `close` (the connection is gone; every pending request has been rejected).
 */
export class RondaConnection extends EventEmitter {
  private readonly splitter = new LineSplitter(MAX_REPLY_BYTES);
  private readonly submits = new Map<string, Waiter<TaskReply>>();
  private readonly statsWaiters: Waiter<StatsReply>[] = [];
  private readonly resultsWaiters: Waiter<ResultRow[]>[] = [];
  private helloWaiter: Waiter<HelloReply> | undefined;
  /** Results queries are sent one at a time: their replies carry no id to match them by. */
  private resultsChain: Promise<unknown> = Promise.resolve();
  private nextId = 0;
  private serverHello: HelloReply | undefined;
  private closedError: Error | undefined;
  /** Messages written in this turn of the event loop, sent together on the next tick. */
  private outgoing = '';

  private constructor(private readonly socket: net.Socket) {
    super();
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (error) => {
      this.closedError ??= new RondaError(ErrorCode.INTERNAL, `connection error: ${error.message}`);
    });
    socket.on('close', () => this.onClose());
  }

  /** Connects (and says hello with the token, if one is given). */
  static connect(options: ConnectOptions): Promise<RondaConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: options.host, port: options.port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`timed out connecting to ${options.host}:${options.port}`));
      }, options.connectTimeoutMs ?? 5_000);
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        const connection = new RondaConnection(socket);
        if (options.token === undefined && options.hello !== true) {
          resolve(connection);
          return;
        }
        connection.hello(options.token).then(
          () => resolve(connection),
          (error: unknown) => {
            socket.destroy();
            reject(error);
          },
        );
      });
    });
  }

  /**
   * Connects like connect() (hello included), trying again after a growing delay while the attempt
   * fails; rejects with the last error once `attempts` have failed. A refused token is not retried.
   */
  static async connectWithRetry(options: ConnectOptions, retry: RetryOptions): Promise<RondaConnection> {
    let delayMs = retry.delayMs ?? 250;
    let cancelled = false;
    void retry.cancel?.then(() => (cancelled = true));
    for (let attempt = 1; ; attempt += 1) {
      retry.onAttempt?.(attempt, retry.attempts);
      try {
        return await RondaConnection.connect(options);
      } catch (error) {
        const failure = error instanceof Error ? error : new Error(String(error));
        retry.onFailure?.(failure, attempt, retry.attempts);
        const refused = failure instanceof RondaError && failure.code === ErrorCode.UNAUTHORIZED;
        if (attempt >= retry.attempts || refused || cancelled) throw failure;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delayMs);
        void retry.cancel?.then(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      if (cancelled) throw new RondaError(ErrorCode.INTERNAL, 'gave up reconnecting');
      delayMs = Math.min(delayMs * 2, retry.maxDelayMs ?? 2_000);
    }
  }

  /** The server's hello (its task kinds), once one has been said. */
  get server(): HelloReply | undefined {
    return this.serverHello;
  }

  get closed(): boolean {
    return this.closedError !== undefined || this.socket.destroyed;
  }

  /** Pending submits. */
  get inflight(): number {
    return this.submits.size;
  }

  /** Says hello (with the token, if any); resolves with the server's hello: its kinds. */
  hello(token: string | undefined): Promise<HelloReply> {
    return new Promise((resolve, reject) => {
      this.helloWaiter = { resolve, reject };
      this.write(token === undefined ? { type: 'hello' } : { type: 'hello', token });
    });
  }

  /** Submits a task; resolves with its `done` or `failed` reply. */
  submit(kind: string, payload: unknown, options: SubmitOptions = {}): Promise<TaskReply> {
    const id = options.id ?? `c${(this.nextId++).toString(36)}`;
    return new Promise((resolve, reject) => {
      if (this.submits.has(id)) {
        reject(new RondaError(ErrorCode.DUPLICATE_ID, `id "${id}" is already in flight`));
        return;
      }
      const timeout = options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };
      const line = JSON.stringify({ type: 'submit', id, kind, payload, ...timeout });
      // Refused here: the server answers a line over its limit by closing the connection, which
      // would lose every other task in flight on it. A UTF-16 unit is at most 3 UTF-8 bytes, so a
      // short line (every line of a benchmark) is not measured at all.
      const bytes = line.length * 3 > MAX_LINE_BYTES ? Buffer.byteLength(line, 'utf8') : line.length;
      if (bytes > MAX_LINE_BYTES) {
        const limit = `${MAX_LINE_BYTES} (${MAX_LINE_BYTES / (1024 * 1024)} MiB)`;
        reject(new RondaError(ErrorCode.LINE_TOO_LONG, `the task's message is ${bytes} bytes, over the server's limit of ${limit} per line; it was not sent`));
        return;
      }
      this.submits.set(id, { resolve, reject });
      this.writeLine(line);
    });
  }

  stats(): Promise<StatsReply> {
    return new Promise((resolve, reject) => {
      this.statsWaiters.push({ resolve, reject });
      this.write({ type: 'stats' });
    });
  }

  results(query: { limit?: number; worker?: number; id?: string } = {}): Promise<ResultRow[]> {
    // Checked here: the server answers a bad query with an error that carries no way to match it
    // to this request, which would leave it, and every query queued behind it, waiting forever.
    const checked = ResultsQuerySchema.safeParse({ type: 'results', ...query });
    if (!checked.success) {
      return Promise.reject(new RondaError(ErrorCode.BAD_MESSAGE, describeIssues(checked.error.issues)));
    }
    const next = this.resultsChain.then(
      () =>
        new Promise<ResultRow[]>((resolve, reject) => {
          this.resultsWaiters.push({ resolve, reject });
          this.write({ type: 'results', ...query });
        }),
    );
    this.resultsChain = next.catch(() => undefined);
    return next;
  }

  /** Ends the connection; resolves once it is closed. */
  close(): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once('close', () => resolve());
      this.flushOutgoing();
      this.socket.end();
    });
  }

  /** Drops the connection now, without waiting for the server to answer what is in flight. */
  destroy(): void {
    this.socket.destroy();
  }

  private write(message: object): void {
    this.writeLine(JSON.stringify(message));
  }

  private writeLine(line: string): void {
    if (this.closed) {
      queueMicrotask(() => this.rejectAll(this.closedError ?? new RondaError(ErrorCode.INTERNAL, 'connection closed')));
      return;
    }
    // One write per turn of the event loop, not per message: a syscall (and a wakeup of the
    // server) per task cost more CPU than the task itself when many are submitted at once.
    if (this.outgoing === '') process.nextTick(() => this.flushOutgoing());
    this.outgoing += `${line}\n`;
  }

  private flushOutgoing(): void {
    const text = this.outgoing;
    this.outgoing = '';
    if (text !== '' && this.socket.writable) this.socket.write(text);
  }

  private onData(chunk: Buffer): void {
    for (const line of this.splitter.push(chunk)) {
      if (!line.ok) {
        this.fail(new RondaError(line.code, 'unreadable reply from the server'));
        return;
      }
      let message: ServerMessage;
      try {
        const parsed = ServerMessageSchema.safeParse(JSON.parse(line.text));
        if (!parsed.success) throw new Error(parsed.error.message);
        message = parsed.data;
      } catch (error) {
        this.fail(new RondaError(ErrorCode.BAD_MESSAGE, `unexpected reply from the server: ${(error as Error).message}`));
        return;
      }
      this.onMessage(message);
    }
  }

  private onMessage(message: ServerMessage): void {
    switch (message.type) {
      case 'done':
      case 'failed': {
        const waiter = this.submits.get(message.id);
        this.submits.delete(message.id);
        waiter?.resolve(message);
        return;
      }
      case 'stats':
        this.statsWaiters.shift()?.resolve(message);
        return;
      case 'results':
        this.resultsWaiters.shift()?.resolve(message.rows);
        return;
      case 'hello':
        this.serverHello = message;
        this.helloWaiter?.resolve(message);
        this.helloWaiter = undefined;
        return;
      case 'error':
        this.onError(message);
        return;
      default: {
        const unreachable: never = message;
        throw new Error(`unhandled reply ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private onError(error: ErrorData & { id?: string | undefined }): void {
    const rondaError = new RondaError(error.code, error.message);
    const waiter = error.id === undefined ? undefined : this.submits.get(error.id);
    if (waiter !== undefined && error.id !== undefined) {
      this.submits.delete(error.id);
      waiter.reject(rondaError);
    } else if (this.helloWaiter !== undefined && error.code === ErrorCode.UNAUTHORIZED) {
      this.closedError ??= rondaError;
      this.helloWaiter.reject(rondaError);
      this.helloWaiter = undefined;
    } else if (CLOSING_CODES.has(error.code)) {
      // The server closes the socket right after this; `close` carries it as the reason.
      this.closedError ??= rondaError;
      if (this.listenerCount('error') > 0) this.emit('error', rondaError);
    } else if ((error.code === ErrorCode.INTERNAL || error.code === ErrorCode.BAD_MESSAGE) && this.resultsWaiters.length > 0) {
      // A results query is the only request this client sends with no id of its own (queries go
      // one at a time): an error without an id while one waits is its answer, e.g. a `worker` the
      // cluster does not have. Protocol v2 gives every request an id (issue 9).
      this.resultsWaiters.shift()?.reject(rondaError);
    } else if (this.listenerCount('error') > 0) {
      this.emit('error', rondaError);
    }
  }

  private fail(error: Error): void {
    this.closedError ??= error;
    this.socket.destroy();
  }

  private onClose(): void {
    this.closedError ??= new RondaError(ErrorCode.INTERNAL, 'the server closed the connection');
    this.rejectAll(this.closedError);
    this.emit('close', this.closedError);
  }

  private rejectAll(error: Error): void {
    for (const waiter of this.submits.values()) waiter.reject(error);
    this.submits.clear();
    for (const waiter of this.statsWaiters.splice(0)) waiter.reject(error);
    for (const waiter of this.resultsWaiters.splice(0)) waiter.reject(error);
    this.helloWaiter?.reject(error);
    this.helloWaiter = undefined;
  }
}
