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
    expect(running.stderr).to.match(/is in use by a running Ronda cluster \(its primary is pid \d+\): stop it first, or start it with --retain-rows\/--retain-days to prune as it runs/);
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
});
