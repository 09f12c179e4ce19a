import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { LineSplitter } from './framing';

/**
 * One JSON value per line over a stream: the channel between the primary and each worker (a
 * pipe on the worker's fd 3). Node's own IPC channel is not used for it: a worker runs handler
 * code, and one line of garbage written to its IPC descriptor made Node's parser throw inside the
 * primary, which ended the whole cluster; nor does Node's parser bound a line. Here a line that is
 * too long, not UTF-8 or not JSON is reported as `malformed` and the rest goes on.
 *
 * Events: `message` (the parsed value, unchecked: the receiver validates it), `malformed` (a
 * sentence saying what was wrong), `close` (the stream ended; nothing more comes or goes).
 */
export class JsonLines extends EventEmitter {
  private readonly splitter: LineSplitter;
  private open = true;

  constructor(
    private readonly stream: Duplex,
    maxLineBytes: number,
  ) {
    super();
    this.splitter = new LineSplitter(maxLineBytes);
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('error', () => undefined); // 'close' follows
    stream.on('close', () => this.onClose());
  }

  /** Whether messages can still be sent. */
  get connected(): boolean {
    return this.open && this.stream.writable;
  }

  /**
   * Sends one value as one line; `callback` is told when it is written or why not. A value JSON
   * cannot hold fails at once.
   */
  send(message: unknown, callback?: (error: Error | null) => void): boolean {
    if (!this.connected) {
      if (callback !== undefined) process.nextTick(callback, new Error('the channel is closed'));
      return false;
    }
    let line: string;
    try {
      line = `${JSON.stringify(message)}\n`;
    } catch (error) {
      if (callback !== undefined) process.nextTick(callback, error instanceof Error ? error : new Error(String(error)));
      return false;
    }
    return this.stream.write(line, (error) => callback?.(error ?? null));
  }

  /** Ends the channel: what was sent still goes out, nothing more is read. */
  close(): void {
    this.open = false;
    this.stream.end();
  }

  private onData(chunk: Buffer): void {
    for (const line of this.splitter.push(chunk)) {
      if (!line.ok) {
        this.emit('malformed', line.code === 'LINE_TOO_LONG' ? 'a line over the limit' : 'a line that is not UTF-8');
        continue;
      }
      if (line.text === '') continue;
      let value: unknown;
      try {
        value = JSON.parse(line.text);
      } catch {
        this.emit('malformed', `a line that is not JSON: ${JSON.stringify(line.text.slice(0, 60))}`);
        continue;
      }
      this.emit('message', value);
    }
  }

  private onClose(): void {
    this.open = false;
    this.emit('close');
  }
}
