import { expect } from 'chai';
import path from 'node:path';
import { ROOT, isAlive, startCluster, stopClusters, until } from '../helpers/cluster';
import { readRows } from '../helpers/db';
import { closeRawClients, rawClient } from '../helpers/raw-client';
import type { ServerMessage } from '../../shared/protocol';

const KINDS = path.join(ROOT, 'test', 'fixtures', 'ops-kinds.js');

async function rowCount(dataDir: string, workers: number): Promise<{ rows: number; unique: number }> {
  const ids: string[] = [];
  for (let slot = 1; slot <= workers; slot += 1) ids.push(...(await readRows(path.join(dataDir, `worker${slot}.db`))).map((row) => row.task_id));
  return { rows: ids.length, unique: new Set(ids).size };
}

describe('recycling: a worker past its limits replaced gracefully', function () {
  afterEach(async () => {
    closeRawClients();
    await stopClusters();
  });

  it('--max-worker-rss-mb 150 with a kind that leaks: workers replaced under load, no task fails, recycles apart from restarts', async function () {
    this.timeout(90_000);
    const cluster = await startCluster({ args: ['--quiet', '--handlers', KINDS, '--workers', '2', '--max-worker-rss-mb', '150'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    const first = (await client.stats()).workers.map((worker) => worker.pid as number);
    const replies: ServerMessage[] = [];
    client.onMessage((message) => {
      if (message.type === 'done' || message.type === 'failed') replies.push(message);
    });
    // 400 MiB leaked in all, 200 per slot: each slot's worker passes 150 MiB at least once. Sent in
    // steps, as a steady load, so that the once-a-second check sees each worker grow.
    const total = 400;
    for (let sent = 0; sent < total; sent += 10) {
      for (let index = sent; index < sent + 10; index += 1) client.send({ type: 'submit', id: `l${index}`, kind: 'leak', payload: { mb: 1 } });
      await new Promise((resolve) => setTimeout(resolve, 60));
    }
    await until(() => replies.length === total, 30_000, 'every task to be answered');
    expect(replies.filter((reply) => reply.type !== 'done'), 'failed').to.deep.equal([]);
    expect(new Set(replies.map((reply) => reply.id)).size).to.equal(total);
    const pidsThatRan = new Set(replies.map((reply) => (reply.type === 'done' ? (reply.result as { pid: number }).pid : 0)));
    expect(pidsThatRan.size, 'tasks ran on more workers than the first two').to.be.above(2);
    const stats = await client.stats();
    const recycles = stats.workers.map((worker) => worker.recycles ?? 0);
    expect(recycles.every((count) => count >= 1), `recycles ${recycles}`).to.equal(true);
    expect(stats.workers.map((worker) => worker.restarts), 'a recycle is not a death').to.deep.equal([0, 0]);
    for (const worker of stats.workers) expect(first).not.to.include(worker.pid);
    await until(() => first.every((pid) => !isAlive(pid)), 10_000, 'the first workers to exit');
    expect(await rowCount(cluster.dataDir, 2)).to.deep.equal({ rows: total, unique: total });
    expect(cluster.output).to.match(/recycling worker pid \d+: its resident memory is \d+ MB \(--max-worker-rss-mb 150\)/);
  });

  it('--max-tasks-per-worker 100: 1,000 pipelined tasks, every worker replaced after its hundred, none failed, each row once', async function () {
    this.timeout(60_000);
    const cluster = await startCluster({ args: ['--quiet', '--workers', '2', '--max-tasks-per-worker', '100'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    const replies: ServerMessage[] = [];
    client.onMessage((message) => {
      if (message.type === 'done' || message.type === 'failed') replies.push(message);
    });
    const total = 1_000;
    const lines = Array.from({ length: total }, (_, index) => JSON.stringify({ type: 'submit', id: `t${index}`, payload: `task ${index}` }));
    client.send(`${lines.join('\n')}\n`);
    await until(() => replies.length === total, 30_000, 'every task to be answered');
    expect(replies.filter((reply) => reply.type !== 'done'), 'failed').to.deep.equal([]);
    await until(async () => (await client.stats()).workers.every((worker) => (worker.recycles ?? 0) >= 1), 10_000, 'each slot to recycle');
    const stats = await client.stats();
    expect(stats.workers.map((worker) => worker.restarts)).to.deep.equal([0, 0]);
    expect(await rowCount(cluster.dataDir, 2)).to.deep.equal({ rows: total, unique: total });
    expect(cluster.output).to.match(/recycling worker pid \d+: it has finished \d+ tasks \(--max-tasks-per-worker 100\)/);
  });

  it('a limit below what a fresh worker uses is said once and then not checked: no forking without end', async function () {
    this.timeout(30_000);
    const cluster = await startCluster({ args: ['--quiet', '--workers', '2', '--max-worker-rss-mb', '32'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    const first = (await client.stats()).workers.map((worker) => worker.pid);
    await cluster.waitFor(/uses \d+ MB before running any task, over --max-worker-rss-mb 32: no worker is recycled for its memory; raise the limit/, 5_000);
    // Tasks flow for 2.5 s, past two more checks of each worker's memory.
    for (let round = 0; round < 25; round += 1) {
      client.send({ type: 'submit', id: `r${round}`, payload: 'still serves' });
      expect(await client.reply(`r${round}`)).to.include({ type: 'done' });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const stats = await client.stats();
    expect(stats.workers.map((worker) => worker.pid)).to.deep.equal(first);
    expect(stats.workers.map((worker) => worker.recycles)).to.deep.equal([0, 0]);
    expect(cluster.output.match(/raise the limit/g)).to.have.length(1);
  });
});
