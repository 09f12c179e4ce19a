/**
 * The cluster a benchmark runs against: one it starts itself (the compiled primary on a free port
 * with a temp data dir, stopped and removed afterwards), or one already running at host:port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const PRIMARY_SCRIPT = path.join(__dirname, '..', 'server', 'main.js');
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 15_000;
/** Log kept to explain a start that failed; older text is dropped so a long run cannot grow it. */
const MAX_LOG_CHARS = 64 * 1024;

export interface BenchTarget {
  host: string;
  port: number;
  /** The primary's pid when the bench started it (its memory and CPU can then be read). */
  primaryPid: number | undefined;
  stop(): Promise<void>;
}

export function externalTarget(host: string, port: number): BenchTarget {
  return { host, port, primaryPid: undefined, stop: () => Promise.resolve() };
}

/**
 * Starts `node dist/server/main.js --port 0 --data-dir <temp> --quiet --ready-file <temp>/ready.json`
 * and waits for the file, which says where it listens.
 */
export async function startOwnCluster(workers: number, extraArgs: readonly string[] = []): Promise<BenchTarget> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ronda-bench-'));
  const readyFile = path.join(dataDir, 'ready.json');
  const child = spawn(
    process.execPath,
    [PRIMARY_SCRIPT, '--port', '0', '--data-dir', dataDir, '--workers', String(workers), '--quiet', '--ready-file', readyFile, ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' } },
  );
  let log = '';
  const append = (text: string): void => {
    log += text;
    if (log.length > MAX_LOG_CHARS) log = log.slice(-MAX_LOG_CHARS / 2);
  };
  child.stdout.setEncoding('utf8').on('data', append);
  child.stderr.setEncoding('utf8').on('data', append);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await terminate(child, exited);
      await rm(dataDir, { recursive: true, force: true });
    })());

  try {
    const port = await waitForReady(child, readyFile, () => log);
    return { host: '127.0.0.1', port, primaryPid: child.pid, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function waitForReady(child: ChildProcess, readyFile: string, log: () => string): Promise<number> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const ready = await readFile(readyFile, 'utf8').catch(() => undefined);
    if (ready !== undefined) return (JSON.parse(ready) as { port: number }).port;
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the primary exited before listening:\n${log()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`the primary did not listen within ${START_TIMEOUT_MS} ms:\n${log()}`);
}

/** SIGTERM (an orderly drain), then SIGKILL if the primary is still there after the deadline. */
async function terminate(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}
