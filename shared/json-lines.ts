import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

/**
 * One JSON value per line over a stream: the channel between the primary and each worker (a
 * pipe on the worker's fd 3). Node's own IPC channel is not used for it: a worker runs handler
 * code, and one line of garbage written to its IPC descriptor made Node's parser throw inside the
 * primary, which ended the whole cluster; nor does Node's parser bound a line. Here a line that is
 * too long or not JSON is reported as `malformed` and the rest goes on. Lines are cut from the
 * decoded text (as Node's channel does) rather than from bytes: a result of 1 Mi characters is
 * then held as one string until it is parsed, not also as chunks and their concatenation.
 *
 * Events: `message` (the parsed value, unchecked: the receiver validates it), `malformed` (a
 * sentence saying what was wrong), `close` (the stream ended; nothing more comes or goes).
 */
export class JsonLines extends EventEmitter {
  private readonly decoder = new StringDecoder('utf8');
  /** The start of a line whose end has not come yet. */
  private pending = '';
  /** Skipping the rest of a line that was too long. */
  private discarding = false;
  private open = true;

  /** @param maxLineChars longest line read; longer ones are reported and skipped. */
  constructor(
    private readonly stream: Duplex,
    private readonly maxLineChars: number,
  ) {
    super();
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
    if (callback === undefined) return this.stream.write(line);
    return this.stream.write(line, (error) => callback(error ?? null));
  }

  /** Ends the channel: what was sent still goes out, nothing more is read. */
  close(): void {
    this.open = false;
    this.stream.end();
  }

  private onData(chunk: Buffer): void {
    const text = this.decoder.write(chunk);
    let start = 0;
    for (let newline = text.indexOf('\n'); newline !== -1; newline = text.indexOf('\n', start)) {
      const piece = text.slice(start, newline);
      start = newline + 1;
      if (this.discarding) {
        this.discarding = false;
      } else if (this.pending.length + piece.length > this.maxLineChars) {
        this.emit('malformed', 'a line over the limit');
      } else {
        this.onLine(this.pending === '' ? piece : this.pending + piece);
      }
      this.pending = '';
    }
    if (start === text.length || this.discarding) return;
    const rest = start === 0 ? text : text.slice(start);
    if (this.pending.length + rest.length > this.maxLineChars) {
      this.emit('malformed', 'a line over the limit');
      this.pending = '';
      this.discarding = true;
    } else {
      this.pending += rest;
    }
  }

  private onLine(line: string): void {
    if (line === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      this.emit('malformed', `a line that is not JSON: ${JSON.stringify(line.slice(0, 60))}`);
      return;
    }
    this.emit('message', value);
  }

  private onClose(): void {
    this.open = false;
    this.emit('close');
  }
}
