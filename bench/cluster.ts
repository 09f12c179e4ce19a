/**
 * The cluster a benchmark runs against: one it starts itself (the compiled primary on a free port
 * with a temp data dir, stopped and removed afterwards), or one already running at host:port.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PrimaryProcess } from '../shared/launch';

const PRIMARY_SCRIPT = path.join(__dirname, '..', 'server', 'main.js');
/** Output kept to explain a start that failed; older text is dropped so a long run cannot grow it. */
const MAX_OUTPUT_CHARS = 64 * 1024;

export interface BenchTarget {
  host: string;
  port: number;
  /** The HTTP console's port, on a cluster the bench started. */
  httpPort: number | undefined;
  /** The primary's pid when the bench started it (its memory and CPU can then be read). */
  primaryPid: number | undefined;
  stop(): Promise<void>;
}

export function externalTarget(host: string, port: number): BenchTarget {
  return { host, port, httpPort: undefined, primaryPid: undefined, stop: () => Promise.resolve() };
}

/** Starts `dist/server/main.js --port 0 --data-dir <temp> --quiet` and waits for its ready file. */
export async function startOwnCluster(workers: number, extraArgs: readonly string[] = []): Promise<BenchTarget> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ronda-bench-'));
  const primary = new PrimaryProcess({
    script: PRIMARY_SCRIPT,
    args: ['--port', '0', '--data-dir', dataDir, '--workers', String(workers), '--quiet', '--http-port', '0', '--ready-file', path.join(dataDir, 'ready.json'), ...extraArgs],
    maxOutputChars: MAX_OUTPUT_CHARS,
  });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await primary.stop();
      await rm(dataDir, { recursive: true, force: true });
    })());
  try {
    const { port, httpPort } = await primary.ready();
    return { host: '127.0.0.1', port, httpPort, primaryPid: primary.pid, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
