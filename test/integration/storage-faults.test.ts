import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdir, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ServerMessage } from '../../shared/protocol';
import { close, exec, openDatabase } from '../../shared/sqlite';
import { processesMentioning, startCluster, stopClusters, testDir, until } from '../helpers/cluster';
import { integrityCheck, readRows } from '../helpers/db';
import { closeRawClients, rawClient, type RawClient } from '../helpers/raw-client';

type Done = Extract<ServerMessage, { type: 'done' }>;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `mount` (these tests need root, as CI has); false when this machine does not allow it. */
function mount(...args: string[]): boolean {
  try {
    execFileSync('mount', args, { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function umount(target: string): void {
  try {
    // Lazy: a process of a failed test may still hold a file there.
    execFileSync('umount', ['-l', target], { stdio: 'ignore' });
  } catch {
    // Not mounted.
  }
}

/** Submits `count` text tasks in one write and resolves every reply. */
async function submitMany(client: RawClient, prefix: string, count: number, timeoutMs = 20_000): Promise<ServerMessage[]> {
  let lines = '';
  for (let i = 0; i < count; i += 1) lines += `${JSON.stringify({ type: 'submit', id: `${prefix}${i}`, payload: `${prefix}${i} ${'p'.repeat(200)}` })}\n`;
  client.send(lines);
  return Promise.all(Array.from({ length: count }, (_, i) => client.reply(`${prefix}${i}`, timeoutMs)));
}

async function storedTaskIds(dataDir: string, slots: number): Promise<Set<string>> {
  const ids = new Set<string>();
  for (let slot = 1; slot <= slots; slot += 1) {
    for (const row of await readRows(path.join(dataDir, `worker${slot}.db`))) ids.add(row.task_id);
  }
  return ids;
}

describe('storage faults: a slot fails loudly and recovers when the cause goes away', function () {
  const mounts: string[] = [];
  afterEach(async function () {
    closeRawClients();
    // Before the clusters' temp folders are removed: a mount point cannot be.
    for (const target of mounts.splice(0).reverse()) umount(target);
    await stopClusters();
  });

  it('does not serve from a file it cannot write: the slot says why, the others serve, it comes back', async function () {
    this.timeout(40_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    const file = path.join(cluster.dataDir, 'worker1.db');
    // The running worker keeps writing through the file it has open; a new one opens it read-only.
    if (!mount('--bind', file, file)) this.skip();
    mounts.push(file);
    expect(mount('-o', 'remount,bind,ro', file), 'remount read-only').to.equal(true);
    process.kill((await client.stats()).workers[0]?.pid as number, 'SIGKILL');

    await cluster.waitFor(/\[worker 1\] worker pid \d+ exited before it was ready \(cannot write .*worker1\.db: SQLITE_(READONLY|CANTOPEN)/, 10_000);
    const slot1 = (await client.stats()).workers[0];
    expect(slot1?.state).to.not.equal('ready');
    expect(slot1?.problem).to.match(/cannot write .*worker1\.db/);
    const replies = await submitMany(client, 'ro', 300);
    expect(replies.filter((reply) => reply.type !== 'done'), 'tasks that failed').to.deep.equal([]);
    expect(new Set(replies.map((reply) => reply.type === 'done' && reply.worker))).to.deep.equal(new Set([2, 3]));

    // Write access is back: a new worker can write, and slot 1 serves again.
    umount(file);
    mounts.splice(mounts.indexOf(file), 1);
    await until(async () => (await client.stats()).workers[0]?.state === 'ready', 15_000, 'slot 1 ready again');
    expect(cluster.output).to.match(/\[worker 1\] serving again \(it had: /);
    const after = await submitMany(client, 'rw', 30);
    expect(after.filter((reply) => reply.type === 'done' && reply.worker === 1)).to.have.length(10);
    expect((await readRows(file)).filter((row) => row.task.startsWith('rw'))).to.have.length(10);
  });

  it('stops a worker whose file is deleted under it; every task sent afterwards is stored', async function () {
    this.timeout(40_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    const file = path.join(cluster.dataDir, 'worker2.db');
    const DELETED_AFTER_BATCH = 20;
    // A steady load before, during and after the deletion.
    const batches: Promise<ServerMessage[]>[] = [];
    for (let batch = 0; batch < 60; batch += 1) {
      batches.push(submitMany(client, `b${batch}-`, 100, 30_000));
      await sleep(20);
      if (batch === DELETED_AFTER_BATCH) {
        for (const suffix of ['', '-wal', '-shm']) await unlink(`${file}${suffix}`).catch(() => undefined);
      }
    }
    const replies = (await Promise.all(batches)).flat();
    await cluster.waitFor(/\[worker 2\] worker pid \d+ died \(cannot store results in .*worker2\.db: .*was deleted or replaced/, 5_000);
    expect(replies.filter((reply) => reply.type !== 'done'), 'tasks that failed').to.deep.equal([]);

    // What was committed before the deletion went with the file; nothing sent after it may have.
    // (Sent after, not acknowledged after: on a loaded machine a reply to a task committed before
    // the deletion may arrive well after it.)
    const stored = await storedTaskIds(cluster.dataDir, 3);
    const sentAfter = (reply: Done): boolean => Number(/^b(\d+)-/.exec(reply.id ?? '')?.[1] ?? -1) > DELETED_AFTER_BATCH;
    const late = replies.filter((reply): reply is Done => reply.type === 'done' && sentAfter(reply));
    expect(late.length).to.be.greaterThan(300);
    expect(late.filter((reply) => !stored.has(reply.taskId)).map((reply) => reply.taskId), 'acknowledged, not stored').to.deep.equal([]);
  });

  it('answers every task on a full disk, and serves again once there is room', async function () {
    this.timeout(60_000);
    const dataDir = await testDir();
    if (!mount('-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', dataDir)) this.skip();
    mounts.push(dataDir);
    const cluster = await startCluster({ args: ['--quiet', '--max-attempts', '2'], dataDir });
    const client = await rawClient(cluster.port);
    // Fill what is left but a little.
    const filler = path.join(dataDir, 'filler');
    await writeFile(filler, Buffer.alloc(0));
    for (let mb = 0; mb < 3; mb += 1) await writeFile(filler, Buffer.alloc(256 * 1024), { flag: 'a' }).catch(() => undefined);
    for (let kb = 0; kb < 3 * 1024; kb += 16) {
      try {
        await writeFile(filler, Buffer.alloc(16 * 1024), { flag: 'a' });
      } catch {
        break;
      }
    }
    const full = await submitMany(client, 'full', 200, 30_000);
    expect(cluster.output).to.match(/SQLITE_FULL/);
    expect((await client.stats()).workers.map((worker) => worker.problem)).to.satisfy((problems: unknown[]) =>
      problems.some((problem) => /SQLITE_FULL: database or disk is full \(the disk is full\)/.test(String(problem))),
    );
    for (const reply of full) {
      expect(['done', 'INTERNAL']).to.include(reply.type === 'failed' ? reply.error.code : reply.type);
    }
    await unlink(filler);
    await until(async () => (await client.stats()).workers.every((worker) => worker.state === 'ready'), 20_000, 'every slot ready');
    const after = await submitMany(client, 'room', 30);
    expect(after.filter((reply) => reply.type !== 'done')).to.deep.equal([]);
    for (let slot = 1; slot <= 3; slot += 1) expect(await integrityCheck(path.join(dataDir, `worker${slot}.db`))).to.equal('ok');
  });

  it('waits for a file another process holds locked, then stores', async function () {
    this.timeout(20_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    const db = await openDatabase(path.join(cluster.dataDir, 'worker1.db'), 'readwrite');
    await exec(db, 'BEGIN EXCLUSIVE');
    const replies = submitMany(client, 'locked', 30);
    await sleep(1_500);
    await exec(db, 'COMMIT');
    await close(db);
    expect((await replies).filter((reply) => reply.type !== 'done')).to.deep.equal([]);
    expect((await client.stats()).workers.map((worker) => worker.restarts)).to.deep.equal([0, 0, 0]);
  });

  it('refuses to start on a file that is not a database, naming it once, leaving no worker', async function () {
    const dataDir = await testDir();
    await mkdir(dataDir, { recursive: true });
    await writeFile(path.join(dataDir, 'worker2.db'), Buffer.alloc(8192, 0x5a));
    const cluster = await startCluster({ args: ['--quiet'], dataDir, wait: false });
    expect((await cluster.waitForExit()).code).to.equal(1);
    const reasons = cluster.output.match(/worker2\.db: SQLITE_NOTADB/g) ?? [];
    expect(reasons, cluster.output).to.have.length(1);
    expect(cluster.output).to.match(/could not start: worker 2: .*cannot (open|write) .*worker2\.db: SQLITE_NOTADB: file is not a database \(it is not a Ronda result file/);
    await until(() => processesMentioning(dataDir).length === 0, 3_000, 'no worker left');
  });
});
