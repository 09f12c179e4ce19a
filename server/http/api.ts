/**
 * The primary's HTTP door: the JSON API, the event stream, /metrics and the console page, on
 * Fastify (routing with parameters, body limits, JSON parsing that refuses prototype poisoning,
 * request timeouts and keep-alive, all well tested there and not written again here). Every error
 * is `{ "error": { "code", "message" } }` with the codes the TCP protocol uses; see docs/http.md.
 */
import { fastify, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Socket } from 'node:net';
import { z } from 'zod';
import { describeIssues, ErrorCode, messageOf, type ErrorData } from '../../shared/errors';
import type { Logger } from '../../shared/logger';
import { intOption } from '../../shared/options';
import { SubmitSchema, type ResultRow } from '../../shared/protocol';
import type { Page, PageCursor, PageQuery } from '../../shared/results-db';
import { sameSecret } from '../auth-guard';
import type { ReloadReport, TaskPlace } from '../dispatcher';
import type { SeriesPoint } from '../metrics';
import { kindRefusal, newTask, retriesProblem, timeoutProblem, type Door } from '../submission';
import type { Outcome, Task, TaskOwner } from '../task';
import type { EventHub, EventName } from './events';
import {
  answerClientError,
  answerRaw,
  badRequest,
  HTTP_STATUS,
  HttpFailure,
  MAX_BODY_BYTES,
  REQUEST_TIMEOUT_MS,
  toFailure,
} from './failures';
import type { PageFile } from './page';

/** An idle keep-alive connection is closed after this. */
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** A connection must have sent its request's headers within this. */
const HEADERS_TIMEOUT_MS = 5_000;
/** How often Node looks for connections past those timeouts (its default, 30 s, let them linger). */
const TIMEOUT_CHECK_MS = 1_000;
/**
 * Tasks accepted with ?wait=false and not yet settled: a client that waits for nothing could
 * otherwise fill the whole queue alone (a TCP connection may have 4,096 unanswered).
 */
export const MAX_DETACHED_TASKS = 4_096;
/** /metrics and /api/series are made at most this often; a flood of either is served the same text. */
const CACHE_MS = 1_000;
const MAX_PAGE_LIMIT = 500;
const DEFAULT_PAGE_LIMIT = 50;

/** What the HTTP door needs from the rest of the primary. */
export interface HttpCluster extends Door {
  maxConnections: number;
  logger: Logger;
  events: EventHub;
  pageFiles: ReadonlyMap<string, PageFile>;
  /** Resolves once the workers are ready; API requests that come earlier wait for it. */
  started: Promise<void>;
  placeOf(taskId: string): TaskPlace | undefined;
  findStored(taskId: string): Promise<ResultRow | undefined>;
  page(query: PageQuery): Promise<Page>;
  /** Cancels a task sent over HTTP (or any, with a token set): see Primary.cancel. */
  cancel(taskId: string): { state: 'queued' | 'running' } | ErrorData;
  /** A rolling reload: see Primary.reload. */
  reload(): Promise<ReloadReport | ErrorData>;
  series(): SeriesPoint[];
  /** The events a new subscriber gets first, to draw the console at once. */
  firstEvents(): [EventName, unknown][];
  metrics(): Promise<{ contentType: string; text: string }>;
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
    q: z
      .string()
      .max(200)
      .refine((q) => !q.includes('\u0000'), 'may not contain a NUL character')
      .optional(),
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

function parse<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw badRequest(`${where}: ${describeIssues(parsed.error.issues)}`);
  return parsed.data;
}

/** One HTTP request's task: settles by answering the request (or no one, with ?wait=false). */
class HttpTaskOwner implements TaskOwner {
  readonly door = 'http' as const;
  private answer: ((outcome: Outcome) => void) | undefined;
  readonly outcome: Promise<Outcome> | undefined;

  constructor(
    readonly label: string,
    wait: boolean,
    private readonly settledDetached: () => void,
  ) {
    if (wait) this.outcome = new Promise((resolve) => (this.answer = resolve));
  }

  settle(_task: Task, outcome: Outcome): void {
    if (this.answer === undefined) this.settledDetached();
    else this.answer(outcome);
  }
}

export class HttpApi {
  readonly app: FastifyInstance;
  private requests = 0;
  private detached = 0;
  private allowedHosts = new Set<string>();
  private readonly cached = new Map<string, { at: number; text: string; type: string }>();
  /** Connections over the limit, answered 503 already: nothing they ask is done. */
  private readonly refused = new WeakSet<Socket>();

  constructor(private readonly cluster: HttpCluster) {
    this.app = fastify({
      http: { headersTimeout: HEADERS_TIMEOUT_MS, connectionsCheckingInterval: TIMEOUT_CHECK_MS },
      clientErrorHandler: (error, socket) => answerClientError(error, socket),
      frameworkErrors: (error, _request, reply) =>
        this.fail(reply, new HttpFailure({ code: ErrorCode.BAD_MESSAGE, message: `the URL is not valid: ${error.message}` })),
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
    // Past the limit a connection is told so (Node's own maxConnections closes it without a word).
    // Node's parser reads the socket whatever is done here; its request is dropped by the first
    // hook, so a task on it is never run behind a 503.
    const open = new Set<Socket>();
    this.app.server.on('connection', (socket: Socket) => {
      open.add(socket);
      socket.once('close', () => open.delete(socket));
      // A socket destroyed on this turn of the loop (a silent one timed out just now) emits 'close'
      // only at the turn's end, but its client may already have seen it go and connected again.
      if (open.size > cluster.maxConnections) for (const other of open) if (other.destroyed) open.delete(other);
      if (open.size > cluster.maxConnections) {
        this.refused.add(socket);
        answerRaw(socket, 503, { code: ErrorCode.TOO_MANY_CONNECTIONS, message: `the server is at its limit of ${cluster.maxConnections} HTTP connections` });
        return;
      }
      // Node times out headers only once a request has begun: a connection that sends nothing at
      // all would hold its place until the limit shut everyone out.
      const silent = setTimeout(() => socket.destroy(), HEADERS_TIMEOUT_MS);
      socket.once('data', () => clearTimeout(silent));
      socket.once('close', () => clearTimeout(silent));
    });
    // Tasks come as JSON only: a text/plain body is refused by name rather than read as a string.
    this.app.removeContentTypeParser('text/plain');
    this.app.setErrorHandler((error, _request, reply) => this.fail(reply, error));
    this.app.setNotFoundHandler((request, reply) =>
      this.fail(reply, new HttpFailure({ code: ErrorCode.NOT_FOUND, message: `no route ${request.method} ${request.url.split('?')[0]}; see docs/http.md` })),
    );
    this.app.addHook('onRequest', async (request, reply) => {
      if (this.refused.has(request.socket)) {
        reply.hijack();
        return;
      }
      this.checkHost(request);
      // By the route the router matched, never by the raw URL: `/%61pi/stats` is `/api/stats`.
      if ((request.routeOptions.config as { open?: boolean }).open === true) return;
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
    const bound = typeof address === 'object' && address !== null ? address.port : port;
    // Without a token, only these names reach the console: a page elsewhere that rebinds its
    // own name to 127.0.0.1 (DNS rebinding) is refused.
    for (const name of ['127.0.0.1', 'localhost', '[::1]', host.includes(':') ? `[${host}]` : host]) this.allowedHosts.add(`${name}:${bound}`);
    return bound;
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
      const { task_id: _taskId, client_id: clientId, ...rest } = row;
      return { taskId, state: row.status, row: { taskId, clientId, ...rest } };
    });
    app.delete('/api/tasks/:taskId', async (request) => {
      const { taskId } = parse(TaskIdParamsSchema, request.params, 'the task id in the path');
      const answer = cluster.cancel(taskId);
      if (!('state' in answer)) throw new HttpFailure(answer);
      return { taskId, cancelled: true, state: answer.state };
    });
    app.post('/api/reload', async (request) => {
      // A JSON body (`{}`) is required: a browser sends that type cross-site only after a CORS
      // preflight, which this server never allows, so no other site's page can reload the cluster.
      if (!/^application\/json\b/i.test(request.headers['content-type'] ?? '')) {
        throw new HttpFailure({
          code: ErrorCode.BAD_MESSAGE,
          message: 'POST /api/reload needs a JSON body ({}) with Content-Type: application/json',
        });
      }
      const answer = await cluster.reload();
      if (!('workers' in answer)) throw new HttpFailure(answer);
      return answer;
    });
    app.get('/api/results', async (request) => {
      const query = parse(resultsQuerySchema(cluster.workers), request.query ?? {}, 'the query');
      const page = await cluster.page({ ...query, before: query.before === undefined ? undefined : decodeCursor(query.before) });
      return {
        rows: page.rows,
        next: page.next === null ? null : encodeCursor(page.next),
      };
    });
    app.get('/api/stats', async () => cluster.stats());
    app.get('/api/series', (_request, reply) => this.cachedSend(reply, 'series', async () => ({ type: 'application/json; charset=utf-8', text: JSON.stringify({ seconds: cluster.series() }) })));
    app.get('/api/kinds', async () => ({ kinds: [...cluster.kinds()], schemas: cluster.schemas() }));
    app.get('/api/events', (_request, reply) => {
      if (cluster.events.full) {
        throw new HttpFailure({ code: ErrorCode.TOO_MANY_CONNECTIONS, message: 'too many event subscribers; close another console' });
      }
      reply.hijack();
      cluster.events.subscribe(reply.raw, cluster.firstEvents());
    });
    app.get('/metrics', (_request, reply) =>
      this.cachedSend(reply, 'metrics', async () => {
        const { contentType, text } = await cluster.metrics();
        return { type: contentType, text };
      }),
    );
    app.get('/*', { config: { open: true } }, (request, reply) => this.pageFile(request, reply));
  }

  private async postTask(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const { cluster } = this;
    const { wait } = parse(WaitQuerySchema, request.query ?? {}, 'the query');
    const body = parse(TaskBodySchema, request.body, 'the body');
    const timeoutMs = body.timeoutMs ?? cluster.defaultTimeoutMs;
    const retries = body.retries ?? 0;
    const problem = timeoutProblem(timeoutMs, cluster) ?? retriesProblem(retries, cluster);
    if (problem !== undefined) throw badRequest(problem);
    const refused = kindRefusal(body.kind, cluster.kinds(), cluster.accepting());
    if (refused !== undefined) throw new HttpFailure(refused, { kind: body.kind });
    if (cluster.queueFull()) {
      reply.header('retry-after', '1');
      throw new HttpFailure({ code: ErrorCode.QUEUE_FULL, message: 'the queue is full; try again in a second' });
    }
    if (wait === 'false' && this.detached >= MAX_DETACHED_TASKS) {
      reply.header('retry-after', '1');
      throw new HttpFailure({
        code: ErrorCode.QUEUE_FULL,
        message: `${MAX_DETACHED_TASKS} tasks sent with wait=false are unfinished; wait for some, or send with wait=true`,
      });
    }
    this.requests += 1;
    const owner = new HttpTaskOwner(`http#${this.requests}`, wait === 'true', () => (this.detached -= 1));
    if (wait === 'false') this.detached += 1;
    const chars = Number(request.headers['content-length'] ?? 0) || JSON.stringify(body.payload ?? null).length;
    const task = newTask({ taskId: cluster.nextTaskId(), clientId: body.id, kind: body.kind, payload: body.payload, timeoutMs, retries, chars, owner });
    cluster.submit(task);
    if (owner.outcome === undefined) {
      return reply.code(202).header('location', `/api/tasks/${task.taskId}`).send({ taskId: task.taskId, state: 'accepted' });
    }
    const outcome = await owner.outcome;
    const ms = Math.round((performance.now() - task.acceptedAt) * 100) / 100;
    const id = body.id === undefined ? '' : `"id":${JSON.stringify(body.id)},`;
    const attempts = retries > 0 ? `,"attempts":${task.attempt}` : '';
    if (outcome.status === 'done') {
      // The stored text, spliced as it is, as the TCP reply does: the answer is what was stored.
      const result = outcome.json ? outcome.result : JSON.stringify(outcome.result);
      return reply
        .type('application/json; charset=utf-8')
        .send(`{"type":"done",${id}"taskId":${JSON.stringify(task.taskId)},"kind":${JSON.stringify(task.kind)},"worker":${outcome.worker},"result":${result},"ms":${ms}${attempts}}`);
    }
    throw new HttpFailure(outcome.error, {
      type: 'failed',
      ...(body.id === undefined ? {} : { id: body.id }),
      taskId: task.taskId,
      kind: task.kind,
      ...(outcome.worker === undefined ? {} : { worker: outcome.worker }),
      ms,
      ...(retries > 0 ? { attempts: task.attempt } : {}),
    });
  }

  private pageFile(request: FastifyRequest, reply: FastifyReply): FastifyReply {
    const path = request.url.split('?')[0] as string;
    if (isApiPath(path)) {
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

  /** Sends what `make` gives, made again at most once per CACHE_MS. */
  private async cachedSend(reply: FastifyReply, key: string, make: () => Promise<{ type: string; text: string }>): Promise<FastifyReply> {
    let entry = this.cached.get(key);
    const now = performance.now();
    if (entry === undefined || now - entry.at >= CACHE_MS) {
      entry = { at: now, ...(await make()) };
      this.cached.set(key, entry);
    }
    return reply.type(entry.type).send(entry.text);
  }

  /** Without a token, a request must name this server as it listens (see allowedHosts). */
  private checkHost(request: FastifyRequest): void {
    if (this.cluster.token !== undefined || this.allowedHosts.size === 0) return;
    const host = request.headers.host;
    if (host !== undefined && this.allowedHosts.has(host.toLowerCase())) return;
    const example = [...this.allowedHosts][0];
    throw new HttpFailure({
      code: ErrorCode.BAD_MESSAGE,
      message: `the Host header ${JSON.stringify(host ?? '')} is not this server's: open http://${example}/ (or set --token to serve other names)`,
    });
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

/** Whether a path is one of the API's (or /metrics); the page's files are everything else. */
function isApiPath(path: string): boolean {
  return path.startsWith('/api/') || path === '/api' || path.startsWith('/metrics');
}

