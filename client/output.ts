/**
 * The client's only way to the terminal: lines, errors, tables and a progress bar. Logic modules
 * take an Output instead of calling console.*, so tests can capture what a person would see.
 */
import { Chalk, type ChalkInstance } from 'chalk';
import { colorLevel } from '../shared/logger';

export interface OutputStreams {
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

export interface Column<Row> {
  header: string;
  value: (row: Row) => string;
  align?: 'left' | 'right';
}

// Color escape sequences, which take no width on screen.
const ANSI = /\u001b\[[0-9;]*m/g;

export class Output {
  readonly chalk: ChalkInstance;
  readonly errorChalk: ChalkInstance;
  private progressShown = false;

  constructor(
    private readonly streams: OutputStreams = { stdout: process.stdout, stderr: process.stderr },
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.chalk = new Chalk({ level: colorLevel(streams.stdout, env) });
    this.errorChalk = new Chalk({ level: colorLevel(streams.stderr, env) });
  }

  /** Whether standard output is a terminal (progress bars and prompts only there). */
  get interactive(): boolean {
    return this.streams.stdout.isTTY === true;
  }

  line(text = ''): void {
    this.clearProgress();
    this.streams.stdout.write(`${text}\n`);
  }

  error(text: string): void {
    this.clearProgress();
    this.streams.stderr.write(`${this.errorChalk.red(text)}\n`);
  }

  table<Row>(rows: readonly Row[], columns: readonly Column<Row>[]): void {
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
    this.line(this.chalk.bold(format(columns.map((column) => column.header))));
    for (const row of cells) this.line(format(row));
  }

  /** Draws a one-line progress bar on a terminal; does nothing when output is piped. */
  progress(done: number, total: number, label = ''): void {
    if (!this.interactive) return;
    const width = 30;
    const filled = total === 0 ? width : Math.round((done / total) * width);
    const bar = `${'#'.repeat(filled)}${'-'.repeat(width - filled)}`;
    this.streams.stdout.write(`\r[${bar}] ${done}/${total} ${label}`.slice(0, this.streams.stdout.columns ?? 80));
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
