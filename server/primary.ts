import { mkdir } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ServerConfig } from './config';
import { ErrorCode, messageOf, type ErrorData } from '../shared/errors';
import type { Logger } from '../shared/logger';
import type { ResultRow, StatsReply } from '../shared/protocol';
import { databaseFile, readPage, readResults, type ResultsFilter } from '../shared/results-db';
import { packageVersion } from '../shared/version';
import { AuthGuard } from './auth-guard';
import { Connection, SHUTTING_DOWN, type ConnectionContext } from './connection';
import { DataDirLock } from '../shared/data-dir-lock';
import { Dispatcher, type ReloadReport } from './dispatcher';
import { HttpApi } from './http/api';
import { EventHub } from './http/events';
import { loadPage } from './http/page';
import { metricsRegistry, TaskMetrics } from './metrics';
import type { Door } from './submission';
import { taskIdGenerator, type TaskOwner } from './task';
import type { WorkerSlot } from './worker-slot';

/** How often the data dir's lock file is checked to be still in place. */
const LOCK_CHECK_MS = 1_000;
/** After the drain, how long clients get to read their last replies before sockets are cut. */
const SOCKET_LINGER_MS = 500;
/** After the shutdown deadline, how long workers get to close their files before they are killed. */
const STOP_AFTER_DEADLINE_MS = 500;
/**
 * `results` queries read at once across all connections. Each holds up to a reply's worth of text
 * (see MAX_RESULTS_REPLY_BYTES) while it runs; the rest wait their turn.
 */
const CONCURRENT_RESULTS_QUERIES = 2;
/** Who asks for an HTTP cancel: the door itself, the owner of every task sent over HTTP. */
const HTTP_DOOR: TaskOwner = { label: 'HTTP', door: 'http', settle: () => undefined };
/** What a cancelled task fails with, stored as its row. */
const CANCELLED: ErrorData = { code: ErrorCode.CANCELLED, message: 'the task was cancelled' };
/** The series' second, and how often the console's subscribers get the live figures. */
const TICK_MS = 1_000;
/** Worker changes reach the console's subscribers at most this often (a flapping worker is many). */
const STATS_EVENT_MS = 100;

/**
 * The primary process: takes the data directory, listens, forks and supervises the workers, and
 * shuts the whole cluster down in order (stop accepting, drain with a deadline, close the workers'
 * databases).
 */
export class Primary {
  private readonly dispatcher: Dispatcher;
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  /** Sockets accepted while the workers start, handled once they are ready. */
  private early: net.Socket[] | undefined = [];
  private readonly startedAt = performance.now();
  private accepting = true;
  private closing: Promise<void> | undefined;
  private lock: DataDirLock | undefined;
  private lockCheck: NodeJS.Timeout | undefined;
  private readonly door: Door;
  private readonly context: ConnectionContext;
  private connectionSerial = 0;
  private readonly queries = new Limiter(CONCURRENT_RESULTS_QUERIES);
  private readonly metrics = new TaskMetrics();
  private readonly events = new EventHub((watching) => (this.metrics.watching = watching));
  private http: HttpApi | undefined;
  private httpPortInUse: number | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private statsEventTimer: NodeJS.Timeout | undefined;
  /** Each slot's state and pid as the console last heard them (by slot - 1): events are the changes. */
  private readonly slotSeen: { state: string; pid: number | null }[] = [];
  private markStarted: () => void = () => undefined;
  private readonly started = new Promise<void>((resolve) => (this.markStarted = resolve));

  constructor(
    private readonly config: ServerConfig,
    private readonly logger: Logger,
    workerScript: string,
    workerEnv?: NodeJS.ProcessEnv,
  ) {
    this.dispatcher = new Dispatcher({
      workers: config.workers,
      script: workerScript,
      args: (slot) => [
        '--slot',
        String(slot),
        '--db',
        databaseFile(config.dataDir, slot),
        ...(config.handlers === undefined ? [] : ['--handlers', path.resolve(config.handlers)]),
        ...(config.retainRows === undefined ? [] : ['--retain-rows', String(config.retainRows)]),
        ...(config.retainDays === undefined ? [] : ['--retain-days', String(config.retainDays)]),
      ],
      file: (slot) => databaseFile(config.dataDir, slot),
      // Only for `ps`: which cluster a standby worker belongs to before it is given a slot.
      standbyArgs: ['--data-dir', config.dataDir],
      ...(workerEnv === undefined ? {} : { env: workerEnv }),
      dispatch: config.dispatch,
      maxInflightPerWorker: config.maxInflightPerWorker,
      maxQueue: config.maxQueue,
      maxAttempts: config.maxAttempts,
      retryBaseMs: config.retryBaseMs,
      readyTimeoutMs: config.workerReadyTimeoutMs,
      ...(config.maxTasksPerWorker === undefined ? {} : { maxTasksPerWorker: config.maxTasksPerWorker }),
      ...(config.maxWorkerRssMb === undefined ? {} : { maxWorkerRssBytes: config.maxWorkerRssMb * 1024 * 1024 }),
      logger,
      onPressure: (saturated) => {
        // A per-task-rate event under a flood: sampled like task lines, and off with --quiet.
        logger.task('primary', () =>
          saturated
            ? `queue full (${this.dispatcher.queued} queued): reading from clients paused`
            : `queue has room (${this.dispatcher.queued} queued): reading from clients again`,
        );
        for (const connection of this.connections) connection.queueChanged();
        this.events.publish('queue', { full: saturated, queued: this.dispatcher.queued });
      },
      onSettled: (task, outcome, ms) => this.metrics.settled(task, outcome, ms),
      onSlotChanged: (slot) => this.slotChanged(slot),
    });
    const nextTaskId = taskIdGenerator();
    const auth = new AuthGuard(logger);
    this.door = {
      token: config.token,
      defaultTimeoutMs: config.taskTimeoutMs,
      minTimeoutMs: config.minTaskTimeoutMs,
      maxTimeoutMs: config.maxTaskTimeoutMs,
      maxRetries: config.maxRetries,
      workers: config.workers,
      kinds: () => this.dispatcher.kinds,
      schemas: () => this.dispatcher.schemas,
      accepting: () => this.accepting,
      queueFull: () => this.dispatcher.saturated,
      nextTaskId,
      submit: (task) => this.dispatcher.submit(task),
      stats: () => this.stats(),
      authFailed: (address, why) => auth.failed(address, why),
      authSucceeded: (address) => auth.succeeded(address),
    };
    this.context = {
      ...this.door,
      idleTimeoutMs: config.idleTimeoutMs,
      results: (query) => this.queries.run(() => this.readResults(query)),
      cancel: (taskId, by, admin) => this.cancel(taskId, by, admin),
      reload: () => this.reload(),
      closed: (connection) => {
        this.connections.delete(connection);
        // Said whenever its connect line was (those are sampled under a flood of connections).
        if (connection.logged) {
          logger.info('primary', `client ${connection.label} ${connection.address} disconnected`);
        }
      },
    };
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.onConnection(socket));
    if (config.httpPort !== 'off') this.http = this.httpApi();
  }

  /** The port the HTTP console listens on, once started; undefined with --http-port off. */
  get httpPort(): number | undefined {
    return this.httpPortInUse;
  }

  private stats(): StatsReply {
    return {
      type: 'stats',
      workers: this.dispatcher.stats(),
      queued: this.dispatcher.queued,
      retrying: this.dispatcher.retrying,
      connections: this.connections.size,
      accepted: this.dispatcher.accepted,
      uptimeMs: Math.round(performance.now() - this.startedAt),
    };
  }

  private httpApi(): HttpApi {
    const { config } = this;
    const registry = metricsRegistry(this.metrics, {
      workers: () => this.dispatcher.stats(),
      queued: () => this.dispatcher.queued,
      connections: () => this.connections.size,
      connectionsTotal: () => this.connectionSerial,
      redeliveries: () => this.dispatcher.redeliveries,
    });
    return new HttpApi({
      ...this.door,
      maxConnections: config.maxConnections,
      logger: this.logger,
      events: this.events,
      pageFiles: loadPage(),
      started: this.started,
      placeOf: (taskId) => this.dispatcher.placeOf(taskId),
      findStored: async (taskId) => {
        const rows = await this.queries.run(() => this.readResults({ limit: 1, taskId }));
        return rows.find((row) => row.task_id === taskId);
      },
      page: (query) => this.queries.run(() => readPage(config.dataDir, query)),
      cancel: (taskId) => this.cancel(taskId, HTTP_DOOR, config.token !== undefined),
      reload: () => this.reload(),
      series: () => this.metrics.series(),
      firstEvents: () => [
        ['hello', { server: 'ronda', version: packageVersion(), workers: config.workers, kinds: [...this.dispatcher.kinds] }],
        ['stats', this.stats()],
      ],
      metrics: async () => ({ contentType: registry.contentType, text: await registry.metrics() }),
    });
  }

  /**
   * A rolling reload (SIGHUP, `reload` from a client, POST /api/reload): see Dispatcher.reload.
   * Never rejects: a failure is answered as RELOAD_FAILED, saying which worker and why.
   */
  async reload(): Promise<ReloadReport | ErrorData> {
    if (!this.accepting) return SHUTTING_DOWN;
    if (this.early !== undefined) {
      const message = 'the workers are still starting (each loads the handlers module as it is now); reload once the cluster serves';
      this.logger.warn('primary', `no reload: ${message}`);
      return { code: ErrorCode.RELOAD_FAILED, message };
    }
    try {
      return await this.dispatcher.reload();
    } catch (error) {
      if (!this.accepting) return SHUTTING_DOWN;
      const message = `reload stopped: ${messageOf(error)}; the workers not replaced keep serving`;
      this.logger.error('primary', message);
      return { code: ErrorCode.RELOAD_FAILED, message };
    }
  }

  /** See ConnectionContext.cancel. */
  private cancel(taskId: string, by: TaskOwner, admin: boolean): { state: 'queued' | 'running' } | ErrorData {
    const task = this.dispatcher.find(taskId);
    if (task === undefined) {
      return { code: ErrorCode.NOT_FOUND, message: `no task ${taskId} is queued or running (it may have finished: see results)` };
    }
    const sameClient = task.owner === by || (by?.door !== undefined && task.owner.door === by.door);
    if (!sameClient && !admin) {
      return {
        code: ErrorCode.UNAUTHORIZED,
        message: `task ${taskId} was sent by another client: only its sender, or a client with the cluster's token, may cancel it`,
      };
    }
    const state = this.dispatcher.cancel(task, CANCELLED);
    this.logger.info('primary', `cancel of ${task.owner.label}/${task.clientId ?? task.taskId} (${task.kind}) asked by ${by.label}: it was ${state}`);
    return { state };
  }

  /** Once a second: the series gets its point, and the console its live figures. */
  private tick(): void {
    const point = this.metrics.tick();
    if (this.events.size === 0) return;
    this.events.publish('tick', point);
    const recent = this.metrics.takeRecent();
    if (recent.length > 0) this.events.publish('tasks', recent);
    this.events.publish('stats', this.stats());
  }

  /** A worker event for the console when a slot's state or pid changed; stats soon after. */
  private slotChanged(slot: WorkerSlot): void {
    // Called on every change of a slot, often several times per batch of tasks: allocate nothing.
    const seen = this.slotSeen[slot.slot - 1];
    if (seen !== undefined && seen.state === slot.state && seen.pid === slot.pid) return;
    this.slotSeen[slot.slot - 1] = { state: slot.state, pid: slot.pid };
    if (this.events.size === 0) return;
    this.events.publish('worker', { slot: slot.slot, state: slot.state, pid: slot.pid, at: Date.now() });
    this.statsEventTimer ??= setTimeout(() => {
      this.statsEventTimer = undefined;
      this.events.publish('stats', this.stats());
    }, STATS_EVENT_MS);
  }

  /**
   * Takes the data directory, listens, then starts every worker; resolves with the address once
   * it serves. Nothing is forked before the directory and the port are this cluster's, so a second
   * cluster on either fails at once and touches no file.
   */
  async start(): Promise<AddressInfo> {
    const { host, port, dataDir, workers } = this.config;
    try {
      await mkdir(dataDir, { recursive: true });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new Error(
        code === 'EEXIST' || code === 'ENOTDIR'
          ? `--data-dir ${dataDir} is not a folder`
          : `cannot make the data folder ${dataDir}: ${messageOf(error)}`,
      );
    }
    this.lock = await DataDirLock.acquire(dataDir);
    this.lockCheck = setInterval(() => void this.checkLock(), LOCK_CHECK_MS).unref();
    await new Promise<void>((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException): void =>
        reject(
          error.code === 'EADDRINUSE'
            ? new Error(`${host}:${port} is in use by another program (another Ronda?): stop it, or pick another --port`)
            : error,
        );
      this.server.once('error', onError);
      this.server.listen(port, host, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    if (this.http !== undefined) {
      const httpPort = this.config.httpPort as number;
      this.httpPortInUse = await this.http.listen(host, httpPort);
    }
    await this.dispatcher.start();
    this.markStarted();
    this.tickTimer = setInterval(() => this.tick(), TICK_MS).unref();
    const address = this.server.address() as AddressInfo;
    this.logger.info(
      'primary',
      `listening on ${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` +
        ` (${workers} workers, data in ${dataDir}, log times in UTC)`,
    );
    if (this.httpPortInUse !== undefined) {
      this.logger.info('primary', `console at http://${hostForUrl(address.address)}:${this.httpPortInUse}`);
    }
    const early = this.early ?? [];
    this.early = undefined;
    for (const socket of early) {
      if (socket.destroyed) continue;
      socket.removeAllListeners('error');
      // Paused explicitly, it would stay so: a new 'data' listener does not resume it.
      socket.resume();
      this.onConnection(socket);
    }
    return address;
  }

  /**
   * Stops accepting connections and tasks, lets accepted tasks finish within the shutdown
   * deadline, then stops the workers. Safe to call twice: returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  /**
   * Kills the workers at once. Every accepted task still gets its one reply (`SHUTTING_DOWN`),
   * which clients have SOCKET_LINGER_MS to read; then every connection is dropped.
   */
  async forceClose(): Promise<void> {
    this.accepting = false;
    this.dispatcher.kill();
    for (const socket of this.early ?? []) socket.destroy();
    this.server.close();
    this.stopTimers();
    void this.http?.close().catch(() => undefined);
    this.dispatcher.abandon({
      code: ErrorCode.SHUTTING_DOWN,
      message: 'the server was stopped at once, by a second signal (one that had started may still be stored)',
    });
    for (const connection of this.connections) connection.refuse(SHUTTING_DOWN);
    const deadline = performance.now() + SOCKET_LINGER_MS;
    while (this.connections.size > 0 && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    for (const connection of this.connections) connection.destroy();
  }

  /**
   * The lock file deleted (or replaced) under a running cluster keeps no second one out: take it
   * again; if another cluster has taken it meanwhile, stop, rather than share its files.
   */
  private async checkLock(): Promise<void> {
    const lock = this.lock;
    if (lock === undefined || lock.intact || this.closing !== undefined) return;
    this.logger.error('primary', `the lock file in ${this.config.dataDir} was deleted or replaced; taking it again`);
    await lock.release().catch(() => undefined);
    try {
      this.lock = await DataDirLock.acquire(this.config.dataDir);
    } catch (error) {
      this.lock = undefined;
      this.logger.error('primary', `${messageOf(error)}; stopping this cluster`);
      process.kill(process.pid, 'SIGTERM');
    }
  }

  private stopTimers(): void {
    if (this.tickTimer !== undefined) clearInterval(this.tickTimer);
    if (this.statsEventTimer !== undefined) clearTimeout(this.statsEventTimer);
    this.statsEventTimer = undefined;
  }

  private readResults(filter: ResultsFilter): Promise<ResultRow[]> {
    return readResults(this.config.dataDir, filter);
  }

  /** `--shutdown-timeout-ms` bounds the drain; the workers then get STOP_AFTER_DEADLINE_MS at most. */
  private async shutdown(): Promise<void> {
    this.accepting = false;
    const deadline = performance.now() + this.config.shutdownTimeoutMs;
    // Resolves once the listener is closed and the last connection is gone.
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.early ?? []) socket.destroy();
    this.dispatcher.hurryRetries();
    const outstanding = this.dispatcher.outstanding;
    if (outstanding > 0) {
      this.logger.info('primary', `shutting down: waiting for ${outstanding} task(s)`);
    }
    let timer: NodeJS.Timeout | undefined;
    const deadlinePassed = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), this.config.shutdownTimeoutMs);
    });
    const drained = await Promise.race([this.dispatcher.idle().then(() => true), deadlinePassed]);
    clearTimeout(timer);
    if (!drained) {
      this.logger.warn('primary', `shutdown deadline passed with ${this.dispatcher.outstanding} task(s) unfinished`);
    }
    await this.dispatcher.stop(Math.max(STOP_AFTER_DEADLINE_MS, deadline - performance.now()));
    // What the workers did not finish in time still gets its one reply.
    this.dispatcher.abandon({
      code: ErrorCode.SHUTTING_DOWN,
      message: 'the server shut down before the task finished (one that had started may still be stored)',
    });
    for (const connection of this.connections) {
      connection.refuse(SHUTTING_DOWN);
    }
    const linger = setTimeout(() => {
      for (const connection of this.connections) connection.destroy();
    }, SOCKET_LINGER_MS);
    this.stopTimers();
    // Every HTTP task waiting was answered above; the event streams end, idle keep-alives close.
    await this.http?.close().catch(() => undefined);
    await serverClosed;
    clearTimeout(linger);
    if (this.lockCheck !== undefined) clearInterval(this.lockCheck);
    await this.lock?.release().catch(() => undefined);
    this.logger.flush();
    this.logger.info('primary', 'stopped; every database closed');
  }

  /**
   * At the connection limit with a token set, the oldest connection that has not yet said hello
   * with it makes room for the new one: connections that never authenticate cannot keep clients
   * with the token out (each is also closed after AUTH_TIMEOUT_MS). Those that have said hello are
   * never evicted.
   */
  private evictOneWaitingForHello(): void {
    if (this.config.token === undefined) return;
    for (const connection of this.connections) {
      if (connection.isAuthenticated) continue;
      this.connections.delete(connection);
      connection.refuse({ code: ErrorCode.UNAUTHORIZED, message: 'no hello with the token yet, and the server is full; closing' });
      // No longer counted: it goes once the refusal is out, or soon in any case.
      setTimeout(() => connection.destroy(), SOCKET_LINGER_MS).unref();
      return;
    }
  }

  private onConnection(socket: net.Socket): void {
    if (this.early !== undefined) {
      // The workers are starting: the client waits, unread, until they are ready.
      socket.pause();
      socket.on('error', () => undefined);
      this.early.push(socket);
      return;
    }
    const { maxConnections } = this.config;
    if (this.accepting && this.connections.size >= maxConnections) this.evictOneWaitingForHello();
    if (!this.accepting || this.connections.size >= maxConnections) {
      const refusal = !this.accepting
        ? SHUTTING_DOWN
        : { code: ErrorCode.TOO_MANY_CONNECTIONS, message: `the server is at its limit of ${maxConnections} connections` };
      socket.on('error', () => undefined);
      socket.end(`${JSON.stringify({ type: 'error', ...refusal })}\n`);
      // Half-open sockets are allowed, so a peer that never closes its side would keep this one
      // (uncounted) open, and shutdown waiting for it.
      socket.resume();
      setTimeout(() => socket.destroy(), SOCKET_LINGER_MS).unref();
      return;
    }
    this.connectionSerial += 1;
    const connection = new Connection(socket, this.context, this.connectionSerial);
    this.connections.add(connection);
    connection.logged = this.logger.task('primary', () => `client ${connection.label} ${connection.address} connected`);
  }
}

/** Runs at most `limit` of the jobs given to it at once, the rest in order as those finish. */
class Limiter {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly limit: number) {}

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.running >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running += 1;
    try {
      return await job();
    } finally {
      this.running -= 1;
      this.waiting.shift()?.();
    }
  }
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
