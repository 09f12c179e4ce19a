/**
 * The cluster a benchmark runs against: one it starts itself (the compiled primary on a free port
 * with a temp data dir, stopped and removed afterwards), or one already running at host:port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const PRIMARY_SCRIPT = path.join(__dirname, '..', 'server', 'main.js');
const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 15_000;
/** Log kept for reading timestamps; older text is dropped so a long run cannot grow it forever. */
const MAX_LOG_CHARS = 1024 * 1024;

export interface BenchTarget {
  host: string;
  port: number;
  /** The primary's pid when the bench started it (its memory and CPU can then be read). */
  primaryPid: number | undefined;
  /** The primary's log so far, when the bench started it. */
  log(): string;
  stop(): Promise<void>;
}

export function externalTarget(host: string, port: number): BenchTarget {
  return { host, port, primaryPid: undefined, log: () => '', stop: () => Promise.resolve() };
}

/** Starts `node dist/server/main.js --port 0 --data-dir <temp> --quiet` and waits until it listens. */
export async function startOwnCluster(workers: number, extraArgs: readonly string[] = []): Promise<BenchTarget> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ronda-bench-'));
  const child = spawn(
    process.execPath,
    [PRIMARY_SCRIPT, '--port', '0', '--data-dir', dataDir, '--workers', String(workers), '--quiet', ...extraArgs],
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
    const port = await waitForPort(child, () => log);
    return { host: '127.0.0.1', port, primaryPid: child.pid, log: () => log, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function waitForPort(child: ChildProcess, log: () => string): Promise<number> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const match = /listening on 127\.0\.0\.1:(\d+)/.exec(log());
    if (match !== null) return Number(match[1]);
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

/**
 * The wall-clock time (ms since the epoch) of the first log line after `sinceMs` whose message
 * matches `pattern`. The logger prints only `HH:MM:SS.mmm` (UTC): the day is taken from `sinceMs`.
 */
export function logTime(log: string, pattern: RegExp, sinceMs: number): number | undefined {
  for (const line of log.split('\n')) {
    const stamp = /^(\d\d):(\d\d):(\d\d)\.(\d{3})Z? /.exec(line);
    if (stamp === null || !pattern.test(line)) continue;
    const [, hh, mm, ss, mmm] = stamp.map(Number) as [number, number, number, number, number];
    const day = new Date(sinceMs);
    let at = Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate(), hh, mm, ss, mmm);
    // Around midnight the line's day may be the next one.
    if (at < sinceMs - 12 * 3_600_000) at += 24 * 3_600_000;
    // A millisecond of slack: the logger's clock is read after ours.
    if (at >= sinceMs - 1) return at;
  }
  return undefined;
}
