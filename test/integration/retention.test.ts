import { expect } from 'chai';
import { statSync } from 'node:fs';
import path from 'node:path';
import { openWorkerDatabase } from '../../shared/results-db';
import { all, close, openDatabase, run } from '../../shared/sqlite';
import { startCluster, stopClusters, testDir, until } from '../helpers/cluster';
import { readRows } from '../helpers/db';
import { runCli } from '../helpers/cli';

async function count(file: string): Promise<number> {
  const db = await openDatabase(file, 'readonly');
  try {
    return (await all<{ n: number }>(db, 'SELECT count(*) AS n FROM results'))[0]?.n ?? 0;
  } finally {
    await close(db);
  }
}

/** The file and its WAL: what the worker's history takes on disk. */
function bytesOnDisk(file: string): number {
  let bytes = statSync(file).size;
  try {
    bytes += statSync(`${file}-wal`).size;
  } catch {
    // No WAL at this moment.
  }
  return bytes;
}

describe('retention: --retain-rows and --retain-days', function () {
  afterEach(stopClusters);

  it('keeps each file at --retain-rows through 100,000 tasks, and its size on disk stops growing', async function () {
    this.timeout(120_000);
    const cluster = await startCluster({ args: ['--quiet', '--retain-rows', '10000'] });
    const files = [1, 2, 3].map((slot) => path.join(cluster.dataDir, `worker${slot}.db`));
    const clients = await Promise.all([1, 2, 3, 4].map(() => cluster.connect()));
    const sizes: number[][] = [];
    let sent = 0;
    for (let round = 0; round < 4; round += 1) {
      const replies = await Promise.all(
        Array.from({ length: 25_000 }, (_, i) => (clients[i % 4] as (typeof clients)[number]).submit('text', `r${(sent += 1)}`)),
      );
      expect(replies.every((reply) => reply.type === 'done')).to.equal(true);
      sizes.push(files.map(bytesOnDisk));
    }
    // Idle now: the last rows over the bound go within a prune check or two.
    for (const file of files) await until(async () => (await count(file)) === 10_000, 5_000, `${file} at 10,000 rows`);
    const rows = await readRows(files[0] as string);
    const ids = rows.map((row) => row.id);
    expect(Math.max(...ids) - Math.min(...ids), 'the newest 10,000, contiguous').to.equal(9_999);
    expect(Number(rows[rows.length - 1]?.task.slice(1)), 'the newest row is of the last tasks').to.be.above(99_900);
    console.log(`      bytes on disk per file after 25k, 50k, 75k, 100k tasks: ${sizes.map((s) => Math.round(Math.max(...s) / 1e5) / 10).join(', ')} MB`);
    // At the bound since the second round: later rounds reuse the freed pages.
    for (let slot = 0; slot < 3; slot += 1) {
      const [, second, , fourth] = sizes.map((round) => round[slot] as number);
      expect(fourth, `worker${slot + 1}.db grew from ${second} to ${fourth} bytes`).to.be.at.most((second as number) * 1.25);
    }
  });

  it('deletes rows older than --retain-days, even while idle, and keeps the rest', async function () {
    const dataDir = await testDir();
    const file = path.join(dataDir, 'worker1.db');
    const { db } = await openWorkerDatabase(file);
    const old = new Date(Date.now() - 3 * 86_400_000).toISOString();
    const recent = new Date(Date.now() - 3_600_000).toISOString();
    for (let i = 0; i < 1_200; i += 1) {
      await run(db, `INSERT INTO results (task_id, kind, task, result, status, worker, timestamp) VALUES (?, 'text', ?, 'r', 'done', 1, ?)`, [
        `old-${i}`,
        `old ${i}`,
        i < 1_100 ? old : recent,
      ]);
    }
    await close(db);
    const cluster = await startCluster({ args: ['--quiet', '--retain-days', '1', '--workers', '1'], dataDir });
    await until(async () => (await count(file)) === 100, 5_000, 'the 1,100 rows older than a day to go');
    const client = await cluster.connect();
    expect((await client.submit('text', 'new')).type).to.equal('done');
    const rows = await readRows(file);
    expect(rows.map((row) => row.task).slice(-2)).to.deep.equal(['old 1199', 'new']);
    expect(rows).to.have.length(101);
  });

  it('ronda prune does the same to a stopped cluster\'s files and shrinks them; it refuses while the cluster runs', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await cluster.connect();
    await Promise.all(Array.from({ length: 3_000 }, (_, i) => client.submit('text', `p${i} ${'x'.repeat(200)}`)));
    const running = await runCli(['prune', '--data-dir', cluster.dataDir, '--retain-rows', '100']);
    expect(running.code).to.equal(1);
    expect(running.stderr).to.match(/is in use by a running Ronda cluster or another prune \(pid \d+\): stop it first, or start the cluster with --retain-rows\/--retain-days to prune as it runs/);
    expect(await count(path.join(cluster.dataDir, 'worker1.db'))).to.equal(1_000);

    await cluster.kill('SIGTERM');
    const pruned = await runCli(['prune', '--data-dir', cluster.dataDir, '--retain-rows', '100']);
    expect(pruned.code, pruned.stderr).to.equal(0);
    const lines = pruned.stdout.trim().split('\n');
    expect(lines).to.have.length(3);
    for (const [index, line] of lines.entries()) {
      const match = new RegExp(`^worker${index + 1}\\.db: 900 rows deleted, 100 kept, ([\\d.]+) MB -> ([\\d.]+) MB$`).exec(line);
      expect(match, line).to.not.equal(null);
      expect(Number(match?.[2])).to.be.below(Number(match?.[1]));
    }
    for (const slot of [1, 2, 3]) expect(await count(path.join(cluster.dataDir, `worker${slot}.db`))).to.equal(100);

    const restarted = await startCluster({ args: ['--quiet'], dataDir: cluster.dataDir });
    expect((await (await restarted.connect()).submit('text', 'after')).type, 'the cluster starts on pruned files').to.equal('done');
    const none = await runCli(['prune', '--data-dir', cluster.dataDir]);
    expect(none.code).to.equal(2);
    expect(none.stderr).to.match(/--retain-rows or --retain-days is needed: say what to keep/);
  });

  it('keeps the newest N rows whatever gaps the ids have, and ronda prune judges every row\'s age', async function () {
    const dataDir = await testDir();
    const file = path.join(dataDir, 'worker1.db');
    const { db } = await openWorkerDatabase(file);
    const now = Date.now();
    // Ids with gaps (every third gone, then a run of 90), and the newest 500 rows stamped 30 days
    // ago: a clock that stepped back, as far as the order of the rows goes.
    for (let id = 1; id <= 2_000; id += 1) {
      if ((id < 1_500 && id % 3 === 0) || (id > 1_800 && id <= 1_890)) continue;
      const stamp = new Date(id > 1_500 ? now - 30 * 86_400_000 : now - 3_600_000).toISOString();
      await run(db, `INSERT INTO results (id, task_id, kind, task, result, status, worker, timestamp) VALUES (?, ?, 'text', 't', 'r', 'done', 1, ?)`, [id, `t${id}`, stamp]);
    }
    await close(db);
    const pruned = await runCli(['prune', '--data-dir', dataDir, '--retain-days', '7']);
    expect(pruned.code, pruned.stderr).to.equal(0);
    expect(pruned.stdout).to.match(/^worker1\.db: 410 rows deleted, 1,001 kept/);

    const cluster = await startCluster({ args: ['--quiet', '--workers', '1', '--retain-rows', '300'], dataDir });
    await until(async () => (await count(file)) === 300, 5_000, 'the newest 300 rows to be left');
    const ids = (await readRows(file)).map((row) => row.id);
    expect(ids[0]).to.equal(1_052); // of ids 1-1,500 without every third below 1,500, the 300 newest start here
    void cluster;
    const help = await runCli(['prune', '--help']);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.match(/^Usage: ronda prune --data-dir <dir>/);
  });
});
