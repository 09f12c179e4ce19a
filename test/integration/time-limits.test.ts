import { expect } from 'chai';
import path from 'node:path';
import type { ServerMessage, StatsReply } from '../../shared/protocol';
import { ROOT, startCluster, stopClusters } from '../helpers/cluster';
import { closeRawClients, rawClient, type RawClient } from '../helpers/raw-client';

const HOSTILE_KINDS = path.join(ROOT, 'test', 'fixtures', 'hostile-kinds.js');

const restarts = (stats: StatsReply): number => stats.workers.reduce((sum, worker) => sum + worker.restarts, 0);

/** Sends every submit in one write and waits for a reply to each id. */
async function pipeline(client: RawClient, submits: object[], timeoutMs: number): Promise<ServerMessage[]> {
  client.send(submits.map((submit) => JSON.stringify(submit)).join('\n') + '\n');
  const ids = new Set(submits.map((submit) => (submit as { id: string }).id));
  await client.next(() => client.messages.filter((message) => 'id' in message && ids.has(message.id as string)).length >= ids.size, timeoutMs);
  return client.messages.filter((message) => 'id' in message && ids.has(message.id as string));
}

describe('time limits count a task\'s own running time', function () {
  afterEach(async function () {
    closeRawClients();
    await stopClusters();
  });

  it('lets a CPU-bound burst run: 150 tasks of 30 ms, 50 to a worker at once, under a 1 s limit', async function () {
    this.timeout(60_000);
    // Each worker is handed its 50 tasks together: 1.5 s of CPU each, more on 2 cores, far past
    // 1 s from when they were sent, and none near it from when it started.
    const cluster = await startCluster({ args: ['--quiet', '--handlers', HOSTILE_KINDS, '--task-timeout-ms', '1000'] });
    const client = await rawClient(cluster.port);
    const submits = Array.from({ length: 150 }, (_, i) => ({ type: 'submit', id: `b${i}`, kind: 'busy', payload: { ms: 30 } }));
    const replies = await pipeline(client, submits, 45_000);
    const failed = replies.filter((reply) => reply.type !== 'done');
    expect(failed.length, JSON.stringify(failed.slice(0, 2))).to.equal(0);
    expect(restarts(await client.stats())).to.equal(0);
    expect(cluster.output).to.not.include('ran past their time limit');
  });

  it('answers each long task of a CPU-bound burst as it ends, so the next one\'s clock is its own', async function () {
    this.timeout(30_000);
    // One worker, two tasks of 1.2 s under a 2 s limit: the second starts when the first ends, and
    // the first's outcome must be out by then, or its clock runs on through the second.
    const cluster = await startCluster({ args: ['--quiet', '--workers', '1', '--handlers', HOSTILE_KINDS] });
    const client = await rawClient(cluster.port);
    const submits = [0, 1].map((i) => ({ type: 'submit', id: `long${i}`, kind: 'busy', payload: { ms: 1_200 }, timeoutMs: 2_000 }));
    const replies = await pipeline(client, submits, 15_000);
    expect(replies.map((reply) => reply.type)).to.deep.equal(['done', 'done']);
    const [first, second] = replies as Extract<ServerMessage, { type: 'done' }>[];
    expect(first?.ms, 'the first is answered when it ends, not after the second').to.be.below(1_900);
    expect(second?.ms).to.be.above(2_300);
    expect(restarts(await client.stats())).to.equal(0);
  });

  it('times an asynchronous task that blocks its worker after an await', async function () {
    this.timeout(20_000);
    const cluster = await startCluster({ args: ['--quiet', '--handlers', HOSTILE_KINDS] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'submit', id: 'stuck', kind: 'async-then-hang', payload: null, timeoutMs: 1_000 });
    const reply = await client.reply('stuck', 8_000);
    expect(reply.type === 'failed' && reply.error.code).to.equal('TIMEOUT');
    expect(reply.type === 'failed' && reply.ms).to.be.below(3_000);
    // The other workers served meanwhile, and the slot is back.
    const after = await pipeline(client, [0, 1, 2].map((i) => ({ type: 'submit', id: `a${i}`, payload: 'x' })), 5_000);
    expect(after.every((message) => message.type === 'done')).to.equal(true);
  });

  it('refuses a timeoutMs below --min-task-timeout-ms, naming it, and kills no worker', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    const submits = Array.from({ length: 60 }, (_, i) => ({ type: 'submit', id: `s${i}`, kind: 'sleep', payload: { ms: 50 }, timeoutMs: 1 }));
    const replies = await pipeline(client, submits, 10_000);
    for (const reply of replies) {
      expect(reply).to.deep.include({
        type: 'error',
        code: 'BAD_MESSAGE',
        message: "timeoutMs must be at least 1000 (the server's --min-task-timeout-ms)",
      });
    }
    expect(restarts(await client.stats())).to.equal(0);
  });

  it('does not kill healthy workers after a short stall of the primary, as their outcomes wait unread', async function () {
    this.timeout(30_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    // The tasks end at 900 ms, within their 1,000 ms; the primary is stopped from 700 to 1,120 ms,
    // so when it wakes, the outcomes are in the pipes and the clocks read 1,120.
    const submittedAt = Date.now();
    for (let i = 0; i < 3; i += 1) client.send({ type: 'submit', id: `s${i}`, kind: 'sleep', payload: { ms: 900 }, timeoutMs: 1_000 });
    await new Promise((resolve) => setTimeout(resolve, 700 - (Date.now() - submittedAt)));
    process.kill(cluster.pid, 'SIGSTOP');
    await new Promise((resolve) => setTimeout(resolve, 420));
    process.kill(cluster.pid, 'SIGCONT');
    for (let i = 0; i < 3; i += 1) expect(await client.reply(`s${i}`, 5_000)).to.deep.include({ type: 'done' });
    expect(restarts(await client.stats())).to.equal(0);
    expect(cluster.output).to.not.include('ran past their time limit');
  });

  it('does not kill healthy workers after the primary itself was stopped and continued', async function () {
    this.timeout(30_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    for (let i = 0; i < 3; i += 1) client.send({ type: 'submit', id: `nap${i}`, kind: 'sleep', payload: { ms: 1_200 }, timeoutMs: 1_500 });
    // Long enough for the workers to have said the tasks are running (their clocks have started).
    await new Promise((resolve) => setTimeout(resolve, 400));
    process.kill(cluster.pid, 'SIGSTOP');
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    process.kill(cluster.pid, 'SIGCONT');
    // The tasks ended during the stop, within their limits; their outcomes wait in the pipes.
    for (let i = 0; i < 3; i += 1) expect(await client.reply(`nap${i}`, 5_000)).to.deep.include({ type: 'done' });
    expect(restarts(await client.stats())).to.equal(0);
    expect(cluster.output).to.match(/the primary was stalled for \d+ ms/);
  });
});
