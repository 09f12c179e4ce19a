/**
 * The client's only way to the terminal: lines, errors, tables and a progress bar. Logic modules
 * take an Output instead of calling console.*, so tests can capture what a person would see.
 */
import { Chalk, type ChalkInstance } from 'chalk';
import { colorLevel } from '../shared/logger';

export interface OutputStreams {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  stdin?: { isTTY?: boolean };
}

export interface Column<Row> {
  header: string;
  value: (row: Row) => string;
  align?: 'left' | 'right';
}

/**
 * A prompt that lines are printed above: `hide` takes the prompt and the half-typed line off the
 * screen, `show` draws them again below what was printed.
 */
export interface PromptGuard {
  hide(): void;
  show(): void;
}

// Color escape sequences, which take no width on screen.
const ANSI = /\u001b\[[0-9;]*m/g;

export class Output {
  readonly chalk: ChalkInstance;
  readonly errorChalk: ChalkInstance;
  private progressShown = false;
  private prompt: PromptGuard | undefined;

  constructor(
    private readonly streams: OutputStreams = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin },
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.chalk = new Chalk({ level: colorLevel(streams.stdout, env) });
    this.errorChalk = new Chalk({ level: colorLevel(streams.stderr, env) });
  }

  /** Whether standard output is a terminal (progress bars and prompts only there). */
  get interactive(): boolean {
    return this.streams.stdout.isTTY === true;
  }

  /** Whether standard input is a terminal too, so that a person is typing. */
  get terminal(): boolean {
    return this.interactive && this.streams.stdin?.isTTY === true;
  }

  /** Prints above this prompt from now on (undefined: no prompt any more). */
  attachPrompt(prompt: PromptGuard | undefined): void {
    this.prompt = prompt;
  }

  line(text = ''): void {
    this.clearProgress();
    this.prompt?.hide();
    this.streams.stdout.write(`${text}\n`);
    this.prompt?.show();
  }

  /** One JSON value on one line, for other programs. */
  json(value: unknown): void {
    this.line(JSON.stringify(value));
  }

  error(text: string): void {
    this.clearProgress();
    this.prompt?.hide();
    this.streams.stderr.write(`${this.errorChalk.red(text)}\n`);
    this.prompt?.show();
  }

  table<Row>(rows: readonly Row[], columns: readonly Column<Row>[]): void {
    // One write, so that a prompt is taken down and drawn again once, not once per row.
    this.line(this.tableText(rows, columns));
  }

  /** A table as text: a bold header row, then one line per row, columns padded to fit. */
  tableText<Row>(rows: readonly Row[], columns: readonly Column<Row>[]): string {
    const cells = rows.map((row) => columns.map((column) => column.value(row)));
    const widths = columns.map((column, index) =>
      Math.max(visibleWidth(column.header), ...cells.map((row) => visibleWidth(row[index] ?? ''))),
    );
    const format = (values: readonly string[]) =>
      values
        .map((value, index) => {
          const pad = ' '.repeat((widths[index] ?? 0) - visibleWidth(value));
          return columns[index]?.align === 'right' ? pad + value : value + pad;
        })
        .join('  ')
        .trimEnd();
    return [this.chalk.bold(format(columns.map((column) => column.header))), ...cells.map(format)].join('\n');
  }

  /** Draws a one-line progress bar on a terminal; does nothing when output is piped. */
  progress(done: number, total: number, label = ''): void {
    if (!this.interactive) return;
    const width = 30;
    const filled = total === 0 ? width : Math.round((done / total) * width);
    const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
    // A terminal of unknown size (a pty made without one) reports 0 columns; keep a sane width.
    this.streams.stdout.write(`\r[${bar}] ${done}/${total} ${label}`.slice(0, (this.streams.stdout.columns || 80) - 1));
    this.progressShown = true;
  }

  clearProgress(): void {
    if (!this.progressShown) return;
    this.progressShown = false;
    this.streams.stdout.write('\r\u001b[2K');
  }
}

export function visibleWidth(text: string): number {
  return text.replace(ANSI, '').length;
}
