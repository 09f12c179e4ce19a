/**
 * The one way Ronda's processes write log lines: one line per event, a timestamp, the source
 * (primary or worker slot, each slot in its own color) and the message. Per-task lines are
 * sampled above a rate so that logging never becomes the bottleneck, and are off with `quiet`.
 */
import { Chalk, type ChalkInstance } from 'chalk';

/** Per-task lines printed per second before the rest are summarised. */
export const TASK_LOG_LINES_PER_S = 20;

const SLOT_COLORS = ['cyan', 'magenta', 'yellow', 'green', 'blue', 'red'] as const;

export type Source = 'primary' | number;

export interface LoggerOptions {
  quiet?: boolean;
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  env?: NodeJS.ProcessEnv;
}

/** Whether to color output written to `stream`: a TTY, unless NO_COLOR is set; FORCE_COLOR wins. */
export function colorLevel(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv): 0 | 1 {
  if (env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== '0') return 1;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return 0;
  return stream.isTTY === true ? 1 : 0;
}

/** Colors a worker's label the same way in the server's log and in the client. */
export function paintSlot(chalk: ChalkInstance, slot: number, text: string): string {
  const color = SLOT_COLORS[(slot - 1) % SLOT_COLORS.length] ?? 'cyan';
  return chalk[color](text);
}

// C0 and C1 control characters, DEL, and the Unicode line and paragraph separators.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

/**
 * Text from clients or handlers (ids, error messages) as it may go in one log line: a newline or
 * a terminal escape in a client's id must not forge a line or drive the terminal; each becomes
 * `\x0a`, `\x1b`, ...
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (char) => {
    const code = char.charCodeAt(0);
    return code > 0xff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\x${code.toString(16).padStart(2, '0')}`;
  });
}

export class Logger {
  readonly chalk: ChalkInstance;
  private readonly quiet: boolean;
  private readonly stream: NodeJS.WritableStream & { isTTY?: boolean };
  private windowStart = 0;
  private linesInWindow = 0;
  private suppressed = 0;
  private summaryTimer: NodeJS.Timeout | undefined;
  private broken = false;

  constructor(options: LoggerOptions = {}) {
    this.stream = options.stream ?? process.stdout;
    // Whoever read the log went away (`npm start | head`, a closed terminal): the cluster goes on
    // without it, rather than dying of EPIPE.
    this.stream.on('error', () => (this.broken = true));
    this.quiet = options.quiet ?? false;
    this.chalk = new Chalk({ level: colorLevel(this.stream, options.env ?? process.env) });
  }

  info(source: Source, message: string): void {
    this.write(source, printable(message));
  }

  warn(source: Source, message: string): void {
    this.write(source, this.chalk.yellow(printable(message)));
  }

  error(source: Source, message: string): void {
    this.write(source, this.chalk.red(printable(message)));
  }

  /**
   * A per-task event: dropped when quiet, summarised above TASK_LOG_LINES_PER_S. Returns whether
   * it was printed, so that a line that belongs with it (a disconnect after its connect) can be.
   */
  task(source: Source, message: string | (() => string)): boolean {
    if (this.quiet) return false;
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.linesInWindow = 0;
    }
    if (this.linesInWindow < TASK_LOG_LINES_PER_S) {
      this.linesInWindow += 1;
      this.write(source, printable(typeof message === 'string' ? message : message()));
      return true;
    }
    this.suppressed += 1;
    this.summaryTimer ??= setTimeout(() => this.summarise(), 1000).unref();
    return false;
  }

  /** Prints the pending summary now and stops its timer. */
  flush(): void {
    if (this.summaryTimer !== undefined) clearTimeout(this.summaryTimer);
    this.summarise();
  }

  private summarise(): void {
    this.summaryTimer = undefined;
    if (this.suppressed === 0) return;
    const count = this.suppressed;
    this.suppressed = 0;
    this.write('primary', this.chalk.dim(`... ${count} more task events not shown (sampled)`));
  }

  private write(source: Source, message: string): void {
    if (this.broken) return;
    // UTC, and marked so (`Z`), as in the stored rows' timestamps.
    const time = new Date().toISOString().slice(11, 24);
    const label =
      source === 'primary' ? this.chalk.bold('[primary ]') : paintSlot(this.chalk, source, `[worker ${source}]`);
    this.stream.write(`${this.chalk.dim(time)} ${label} ${message}\n`);
  }
}
