import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Duplex, Readable } from 'node:stream';
import { JsonLines } from '../shared/json-lines';
import { CHANNEL_FD, MAX_FROM_WORKER_LINE_CHARS, WATCHDOG_FD } from '../shared/protocol';

/**
 * A worker process as the primary sees it. WorkerSlot and Standby use this shape; tests give
 * them a fake with the same one.
 *
 * Events: `message` (a value from the worker, unchecked), `malformed` (it wrote something that is
 * not a message), `disconnect` (its channel closed), `exit` (code, signal), `error` (with no pid:
 * the process could not be made, and no `exit` follows).
 */
export interface WorkerProcess extends EventEmitter {
  readonly pid: number | undefined;
  readonly connected: boolean;
  readonly exitCode: number | null;
  readonly signalCode: NodeJS.Signals | null;
  /** The watchdog thread's side channel (fd 4), when there is one. */
  readonly watchdog: Readable | undefined;
  send(message: unknown, callback?: (error: Error | null) => void): boolean;
  kill(signal: NodeJS.Signals): boolean;
}

/**
 * How every worker process is started: `node <script> <args>`, stdin closed, stdout and stderr
 * shared, the message channel on fd 3 and the watchdog's on fd 4; each leads its own process
 * group, so that what its handlers start can be ended with it. It throws, or emits 'error' with no
 * pid, when the process cannot be made (EMFILE, EAGAIN).
 */
export function spawnWorker(script: string, args: readonly string[], env?: NodeJS.ProcessEnv): WorkerProcess {
  const child = spawn(process.execPath, [...process.execArgv, script, ...args], {
    stdio: ['ignore', 'inherit', 'inherit', 'pipe', 'pipe'],
    detached: true,
    ...(env === undefined ? {} : { env }),
  });
  return new SpawnedWorker(child);
}

class SpawnedWorker extends EventEmitter implements WorkerProcess {
  private readonly channel: JsonLines | undefined;

  constructor(private readonly child: ChildProcess) {
    super();
    // First: a spawn that failed (EMFILE) emits 'error' on the next tick and has no stdio at all.
    child.on('error', (error) => this.emit('error', error));
    child.once('exit', (code, signal) => this.emit('exit', code, signal));
    // A 'pipe' beyond stdio 0-2 is a socket, readable and writable.
    const stream = child.stdio?.[CHANNEL_FD] as Duplex | null | undefined;
    if (stream !== null && stream !== undefined) {
      this.channel = new JsonLines(stream, MAX_FROM_WORKER_LINE_CHARS);
      this.channel.on('message', (value: unknown) => this.emit('message', value));
      this.channel.on('malformed', (what: string) => this.emit('malformed', what));
      this.channel.on('close', () => this.emit('disconnect'));
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get connected(): boolean {
    return this.channel?.connected ?? false;
  }

  get exitCode(): number | null {
    return this.child.exitCode;
  }

  get signalCode(): NodeJS.Signals | null {
    return this.child.signalCode;
  }

  get watchdog(): Readable | undefined {
    const stream = this.child.stdio?.[WATCHDOG_FD];
    return stream === null || stream === undefined ? undefined : (stream as Readable);
  }

  send(message: unknown, callback?: (error: Error | null) => void): boolean {
    if (this.channel === undefined) {
      if (callback !== undefined) process.nextTick(callback, new Error('the worker has no channel'));
      return false;
    }
    return this.channel.send(message, callback);
  }

  kill(signal: NodeJS.Signals): boolean {
    return this.child.kill(signal);
  }
}
