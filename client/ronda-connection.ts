/**
 * A client's connection to a Ronda server, with no presentation: framing, request/reply matching
 * by id (protocol 2: every request carries one, and its reply or error echoes it), and close
 * handling. The library (client/index.ts), the CLI, the benchmark and the tests all use this alone.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { describeIssues, ErrorCode, RondaError, type ErrorData } from '../shared/errors';
import { fastTaskReply } from '../shared/fast-checks';
import { LineSplitter } from '../shared/framing';
import {
  MAX_LINE_BYTES,
  PROTOCOL_VERSION,
  ResultsQuerySchema,
  ServerMessageSchema,
  type DoneReply,
  type FailedReply,
  type ResultRow,
  type ServerMessage,
  type ReloadReply,
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

export interface TaskOptions {
  /** The task's id; one is made up when absent. Must not be in flight already. */
  id?: string;
  timeoutMs?: number;
  /** Runs again after HANDLER_FAILED or TIMEOUT, up to this many times (the server's --max-retries at most). */
  retries?: number;
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

/** A request in flight. A submit's reply is checked to be `done` or `failed` where it arrives. */
type Waiter = { resolve: (reply: ServerMessage) => void; reject: (error: Error) => void; submit: boolean };

export interface ResultsOptions {
  limit?: number;
  worker?: number;
  /** The task with this task id, or else the tasks a client gave this id. */
  taskId?: string;
}

/**
 * Events: `error` (a protocol error the server sent that no request is waiting for, as a
 * RondaError), `close` (the connection is gone; every pending request has been rejected).
 */
export class RondaConnection extends EventEmitter {
  private readonly splitter = new LineSplitter(MAX_REPLY_BYTES);
  /** Every request in flight, by its id: submits, queries and hellos alike. */
  private readonly waiters = new Map<string, Waiter>();
  /** Submits among them. */
  private submitsInFlight = 0;
  /** The id of a hello in flight: an UNAUTHORIZED refusal carries none. */
  private helloId: string | undefined;
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
        // Always said, so that the connection speaks protocol 2; waited for only when it matters.
        const hello = connection.hello(options.token);
        if (options.token === undefined && options.hello !== true) {
          hello.catch(() => undefined); // a failure closes the connection, which says why
          resolve(connection);
          return;
        }
        hello.then(
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
    return this.submitsInFlight;
  }

  /** Says hello (with the token, if any); resolves with the server's hello: its kinds. */
  async hello(token: string | undefined): Promise<HelloReply> {
    const id = this.freeId('h');
    this.helloId = id;
    try {
      const reply = await this.request(id, { type: 'hello', id, protocol: PROTOCOL_VERSION, ...(token === undefined ? {} : { token }) });
      if (reply.type !== 'hello') throw unexpected('hello', reply);
      this.serverHello = reply;
      return reply;
    } finally {
      if (this.helloId === id) this.helloId = undefined;
    }
  }

  /** Submits a task; resolves with its `done` or `failed` reply. */
  submit(kind: string, payload: unknown, options: TaskOptions = {}): Promise<TaskReply> {
    const id = options.id ?? this.freeId('c');
    return new Promise((resolve, reject) => {
      if (this.waiters.has(id)) {
        reject(new RondaError(ErrorCode.DUPLICATE_ID, `id "${id}" is already in flight`));
        return;
      }
      const timeout = options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };
      const retries = options.retries === undefined ? {} : { retries: options.retries };
      const line = JSON.stringify({ type: 'submit', id, kind, payload, ...timeout, ...retries });
      // Refused here: the server answers a line over its limit by closing the connection, which
      // would lose every other task in flight on it. A UTF-16 unit is at most 3 UTF-8 bytes, so a
      // short line (every line of a benchmark) is not measured at all.
      const bytes = line.length * 3 > MAX_LINE_BYTES ? Buffer.byteLength(line, 'utf8') : line.length;
      if (bytes > MAX_LINE_BYTES) {
        const limit = `${MAX_LINE_BYTES} (${MAX_LINE_BYTES / (1024 * 1024)} MiB)`;
        reject(new RondaError(ErrorCode.LINE_TOO_LONG, `the task's message is ${bytes} bytes, over the server's limit of ${limit} per line; it was not sent`));
        return;
      }
      this.submitsInFlight += 1;
      // No closure of its own per task: thousands are in flight at once (onMessage checks the type).
      this.waiters.set(id, { resolve: resolve as (reply: ServerMessage) => void, reject, submit: true });
      this.writeLine(line);
    });
  }

  async stats(): Promise<StatsReply> {
    const id = this.freeId('s');
    const reply = await this.request(id, { type: 'stats', id });
    if (reply.type !== 'stats') throw unexpected('stats', reply);
    return reply;
  }

  /**
   * Cancels a task in flight (see the protocol's `cancel`): resolves with where it was; the task's
   * own reply (failed CANCELLED, or done if it ran to its end) still goes to whoever submitted it.
   * Rejects with NOT_FOUND (not in flight) or UNAUTHORIZED (another client's, without the token).
   */
  async cancel(taskId: string): Promise<{ taskId: string; state: 'queued' | 'running' }> {
    // `taskId` may also be this connection's own id of a submit in flight.
    const id = this.freeId('c');
    const reply = await this.request(id, { type: 'cancel', id, taskId });
    if (reply.type !== 'cancel') throw unexpected('cancel', reply);
    return { taskId: reply.taskId, state: reply.state };
  }

  /**
   * A rolling reload (see the protocol's `reload`): resolves once every new worker serves, with
   * their pids; rejects with RELOAD_FAILED, saying which worker could not start and why.
   */
  async reload(): Promise<{ workers: ReloadReply['workers']; ms: number }> {
    const id = this.freeId('l');
    const reply = await this.request(id, { type: 'reload', id });
    if (reply.type !== 'reload') throw unexpected('reload', reply);
    return { workers: reply.workers, ms: reply.ms };
  }

  async results(query: ResultsOptions = {}): Promise<ResultRow[]> {
    const id = this.freeId('r');
    const message = { type: 'results', id, ...query };
    // Checked here too, so that a mistake is named before anything is sent.
    const checked = ResultsQuerySchema.safeParse(message);
    if (!checked.success) throw new RondaError(ErrorCode.BAD_MESSAGE, describeIssues(checked.error.issues));
    const reply = await this.request(id, message);
    if (reply.type !== 'results') throw unexpected('results', reply);
    return reply.rows;
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

  /** Sends a request and resolves with the reply that echoes its id. */
  private request(id: string, message: object): Promise<ServerMessage> {
    return new Promise((resolve, reject) => {
      this.waiters.set(id, { resolve, reject, submit: false });
      this.writeLine(JSON.stringify(message));
    });
  }

  /** An id of this connection's own that no request in flight has. */
  private freeId(prefix: string): string {
    for (;;) {
      const id = `${prefix}${(this.nextId++).toString(36)}`;
      if (!this.waiters.has(id)) return id;
    }
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
        const raw: unknown = JSON.parse(line.text);
        // A task's reply, nearly every line, is told by a few property reads (see fast-checks).
        const reply = fastTaskReply(raw);
        if (reply !== undefined) message = reply;
        else {
          const parsed = ServerMessageSchema.safeParse(raw);
          if (!parsed.success) throw new Error(parsed.error.message);
          message = parsed.data;
        }
      } catch (error) {
        this.fail(new RondaError(ErrorCode.BAD_MESSAGE, `unexpected reply from the server: ${(error as Error).message}`));
        return;
      }
      this.onMessage(message);
    }
  }

  private onMessage(message: ServerMessage): void {
    if (message.type === 'error') {
      this.onError(message);
      return;
    }
    const id = message.id;
    const waiter = id === undefined ? undefined : this.waiters.get(id);
    if (waiter === undefined || id === undefined) return; // nobody asked (or it was given up)
    this.take(id, waiter);
    if (waiter.submit && message.type !== 'done' && message.type !== 'failed') waiter.reject(unexpected('done or failed', message));
    else waiter.resolve(message);
  }

  private onError(error: ErrorData & { id?: string | undefined }): void {
    const rondaError = new RondaError(error.code, error.message);
    const waiter = error.id === undefined ? undefined : this.waiters.get(error.id);
    if (waiter !== undefined && error.id !== undefined) {
      this.take(error.id, waiter);
      waiter.reject(rondaError);
      return;
    }
    if (CLOSING_CODES.has(error.code)) {
      // The server closes the socket right after this; `close` carries it as the reason.
      this.closedError ??= rondaError;
      const hello = this.helloId === undefined ? undefined : this.waiters.get(this.helloId);
      if (hello !== undefined && this.helloId !== undefined && error.code === ErrorCode.UNAUTHORIZED) {
        this.take(this.helloId, hello);
        hello.reject(rondaError);
        return;
      }
    }
    if (this.listenerCount('error') > 0) this.emit('error', rondaError);
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

  /** Forgets a request that has its answer. */
  private take(id: string, waiter: Waiter): void {
    this.waiters.delete(id);
    if (waiter.submit) this.submitsInFlight -= 1;
  }

  private rejectAll(error: Error): void {
    const waiters = [...this.waiters.values()];
    this.waiters.clear();
    this.submitsInFlight = 0;
    for (const waiter of waiters) waiter.reject(error);
  }
}

function unexpected(wanted: string, reply: ServerMessage): RondaError {
  return new RondaError(ErrorCode.BAD_MESSAGE, `expected a ${wanted} reply, got ${reply.type}`);
}
