/**
 * Runs the real compiled client (dist/client/cli.js) as a person or a script would: one-shot runs
 * that collect the output and exit code, and long-running sessions fed through stdin. Every
 * process started here is ended by stopClis(), which client suites call in afterEach.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net, { type AddressInfo } from 'node:net';
import { CLI_SCRIPT, type Exit } from './cluster';

export interface CliResult extends Exit {
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Written to stdin, which is then closed; without it stdin is an empty pipe. */
  input?: string;
  env?: NodeJS.ProcessEnv;
  /** The command is killed (and the test fails on its exit) after this long. */
  timeoutMs?: number;
}

/** The environment a client runs in: no RONDA_* or color settings leak in from the test's shell. */
export function cliEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith('RONDA_') && name !== 'FORCE_COLOR' && name !== 'NO_COLOR') env[name] = value;
  }
  return { ...env, NO_COLOR: '1', ...extra };
}

export class CliProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<Exit>;

  constructor(readonly process: ChildProcess) {
    process.stdout?.setEncoding('utf8').on('data', (text: string) => (this.stdout += text));
    process.stderr?.setEncoding('utf8').on('data', (text: string) => (this.stderr += text));
    process.stdin?.on('error', () => undefined); // the client may exit before reading everything
    this.exited = new Promise((resolve) => process.once('exit', (code, signal) => resolve({ code, signal })));
  }

  write(text: string): void {
    this.process.stdin?.write(text);
  }

  endInput(): void {
    this.process.stdin?.end();
  }

  /** Resolves once stdout (or stderr) matches, failing after `timeoutMs` or if the client exits. */
  async waitFor(pattern: RegExp, stream: 'stdout' | 'stderr' = 'stdout', timeoutMs = 10_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = this[stream].match(pattern);
      if (match !== null) return match;
      if (this.process.exitCode !== null || this.process.signalCode !== null) {
        throw new Error(`client exited before printing ${pattern}:\nstdout: ${this.stdout}\nstderr: ${this.stderr}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`timed out waiting for ${pattern}:\nstdout: ${this.stdout}\nstderr: ${this.stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Waits for the exit, killing the client if it takes longer than `timeoutMs`. */
  async result(timeoutMs = 15_000): Promise<CliResult> {
    const timer = setTimeout(() => this.process.kill('SIGKILL'), timeoutMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return { ...exit, stdout: this.stdout, stderr: this.stderr };
  }

  stop(): Promise<Exit> {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill('SIGKILL');
    return this.exited;
  }
}

const running = new Set<CliProcess>();

/** Starts `node dist/client/cli.js ...args` (or another command line) with piped stdio. */
export function startCli(
  args: readonly string[],
  options: CliOptions = {},
  command: readonly string[] = [process.execPath, CLI_SCRIPT],
): CliProcess {
  const [file = process.execPath, ...rest] = command;
  const child = spawn(file, [...rest, ...args], { env: cliEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
  const cli = new CliProcess(child);
  running.add(cli);
  void cli.exited.then(() => running.delete(cli));
  if (options.input !== undefined) {
    cli.write(options.input);
    cli.endInput();
  }
  return cli;
}

/** Runs the client (or `command`, e.g. the bench) to completion. */
export function runCli(args: readonly string[], options: CliOptions & { command?: readonly string[] } = {}): Promise<CliResult> {
  const cli = startCli(args, { input: '', ...options }, options.command);
  return cli.result(options.timeoutMs);
}

/** Ends every client started here that is still running; call it from afterEach. */
export async function stopClis(): Promise<void> {
  await Promise.all([...running].map((cli) => cli.stop()));
  running.clear();
}

/** A port nothing listens on: one the system just handed out and took back. */
export async function unusedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Lines of a client's output, without the final newline. */
export function lines(text: string): string[] {
  return text === '' ? [] : text.replace(/\n$/, '').split('\n');
}
