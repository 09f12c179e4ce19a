import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ServerMessage } from '../../shared/protocol';
import { MIN_UPTIME_MS } from '../../server/slot-policy';
import { isAlive, startCluster, stopClusters, until } from '../helpers/cluster';
import { readRows, type StoredRow } from '../helpers/db';
import { closeRawClients, rawClient, type RawClient } from '../helpers/raw-client';

const WORKERS = 3;
const CLIENTS = 4;
const TASKS_PER_CLIENT = 2_000;
/** Submits each client keeps unanswered at once. */
const WINDOW = 4;
/** The killer strikes every KILL_MIN_MS to KILL_MAX_MS. */
const KILL_MIN_MS = 200;
const KILL_MAX_MS = 400;
/**
 * Share of kills that may hit a worker younger than MIN_UPTIME_MS. Those count as a crash loop and
 * grow the slot's respawn backoff; the rest hit mature workers, so the run stays bounded in time
 * while kills still land right after a respawn, in the middle of redelivery.
 */
const YOUNG_KILL_SHARE = 0.25;
/** The whole run, load and kills, must end within this. */
const RUN_LIMIT_MS = 45_000;

type Kind = 'text' | 'hash' | 'sleep' | 'fib';

interface Submitted {
  id: string;
  kind: Kind;
  payload: unknown;
}

function taskFor(id: string, i: number): Submitted {
  switch (i % 4) {
    case 0:
      return { id, kind: 'text', payload: `tarea ${id}` };
    case 1:
      return { id, kind: 'hash', payload: `hash me ${id}` };
    case 2:
      return { id, kind: 'sleep', payload: { ms: 2 + (i % 19) } };
    default:
      return { id, kind: 'fib', payload: { n: 10 + (i % 12) } };
  }
}

function fib(n: number): number {
  let [a, b] = [0, 1];
  for (let i = 0; i < n; i += 1) [a, b] = [b, a + b];
  return a;
}

/** The result a `done` reply must carry for this task, had it run on `worker`. */
function expectedResult(task: Submitted, worker: number): unknown {
  switch (task.kind) {
    case 'text':
      return `Task '${String(task.payload)}' processed by worker ${worker}`;
    case 'hash':
      return createHash('sha256').update(String(task.payload)).digest('hex');
    case 'sleep':
      return { sleptMs: (task.payload as { ms: number }).ms };
    case 'fib':
      return fib((task.payload as { n: number }).n);
  }
}

/** Sends `tasks` over one connection, keeping WINDOW unanswered; resolves when all are answered. */
function pipeline(client: RawClient, tasks: readonly Submitted[]): Promise<void> {
  return new Promise((resolve) => {
    let sent = 0;
    let answered = 0;
    const fill = (): void => {
      while (sent < tasks.length && sent - answered < WINDOW) {
        const task = tasks[sent] as Submitted;
        client.send({ type: 'submit', id: task.id, kind: task.kind, payload: task.payload });
        sent += 1;
      }
    };
    client.onMessage((message) => {
      if (message.type !== 'done' && message.type !== 'failed') return;
      answered += 1;
      if (answered >= tasks.length) resolve();
      else fill();
    });
    fill();
  });
}

function parentOf(pid: number): number | undefined {
  try {
    const match = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^PPid:\s+(\d+)/m);
    return match === null ? undefined : Number(match[1]);
  } catch {
    return undefined;
  }
}

/** A worker of this test's primary, checked before each kill so that no stranger is signalled. */
function isOurWorker(pid: number, primaryPid: number): boolean {
  try {
    return (
      parentOf(pid) === primaryPid &&
      readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('ronda worker ')
    );
  } catch {
    return false;
  }
}

/** Every process whose parent is `pid` (workers, and a standby if the primary keeps one). */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((child) => parentOf(child) === pid);
}

describe('chaos: SIGKILL a random worker every few hundred ms under pipelined load', function () {
  afterEach(async () => {
    closeRawClients();
    await stopClusters();
  });

  it('answers every task exactly once and stores every done task exactly once', async function () {
    this.timeout(RUN_LIMIT_MS + 15_000);
    const cluster = await startCluster({ args: ['--quiet', '--workers', String(WORKERS)] });
    const observer = await cluster.connect();
    const pidsSeen = new Set<number>();
    const notePids = async (): Promise<void> => {
      for (const worker of (await observer.stats()).workers) if (worker.pid !== null) pidsSeen.add(worker.pid);
    };
    await notePids();

    const tasks = new Map<string, Submitted>();
    const clients: RawClient[] = [];
    const loads: Promise<void>[] = [];
    for (let c = 0; c < CLIENTS; c += 1) {
      const client = await rawClient(cluster.port);
      const mine = Array.from({ length: TASKS_PER_CLIENT }, (_, i) => taskFor(`c${c}-${i}`, i + c));
      for (const task of mine) tasks.set(task.id, task);
      clients.push(client);
      loads.push(pipeline(client, mine));
    }

    // The killer: a random ready worker, pid from stats, every KILL_MIN_MS..KILL_MAX_MS.
    let loading = true;
    const kills: number[] = [];
    const killer = (async () => {
      while (loading) {
        await new Promise((resolve) => setTimeout(resolve, KILL_MIN_MS + Math.random() * (KILL_MAX_MS - KILL_MIN_MS)));
        if (!loading) break;
        const workers = (await observer.stats()).workers;
        for (const worker of workers) if (worker.pid !== null) pidsSeen.add(worker.pid);
        const ready = workers.filter(
          (worker) =>
            worker.state === 'ready' &&
            worker.pid !== null &&
            (worker.uptimeMs >= MIN_UPTIME_MS || Math.random() < YOUNG_KILL_SHARE),
        );
        const victim = ready[Math.floor(Math.random() * ready.length)];
        if (victim?.pid == null || !isOurWorker(victim.pid, cluster.pid)) continue;
        process.kill(victim.pid, 'SIGKILL');
        kills.push(victim.pid);
      }
    })();

    const started = Date.now();
    let limit: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      Promise.all(loads).then(() => true),
      new Promise<boolean>((resolve) => (limit = setTimeout(() => resolve(false), RUN_LIMIT_MS))),
    ]);
    clearTimeout(limit);
    loading = false;
    await killer;
    const elapsedMs = Date.now() - started;
    await notePids();
    for (const pid of childrenOf(cluster.pid)) pidsSeen.add(pid);
    const stats = await observer.stats();

    // Shut down in order: any late duplicate reply would still reach the clients before they close.
    expect(await cluster.kill('SIGTERM')).to.deep.equal({ code: 0, signal: null });
    await Promise.all(clients.map((client) => client.waitClosed()));

    const replies = new Map<string, ServerMessage[]>();
    const errors: ServerMessage[] = [];
    for (const client of clients) {
      for (const message of client.messages) {
        if (message.type === 'done' || message.type === 'failed') {
          replies.set(message.id, [...(replies.get(message.id) ?? []), message]);
        } else if (!(message.type === 'error' && message.code === 'SHUTTING_DOWN')) {
          errors.push(message);
        }
      }
    }
    const missing = [...tasks.keys()].filter((id) => !replies.has(id));
    const duplicated = [...replies].filter(([, list]) => list.length > 1).map(([id]) => id);
    const strangers = [...replies.keys()].filter((id) => !tasks.has(id));
    const lost = [...replies].filter(([, [reply]]) => reply?.type === 'failed' && reply.error.code === 'WORKER_LOST');
    const otherFailures = [...replies].filter(
      ([, [reply]]) => reply?.type === 'failed' && reply.error.code !== 'WORKER_LOST',
    );

    const rows: StoredRow[] = [];
    for (let slot = 1; slot <= WORKERS; slot += 1) {
      rows.push(...(await readRows(path.join(cluster.dataDir, `worker${slot}.db`))));
    }
    const rowsById = new Map<string, StoredRow[]>();
    for (const row of rows) rowsById.set(row.client_id ?? '', [...(rowsById.get(row.client_id ?? '') ?? []), row]);

    process.stdout.write(
      `      chaos: ${tasks.size} tasks, ${kills.length} workers killed, ${lost.length} WORKER_LOST, ` +
        `${stats.workers.map((w) => `slot ${w.slot}: ${w.restarts} restarts`).join(', ')}, ${elapsedMs} ms\n`,
    );

    expect(finished, `every task answered within ${RUN_LIMIT_MS} ms (${missing.length} missing)`).to.equal(true);
    expect(kills.length, 'workers killed during the run').to.be.at.least(5);
    expect(errors, 'protocol errors').to.deep.equal([]);
    expect(missing, 'ids with no reply').to.deep.equal([]);
    expect(duplicated, 'ids with more than one reply').to.deep.equal([]);
    expect(strangers, 'replies for ids never submitted').to.deep.equal([]);
    expect(otherFailures.map(([, [reply]]) => reply), 'failures other than WORKER_LOST').to.deep.equal([]);

    for (const [id, [reply]] of replies) {
      const task = tasks.get(id) as Submitted;
      const stored = rowsById.get(id) ?? [];
      expect(stored, `rows for ${id}, replied ${JSON.stringify(reply)}`).to.have.length(1);
      const row = stored[0] as StoredRow;
      if (reply?.type === 'done') {
        expect(reply.result, `result of ${id}`).to.deep.equal(expectedResult(task, reply.worker));
        expect(row.status, `status of ${id}`).to.equal('done');
        expect(row.worker, `worker of ${id}`).to.equal(reply.worker);
        expect(row.result_json === 1 ? JSON.parse(row.result ?? 'null') : row.result).to.deep.equal(reply.result);
      } else {
        expect(row.status, `status of ${id}`).to.equal('failed');
      }
    }
    expect(rows.filter((row) => !tasks.has(row.client_id ?? '')), 'rows without a submit').to.deep.equal([]);
    expect(rows).to.have.length(tasks.size);

    await until(() => [...pidsSeen, cluster.pid].every((pid) => !isAlive(pid)), 5_000, 'every process to be gone');
  });
});
