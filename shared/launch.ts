/**
 * Starting a primary as a child process and knowing where it listens: the one spawn helper of the
 * bench and the test harness. The primary says where it serves in its --ready-file, so nothing
 * reads its log to find out; the log is kept (bounded) only to explain a start that failed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { z } from 'zod';

/** What the primary writes to --ready-file once it serves: written whole (a rename) or not at all. */
export const ReadySchema = z.object({
  pid: z.number().int().positive(),
  host: z.string().min(1),
  port: z.number().int().min(1).max(65_535),
  /** The HTTP console's port, unless --http-port off. */
  httpPort: z.number().int().min(1).max(65_535).optional(),
});
export type Ready = z.infer<typeof ReadySchema>;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface LaunchOptions {
  /** The compiled primary, `dist/server/main.js`. */
  script: string;
  /** The primary's options; they should include `--ready-file <file>` for ready() to work. */
  args: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** A command that runs the primary by exec'ing it in place (`prlimit --nofile=64:64 --`). */
  prefix?: readonly string[];
  /** Output kept in `output`; the oldest text is dropped past it (a long bench cannot grow it). */
  maxOutputChars?: number;
}

const POLL_MS = 20;

export class PrimaryProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  private text = '';
  private readonly readyFile: string | undefined;
  private readonly maxOutputChars: number;

  constructor(options: LaunchOptions) {
    const command = [...(options.prefix ?? []), process.execPath, options.script, ...options.args];
    this.child = spawn(command[0] as string, command.slice(1), {
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.readyFile = optionValue(options.args, '--ready-file');
    this.maxOutputChars = options.maxOutputChars ?? Number.POSITIVE_INFINITY;
    this.child.stdout?.setEncoding('utf8').on('data', this.append);
    this.child.stderr?.setEncoding('utf8').on('data', this.append);
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** Everything the primary and its workers printed so far (the newest `maxOutputChars`). */
  get output(): string {
    return this.text;
  }

  get hasExited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** Resolves with the ready file's contents once the primary serves; rejects if it exits first. */
  async ready(timeoutMs = 15_000): Promise<Ready> {
    if (this.readyFile === undefined) throw new Error('ready() needs --ready-file <file> among the primary\'s args');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = await readFile(this.readyFile, 'utf8').catch(() => undefined);
      if (text !== undefined) return ReadySchema.parse(JSON.parse(text));
      if (this.hasExited) throw new Error(`the primary exited before serving:\n${this.text}`);
      if (Date.now() > deadline) throw new Error(`the primary did not serve within ${timeoutMs} ms:\n${this.text}`);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  /** Sends `signal` (SIGTERM: an orderly drain), then SIGKILL if it is still there after `timeoutMs`. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<Exit> {
    if (!this.hasExited) this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  private readonly append = (chunk: string): void => {
    this.text += chunk;
    if (this.text.length > this.maxOutputChars) this.text = this.text.slice(-Math.floor(this.maxOutputChars / 2));
  };
}

/** The value after the last `name` in `args` (the one the primary's parser keeps). */
function optionValue(args: readonly string[], name: string): string | undefined {
  const at = args.lastIndexOf(name);
  return at === -1 ? undefined : args[at + 1];
}
