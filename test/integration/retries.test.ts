import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ROOT, startCluster, stopClusters, testDir, until } from '../helpers/cluster';
import { runCli } from '../helpers/cli';
import { readRows } from '../helpers/db';
import { request } from '../helpers/http';
import { closeRawClients, rawClient } from '../helpers/raw-client';
import { connect } from '../../client/index';

const KINDS = path.join(ROOT, 'test', 'fixtures', 'ops-kinds.js');
const HOSTILE_KINDS = path.join(ROOT, 'test', 'fixtures', 'hostile-kinds.js');

/** The pids of the workers that ran task `key` of the flaky kind, in run order. */
async function runsOf(dir: string, key: string): Promise<number[]> {
  try {
    return JSON.parse(await readFile(path.join(dir, key), 'utf8')) as number[];
  } catch {
    return [];
  }
}

/** Every row of the cluster with this client id, across its files, with the file it is in. */
async function rowsFor(dataDir: string, clientId: string, workers = 3): Promise<{ slot: number; status: string; attempts: number; result: string | null }[]> {
  const found = [];
  for (let slot = 1; slot <= workers; slot += 1) {
    for (const row of await readRows(path.join(dataDir, `worker${slot}.db`))) {
      if (row.client_id === clientId) found.push({ slot, status: row.status, attempts: row.attempts, result: row.result });
    }
  }
  return found;
}

describe('retries: a failed attempt runs again, and only the final outcome is stored', function () {
  afterEach(async () => {
    closeRawClients();
    await stopClusters();
  });

  it('a task that fails its first two attempts is done on the third, each on the next worker in turn, stored once with attempts 3', async function () {
    const dir = await testDir();
    const cluster = await startCluster({ args: ['--quiet', '--handlers', KINDS] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    const pids = (await client.stats()).workers.map((worker) => worker.pid);
    const startedAt = Date.now();
    client.send({ type: 'submit', id: 'f', kind: 'flaky', payload: { dir, key: 'f', failures: 2 }, retries: 3 });
    const reply = await client.reply('f');
    const took = Date.now() - startedAt;
    expect(reply).to.deep.include({ type: 'done', attempts: 3, result: { runs: 3, pid: reply.type === 'done' ? (reply.result as { pid: number }).pid : 0 } });
    const runs = await runsOf(dir, 'f');
    expect(runs).to.have.length(3);
    // Round-robin: three runs, three workers (the ring moves on by one each time nothing else is sent).
    expect(new Set(runs).size).to.equal(3);
    for (const pid of runs) expect(pids).to.include(pid);
    // Waited out the backoff: the first retry 50-100 ms, the second 100-200 ms (--retry-base-ms 100).
    expect(took).to.be.at.least(150);
    const rows = await rowsFor(cluster.dataDir, 'f');
    expect(rows).to.have.length(1);
    expect(rows[0]).to.include({ status: 'done', attempts: 3 });
    // The row is in the file of the worker that ran the last attempt.
    expect(rows[0]?.slot).to.equal(pids.indexOf(runs[2] as number) + 1);
    const stats = await client.stats();
    expect(stats.workers.reduce((sum, worker) => sum + worker.failed, 0), 'failed attempts are not failures').to.equal(0);
  });

  it('retries exhausted: the last failure is the answer, stored once with the attempt count', async function () {
    const dir = await testDir();
    const cluster = await startCluster({ args: ['--quiet', '--handlers', KINDS, '--retry-base-ms', '10'] });
    const client = await connect({ port: cluster.port });
    try {
      const failure = await client.submit('flaky', { dir, key: 'x', failures: 10 }, { id: 'x', retries: 2 }).catch((error: unknown) => error);
      expect(failure).to.include({ code: 'HANDLER_FAILED', message: 'run 3 of x fails on purpose' });
      expect(await runsOf(dir, 'x')).to.have.length(3);
      const rows = await rowsFor(cluster.dataDir, 'x');
      expect(rows).to.have.length(1);
      expect(rows[0]).to.include({ status: 'failed', attempts: 3 });
      expect(JSON.parse(rows[0]?.result ?? '{}')).to.deep.equal({ code: 'HANDLER_FAILED', message: 'run 3 of x fails on purpose' });
      // The library's reply says so too, and results() carry the count.
      const done = await client.submit('flaky', { dir, key: 'y', failures: 1 }, { id: 'y', retries: 1 });
      expect(done.attempts).to.equal(2);
      const [row] = await client.results({ taskId: 'y' });
      expect(row).to.include({ status: 'done', attempts: 2 });
    } finally {
      await client.close();
    }
  });

  it('BAD_PAYLOAD and WORKER_LOST are not retried; a task without retries gets no attempts field', async function () {
    this.timeout(30_000);
    const cluster = await startCluster({ args: ['--quiet', '--handlers', HOSTILE_KINDS, '--max-attempts', '1'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    client.send({ type: 'submit', id: 'bad', kind: 'sleep', payload: { ms: 'long' }, retries: 3 });
    const bad = await client.reply('bad');
    expect(bad).to.deep.include({ type: 'failed', attempts: 1 });
    expect(bad.type === 'failed' && bad.error.code).to.equal('BAD_PAYLOAD');
    client.send({ type: 'submit', id: 'crash', kind: 'crash', payload: null, retries: 3 });
    const lost = await client.reply('crash', 20_000);
    expect(lost).to.deep.include({ type: 'failed', attempts: 1 });
    expect(lost.type === 'failed' && lost.error.code).to.equal('WORKER_LOST');
    client.send({ type: 'submit', id: 'plain', kind: 'text', payload: 'p' });
    const plain = await client.reply('plain');
    expect(plain.type).to.equal('done');
    expect(plain).not.to.have.property('attempts');
    const rows = await rowsFor(cluster.dataDir, 'crash');
    expect(rows.map((row) => [row.status, row.attempts])).to.deep.equal([['failed', 1]]);
  });

  it('a TIMEOUT is retried: the worker killed for the time limit, the task run again, done on its second attempt', async function () {
    this.timeout(30_000);
    const dir = await testDir();
    const cluster = await startCluster({ args: ['--quiet', '--handlers', KINDS, '--min-task-timeout-ms', '100'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    client.send({ type: 'submit', id: 't', kind: 'flaky', payload: { dir, key: 't', failures: 1, hang: true }, timeoutMs: 300, retries: 1 });
    const reply = await client.reply('t', 20_000);
    expect(reply).to.deep.include({ type: 'done', attempts: 2 });
    const runs = await runsOf(dir, 't');
    expect(runs).to.have.length(2);
    expect(runs[0]).not.to.equal(runs[1]);
    const rows = await rowsFor(cluster.dataDir, 't');
    expect(rows.map((row) => [row.status, row.attempts])).to.deep.equal([['done', 2]]);
    // Without retries the same task times out, as before.
    client.send({ type: 'submit', id: 'u', kind: 'flaky', payload: { dir, key: 'u', failures: 1, hang: true }, timeoutMs: 300 });
    const timedOut = await client.reply('u', 20_000);
    expect(timedOut.type === 'failed' && timedOut.error.code).to.equal('TIMEOUT');
  });

  it('a retry waiting while the cluster shuts down runs at once and is answered, not lost', async function () {
    this.timeout(30_000);
    const dir = await testDir();
    // A first retry would wait 10-20 s.
    const cluster = await startCluster({ args: ['--quiet', '--handlers', KINDS, '--retry-base-ms', '20000'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    client.send({ type: 'submit', id: 'w', kind: 'flaky', payload: { dir, key: 'w', failures: 1 }, retries: 2 });
    await until(async () => (await runsOf(dir, 'w')).length === 1, 5_000, 'the first attempt to fail');
    await until(async () => (await client.stats()).workers.every((worker) => worker.inflight === 0), 5_000, 'the failed attempt to leave its worker');
    expect((await client.stats()).queued).to.equal(0);
    expect((await client.stats()).retrying).to.equal(1);
    const stoppedAt = Date.now();
    const exit = cluster.kill('SIGTERM');
    const reply = await client.reply('w', 10_000);
    expect(reply).to.deep.include({ type: 'done', attempts: 2 });
    expect(Date.now() - stoppedAt, 'it did not wait out its delay').to.be.below(5_000);
    expect(await exit).to.deep.equal({ code: 0, signal: null });
    const rows = await rowsFor(cluster.dataDir, 'w');
    expect(rows.map((row) => [row.status, row.attempts])).to.deep.equal([['done', 2]]);
  });

  it('a retry waiting its delay can be cancelled: stored CANCELLED with the runs it had', async function () {
    const dir = await testDir();
    const cluster = await startCluster({ args: ['--quiet', '--handlers', KINDS, '--retry-base-ms', '20000'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    client.send({ type: 'submit', id: 'c', kind: 'flaky', payload: { dir, key: 'c', failures: 1 }, retries: 2 });
    await until(async () => (await runsOf(dir, 'c')).length === 1, 5_000, 'the first attempt to fail');
    await until(async () => (await client.stats()).workers.every((worker) => worker.inflight === 0), 5_000, 'the failed attempt to leave its worker');
    client.send({ type: 'cancel', id: 'k', taskId: 'c' });
    expect(await client.reply('k')).to.include({ type: 'cancel', state: 'queued' });
    const reply = await client.reply('c');
    expect(reply).to.deep.include({ type: 'failed', attempts: 1 });
    expect(reply.type === 'failed' && reply.error.code).to.equal('CANCELLED');
    expect(await runsOf(dir, 'c')).to.have.length(1);
    const rows = await rowsFor(cluster.dataDir, 'c');
    expect(rows.map((row) => [row.status, row.attempts])).to.deep.equal([['failed', 1]]);
  });

  it('a retry whose delay is over but that still waits for a worker, cancelled, counts only the attempts that ran', async function () {
    this.timeout(20_000);
    const dir = await testDir();
    const cluster = await startCluster({ args: ['--quiet', '--handlers', KINDS, '--workers', '1', '--max-inflight-per-worker', '1', '--retry-base-ms', '400'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    client.send({ type: 'submit', id: 'q', kind: 'flaky', payload: { dir, key: 'q', failures: 1 }, retries: 2 });
    await until(async () => (await runsOf(dir, 'q')).length === 1, 5_000, 'the first attempt to fail');
    // The only worker is busy for 2 s: the retry's delay (200-400 ms) ends while it waits in the queue.
    client.send({ type: 'submit', id: 'busy', kind: 'sleep', payload: { ms: 2_000 } });
    await until(async () => {
      const stats = await client.stats();
      return stats.queued === 1 && stats.retrying === 0;
    }, 5_000, 'the retry to wait in the queue');
    client.send({ type: 'cancel', id: 'k', taskId: 'q' });
    expect(await client.reply('k')).to.include({ type: 'cancel', state: 'queued' });
    const reply = await client.reply('q');
    expect(reply).to.deep.include({ type: 'failed', attempts: 1 });
    expect(await runsOf(dir, 'q')).to.have.length(1);
    const rows = await rowsFor(cluster.dataDir, 'q', 1);
    expect(rows.map((row) => [row.status, row.attempts])).to.deep.equal([['failed', 1]]);
  });

  it('refuses retries past --max-retries, negative or fractional, naming the field and the option; HTTP and the CLI take them', async function () {
    const dir = await testDir();
    const cluster = await startCluster({ args: ['--quiet', '--handlers', KINDS, '--max-retries', '2', '--retry-base-ms', '10', '--http-port', '0'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    for (const [id, retries] of [['a', 3], ['b', -1], ['c', 1.5]] as const) {
      client.send({ type: 'submit', id, kind: 'text', payload: 'x', retries });
      expect(await client.reply(id)).to.deep.equal({
        type: 'error',
        code: 'BAD_MESSAGE',
        id,
        message: "retries must be a whole number from 0 to 2 (the server's --max-retries)",
      });
    }
    const refused = await request(cluster.httpPort as number, '/api/tasks', { body: { kind: 'text', payload: 'x', retries: 3 } });
    expect(refused.status).to.equal(400);
    expect(refused.json.error.message).to.match(/retries must be a whole number from 0 to 2/);
    const http = await request(cluster.httpPort as number, '/api/tasks', { body: { kind: 'flaky', payload: { dir, key: 'h', failures: 1 }, retries: 2 } });
    expect(http.status).to.equal(200);
    expect(http.json).to.include({ type: 'done', attempts: 2 });
    const cli = await runCli(['submit', '--port', String(cluster.port), '--json', '--retries', '2', '--kind', 'flaky', JSON.stringify({ dir, key: 'cli', failures: 2 })]);
    expect(cli.code, cli.stderr).to.equal(0);
    expect(JSON.parse(cli.stdout)).to.include({ type: 'done', attempts: 3 });
  });
});
