/**
 * Starts the real compiled primary (dist/server/main.js) on port 0 with a temp data directory,
 * as a user would, and stops it again. Every cluster started here is stopped by stopClusters(),
 * which integration suites call in afterEach.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { RondaConnection } from '../../client/ronda-connection';
import { PrimaryProcess, type Exit } from '../../shared/launch';

export type { Exit } from '../../shared/launch';

export const ROOT = path.resolve(__dirname, '..', '..');
/**
 * The compiled code under test. RONDA_TEST_DIST names another build (an older commit's dist/,
 * copied inside the project so it finds node_modules) to watch a new test fail against it.
 */
const DIST = process.env.RONDA_TEST_DIST === undefined ? path.join(ROOT, 'dist') : path.resolve(process.env.RONDA_TEST_DIST);
export const PRIMARY_SCRIPT = path.join(DIST, 'server', 'main.js');
export const CLI_SCRIPT = path.join(DIST, 'client', 'cli.js');
/** Builds from before --ready-file (an older RONDA_TEST_DIST) are found listening by their log line. */
const WRITES_READY_FILE = readFileSync(PRIMARY_SCRIPT, 'utf8').includes('readyFile');
/** Builds from before the HTTP console take no --http-port. */
const SERVES_HTTP = WRITES_READY_FILE && readFileSync(path.join(DIST, 'server', 'config.js'), 'utf8').includes('httpPort');

export class Cluster {
  port = 0;
  /** The HTTP console's port, when started with `--http-port 0` (off otherwise). */
  httpPort: number | undefined;
  private readonly connections: RondaConnection[] = [];

  constructor(
    readonly primary: PrimaryProcess,
    readonly dataDir: string,
    private readonly ownsDataDir: boolean,
    private readonly readyDir: string,
  ) {}

  get process(): ChildProcess {
    return this.primary.child;
  }

  get pid(): number {
    return this.primary.pid;
  }

  /** Everything the primary and its workers printed so far. */
  get output(): string {
    return this.primary.output;
  }

  /** Resolves once the primary serves, with its port. */
  async listening(): Promise<number> {
    if (!WRITES_READY_FILE) {
      this.port = Number((await this.waitFor(/listening on 127\.0\.0\.1:(\d+)/, 15_000))[1]);
      return this.port;
    }
    const ready = await this.primary.ready();
    this.port = ready.port;
    this.httpPort = ready.httpPort;
    return this.port;
  }

  /** Resolves with the first match of `pattern` in the output, waiting up to `timeoutMs`. */
  async waitFor(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const match = this.output.match(pattern);
      if (match !== null) return match;
      if (this.primary.hasExited) throw new Error(`primary exited before printing ${pattern}:\n${this.output}`);
      if (Date.now() > until) throw new Error(`timed out waiting for ${pattern}; output:\n${this.output}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  /** A new client connection, closed by stop(). */
  async connect(options: { token?: string } = {}): Promise<RondaConnection> {
    const connection = await RondaConnection.connect({ host: '127.0.0.1', port: this.port, ...options });
    this.connections.push(connection);
    return connection;
  }

  /** Sends `signal` and waits for the primary to exit (SIGKILL after `timeoutMs`). */
  kill(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<Exit> {
    return this.primary.stop(signal, timeoutMs);
  }

  waitForExit(): Promise<Exit> {
    return this.primary.exited;
  }

  /** Closes its connections, stops the primary, removes the data directory if it made it. */
  async stop(): Promise<void> {
    await Promise.all(this.connections.splice(0).map((connection) => connection.close()));
    await this.kill('SIGTERM');
    await rm(this.readyDir, { recursive: true, force: true });
    if (this.ownsDataDir) await rm(this.dataDir, { recursive: true, force: true });
  }
}

const running = new Set<Cluster>();

export interface StartOptions {
  args?: string[];
  env?: NodeJS.ProcessEnv;
  /** Use this data directory (kept afterwards) instead of a fresh temp one. */
  dataDir?: string;
  /** Resolve before the primary is listening (for tests of failed starts; see listening()). */
  wait?: boolean;
  /** A command that runs the primary (`prlimit --nofile=64:64 --`), execing it in place. */
  prefix?: string[];
  /**
   * Listen on this port instead of 0: only for a client that must be started before its server
   * (a port from unusedPort(), which the system just handed out).
   */
  port?: number;
}

/**
 * Starts a primary on 127.0.0.1, port 0 (or `port`), and resolves once it is listening. Its
 * --ready-file goes in a folder of its own (the data dir's listing stays the cluster's), unless
 * the test passes one.
 */
export async function startCluster(options: StartOptions = {}): Promise<Cluster> {
  const dataDir = options.dataDir ?? (await makeTempDir());
  const readyDir = await mkdtemp(path.join(os.tmpdir(), 'ronda-ready-'));
  const readyArgs = WRITES_READY_FILE ? ['--ready-file', path.join(readyDir, 'ready.json')] : [];
  // No fixed port in a test: the console is off unless a test asks for it (`--http-port 0`).
  if (SERVES_HTTP) readyArgs.push('--http-port', 'off');
  const primary = new PrimaryProcess({
    script: PRIMARY_SCRIPT,
    args: ['--host', '127.0.0.1', '--port', String(options.port ?? 0), '--data-dir', dataDir, ...readyArgs, ...(options.args ?? [])],
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
  });
  const cluster = new Cluster(primary, dataDir, options.dataDir === undefined, readyDir);
  running.add(cluster);
  if (options.wait !== false) await cluster.listening();
  return cluster;
}

export function makeTempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'ronda-test-'));
}

const testDirs = new Set<string>();

/** A temp directory of the test's own, removed by stopClusters() once the clusters are stopped. */
export async function testDir(): Promise<string> {
  const dir = await makeTempDir();
  testDirs.add(dir);
  return dir;
}

/** Stops every cluster started by this file, then removes every testDir(); call it from afterEach. */
export async function stopClusters(): Promise<void> {
  const clusters = [...running];
  running.clear();
  await Promise.all(clusters.map((cluster) => cluster.stop()));
  const dirs = [...testDirs];
  testDirs.clear();
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
}

/** Whether a process with this pid exists (and is not a zombie). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Pids of the live processes whose command line mentions `text`: a temp directory a test made
 * names every process started for it (a worker's --db, a bench's cluster), so none of another's.
 */
export function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || !isAlive(Number(entry))) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

/** Polls `condition` every 10 ms until it holds or `timeoutMs` passes. */
export async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A field of /proc/<pid>/status in MB (VmRSS: resident now; VmHWM: the peak so far). */
export function memoryMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const match = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
  if (match === null) throw new Error(`no ${field} for pid ${pid}`);
  return Number(match[1]) / 1024;
}
