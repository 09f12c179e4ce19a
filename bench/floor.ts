/**
 * The floor under "one at a time": the bare chain of floor-chain.ts (client, primary over
 * TCP, workers round-robin over IPC, a sqlite3 commit per task), driven one task at a time by this
 * process.
 * Run beside Ronda's own one-at-a-time runs, at the same moment of the same machine, it shows how
 * much of each task's round trip is the hops themselves (kernel wakeups, IPC, the sqlite3 thread
 * pool) and how much is Ronda's own work.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Histogram } from './histogram';
import { pacedBy, type LatencyResult } from './load';
import { messageOf } from '../shared/errors';

const CHAIN_SCRIPT = path.join(__dirname, 'floor-chain.js');
const START_TIMEOUT_MS = 15_000;
/** A reply that takes longer than this means the chain is broken, not slow. */
const REPLY_TIMEOUT_MS = 10_000;

interface FloorChain {
  port: number;
  stop(): Promise<void>;
}

export interface FloorResult {
  tasksPerS: number;
  p50: number;
  tasks: number;
}

/** Forks the bare chain with `workers` workers in a temp directory; resolves once it listens. */
async function startFloorChain(workers: number): Promise<FloorChain> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'ronda-floor-'));
  const child = fork(CHAIN_SCRIPT, ['primary', dataDir, String(workers)], { stdio: 'inherit' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    // Closing the channel ends the chain's primary, which ends its worker.
    if (child.connected) child.disconnect();
    await exited;
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    return { port: await portOf(child), stop };
  } catch (error) {
    child.kill('SIGKILL');
    await stop();
    throw error;
  }
}

function portOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    const settle = (error: Error | undefined, port = 0): void => {
      clearTimeout(timer);
      child.off('exit', onExit);
      if (error === undefined) resolve(port);
      else reject(error);
    };
    const onExit = (): void => settle(new Error('the bare chain exited before it listened'));
    const timer = setTimeout(() => settle(new Error(`the bare chain did not listen within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS);
    child.once('exit', onExit);
    child.once('message', (message: { port: number }) => settle(undefined, message.port));
  });
}

/** Tasks sent to the bare chain so far, for ids unique across runs (its table wants them). */
let sent = 0;

/** Sends one task, waits for its answer, and again, for `durationMs`. */
async function serialFloor(port: number, durationMs: number): Promise<FloorResult> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let buffered = '';
  let answered: ((error?: Error) => void) | undefined;
  socket.on('data', (text: string) => {
    buffered += text;
    if (!buffered.endsWith('\n')) return;
    buffered = '';
    answered?.();
  });
  let closed: Error | undefined;
  socket.on('error', () => undefined); // 'close' follows
  socket.once('close', () => {
    closed = new Error('the bare chain closed the connection');
    answered?.(closed);
  });
  const histogram = new Histogram();
  const startedAt = performance.now();
  try {
    while (performance.now() - startedAt < durationMs) {
      if (closed !== undefined) throw closed;
      const n = (sent += 1);
      const sentAt = performance.now();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the bare chain stopped answering')), REPLY_TIMEOUT_MS);
        answered = (error) => {
          clearTimeout(timer);
          if (error === undefined) resolve();
          else reject(error);
        };
        socket.write(`${JSON.stringify({ id: `floor-${n}`, payload: `serial ${n}` })}\n`);
      });
      histogram.record(performance.now() - sentAt);
    }
  } finally {
    socket.destroy();
  }
  const elapsedMs = performance.now() - startedAt;
  return { tasksPerS: (histogram.count / elapsedMs) * 1000, p50: histogram.percentile(50), tasks: histogram.count };
}

/**
 * An open-loop load on the bare chain: `ratePerS` tasks a second for `durationMs` on one
 * connection, each matched to its reply by id; paced by the same code as Ronda's paced runs.
 */
async function pacedFloor(port: number, ratePerS: number, durationMs: number): Promise<LatencyResult> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setEncoding('utf8');
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const waiting = new Map<string, (reply: 'done' | Error) => void>();
  let buffered = '';
  socket.on('data', (text: string) => {
    buffered += text;
    for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
      const { id } = JSON.parse(buffered.slice(0, end)) as { id: string };
      buffered = buffered.slice(end + 1);
      waiting.get(id)?.('done');
      waiting.delete(id);
    }
  });
  socket.on('error', () => undefined); // 'close' follows
  socket.once('close', () => {
    for (const settle of waiting.values()) settle(new Error('the bare chain closed the connection'));
    waiting.clear();
  });
  try {
    return await pacedBy(
      () =>
        new Promise<'done' | Error>((resolve) => {
          const id = `floor-${(sent += 1)}`;
          waiting.set(id, resolve);
          socket.write(`${JSON.stringify({ id, payload: `paced ${sent}` })}\n`);
        }),
      ratePerS,
      durationMs,
    );
  } finally {
    socket.destroy();
  }
}

/**
 * The bare chain as the bench uses it, beside Ronda's one-at-a-time runs: its results, or why it
 * has none. A chain that fails is stopped and left out; the bench goes on without it.
 */
export class Floor {
  readonly runs: FloorResult[] = [];
  /** Paced runs (see paced), kept apart from the one-at-a-time runs. */
  readonly pacedRuns: LatencyResult[] = [];
  error: string | undefined;

  private constructor(private chain: FloorChain | undefined) {}

  static async start(workers: number): Promise<Floor> {
    try {
      return new Floor(await startFloorChain(workers));
    } catch (error) {
      const floor = new Floor(undefined);
      floor.fail(error);
      return floor;
    }
  }

  /** One run of `durationMs`; a warm-up's result is not kept. */
  async run(durationMs: number, keep = true): Promise<void> {
    if (this.chain === undefined) return;
    try {
      const result = await serialFloor(this.chain.port, durationMs);
      if (keep) this.runs.push(result);
    } catch (error) {
      this.fail(error);
      await this.stop();
    }
  }

  /** One open-loop run at `ratePerS` (see pacedFloor). */
  async paced(ratePerS: number, durationMs: number): Promise<void> {
    if (this.chain === undefined) return;
    try {
      this.pacedRuns.push(await pacedFloor(this.chain.port, ratePerS, durationMs));
    } catch (error) {
      this.fail(error);
      await this.stop();
    }
  }

  async stop(): Promise<void> {
    const chain = this.chain;
    this.chain = undefined;
    await chain?.stop();
  }

  private fail(error: unknown): void {
    this.error = messageOf(error);
    this.runs.length = 0;
    this.pacedRuns.length = 0;
  }
}
