/**
 * The primary's HTTP door: the JSON API, the event stream, /metrics and the console page, on
 * Fastify (routing with parameters, body limits, JSON parsing that refuses prototype poisoning,
 * request timeouts and keep-alive, all well tested there and not written again here). Every error
 * is `{ "error": { "code", "message" } }` with the codes the TCP protocol uses; see docs/http.md.
 */
import { fastify, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { z } from 'zod';
import { describeIssues, ErrorCode, messageOf, type ErrorData } from '../../shared/errors';
import type { Logger } from '../../shared/logger';
import { intOption } from '../../shared/options';
import { SubmitSchema, type ResultRow, type StatsReply } from '../../shared/protocol';
import type { Page, PageCursor, PageQuery } from '../../shared/results-db';
import { sameSecret } from '../auth-guard';
import type { TaskPlace } from '../dispatcher';
import type { SeriesPoint } from '../metrics';
import { kindRefusal, newTask, timeoutProblem } from '../submission';
import type { Outcome, Task, TaskOwner } from '../task';
import type { EventHub, EventName } from './events';
import type { PageFile } from './page';

/** The largest request body: a task as large as a TCP line may be. */
export const MAX_BODY_BYTES = 1024 * 1024;
/** A request's headers and body must have arrived within this. */
const REQUEST_TIMEOUT_MS = 10_000;
/** An idle keep-alive connection is closed after this. */
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
const MAX_PAGE_LIMIT = 500;
const DEFAULT_PAGE_LIMIT = 50;

/** The HTTP status of each error code. A task's own failure is a 4xx when the request was at fault. */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  BAD_JSON: 400,
  BAD_MESSAGE: 400,
  BAD_UTF8: 400,
  LINE_TOO_LONG: 413,
  TOO_LARGE: 413,
  UNKNOWN_KIND: 422,
  BAD_PAYLOAD: 422,
  HANDLER_FAILED: 500,
  WORKER_LOST: 500,
  INTERNAL: 500,
  TIMEOUT: 504,
  DUPLICATE_ID: 409,
  UNAUTHORIZED: 401,
  NOT_FOUND: 404,
  IDLE_TIMEOUT: 408,
  TOO_MANY_CONNECTIONS: 503,
  SHUTTING_DOWN: 503,
  QUEUE_FULL: 503,
};

/** What the HTTP door needs from the rest of the primary. */
export interface HttpCluster {
  token: string | undefined;
  defaultTimeoutMs: number;
  minTimeoutMs: number;
  maxTimeoutMs: number;
  workers: number;
  maxConnections: number;
  logger: Logger;
  events: EventHub;
  pageFiles: ReadonlyMap<string, PageFile>;
  /** Resolves once the workers are ready; API requests that come earlier wait for it. */
  started: Promise<void>;
  kinds(): ReadonlySet<string>;
  schemas(): Readonly<Record<string, unknown>>;
  accepting(): boolean;
  queueFull(): boolean;
  nextTaskId(): string;
  submit(task: Task): void;
  placeOf(taskId: string): TaskPlace | undefined;
  findStored(taskId: string): Promise<ResultRow | undefined>;
  page(query: PageQuery): Promise<Page>;
  stats(): StatsReply;
  series(): SeriesPoint[];
  /** The events a new subscriber gets first, to draw the console at once. */
  firstEvents(): [EventName, unknown][];
  metrics(): Promise<{ contentType: string; text: string }>;
  authFailed(address: string, why: string): number;
  authSucceeded(address: string): void;
}

/** A failure that becomes an error body. */
class HttpFailure extends Error {
  constructor(
    readonly error: ErrorData,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(error.message);
  }
}

const TaskBodySchema = SubmitSchema.omit({ type: true });
const WaitQuerySchema = z.strictObject({ wait: z.enum(['true', 'false']).default('true') });
const TaskIdParamsSchema = z.strictObject({ taskId: z.string().min(1).max(128) });
const CursorSchema = z.record(z.string().regex(/^\d{1,2}$/), z.number().int().min(0));

function resultsQuerySchema(workers: number) {
  return z.strictObject({
    limit: intOption(1, MAX_PAGE_LIMIT).default(DEFAULT_PAGE_LIMIT),
    before: z.string().max(200).optional(),
    worker: intOption(1, workers).optional(),
    kind: z.string().min(1).max(128).optional(),
    status: z.enum(['done', 'failed']).optional(),
    q: z.string().max(200).optional(),
  });
}

/** A page's cursor as the client carries it: opaque, base64url of `{"slot": id, ...}`. */
export function encodeCursor(cursor: PageCursor): string {
  return Buffer.from(JSON.stringify(cursor)).toString('base64url');
}

function decodeCursor(text: string): PageCursor {
  try {
    const bounds = CursorSchema.parse(JSON.parse(Buffer.from(text, 'base64url').toString('utf8')));
    return Object.fromEntries(Object.entries(bounds).map(([slot, id]) => [Number(slot), id]));
  } catch {
    throw badRequest('before must be the `next` of an earlier page, as it was given');
  }
}

function badRequest(message: string): HttpFailure {
  return new HttpFailure({ code: ErrorCode.BAD_MESSAGE, message });
}

function parse<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const parsed = schema.safeParse(value ?? {});
  if (!parsed.success) throw badRequest(`${where}: ${describeIssues(parsed.error.issues)}`);
  return parsed.data;
}

/** One HTTP request's task: settles by answering the request (or no one, with ?wait=false). */
class HttpTaskOwner implements TaskOwner {
  private answer: ((outcome: Outcome) => void) | undefined;
  readonly outcome: Promise<Outcome> | undefined;

  constructor(
    readonly label: string,
    wait: boolean,
  ) {
    if (wait) this.outcome = new Promise((resolve) => (this.answer = resolve));
  }

  settle(_task: Task, outcome: Outcome): void {
    this.answer?.(outcome);
  }
}

export class HttpApi {
  readonly app: FastifyInstance;
  private requests = 0;

  constructor(private readonly cluster: HttpCluster) {
    this.app = fastify({
      logger: false,
      bodyLimit: MAX_BODY_BYTES,
      requestTimeout: REQUEST_TIMEOUT_MS,
      // A waiting POST /api/tasks is silent for as long as its task runs: no idle cut.
      connectionTimeout: 0,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      return503OnClosing: true,
      forceCloseConnections: true,
      onProtoPoisoning: 'error',
      onConstructorPoisoning: 'error',
      routerOptions: { ignoreTrailingSlash: true, maxParamLength: 256 },
    });
    this.app.server.maxConnections = cluster.maxConnections;
    // Tasks come as JSON only: a text/plain body is refused by name rather than read as a string.
    this.app.removeContentTypeParser('text/plain');
    this.app.setErrorHandler((error, _request, reply) => this.fail(reply, error));
    this.app.setNotFoundHandler((request, reply) =>
      this.fail(reply, new HttpFailure({ code: ErrorCode.NOT_FOUND, message: `no route ${request.method} ${request.url.split('?')[0]}; see docs/http.md` })),
    );
    this.app.addHook('onRequest', async (request, reply) => {
      if (!isProtected(request.url)) return;
      await cluster.started;
      await this.authorize(request, reply);
    });
    this.routes();
  }

  async listen(host: string, port: number): Promise<number> {
    try {
      await this.app.listen({ host, port });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new Error(
        code === 'EADDRINUSE'
          ? `${host}:${port} (--http-port) is in use by another program: pick another --http-port, or --http-port off`
          : `cannot serve HTTP on ${host}:${port}: ${messageOf(error)}`,
      );
    }
    const address = this.app.server.address();
    return typeof address === 'object' && address !== null ? address.port : port;
  }

  close(): Promise<void> {
    this.cluster.events.close();
    return this.app.close();
  }

  private routes(): void {
    const { app, cluster } = this;

    app.post('/api/tasks', (request, reply) => this.postTask(request, reply));
    app.get('/api/tasks/:taskId', async (request) => {
      const { taskId } = parse(TaskIdParamsSchema, request.params, 'the task id in the path');
      const place = cluster.placeOf(taskId);
      if (place !== undefined) return { taskId, ...place };
      const row = await cluster.findStored(taskId);
      if (row === undefined) {
        throw new HttpFailure({ code: ErrorCode.NOT_FOUND, message: `no task ${taskId} is queued, running or stored` });
      }
      return { taskId, state: row.status, row };
    });
    app.get('/api/results', async (request) => {
      const query = parse(resultsQuerySchema(cluster.workers), request.query, 'the query');
      const page = await cluster.page({ ...query, before: query.before === undefined ? undefined : decodeCursor(query.before) });
      return {
        rows: page.rows,
        next: page.next === null ? null : encodeCursor(page.next),
      };
    });
    app.get('/api/stats', async () => cluster.stats());
    app.get('/api/series', async () => ({ seconds: cluster.series() }));
    app.get('/api/kinds', async () => ({ kinds: [...cluster.kinds()], schemas: cluster.schemas() }));
    app.get('/api/events', (_request, reply) => {
      if (cluster.events.full) {
        throw new HttpFailure({ code: ErrorCode.TOO_MANY_CONNECTIONS, message: 'too many event subscribers; close another console' });
      }
      reply.hijack();
      cluster.events.subscribe(reply.raw, cluster.firstEvents());
    });
    app.get('/metrics', async (_request, reply) => {
      const { contentType, text } = await cluster.metrics();
      return reply.type(contentType).send(text);
    });
    app.get('/*', (request, reply) => this.pageFile(request, reply));
  }

  private async postTask(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const { cluster } = this;
    const { wait } = parse(WaitQuerySchema, request.query, 'the query');
    const body = parse(TaskBodySchema, request.body, 'the body');
    const timeoutMs = body.timeoutMs ?? cluster.defaultTimeoutMs;
    const problem = timeoutProblem(timeoutMs, cluster);
    if (problem !== undefined) throw badRequest(problem);
    const refused = kindRefusal(body.kind, cluster.kinds(), cluster.accepting());
    if (refused !== undefined) throw new HttpFailure(refused, { kind: body.kind });
    if (cluster.queueFull()) {
      reply.header('retry-after', '1');
      throw new HttpFailure({ code: ErrorCode.QUEUE_FULL, message: 'the queue is full; try again in a second' });
    }
    this.requests += 1;
    const owner = new HttpTaskOwner(`http#${this.requests}`, wait === 'true');
    const chars = Number(request.headers['content-length'] ?? 0) || JSON.stringify(body.payload ?? null).length;
    const task = newTask({ taskId: cluster.nextTaskId(), clientId: body.id, kind: body.kind, payload: body.payload, timeoutMs, chars, owner });
    cluster.submit(task);
    if (owner.outcome === undefined) {
      return reply.code(202).header('location', `/api/tasks/${task.taskId}`).send({ taskId: task.taskId, state: 'accepted' });
    }
    const outcome = await owner.outcome;
    const ms = Math.round((performance.now() - task.acceptedAt) * 100) / 100;
    const id = body.id === undefined ? '' : `"id":${JSON.stringify(body.id)},`;
    if (outcome.status === 'done') {
      // The stored text, spliced as it is, as the TCP reply does: the answer is what was stored.
      const result = outcome.json ? outcome.result : JSON.stringify(outcome.result);
      return reply
        .type('application/json; charset=utf-8')
        .send(`{"type":"done",${id}"taskId":${JSON.stringify(task.taskId)},"kind":${JSON.stringify(task.kind)},"worker":${outcome.worker},"result":${result},"ms":${ms}}`);
    }
    throw new HttpFailure(outcome.error, {
      type: 'failed',
      ...(body.id === undefined ? {} : { id: body.id }),
      taskId: task.taskId,
      kind: task.kind,
      ...(outcome.worker === undefined ? {} : { worker: outcome.worker }),
      ms,
    });
  }

  private pageFile(request: FastifyRequest, reply: FastifyReply): FastifyReply {
    const path = request.url.split('?')[0] as string;
    if (isProtected(path)) {
      throw new HttpFailure({ code: ErrorCode.NOT_FOUND, message: `no route ${request.method} ${path}; see docs/http.md` });
    }
    const file = this.cluster.pageFiles.get(path === '/index.html' ? '/' : path);
    if (file === undefined) {
      const built = this.cluster.pageFiles.size > 0;
      throw new HttpFailure({
        code: ErrorCode.NOT_FOUND,
        message: built ? `no file ${path}` : 'the console page is not built: run npm run build',
      });
    }
    reply
      .header('content-type', file.type)
      .header('etag', file.etag)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('x-frame-options', 'DENY')
      .header('content-security-policy', "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'");
    if (request.headers['if-none-match'] === file.etag) return reply.code(304).send();
    return reply.send(file.body);
  }

  /** With a token set, every API route needs `Authorization: Bearer <token>`; failures are slowed. */
  private async authorize(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const { token } = this.cluster;
    if (token === undefined) return;
    const header = request.headers.authorization;
    const given = header?.startsWith('Bearer ') === true ? header.slice('Bearer '.length) : undefined;
    const address = request.socket.remoteAddress ?? 'unknown';
    if (given !== undefined && sameSecret(given, token)) {
      this.cluster.authSucceeded(address);
      return;
    }
    const delay = this.cluster.authFailed(address, given === undefined ? 'HTTP, no token' : 'HTTP, wrong token');
    await new Promise((resolve) => setTimeout(resolve, delay));
    reply.header('www-authenticate', 'Bearer realm="ronda"');
    throw new HttpFailure({
      code: ErrorCode.UNAUTHORIZED,
      message: given === undefined ? 'send Authorization: Bearer <token> (the server\'s --token)' : 'wrong token',
    });
  }

  private fail(reply: FastifyReply, error: unknown): FastifyReply {
    const { error: data, extra } = toFailure(error);
    if (data.code === ErrorCode.INTERNAL) this.cluster.logger.error('primary', `HTTP: ${data.message}`);
    return reply
      .code(HTTP_STATUS[data.code])
      .type('application/json; charset=utf-8')
      .send({ error: data, ...extra });
  }
}

/** The API, the events and the metrics need the token; the page's files, which hold no data, do not. */
function isProtected(url: string): boolean {
  return url.startsWith('/api/') || url === '/api' || url.startsWith('/metrics');
}

function toFailure(error: unknown): HttpFailure {
  if (error instanceof HttpFailure) return error;
  const fastifyError = error as FastifyError;
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HttpFailure({ code: ErrorCode.TOO_LARGE, message: `the body is over ${MAX_BODY_BYTES} bytes (1 MiB), the limit of a task` });
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HttpFailure({ code: ErrorCode.BAD_JSON, message: `the body is not valid JSON: ${fastifyError.message}` });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HttpFailure({ code: ErrorCode.BAD_MESSAGE, message: 'send the body as JSON, with Content-Type: application/json' });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new HttpFailure({ code: ErrorCode.BAD_MESSAGE, message: 'the Content-Length does not match the body' });
    default:
      break;
  }
  if (error instanceof SyntaxError || fastifyError.statusCode === 400) {
    return new HttpFailure({ code: ErrorCode.BAD_JSON, message: `the body is not valid JSON: ${messageOf(error)}` });
  }
  return new HttpFailure({ code: ErrorCode.INTERNAL, message: messageOf(error) });
}
