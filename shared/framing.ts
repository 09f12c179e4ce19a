import { isUtf8 } from 'node:buffer';
import { ErrorCode } from './errors';
import { MAX_LINE_BYTES } from './protocol';

/** One framed line, or the reason a line could not be read. */
export type Line =
  | { ok: true; text: string }
  | { ok: false; code: typeof ErrorCode.LINE_TOO_LONG | typeof ErrorCode.BAD_UTF8 };

const NEWLINE = 0x0a;
const CARRIAGE_RETURN = 0x0d;

/**
 * Splits a byte stream into newline-terminated UTF-8 lines. A line longer than the limit is
 * reported once and its bytes skipped up to the next newline; a line that is not valid UTF-8 is
 * reported and skipped. A trailing `\r` is dropped so that CRLF clients work.
 */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** True while skipping the rest of a line that was too long. */
  private discarding = false;

  constructor(private readonly maxLineBytes = MAX_LINE_BYTES) {}

  /** Bytes held that are not yet terminated by a newline. */
  get buffered(): number {
    return this.pendingBytes;
  }

  /** The first byte held, or undefined when nothing is. */
  get firstBufferedByte(): number | undefined {
    return this.pending[0]?.[0];
  }

  push(chunk: Buffer): Line[] {
    const lines: Line[] = [];
    let start = 0;
    let newline = chunk.indexOf(NEWLINE);
    while (newline !== -1) {
      if (this.discarding) {
        this.discarding = false;
      } else if (this.pendingBytes + newline - start - this.carriageReturnBefore(chunk, start, newline) > this.maxLineBytes) {
        lines.push({ ok: false, code: ErrorCode.LINE_TOO_LONG });
      } else {
        lines.push(this.decode(this.join(chunk.subarray(start, newline))));
      }
      this.pending = [];
      this.pendingBytes = 0;
      start = newline + 1;
      newline = chunk.indexOf(NEWLINE, start);
    }
    if (start < chunk.length && !this.discarding) {
      const rest = chunk.subarray(start);
      // One byte more than the limit may wait if it is a `\r`: that of a CRLF is not part of the line.
      const carriageReturn = rest[rest.length - 1] === CARRIAGE_RETURN ? 1 : 0;
      if (this.pendingBytes + rest.length > this.maxLineBytes + carriageReturn) {
        lines.push({ ok: false, code: ErrorCode.LINE_TOO_LONG });
        this.pending = [];
        this.pendingBytes = 0;
        this.discarding = true;
      } else {
        // Copy: the socket may reuse the chunk's memory once this returns.
        this.pending.push(Buffer.from(rest));
        this.pendingBytes += rest.length;
      }
    }
    return lines;
  }

  /** Takes the unterminated bytes held as a line of their own (peer paused or half-closed). */
  flush(): Line | undefined {
    if (this.pendingBytes === 0) return undefined;
    const bytes = this.join(Buffer.alloc(0));
    this.pending = [];
    this.pendingBytes = 0;
    if (bytes.length - (bytes[bytes.length - 1] === CARRIAGE_RETURN ? 1 : 0) > this.maxLineBytes) {
      return { ok: false, code: ErrorCode.LINE_TOO_LONG };
    }
    return this.decode(bytes);
  }

  /** 1 if the line that ends at `newline` ends in `\r` (in this chunk or in the bytes held), else 0. */
  private carriageReturnBefore(chunk: Buffer, start: number, newline: number): number {
    if (newline > start) return chunk[newline - 1] === CARRIAGE_RETURN ? 1 : 0;
    const last = this.pending[this.pending.length - 1];
    return last !== undefined && last[last.length - 1] === CARRIAGE_RETURN ? 1 : 0;
  }

  private join(tail: Buffer): Buffer {
    if (this.pending.length === 0) return tail;
    return Buffer.concat([...this.pending, tail], this.pendingBytes + tail.length);
  }

  private decode(bytes: Buffer): Line {
    let end = bytes.length;
    if (end > 0 && bytes[end - 1] === CARRIAGE_RETURN) end -= 1;
    const line = bytes.subarray(0, end);
    if (!isUtf8(line)) return { ok: false, code: ErrorCode.BAD_UTF8 };
    return { ok: true, text: line.toString('utf8') };
  }
}
