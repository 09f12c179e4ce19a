/**
 * The interactive console's state: runs what each typed line asks for on the current connection,
 * prints replies as they arrive, and decides what happens when the server goes away (say so and
 * end, or reconnect with a visible attempt count).
 */
import { ErrorCode, messageOf, RondaError } from '../shared/errors';
import { addressOf, type ConsoleOptions } from './cli-options';
import { RondaConnection } from './ronda-connection';
import { CONSOLE_HELP, parseConsoleLine } from './console-line';
import { payloadSchemasOf, type PayloadSchemas } from './console-payload';
import { formatNoReply, formatReply } from './format';
import { describeConnectError, describeLostConnection, opened, type OpenedConnection } from './open-connection';
import type { Output } from './output';
import { showResults, showStats } from './views';

type State = 'connected' | 'reconnecting' | 'leaving' | 'finished';
type Request = (connection: RondaConnection) => Promise<void>;

/** Attempts to connect again after the server closed an idle console, even without --retry. */
const IDLE_RECONNECT_ATTEMPTS = 3;

export class ConsoleSession {
  /** Resolves with the exit code once the session is over. */
  readonly finished: Promise<number>;
  /** Called when the session ends on its own (server gone), so that input stops being read. */
  onFinish: (() => void) | undefined;
  private connection: RondaConnection | undefined;
  private kinds: ReadonlySet<string> = new Set();
  private schemas: PayloadSchemas | undefined;
  private state: State = 'connected';
  /** Every request not yet answered; each one settles, also when its connection is lost. */
  private readonly pending = new Set<Promise<void>>();
  private tasksInFlight = 0;
  private resolveFinished: (code: number) => void = () => undefined;
  /** Requests typed while reconnecting, sent once connected again. */
  private readonly held: Request[] = [];
  private quietReconnect = false;
  /** Input ended while reconnecting, with requests held: leave once they have been answered. */
  private leaveWhenConnected = false;
  private cancelRetry: (() => void) | undefined;

  constructor(
    private readonly output: Output,
    private readonly options: ConsoleOptions,
    opened: OpenedConnection,
  ) {
    this.finished = new Promise((resolve) => (this.resolveFinished = resolve));
    this.attach(opened);
  }

  get address(): string {
    return addressOf(this.options);
  }

  handle(line: string): void {
    if (this.state === 'leaving' || this.state === 'finished') return;
    const action = parseConsoleLine(line, this.kinds, this.schemas);
    switch (action.type) {
      case 'empty':
        return;
      case 'quit':
        this.leave();
        return;
      case 'help':
        this.output.line(CONSOLE_HELP);
        return;
      case 'invalid':
        this.output.error(action.message);
        return;
      case 'task':
        this.request((connection) => {
          this.tasksInFlight += 1;
          return connection.submit(action.kind, action.payload).then(
            (reply) => this.output.line(formatReply(this.output.chalk, action.label, reply)),
            (error: unknown) => {
              if (!connection.closed) this.output.line(formatNoReply(this.output.chalk, action.label, refusal(error)));
            },
          ).finally(() => (this.tasksInFlight -= 1));
        });
        return;
      case 'stats':
        this.request((connection) =>
          connection.stats().then(
            (stats) => showStats(this.output, stats),
            (error: unknown) => this.reportQueryError(connection, error),
          ),
        );
        return;
      case 'results':
        this.request((connection) =>
          connection
            .results({ limit: action.limit, ...(action.worker === undefined ? {} : { worker: action.worker }) })
            .then(
              (rows) => showResults(this.output, rows),
              (error: unknown) => this.reportQueryError(connection, error),
            ),
        );
        return;
      default: {
        const unreachable: never = action;
        throw new Error(`unhandled console action ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /**
   * The person is leaving (salir, Ctrl-D, end of piped input, Ctrl-C on an empty line): wait for
   * the replies still owed (Ctrl-C skips that), then close.
   */
  leave(): void {
    if (this.state === 'leaving' || this.state === 'finished') return;
    if (this.state === 'reconnecting') {
      if (this.held.length === 0) {
        this.cancelRetry?.();
        // A quiet reconnect (after an idle close) is no failure; one after the server went away is.
        this.end(this.quietReconnect ? 0 : 1);
        return;
      }
      // Lines were typed for this connection: send them if it comes back, then leave.
      this.leaveWhenConnected = true;
      this.onFinish?.();
      const onSignal = (): void => {
        this.cancelRetry?.();
        this.end(1);
      };
      process.once('SIGINT', onSignal);
      void this.finished.then(() => process.off('SIGINT', onSignal));
      return;
    }
    this.state = 'leaving';
    this.onFinish?.();
    void this.drain().then(async (drained) => {
      if (this.state === 'finished') return;
      // Detached first, so that closing it is not taken for the server going away.
      const connection = this.connection;
      this.connection = undefined;
      // The server ends a connection only once its tasks are answered; Ctrl-C means now.
      if (drained) await connection?.close();
      else connection?.destroy();
      this.end(0);
    });
  }

  /** Resolves true once every reply is in, false if Ctrl-C cut the wait short. */
  private async drain(): Promise<boolean> {
    if (this.pending.size === 0) return true;
    if (this.output.terminal) {
      const waiting = `waiting for ${this.pending.size} reply(s) still owed; Ctrl-C leaves now`;
      this.output.line(this.output.chalk.dim(waiting));
    }
    let onSignal = (): void => undefined;
    const interrupted = new Promise<boolean>((resolve) => (onSignal = () => resolve(false)));
    process.once('SIGINT', onSignal);
    const drained = await Promise.race([Promise.all(this.pending).then(() => true), interrupted]);
    process.off('SIGINT', onSignal);
    return drained;
  }

  private request(send: Request): void {
    const connection = this.connection;
    if (connection === undefined) {
      // Only while reconnecting (no input is read in any other state without a connection).
      this.held.push(send);
      if (!this.quietReconnect) {
        this.output.line(this.output.chalk.dim('not connected: it will be sent once reconnected'));
      }
      return;
    }
    const settled = send(connection).finally(() => this.pending.delete(settled));
    this.pending.add(settled);
  }

  private reportQueryError(connection: RondaConnection, error: unknown): void {
    // A lost connection is reported once, by onLost, not once per request it took with it.
    if (!connection.closed) this.output.error(`ronda: ${messageOf(error)}`);
  }

  private attach(opened: OpenedConnection): void {
    const { connection } = opened;
    this.connection = connection;
    this.kinds = new Set(opened.hello.kinds);
    this.schemas = payloadSchemasOf(opened.hello);
    connection.on('error', (error: RondaError) => {
      // An error the server closes the connection after is reported once, as the reason, by onLost.
      if (!connection.closed) this.output.error(`server: ${error.code}: ${error.message}`);
    });
    connection.on('close', (error: Error) => this.onLost(connection, error));
    // Closed between its hello and now: its close event has been missed.
    if (connection.closed) this.onLost(connection, new Error('the server closed the connection'));
  }

  private onLost(connection: RondaConnection, error: Error): void {
    if (connection !== this.connection || this.state === 'finished') return;
    this.connection = undefined;
    if (error instanceof RondaError && error.code === ErrorCode.IDLE_TIMEOUT && this.state === 'connected') {
      // The server is fine; it only closed a connection nobody typed into for a while (its
      // --idle-timeout-ms). A console is meant to stay open, so connect again, quietly.
      this.reconnect(Math.max(this.options.retry, IDLE_RECONNECT_ATTEMPTS), true);
      return;
    }
    // The close event comes before the lost requests' own handlers run, so this count includes them.
    const unanswered = this.tasksInFlight;
    const what =
      `lost the connection to the server at ${this.address}: ${describeLostConnection(error)}` +
      (unanswered === 0 ? '' : ` (${unanswered} task(s) got no reply; a task the server accepted may still be stored)`);
    this.output.error(`ronda: ${what}`);
    if (this.state === 'leaving' || this.options.retry === 0) {
      this.end(1);
      return;
    }
    this.reconnect(this.options.retry);
  }

  /** @param quiet say nothing unless the first attempt fails. */
  private reconnect(attempts: number, quiet = false): void {
    this.state = 'reconnecting';
    this.quietReconnect = quiet;
    const cancel = new Promise<void>((resolve) => (this.cancelRetry = resolve));
    const { host, port, token } = this.options;
    RondaConnection.connectWithRetry(
      { host, port, token, hello: true },
      {
        attempts,
        cancel,
        onAttempt: (attempt) => {
          if (attempt > 1) this.quietReconnect = false;
          if (!this.quietReconnect) {
            const counted = `reconnecting to ${this.address} (attempt ${attempt}/${attempts})`;
            this.output.line(this.output.chalk.yellow(counted));
          }
        },
      },
    ).then(
      async (connection) => {
        if (this.state !== 'reconnecting') {
          await connection.close();
          return;
        }
        this.state = 'connected';
        this.cancelRetry = undefined;
        this.attach(opened(connection));
        if (!this.quietReconnect) this.output.line(this.output.chalk.green(`reconnected to ${this.address}`));
        for (const send of this.held.splice(0)) this.request(send);
        if (this.leaveWhenConnected) this.leave();
      },
      (error: unknown) => {
        if (this.state !== 'reconnecting') return;
        this.output.error(`ronda: gave up reconnecting: ${describeConnectError(error, this.options)}`);
        this.end(1);
      },
    );
  }

  private end(code: number): void {
    if (this.state === 'finished') return;
    this.state = 'finished';
    this.output.attachPrompt(undefined);
    this.onFinish?.();
    this.resolveFinished(code);
  }
}

function refusal(error: unknown): string {
  if (error instanceof RondaError) return `refused ${error.code}: ${error.message}`;
  return `no reply: ${messageOf(error)}`;
}
