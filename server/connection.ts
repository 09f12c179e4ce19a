import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { describeIssues, ErrorCode, type ErrorData } from '../shared/errors';
import { LineSplitter, type Line } from '../shared/framing';
import {
  ClientMessageSchema,
  PROTOCOL_VERSION,
  TaskIdSchema,
  type ClientMessage,
  type ResultRow,
  type Hello,
  type ResultsQuery,
  type ServerMessage,
  type Submit,
} from '../shared/protocol';
import type { ResultsFilter } from '../shared/results-db';
import { sameSecret } from './auth-guard';
import { PlainReplies } from './plain-replies';
import { ReplyWriter } from './reply-writer';
import { fastSubmit } from '../shared/fast-checks';
import { kindRefusal, newTask, retriesProblem, SHUTTING_DOWN, timeoutProblem, type Door } from './submission';
import type { Outcome, Task, TaskOwner } from './task';
import type { ReloadReport } from './dispatcher';

export { SHUTTING_DOWN } from './submission';

/**
 * Unterminated plain text that stays unanswered this long counts as a complete line: the seed's
 * Python client sends a task with no newline and waits for the answer.
 */
export const PLAIN_TEXT_PAUSE_MS = 30;
/** Tasks one connection may have accepted and unanswered before the server takes no more from it. */
export const MAX_PENDING_PER_CONNECTION = 4_096;
/**
 * Characters of the lines of those tasks: payloads, not task counts, fill memory (4,096 tasks of
 * 1 MiB would be 4 GiB). One task of any size is always taken when none is pending.
 */
export const MAX_PENDING_CHARS_PER_CONNECTION = 1024 * 1024;
/**
 * Characters of replies a connection may owe (written, not yet read by the client) before the
 * server handles no more of its lines: a client that sends requests and reads no replies is
 * stopped at this, whatever it asks (`results` and `stats` as well as tasks).
 */
export const MAX_OWED_REPLY_CHARS = 1024 * 1024;
/** With a token set, a connection must say hello with it within this (or the idle timeout). */
export const AUTH_TIMEOUT_MS = 10_000;

/** What a connection needs from the rest of the primary. */
export interface ConnectionContext extends Door {
  idleTimeoutMs: number;
  results(filter: ResultsFilter): Promise<ResultRow[]>;
  /**
   * Cancels the task with this id if `by` submitted it, or `admin` (the client gave the cluster's
   * token); answers where it was, or why not.
   */
  cancel(taskId: string, by: TaskOwner, admin: boolean): { state: 'queued' | 'running' } | ErrorData;
  /** A rolling reload (see Dispatcher.reload), or why it failed (RELOAD_FAILED, SHUTTING_DOWN). */
  reload(): Promise<ReloadReport | ErrorData>;
  closed(connection: Connection): void;
}

type Reply = ServerMessage;


/** A line read and not yet handled, parsed when it reaches the head of the backlog. */
interface Pending {
  line: Line;
  /** The parsed request, once looked at (a line that is not one is handled at once). */
  message?: ClientMessage;
  /** Why the line is not a valid request, once looked at. */
  invalid?: ErrorData & { id?: string };
  chars: number;
}

/** More fields than any request has: refused before zod looks at them (see peek). */
const MAX_REQUEST_FIELDS = 16;

function hasMoreFields(value: unknown, limit: number): boolean {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  let count = 0;
  for (const key in value) {
    if (Object.prototype.hasOwnProperty.call(value, key) && ++count > limit) return true;
  }
  return false;
}

/**
 * One client connection: frames its lines, parses each once, submits tasks and writes replies.
 * JSON replies go out as soon as their task settles; plain-text replies keep the order of the
 * lines that asked for them.
 *
 * Every request is under backpressure. Lines are handled in order, each only when the connection
 * has room for what it asks: a task while the connection has fewer than 4,096 unanswered tasks
 * and 1 Mi characters of them (or none at all) and the primary's queue has room; a `results` query when none of
 * its own runs; anything only while it owes fewer than 1 Mi characters of replies. Until the head
 * line can be handled, no more is read from the socket, so TCP pushes back on the sender; memory
 * per connection is bounded by those budgets, one read and one unterminated line.
 */
export class Connection implements TaskOwner {
  /** For log lines: `#12`, in the order connections were accepted. */
  readonly label: string;
  /** The peer, `127.0.0.1:53422`, for log lines. */
  readonly address: string;
  /** Whether its connect line was printed (those are sampled): its disconnect line is then too. */
  logged = false;
  private readonly splitter = new LineSplitter();
  /** The task id of each of this connection's tasks in flight that has a client id, by that id. */
  private readonly inflightIds = new Map<string, string>();
  /** Plain-text replies, kept in the order their lines arrived. */
  private readonly plainReplies = new PlainReplies();
  /** Lines read and not yet handled, oldest first from `backlogHead`. */
  private backlog: (Pending | undefined)[] = [];
  private backlogHead = 0;
  private pending = 0;
  /** Characters of the lines of `pending` tasks. */
  private pendingChars = 0;
  /** A `results` query of this connection is being read. */
  private querying = false;
  /** Reloads asked for on this connection and not yet answered. */
  private reloads = 0;
  /** Whether the client has ever ended a line: only a client that never does (the seed's) has
   * unterminated text taken as a line after a pause, so a slow read never splits a line. */
  private sawNewline = false;
  /** Whether the client has sent a plain-text task: its errors then keep the order of its lines. */
  private plainClient = false;
  private authenticated: boolean;
  /** The protocol version this connection speaks: 1 until a hello says otherwise. */
  private protocol = 1;
  /** No more lines are read: the peer half-closed, or the connection is being closed. */
  private ended = false;
  /** Set once the server is closing the connection: no later line is handled. */
  private refused = false;
  /** A refusal is held back (a failed authentication): the socket stays open until it is sent. */
  private answerLater = false;
  private closed = false;
  private reading = true;
  /** Its replies, coalesced, and what it owes the client. */
  private readonly replies: ReplyWriter;
  private plainTimer: NodeJS.Timeout | undefined;
  /** performance.now() of the last complete line: idleness counts from there, not from any byte. */
  private lastLineAt = performance.now();
  private idleTimer: NodeJS.Timeout | undefined;
  private authTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly socket: Socket,
    private readonly context: ConnectionContext,
    serial: number,
  ) {
    this.label = `#${serial}`;
    this.address = `${socket.remoteAddress}:${socket.remotePort}`;
    this.authenticated = context.token === undefined;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    this.replies = new ReplyWriter(socket, () => this.work());
    socket.on('error', () => undefined); // 'close' follows; a reset peer is not the server's error.
    socket.on('close', () => this.onClose());
    this.armIdleTimer(context.idleTimeoutMs);
    if (!this.authenticated) {
      // Connections that never say hello would hold the server's connection slots for the whole
      // idle timeout, keeping clients with the token out.
      const limit = Math.min(AUTH_TIMEOUT_MS, context.idleTimeoutMs === 0 ? AUTH_TIMEOUT_MS : context.idleTimeoutMs);
      this.authTimer = setTimeout(() => {
        if (!this.authenticated && !this.closed && !this.refused) this.unauthorized(`no hello with the token within ${limit} ms`);
      }, limit);
      this.authTimer.unref();
    }
  }

  /** Whether the connection has shown the token (or needs none). */
  get isAuthenticated(): boolean {
    return this.authenticated;
  }

  /**
   * The primary's queue filled or has room again: handle what now may be. The state is read live
   * (queueFull), never copied, so a connection that refills the queue while others are told it
   * has room stops them too.
   */
  queueChanged(): void {
    this.work();
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
    const plain = this.plainReplies.settle(task.taskId, () =>
      outcome.status === 'done' ? plainResult(outcome) : `error: ${outcome.error.message}`,
    );
    if (plain !== undefined) {
      this.replies.write(plain);
    } else {
      const ms = Math.round((performance.now() - task.acceptedAt) * 100) / 100;
      const id = task.clientId ?? task.taskId;
      if (outcome.status === 'done') this.replies.write(doneLine(id, task, outcome, ms));
      else this.send(failedReply(id, task, outcome.error, outcome.worker, ms));
    }
    this.work();
  }

  // ---- reading ---------------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.ended) return;
    const lines = this.splitter.push(chunk);
    if (lines.length > 0) {
      // The splitter has already looked for the newlines; no second scan of the chunk.
      this.sawNewline = true;
      this.lastLineAt = performance.now();
      for (const line of lines) this.backlog.push({ line, chars: line.ok ? line.text.length : 0 });
    }
    this.work();
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
    this.takeUnterminated();
  }

  private onEnd(): void {
    this.clearPlainTimer();
    this.takeUnterminated();
    // Lines still in the backlog are handled as room allows; then the socket ends.
    this.ended = true;
    this.work();
  }

  /** The unterminated bytes held, as a last line (the peer paused or half-closed). */
  private takeUnterminated(): void {
    const line = this.splitter.flush();
    if (line === undefined || this.ended) return;
    this.lastLineAt = performance.now();
    this.backlog.push({ line, chars: line.ok ? line.text.length : 0 });
    this.work();
  }

  /** Handles what the budgets allow, then reads on or pauses; called after anything that frees room. */
  private work(): void {
    while (this.backlogHead < this.backlog.length && !this.closed) {
      const next = this.backlog[this.backlogHead] as Pending;
      if (!this.mayHandle(next)) break;
      this.backlog[this.backlogHead] = undefined;
      this.backlogHead += 1;
      this.handle(next);
      if (this.refused) {
        this.backlog = [];
        this.backlogHead = 0;
        break;
      }
    }
    if (this.backlogHead === this.backlog.length && this.backlogHead > 0) {
      this.backlog = [];
      this.backlogHead = 0;
    }
    this.updateFlow();
    this.endIfAnswered();
  }

  /** Whether the connection has room now for what this line asks. */
  private mayHandle(next: Pending): boolean {
    if (this.replies.owedChars >= MAX_OWED_REPLY_CHARS) return false;
    if (!next.line.ok) return true;
    const message = this.peek(next);
    if (message === undefined) return true; // answered with an error at once
    switch (message.type) {
      case 'submit':
        return this.hasRoomForTask(next.chars);
      case 'results':
        return !this.querying;
      case 'hello':
      case 'stats':
      case 'cancel':
      case 'reload':
        return true;
      default: {
        const unreachable: never = message;
        throw new Error(`unhandled message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private hasRoomForTask(chars: number): boolean {
    return !this.context.queueFull() && this.ownRoomForTask(chars);
  }

  /** Room in this connection's own budgets, whatever the primary's queue holds. */
  private ownRoomForTask(chars: number): boolean {
    if (this.pending === 0) return true;
    return this.pending < MAX_PENDING_PER_CONNECTION && this.pendingChars + chars <= MAX_PENDING_CHARS_PER_CONNECTION;
  }

  /**
   * The request a JSON line holds, parsed once and kept on the line; undefined for a plain-text
   * line (a task: it asks for room like a submit) and for anything that is not a valid request
   * (why is kept on the line too).
   */
  private peek(next: Pending): ClientMessage | undefined {
    if (next.message !== undefined || next.invalid !== undefined || !next.line.ok) return next.message;
    const text = next.line.text.trim();
    if (text === '') return undefined;
    if (!text.startsWith('{')) return PLAIN_SUBMIT;
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (error) {
      next.invalid = { code: ErrorCode.BAD_JSON, message: `not valid JSON: ${(error as Error).message}` };
      return undefined;
    }
    // Most lines are submits that SubmitSchema accepts: a few property reads tell (see fast-checks).
    const submit = fastSubmit(raw);
    if (submit !== undefined) {
      next.message = submit;
      return submit;
    }
    const id = idOf(raw, this.protocol);
    if (hasMoreFields(raw, MAX_REQUEST_FIELDS)) {
      // Checked before zod, which would spend longer than the parse listing 100,000 unknown fields.
      const message = `message has more than ${MAX_REQUEST_FIELDS} fields; a request has a few (type, id, kind, payload, ...)`;
      next.invalid = { code: ErrorCode.BAD_MESSAGE, message, ...(id === undefined ? {} : { id }) };
      return undefined;
    }
    const parsed = ClientMessageSchema.safeParse(raw);
    if (parsed.success) next.message = parsed.data;
    else next.invalid = { code: ErrorCode.BAD_MESSAGE, message: describeIssues(parsed.error.issues), ...(id === undefined ? {} : { id }) };
    return next.message;
  }

  private handle(next: Pending): void {
    const { line } = next;
    if (!line.ok) {
      if (line.code === ErrorCode.LINE_TOO_LONG) {
        this.refuseAll({ code: line.code, message: 'line is longer than 1 MiB; closing the connection' });
      } else if (this.plainClient) {
        this.replies.write(this.plainReplies.answer('error: line is not valid UTF-8'));
      } else {
        this.send({ type: 'error', code: line.code, message: 'line is not valid UTF-8' });
      }
      return;
    }
    const text = line.text.trim();
    if (text === '') return;
    if (!text.startsWith('{')) {
      this.onPlain(text);
      return;
    }
    if (next.message !== undefined) this.onMessage(next.message, next.chars);
    else if (!this.authenticated) this.unauthorized('not a hello');
    else if (next.invalid !== undefined) this.send({ type: 'error', ...next.invalid });
  }

  private onPlain(text: string): void {
    if (!this.authenticated) {
      this.unauthorized('not a hello');
      return;
    }
    this.plainClient = true;
    const refused = this.refusal('text');
    if (refused !== undefined) {
      this.replies.write(this.plainReplies.answer(`error: ${refused.message}`));
      return;
    }
    const task = this.accept(undefined, 'text', text, this.context.defaultTimeoutMs, text.length);
    this.plainReplies.expect(task.taskId);
    this.context.submit(task);
  }

  private onMessage(message: ClientMessage, chars: number): void {
    if (!this.authenticated && message.type !== 'hello') {
      this.unauthorized('not a hello');
      return;
    }
    switch (message.type) {
      case 'hello':
        this.onHello(message);
        return;
      case 'submit':
        this.onSubmit(message, chars);
        return;
      case 'results':
        this.onResults(message);
        return;
      case 'stats':
        this.send({ ...this.context.stats(), ...echo(message.id) });
        return;
      case 'cancel': {
        const admin = this.context.token !== undefined && this.authenticated;
        // The connection's own id for a task of its own names it too (its task id comes only with the reply).
        const taskId = this.inflightIds.get(message.taskId) ?? message.taskId;
        const answer = this.context.cancel(taskId, this, admin);
        this.send('state' in answer ? { type: 'cancel', ...echo(message.id), taskId, state: answer.state } : { type: 'error', ...answer, ...echo(message.id) });
        return;
      }
      case 'reload': {
        // With a token set, only a client that gave it gets here (see `authenticated`).
        this.reloads += 1;
        const reply = echo(message.id);
        void this.context.reload().then((answer) => {
          this.reloads -= 1;
          if (this.closed) return;
          this.send('workers' in answer ? { type: 'reload', ...reply, ...answer } : { type: 'error', ...answer, ...reply });
          this.endIfAnswered();
        });
        return;
      }
      default: {
        const unreachable: never = message;
        throw new Error(`unhandled message ${JSON.stringify(unreachable)}`);
      }
    }
  }

  private onResults(query: ResultsQuery): void {
    // Protocol 1 spelled the filter `id`, and had no request ids for queries.
    const legacy = this.protocol < 2 && query.taskId === undefined;
    const taskId = legacy ? query.id : query.taskId;
    const reply = legacy ? {} : echo(query.id);
    const { workers } = this.context;
    if (query.worker !== undefined && query.worker > workers) {
      this.send({
        type: 'error',
        code: ErrorCode.BAD_MESSAGE,
        message: `worker must be at most ${workers}: the cluster has ${workers} worker${workers === 1 ? '' : 's'}`,
        ...reply,
      });
      return;
    }
    this.querying = true;
    this.context
      .results({ limit: query.limit, worker: query.worker, taskId })
      // send() throws for a reply too long to be one string; that must not reach the process.
      .then((rows) => this.send({ type: 'results', ...reply, rows }))
      .catch((error: unknown) =>
        this.send({ type: 'error', code: ErrorCode.INTERNAL, message: `could not read results: ${String(error)}`, ...reply }),
      )
      .finally(() => {
        this.querying = false;
        this.work();
      });
  }

  /** Anything but a `hello` with the token, first, closes the connection (after a delay). */
  private unauthorized(why: string): void {
    const address = this.socket.remoteAddress ?? 'unknown';
    const delay = this.context.authFailed(address, why);
    const refusal: ErrorData = {
      code: ErrorCode.UNAUTHORIZED,
      message: why === 'not a hello' ? 'send {"type":"hello","token":...} first' : 'wrong or missing token',
    };
    // Read and answer nothing more meanwhile; the answer and the close come after the delay.
    this.refused = true;
    this.ended = true;
    this.answerLater = true;
    this.updateFlow();
    setTimeout(() => {
      this.answerLater = false;
      this.refuseAll(refusal);
    }, delay).unref();
  }

  private onHello(hello: Hello): void {
    const { token } = hello;
    if (!this.authenticated) {
      const expected = this.context.token as string;
      if (token === undefined || !sameSecret(token, expected)) {
        this.unauthorized(token === undefined ? 'no token' : 'wrong token');
        return;
      }
      this.authenticated = true;
      if (this.authTimer !== undefined) clearTimeout(this.authTimer);
      this.context.authSucceeded(this.socket.remoteAddress ?? 'unknown');
    }
    if (hello.protocol !== undefined) this.protocol = Math.min(hello.protocol, PROTOCOL_VERSION);
    const schemas = this.context.schemas();
    this.send({
      type: 'hello',
      ...echo(hello.id),
      server: 'ronda',
      protocol: PROTOCOL_VERSION,
      kinds: [...this.context.kinds()],
      ...(Object.keys(schemas).length === 0 ? {} : { schemas: { ...schemas } }),
    });
  }

  private onSubmit(message: Submit, chars: number): void {
    const { id, kind } = message;
    if (id !== undefined && this.inflightIds.has(id)) {
      this.send({ type: 'error', code: ErrorCode.DUPLICATE_ID, id, message: `id "${id}" is already in flight` });
      return;
    }
    const timeoutMs = message.timeoutMs ?? this.context.defaultTimeoutMs;
    const retries = message.retries ?? 0;
    const problem = timeoutProblem(timeoutMs, this.context) ?? retriesProblem(retries, this.context);
    if (problem !== undefined) {
      this.send({ type: 'error', code: ErrorCode.BAD_MESSAGE, message: problem, ...(id === undefined ? {} : { id }) });
      return;
    }
    const refused = this.refusal(kind);
    if (refused !== undefined) {
      this.send({ type: 'failed', id: id ?? this.context.nextTaskId(), kind, error: refused });
      return;
    }
    const task = this.accept(id, kind, message.payload, timeoutMs, chars, retries);
    if (id !== undefined) this.inflightIds.set(id, task.taskId);
    this.context.submit(task);
  }

  /** Why a task of this kind cannot be accepted now, if it cannot. */
  private refusal(kind: string): ErrorData | undefined {
    return kindRefusal(kind, this.context.kinds(), this.context.accepting());
  }

  private accept(clientId: string | undefined, kind: string, payload: unknown, timeoutMs: number, chars: number, retries = 0): Task {
    this.pending += 1;
    this.pendingChars += chars;
    return newTask({ taskId: this.context.nextTaskId(), clientId, kind, payload, timeoutMs, retries, chars, owner: this });
  }

  // ---- idleness --------------------------------------------------------------------------------

  /**
   * Closes a connection that has sent no complete line for --idle-timeout-ms with nothing owed to
   * it (a client sending one byte at a time counts as idle), and one that has read none of its
   * replies for as long (their memory is freed; its tasks still run and are stored).
   */
  private armIdleTimer(ms: number): void {
    if (this.context.idleTimeoutMs === 0 || this.closed) return;
    this.idleTimer = setTimeout(() => this.checkIdle(), ms);
    this.idleTimer.unref();
  }

  private checkIdle(): void {
    this.idleTimer = undefined;
    if (this.closed) return;
    const limit = this.context.idleTimeoutMs;
    const now = performance.now();
    const { blockedSince } = this.replies;
    if (blockedSince !== undefined && now - blockedSince >= limit) {
      this.socket.destroy();
      return;
    }
    const busy = this.pending > 0 || this.querying || this.reloads > 0 || this.backlogHead < this.backlog.length;
    const idleFor = now - this.lastLineAt;
    if (!busy && !this.ended && idleFor >= limit) {
      // Ends the socket once the refusal is written; a client reading nothing is dropped later.
      this.refuse({ code: ErrorCode.IDLE_TIMEOUT, message: `idle for ${limit} ms; closing` });
    }
    const untilIdle = busy || this.ended ? limit : limit - idleFor;
    const untilStalled = blockedSince === undefined ? limit : limit - (now - blockedSince);
    this.armIdleTimer(Math.max(1, Math.min(untilIdle, untilStalled)));
  }

  // ---- writing and closing ---------------------------------------------------------------------

  private send(reply: Reply): void {
    this.replies.write(`${JSON.stringify(reply)}\n`);
  }

  /** Ends a finished connection once nothing more is owed to it. */
  private endIfAnswered(): void {
    if (
      this.ended &&
      !this.answerLater &&
      this.pending === 0 &&
      !this.querying &&
      this.reloads === 0 &&
      !this.replies.pending &&
      (this.refused || this.backlogHead === this.backlog.length)
    ) {
      this.socket.end();
    }
  }

  /** Reads no more lines; ends the socket once every accepted task has been answered. */
  private finish(): void {
    this.ended = true;
    this.clearPlainTimer();
    this.updateFlow();
    this.endIfAnswered();
  }

  /** Sends an error, handles no later line, and closes once the accepted tasks are answered. */
  private refuseAll(error: ErrorData): void {
    this.refused = true;
    this.refuse(error);
  }

  private updateFlow(): void {
    // A full queue stops only the connections whose next line is a task (it waits in the
    // backlog, which stops the reading): the others are read on, so a stats, hello or results
    // line is answered, and a task line is seen (and not taken for idleness) while it waits.
    const read =
      !this.ended &&
      !this.replies.isBlocked &&
      this.backlogHead === this.backlog.length &&
      this.ownRoomForTask(0) &&
      this.replies.owedChars < MAX_OWED_REPLY_CHARS;
    if (read === this.reading) return;
    this.reading = read;
    if (read) this.socket.resume();
    else this.socket.pause();
  }

  private onClose(): void {
    this.closed = true;
    this.replies.close();
    this.ended = true;
    this.clearPlainTimer();
    if (this.idleTimer !== undefined) clearTimeout(this.idleTimer);
    if (this.authTimer !== undefined) clearTimeout(this.authTimer);
    this.backlog = [];
    this.backlogHead = 0;
    // Tasks still running finish and are stored; their replies have nowhere to go.
    this.context.closed(this);
  }
}

/** What a plain-text line asks for, for the budgets: a task. Never kept on the line or handled. */
const PLAIN_SUBMIT: ClientMessage = { type: 'submit', kind: 'text', payload: '' };

/**
 * A `done` reply, written by hand around the stored result text so that it is neither parsed nor
 * encoded again: the same text as in the row (a string stored as it is becomes a JSON string).
 */
function doneLine(id: string, task: Task, outcome: Extract<Outcome, { status: 'done' }>, ms: number): string {
  const result = outcome.json ? outcome.result : JSON.stringify(outcome.result);
  return (
    `{"type":"done","id":${JSON.stringify(id)},"taskId":${JSON.stringify(task.taskId)},` +
    `"kind":"${task.kind}","worker":${outcome.worker},"result":${result},"ms":${ms}` +
    (task.retries > 0 ? `,"attempts":${task.attempt}}\n` : '}\n')
  );
}

function failedReply(id: string, task: Task, error: ErrorData, worker: number | undefined, ms: number): Reply {
  const reply: Reply = worker === undefined
    ? { type: 'failed', id, taskId: task.taskId, kind: task.kind, error, ms }
    : { type: 'failed', id, taskId: task.taskId, kind: task.kind, worker, error, ms };
  if (task.retries > 0) reply.attempts = task.attempt;
  return reply;
}

/** A plain-text client's answer: a string result as it is, anything else as its JSON. */
function plainResult(outcome: Extract<Outcome, { status: 'done' }>): string {
  return outcome.result;
}

/**
 * The id of a bad request, so a pipelining client can match the error. In protocol 1 a `results`
 * query's `id` names the task to look up, not the request, unless `taskId` does.
 */
function idOf(raw: unknown, protocol: number): string | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const fields = raw as Record<string, unknown>;
  if (fields.type === 'results' && protocol < 2 && fields.taskId === undefined) return undefined;
  const id = TaskIdSchema.safeParse(fields.id);
  return id.success ? id.data : undefined;
}

/** The `id` field a reply echoes, if its request had one. */
function echo(id: string | undefined): { id?: string } {
  return id === undefined ? {} : { id };
}

