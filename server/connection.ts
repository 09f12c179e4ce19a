import { createHash, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { describeIssues, ErrorCode, type ErrorData } from '../shared/errors';
import { LineSplitter, type Line } from '../shared/framing';
import {
  ClientMessageSchema,
  PROTOCOL_VERSION,
  TaskIdSchema,
  type ResultRow,
  type ResultsQuery,
  type ServerMessage,
  type StatsReply,
  type Submit,
} from '../shared/protocol';
import type { Outcome, Task, TaskOwner } from './task';

/**
 * Unterminated plain text that stays unanswered this long counts as a complete line: the seed's
 * Python client sends a task with no newline and waits for the answer.
 */
export const PLAIN_TEXT_PAUSE_MS = 30;
/** The refusal of anything new while the cluster stops. */
export const SHUTTING_DOWN: ErrorData = { code: ErrorCode.SHUTTING_DOWN, message: 'the server is shutting down' };
/** Tasks one connection may have accepted and unanswered before the server stops reading it. */
export const MAX_PENDING_PER_CONNECTION = 4_096;
/** Characters of payload the same may hold: 4,096 tasks of 1 MiB each would be 4 GiB. */
export const MAX_PENDING_CHARS_PER_CONNECTION = 8 * 1024 * 1024;

/** What a connection needs from the rest of the primary. */
export interface ConnectionContext {
  token: string | undefined;
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  idleTimeoutMs: number;
  kinds(): ReadonlySet<string>;
  /** False once the server is shutting down. */
  accepting(): boolean;
  nextTaskId(): string;
  submit(task: Task): void;
  results(query: ResultsQuery): Promise<ResultRow[]>;
  stats(): StatsReply;
  closed(connection: Connection): void;
}

type Reply = ServerMessage;

/** A plain-text reply owed, in line order; `text` is set when its task settles. */
interface PlainReply {
  text: string | undefined;
}

/**
 * One client connection: frames its lines, parses each once, submits tasks and writes replies.
 * JSON replies go out as soon as their task settles; plain-text replies keep the order of the
 * lines that asked for them. Reading pauses while the connection has too many unanswered tasks,
 * while its replies are not being read, or while the primary's queue is full: TCP then pushes back
 * on the sender instead of the primary buffering without limit.
 */
export class Connection implements TaskOwner {
  private readonly splitter = new LineSplitter();
  private readonly inflightIds = new Set<string>();
  /** Plain-text replies in the order their lines arrived; `undefined` until the task settles. */
  private readonly plainReplies: PlainReply[] = [];
  private readonly plainByTask = new Map<string, PlainReply>();
  private pending = 0;
  /** Characters of the payloads of `pending` tasks: payloads, not task counts, fill memory. */
  private pendingChars = 0;
  /** `results` queries being read; their replies are owed like a task's. */
  private queries = 0;
  /** Whether the client has ever ended a line: only a client that never does (the seed's) has
   * unterminated text taken as a line after a pause, so a slow read never splits a line. */
  private sawNewline = false;
  /** Whether the client has sent a plain-text task: its errors then keep the order of its lines. */
  private plainClient = false;
  private authenticated: boolean;
  /** No more lines are read: the peer half-closed, or the connection is being closed. */
  private ended = false;
  private closed = false;
  private reading = true;
  private writeBlocked = false;
  private globalPause = false;
  private out = '';
  private plainTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly socket: Socket,
    private readonly context: ConnectionContext,
  ) {
    this.authenticated = context.token === undefined;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    if (context.idleTimeoutMs > 0) socket.setTimeout(context.idleTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('timeout', () => this.onIdle());
    socket.on('drain', () => {
      this.writeBlocked = false;
      this.updateFlow();
    });
    socket.on('error', () => undefined); // 'close' follows; a reset peer is not the server's error.
    socket.on('close', () => this.onClose());
  }

  /** Pauses or resumes reading because of the primary's queue (also for a new connection). */
  setGlobalPause(paused: boolean): void {
    this.globalPause = paused;
    this.updateFlow();
  }

  /** Sends an error and closes the connection once its tasks have been answered. */
  refuse(error: ErrorData): void {
    this.send({ type: 'error', ...error });
    this.finish();
  }

  /** Closes the connection now (forced shutdown). */
  destroy(): void {
    this.socket.destroy();
  }

  // ---- TaskOwner -------------------------------------------------------------------------------

  settle(task: Task, outcome: Outcome): void {
    this.pending -= 1;
    this.pendingChars -= task.chars;
    if (task.clientId !== undefined) this.inflightIds.delete(task.clientId);
    const plain = this.plainByTask.get(task.taskId);
    if (plain !== undefined) {
      this.plainByTask.delete(task.taskId);
      plain.text = outcome.status === 'done' ? plainResult(outcome.result) : `error: ${outcome.error.message}`;
      this.flushPlain();
    } else {
      const ms = Math.round((performance.now() - task.acceptedAt) * 100) / 100;
      const id = task.clientId ?? task.taskId;
      this.send(
        outcome.status === 'done'
          ? { type: 'done', id, taskId: task.taskId, kind: task.kind, worker: outcome.worker, result: outcome.result, ms }
          : failedReply(id, task, outcome.error, outcome.worker, ms),
      );
    }
    this.updateFlow();
  }

  // ---- reading ---------------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.ended) return;
    const lines = this.splitter.push(chunk);
    // The splitter has already looked for the newlines; no second scan of the chunk.
    if (lines.length > 0) this.sawNewline = true;
    for (const line of lines) {
      this.onLine(line);
      if (this.ended) return;
    }
    this.clearPlainTimer();
    if (!this.sawNewline && this.splitter.buffered > 0 && this.splitter.firstBufferedByte !== 0x7b /* { */) {
      this.plainTimer = setTimeout(() => this.onPlainPause(), PLAIN_TEXT_PAUSE_MS);
    }
  }

  private clearPlainTimer(): void {
    if (this.plainTimer !== undefined) clearTimeout(this.plainTimer);
    this.plainTimer = undefined;
  }

  private onPlainPause(): void {
    this.plainTimer = undefined;
    const line = this.splitter.flush();
    if (line !== undefined && !this.ended) this.onLine(line);
  }

  private onEnd(): void {
    this.clearPlainTimer();
    const line = this.splitter.flush();
    if (line !== undefined && !this.ended) this.onLine(line);
    this.finish();
  }

  private onIdle(): void {
    if (this.pending > 0) return;
    this.refuse({ code: ErrorCode.IDLE_TIMEOUT, message: `idle for ${this.context.idleTimeoutMs} ms; closing` });
  }

  private onLine(line: Line): void {
    if (!line.ok) {
      if (line.code === ErrorCode.LINE_TOO_LONG) {
        this.refuse({ code: line.code, message: 'line is longer than 1 MiB; closing the connection' });
      } else if (this.plainClient) {
        this.plainReplies.push({ text: 'error: line is not valid UTF-8' });
        this.flushPlain();
      } else {
        this.send({ type: 'error', code: line.code, message: 'line is not valid UTF-8' });
      }
      return;
    }
    const text = line.text.trim();
    if (text === '') return;
    if (text.startsWith('{')) this.onJson(text);
    else this.onPlain(text);
  }

  private onPlain(text: string): void {
    if (!this.authenticated) {
      this.unauthorized();
      return;
    }
    this.plainClient = true;
    const entry: PlainReply = { text: undefined };
    this.plainReplies.push(entry);
    const refused = this.refusal('text');
    if (refused !== undefined) {
      entry.text = `error: ${refused.message}`;
      this.flushPlain();
      return;
    }
    const task = this.accept(undefined, 'text', text, this.context.defaultTimeoutMs, text.length);
    this.plainByTask.set(task.taskId, entry);
    this.context.submit(task);
  }

  private onJson(text: string): void {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (error) {
      if (!this.authenticated) this.unauthorized();
      else this.send({ type: 'error', code: ErrorCode.BAD_JSON, message: `not valid JSON: ${(error as Error).message}` });
      return;
    }
    const parsed = ClientMessageSchema.safeParse(raw);
    if (!parsed.success && !this.authenticated) {
      this.unauthorized();
      return;
    }
    if (!parsed.success) {
      const id = idOf(raw);
      this.send({
        type: 'error',
        code: ErrorCode.BAD_MESSAGE,
        message: describeIssues(parsed.error.issues),
        ...(id === undefined ? {} : { id }),
      });
      return;
    }
    const message = parsed.data;
    if (!this.authenticated && message.type !== 'hello') {
      this.unauthorized();
      return;
    }
    switch (message.type) {
      case 'hello':
        this.onHello(message.token);
        return;
      case 'submit':
        this.onSubmit(message, text.length);
        return;
      case 'results':
        this.queries += 1;
        this.context
          .results(message)
          // send() throws for a reply too long to be one string; that must not reach the process.
          .then((rows) => this.send({ type: 'results', rows }))
          .catch((error: unknown) =>
            this.send({ type: 'error', code: ErrorCode.INTERNAL, message: `could not read results: ${String(error)}` }),
          )
          .finally(() => {
            this.queries -= 1;
            this.endIfAnswered();
          });
        return;
      case 'stats':
        this.send(this.context.stats());
        return;
      default: {
        const unreachable: never = message;
        throw new Error(`unhandled message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Anything but a `hello` with the token, first, closes the connection. */
  private unauthorized(): void {
    this.refuse({ code: ErrorCode.UNAUTHORIZED, message: 'send {"type":"hello","token":...} first' });
  }

  private onHello(token: string | undefined): void {
    if (!this.authenticated) {
      const expected = this.context.token as string;
      if (token === undefined || !sameSecret(token, expected)) {
        this.refuse({ code: ErrorCode.UNAUTHORIZED, message: 'wrong or missing token' });
        return;
      }
      this.authenticated = true;
    }
    this.send({ type: 'hello', server: 'ronda', protocol: PROTOCOL_VERSION, kinds: [...this.context.kinds()] });
  }

  private onSubmit(message: Submit, chars: number): void {
    const { id, kind } = message;
    if (id !== undefined && this.inflightIds.has(id)) {
      this.send({ type: 'error', code: ErrorCode.DUPLICATE_ID, id, message: `id "${id}" is already in flight` });
      return;
    }
    const timeoutMs = message.timeoutMs ?? this.context.defaultTimeoutMs;
    if (timeoutMs > this.context.maxTimeoutMs) {
      this.send({
        type: 'error',
        code: ErrorCode.BAD_MESSAGE,
        message: `timeoutMs must be at most ${this.context.maxTimeoutMs}`,
        ...(id === undefined ? {} : { id }),
      });
      return;
    }
    const refused = this.refusal(kind);
    if (refused !== undefined) {
      this.send({ type: 'failed', id: id ?? this.context.nextTaskId(), kind, error: refused });
      return;
    }
    const task = this.accept(id, kind, message.payload, timeoutMs, chars);
    if (id !== undefined) this.inflightIds.add(id);
    this.context.submit(task);
  }

  /** Why a task of this kind cannot be accepted now, if it cannot. */
  private refusal(kind: string): ErrorData | undefined {
    if (!this.context.accepting()) return SHUTTING_DOWN;
    if (!this.context.kinds().has(kind)) {
      return {
        code: ErrorCode.UNKNOWN_KIND,
        message: `unknown task kind "${kind}"; known: ${[...this.context.kinds()].join(', ')}`,
      };
    }
    return undefined;
  }

  private accept(clientId: string | undefined, kind: string, payload: unknown, timeoutMs: number, chars: number): Task {
    this.pending += 1;
    this.pendingChars += chars;
    this.updateFlow();
    return {
      chars,
      taskId: this.context.nextTaskId(),
      clientId,
      kind,
      payload,
      timeoutMs,
      owner: this,
      acceptedAt: performance.now(),
      deadline: Number.POSITIVE_INFINITY,
      deaths: 0,
      redelivered: false,
      failWith: undefined,
    };
  }

  // ---- writing and closing ---------------------------------------------------------------------

  private send(reply: Reply): void {
    this.write(`${JSON.stringify(reply)}\n`);
  }

  private flushPlain(): void {
    let text = '';
    while (this.plainReplies.length > 0 && this.plainReplies[0]?.text !== undefined) {
      text += `${(this.plainReplies.shift() as PlainReply).text}\n`;
    }
    if (text !== '') this.write(text);
  }

  private write(text: string): void {
    if (this.closed) return;
    if (this.out === '') {
      // Replies settled in the same turn (one IPC batch) go out in one write.
      process.nextTick(() => this.flushOut());
    }
    this.out += text;
  }

  private flushOut(): void {
    const text = this.out;
    this.out = '';
    if (this.closed || text === '') return;
    if (!this.socket.write(text)) this.writeBlocked = true;
    this.updateFlow();
    this.endIfAnswered();
  }

  /** Ends a finished connection once nothing more is owed to it. */
  private endIfAnswered(): void {
    if (this.ended && this.pending === 0 && this.queries === 0 && this.out === '') this.socket.end();
  }

  /** Reads no more lines; ends the socket once every accepted task has been answered. */
  private finish(): void {
    this.ended = true;
    this.clearPlainTimer();
    this.updateFlow();
    this.endIfAnswered();
  }

  private updateFlow(): void {
    const read =
      !this.ended &&
      !this.writeBlocked &&
      !this.globalPause &&
      this.pending < MAX_PENDING_PER_CONNECTION &&
      this.pendingChars < MAX_PENDING_CHARS_PER_CONNECTION;
    if (read === this.reading) return;
    this.reading = read;
    if (read) this.socket.resume();
    else this.socket.pause();
  }

  private onClose(): void {
    this.closed = true;
    this.ended = true;
    this.clearPlainTimer();
    // Tasks still running finish and are stored; their replies have nowhere to go.
    this.context.closed(this);
  }
}

function failedReply(id: string, task: Task, error: ErrorData, worker: number | undefined, ms: number): Reply {
  return worker === undefined
    ? { type: 'failed', id, taskId: task.taskId, kind: task.kind, error, ms }
    : { type: 'failed', id, taskId: task.taskId, kind: task.kind, worker, error, ms };
}

function plainResult(result: unknown): string {
  return typeof result === 'string' ? result : JSON.stringify(result);
}

/**
 * The id of a bad request, so a pipelining client can match the error; not of a `results` query,
 * whose `id` names the task to look up, not the request.
 */
function idOf(raw: unknown): string | undefined {
  if (typeof raw !== 'object' || raw === null || (raw as Record<string, unknown>).type === 'results') return undefined;
  const id = TaskIdSchema.safeParse((raw as Record<string, unknown>).id);
  return id.success ? id.data : undefined;
}

/** Compares secrets in constant time: hashing first makes the lengths equal. */
function sameSecret(given: string, expected: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}
