import { expect } from 'chai';
import path from 'node:path';
import type { ServerMessage } from '../../shared/protocol';
import { ROOT, startCluster, stopClusters } from '../helpers/cluster';
import { closeRawClients, rawClient } from '../helpers/raw-client';

const HOSTILE_KINDS = path.join(ROOT, 'test', 'fixtures', 'hostile-kinds.js');

/** The counter part of a server task id (`<boot>-<base 36 counter>`): the order of acceptance. */
const acceptanceOrder = (taskId: string): number => parseInt(taskId.slice(taskId.lastIndexOf('-') + 1), 36);

type Done = Extract<ServerMessage, { type: 'done' }>;

describe('dispatch: which worker each task goes to', function () {
  afterEach(async function () {
    closeRawClients();
    await stopClusters();
  });

  it('keeps strict round-robin under load: 6,000 pipelined tasks go 1, 2, 3, 1, 2, 3 in acceptance order', async function () {
    this.timeout(60_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    const count = 6_000;
    let lines = '';
    for (let i = 0; i < count; i += 1) lines += `${JSON.stringify({ type: 'submit', id: `t${i}`, kind: 'text', payload: `tarea${i}` })}\n`;
    client.send(lines);
    await client.next(() => client.messages.length >= count, 50_000);
    const done = client.messages.filter((message): message is Done => message.type === 'done');
    expect(done).to.have.length(count);
    const byOrder = done.map((reply) => [acceptanceOrder(reply.taskId), reply.worker] as const).sort((a, b) => a[0] - b[0]);
    const first = byOrder[0]?.[1] as number;
    const breaks = byOrder.filter(([, worker], index) => worker !== ((first - 1 + index) % 3) + 1);
    expect(breaks.length, `order breaks, the first: ${JSON.stringify(breaks.slice(0, 3))}`).to.equal(0);
    const perWorker = [1, 2, 3].map((worker) => done.filter((reply) => reply.worker === worker).length);
    expect(perWorker).to.deep.equal([2_000, 2_000, 2_000]);
  });

  /**
   * One CPU-bound task on worker 1, then short tasks one at a time: round-robin sends every third
   * behind it, least-loaded sends them to the idle workers.
   */
  async function behindALongTask(dispatch: string): Promise<{ worker: number; ms: number }[]> {
    const cluster = await startCluster({ args: ['--quiet', '--handlers', HOSTILE_KINDS, '--dispatch', dispatch] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'submit', id: 'long', kind: 'busy', payload: { ms: 1_500 } });
    // Let the long task reach its worker first.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const short: { worker: number; ms: number }[] = [];
    for (let i = 0; i < 9; i += 1) {
      client.send({ type: 'submit', id: `s${i}`, kind: 'text', payload: `s${i}` });
      const reply = await client.reply(`s${i}`, 5_000);
      expect(reply.type).to.equal('done');
      if (reply.type === 'done') short.push({ worker: reply.worker, ms: reply.ms });
    }
    const long = await client.reply('long', 5_000);
    expect(long).to.deep.include({ type: 'done', worker: 1 });
    return short;
  }

  it('--dispatch least-loaded sends short tasks around a worker busy with a long one', async function () {
    this.timeout(30_000);
    const short = await behindALongTask('least-loaded');
    expect(short.map((reply) => reply.worker)).to.not.include(1);
    expect(Math.max(...short.map((reply) => reply.ms)), 'no short task waited for the long one').to.be.below(1_000);
  });

  it('round-robin, the default, makes a short task wait for the long task ahead of it on its worker', async function () {
    this.timeout(30_000);
    const short = await behindALongTask('round-robin');
    const onWorker1 = short.filter((reply) => reply.worker === 1);
    expect(onWorker1.length).to.be.at.least(1);
    // The first short task of worker 1 waited for the long one: that is what least-loaded avoids.
    expect(onWorker1[0]?.ms).to.be.above(500);
  });

  it('--dispatch least-loaded sends a burst around a worker its watchdog says is busy', async function () {
    this.timeout(30_000);
    const cluster = await startCluster({ args: ['--quiet', '--handlers', HOSTILE_KINDS, '--dispatch', 'least-loaded'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'submit', id: 'long', kind: 'busy', payload: { ms: 2_000 } });
    // Long enough for the watchdog to have said that the long task is running.
    await new Promise((resolve) => setTimeout(resolve, 400));
    let lines = '';
    for (let i = 0; i < 300; i += 1) lines += `${JSON.stringify({ type: 'submit', id: `s${i}`, payload: `s${i}` })}\n`;
    client.send(lines);
    const replies = await Promise.all(Array.from({ length: 300 }, (_, i) => client.reply(`s${i}`, 10_000)));
    const onBusy = replies.filter((reply) => reply.type === 'done' && reply.worker === 1);
    expect(onBusy.length, 'short tasks sent behind the long one').to.equal(0);
    expect(await client.reply('long', 5_000)).to.deep.include({ type: 'done', worker: 1 });
  });
});
