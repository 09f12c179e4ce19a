import { mkdir } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { ServerConfig } from '../shared/config';
import { ErrorCode } from '../shared/errors';
import type { Logger } from '../shared/logger';
import { readResults, databaseFile } from '../shared/results-db';
import { Connection, SHUTTING_DOWN, type ConnectionContext } from './connection';
import { Dispatcher } from './dispatcher';
import { taskIdGenerator } from './task';

/** After the drain, how long clients get to read their last replies before sockets are cut. */
const SOCKET_LINGER_MS = 500;

/**
 * The primary process: forks and supervises the workers, listens for clients, and shuts the whole
 * cluster down in order (stop accepting, drain with a deadline, close the workers' databases).
 */
export class Primary {
  private readonly dispatcher: Dispatcher;
  private readonly server: net.Server;
  private readonly connections = new Set<Connection>();
  private readonly startedAt = performance.now();
  private accepting = true;
  private closing: Promise<void> | undefined;
  private readonly context: ConnectionContext;

  constructor(
    private readonly config: ServerConfig,
    private readonly logger: Logger,
    workerScript: string,
  ) {
    this.dispatcher = new Dispatcher({
      workers: config.workers,
      script: workerScript,
      args: (slot) => [
        '--slot',
        String(slot),
        '--db',
        databaseFile(config.dataDir, slot),
        ...(config.handlers === undefined ? [] : ['--handlers', config.handlers]),
      ],
      // Only for `ps`: which cluster a standby worker belongs to before it is given a slot.
      standbyArgs: ['--data-dir', config.dataDir],
      maxInflightPerWorker: config.maxInflightPerWorker,
      maxQueue: config.maxQueue,
      maxAttempts: config.maxAttempts,
      readyTimeoutMs: config.workerReadyTimeoutMs,
      logger,
      onPressure: (saturated) => {
        // A per-task-rate event under a flood: sampled like task lines, and off with --quiet.
        logger.task('primary', () =>
          saturated
            ? `queue full (${this.dispatcher.queued} queued): reading from clients paused`
            : `queue has room (${this.dispatcher.queued} queued): reading from clients again`,
        );
        for (const connection of this.connections) connection.setGlobalPause(saturated);
      },
    });
    const nextTaskId = taskIdGenerator();
    this.context = {
      token: config.token,
      defaultTimeoutMs: config.taskTimeoutMs,
      maxTimeoutMs: config.maxTaskTimeoutMs,
      idleTimeoutMs: config.idleTimeoutMs,
      kinds: () => this.dispatcher.kinds,
      accepting: () => this.accepting,
      nextTaskId,
      submit: (task) => this.dispatcher.submit(task),
      results: (query) => readResults(config.dataDir, query),
      stats: () => ({
        type: 'stats',
        workers: this.dispatcher.stats(),
        queued: this.dispatcher.queued,
        connections: this.connections.size,
        accepted: this.dispatcher.accepted,
        uptimeMs: Math.round(performance.now() - this.startedAt),
      }),
      closed: (connection) => {
        this.connections.delete(connection);
        logger.task('primary', () => `client ${connection.socket.remoteAddress}:${connection.socket.remotePort} disconnected`);
      },
    };
    this.server = net.createServer({ allowHalfOpen: true }, (socket) => this.onConnection(socket));
  }

  /** Starts every worker, then listens; resolves with the address it listens on. */
  async start(): Promise<AddressInfo> {
    const { host, port, dataDir, workers } = this.config;
    await mkdir(dataDir, { recursive: true });
    await this.dispatcher.start();
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const address = this.server.address() as AddressInfo;
    this.logger.info(
      'primary',
      `listening on ${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` +
        ` (${workers} workers, data in ${dataDir})`,
    );
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

  /** Kills the workers and drops every connection at once. */
  forceClose(): void {
    this.dispatcher.kill();
    for (const connection of this.connections) connection.destroy();
    this.server.close();
  }

  private async shutdown(): Promise<void> {
    this.accepting = false;
    // Resolves once the listener is closed and the last connection is gone.
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const outstanding = this.dispatcher.outstanding;
    if (outstanding > 0) {
      this.logger.info('primary', `shutting down: waiting for ${outstanding} task(s)`);
    }
    const deadline = new Promise<boolean>((resolve) =>
      setTimeout(() => resolve(false), this.config.shutdownTimeoutMs).unref(),
    );
    const drained = await Promise.race([this.dispatcher.idle().then(() => true), deadline]);
    if (!drained) {
      this.logger.warn('primary', `shutdown deadline passed with ${this.dispatcher.outstanding} task(s) unfinished`);
    }
    for (const connection of this.connections) {
      connection.refuse(SHUTTING_DOWN);
    }
    await this.dispatcher.stop();
    const linger = setTimeout(() => {
      for (const connection of this.connections) connection.destroy();
    }, SOCKET_LINGER_MS).unref();
    await serverClosed;
    clearTimeout(linger);
    this.logger.flush();
    this.logger.info('primary', 'stopped; every database closed');
  }

  private onConnection(socket: net.Socket): void {
    if (!this.accepting || this.connections.size >= this.config.maxConnections) {
      const refusal = this.accepting
        ? {
            code: ErrorCode.TOO_MANY_CONNECTIONS,
            message: `the server is at its limit of ${this.config.maxConnections} connections`,
          }
        : SHUTTING_DOWN;
      socket.on('error', () => undefined);
      socket.end(`${JSON.stringify({ type: 'error', ...refusal })}\n`);
      // Half-open sockets are allowed, so a peer that never closes its side would keep this one
      // (uncounted) open, and shutdown waiting for it.
      socket.resume();
      setTimeout(() => socket.destroy(), SOCKET_LINGER_MS).unref();
      return;
    }
    const connection = new Connection(socket, this.context);
    this.connections.add(connection);
    if (this.dispatcher.saturated) connection.setGlobalPause(true);
    this.logger.task('primary', () => `client ${socket.remoteAddress}:${socket.remotePort} connected`);
  }
}
