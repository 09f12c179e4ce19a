import { expect } from 'chai';
import net from 'node:net';
import path from 'node:path';
import type { ServerMessage } from '../../shared/protocol';
import { isAlive, ROOT, startCluster, stopClusters, until } from '../helpers/cluster';
import { readRows } from '../helpers/db';
import { closeRawClients, rawClient, type RawClient } from '../helpers/raw-client';

const HOSTILE_KINDS = path.join(ROOT, 'test', 'fixtures', 'hostile-kinds.js');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function workerPids(client: RawClient): Promise<number[]> {
  return (await client.stats()).workers.map((worker) => worker.pid as number);
}

/** Opens connections until the server, out of file descriptors, closes one at once; keeps the rest. */
async function exhaustDescriptors(port: number): Promise<net.Socket[]> {
  const held: net.Socket[] = [];
  for (let i = 0; i < 500; i += 1) {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => undefined);
    const state = await new Promise<string>((resolve) => {
      socket.once('connect', () => {
        socket.once('close', () => resolve('closed'));
        setTimeout(() => resolve('open'), 60);
      });
      socket.once('error', () => resolve('error'));
    });
    if (state !== 'open') return held;
    held.push(socket);
  }
  throw new Error('the server never ran out of file descriptors');
}

describe('worker faults: fork failures and orphans', function () {
  const held: net.Socket[] = [];
  /** Processes a test made (workers, what their handlers started): ended if a failing test left them. */
  const started: number[] = [];
  afterEach(async function () {
    for (const socket of held.splice(0)) socket.destroy();
    for (const pid of started.splice(0)) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    closeRawClients();
    await stopClusters();
  });

  it('retries a worker that cannot be forked (EMFILE) and answers every task it held', async function () {
    this.timeout(40_000);
    const cluster = await startCluster({ args: ['--quiet'], prefix: ['prlimit', '--nofile=64:64', '--'] });
    const client = await rawClient(cluster.port);
    await cluster.waitFor(/standby worker pid \d+ loaded/);
    held.push(...(await exhaustDescriptors(cluster.port)));
    // The standby takes the first death; the second needs a fork, which fails now.
    const first = (await workerPids(client))[0] as number;
    process.kill(first, 'SIGKILL');
    await until(async () => {
      const slot1 = (await client.stats()).workers[0];
      return slot1?.state === 'ready' && slot1.pid !== first;
    }, 5_000, 'the standby in slot 1');
    const submits = Array.from({ length: 60 }, (_, i) => ({ type: 'submit', id: `t${i}`, kind: 'sleep', payload: { ms: 1_500 } }));
    client.send(submits.map((submit) => JSON.stringify(submit)).join('\n') + '\n');
    await until(async () => (await client.stats()).workers[0]?.inflight === 20, 5_000, 'slot 1 holding its 20');
    process.kill((await workerPids(client))[0] as number, 'SIGKILL');

    await cluster.waitFor(/\[worker 1\] could not be started: spawn .*EMFILE/, 5_000);
    const during = (await client.stats()).workers[0];
    expect(['starting', 'backoff']).to.include(during?.state);
    expect(during?.problem).to.match(/EMFILE/);
    // Three failed starts in a row: slot 1 stops holding its 20 tasks for a worker that may not come.
    await cluster.waitFor(/no worker could be started 3 times in a row/, 5_000);
    const replies = await Promise.all(submits.map((submit) => client.reply(submit.id, 10_000)));
    const outcome = (reply: ServerMessage) => (reply.type === 'failed' ? reply.error.code : reply.type);
    for (const reply of replies) expect(['done', 'WORKER_LOST']).to.include(outcome(reply));
    expect(replies.filter((reply) => reply.type === 'done' && reply.worker !== 1)).to.have.length(40);

    // Descriptors free again: slot 1 is back, and serves its share.
    for (const socket of held.splice(0)) socket.destroy();
    await until(async () => (await client.stats()).workers[0]?.state === 'ready', 15_000, 'slot 1 ready again');
    expect((await client.stats()).workers[0]?.problem).to.equal(undefined);
    const workers = new Set<number>();
    for (let i = 0; i < 3; i += 1) {
      client.send({ type: 'submit', id: `after${i}`, payload: 'x' });
      const reply = await client.reply(`after${i}`);
      if (reply.type === 'done') workers.add(reply.worker);
    }
    expect([...workers].sort()).to.deep.equal([1, 2, 3]);
  });

  it('leaves no worker, nor what its handlers started, alive 1 s after a SIGKILLed primary, even busy ones', async function () {
    this.timeout(30_000);
    const cluster = await startCluster({ args: ['--quiet', '--handlers', HOSTILE_KINDS] });
    const client = await rawClient(cluster.port);
    const sleepers: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      client.send({ type: 'submit', id: `spawn${i}`, kind: 'spawn-sleeper', payload: { seconds: 60 } });
      const reply = await client.reply(`spawn${i}`);
      if (reply.type === 'done') sleepers.push(reply.result as number);
    }
    expect(sleepers).to.have.length(3);
    const workers = await workerPids(client);
    started.push(...workers, ...sleepers);
    // Every worker deep in synchronous work: its event loop will not see the IPC channel close.
    for (let i = 0; i < 6; i += 1) client.send({ type: 'submit', id: `busy${i}`, kind: 'busy', payload: { ms: 20_000 } });
    await sleep(500);
    const killedAt = Date.now();
    await cluster.kill('SIGKILL');
    const everyone = [...workers, ...sleepers];
    await until(() => everyone.every((pid) => !isAlive(pid)), 5_000, 'the workers and their children to be gone');
    const tookMs = Date.now() - killedAt;
    console.log(`      workers and their handlers' processes gone ${tookMs} ms after the primary's SIGKILL`);
    expect(tookMs).to.be.below(1_000);
  });

  it('ends what a handler started when its worker is killed from outside', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--workers', '1', '--handlers', HOSTILE_KINDS] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'submit', id: 'spawn', kind: 'spawn-sleeper', payload: { seconds: 60 } });
    const reply = await client.reply('spawn');
    const sleeper = reply.type === 'done' ? (reply.result as number) : 0;
    started.push(sleeper);
    expect(isAlive(sleeper)).to.equal(true);
    process.kill((await workerPids(client))[0] as number, 'SIGKILL');
    await until(() => !isAlive(sleeper), 2_000, 'the handler\'s sleep process to be gone');
  });

  it('passes over a stopped worker instead of waiting for it, and takes it back when it continues', async function () {
    this.timeout(30_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    const stoppedPid = (await workerPids(client))[1] as number;
    started.push(stoppedPid);
    process.kill(stoppedPid, 'SIGSTOP');
    try {
      const count = 2_000;
      let lines = '';
      for (let i = 0; i < count; i += 1) lines += `${JSON.stringify({ type: 'submit', id: `t${i}`, payload: `t${i}` })}\n`;
      client.send(lines);
      await cluster.waitFor(/\[worker 2\] worker pid \d+ is stopped \(SIGSTOP\?\): passed over, its \d+ task\(s\) wait for it/, 5_000);
      // Everything but what the stopped worker already held is answered meanwhile.
      await until(() => client.messages.filter((message) => message.type === 'done').length >= count - 256, 10_000, 'the others\' share');
      expect((await client.stats()).workers[1]?.problem).to.match(/is stopped/);
    } finally {
      process.kill(stoppedPid, 'SIGCONT');
    }
    await until(() => client.messages.filter((message) => message.type === 'done').length === 2_000, 10_000, 'every task');
    await cluster.waitFor(/\[worker 2\] worker pid \d+ continues; serving again/, 5_000);
    expect((await client.stats()).workers[1]?.problem).to.equal(undefined);
  });

  it('replaces a worker that writes garbage on its channel, and the primary and every other task go on', async function () {
    this.timeout(30_000);
    const cluster = await startCluster({ args: ['--quiet', '--handlers', HOSTILE_KINDS, '--max-attempts', '2'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'submit', id: 'garbage', kind: 'channel-garbage', payload: null });
    const others = Array.from({ length: 300 }, (_, i) => ({ type: 'submit', id: `t${i}`, payload: `t${i}` }));
    client.send(others.map((submit) => JSON.stringify(submit)).join('\n') + '\n');
    const replies = await Promise.all(others.map((submit) => client.reply(submit.id, 15_000)));
    expect(replies.filter((reply) => reply.type !== 'done'), 'the other tasks').to.deep.equal([]);
    // Answered once: from its row if the killed worker had stored it, else WORKER_LOST after
    // running alone and doing it again.
    const garbage = await client.reply('garbage', 15_000);
    expect(garbage.type === 'done' || (garbage.type === 'failed' && garbage.error.code === 'WORKER_LOST'), JSON.stringify(garbage)).to.equal(true);
    expect(client.messages.filter((message) => 'id' in message && message.id === 'garbage')).to.have.length(1);
    await cluster.waitFor(/\[worker 1\] worker pid \d+: its channel carried a line that is not JSON: "not json at all"; killing it/);
    expect(isAlive(cluster.pid)).to.equal(true);
    client.send({ type: 'submit', id: 'after', payload: 'x' });
    expect(await client.reply('after')).to.include({ type: 'done' });
  });

  it('ends the loop of a handler that breaks its worker\'s JSON: every task answered, restarts bounded', async function () {
    this.timeout(40_000);
    const cluster = await startCluster({ args: ['--quiet', '--handlers', HOSTILE_KINDS, '--max-attempts', '2'] });
    const client = await rawClient(cluster.port);
    const submits = [
      { type: 'submit', id: 'polluter', kind: 'pollute-array-tojson', payload: null },
      ...Array.from({ length: 30 }, (_, i) => ({ type: 'submit', id: `t${i}`, payload: `t${i}` })),
    ];
    client.send(submits.map((submit) => JSON.stringify(submit)).join('\n') + '\n');
    const replies = await Promise.all(submits.map((submit) => client.reply(submit.id, 30_000)));
    // Its worker's outcomes message is broken: the worker is killed. The task is answered once:
    // from its row if that worker had stored it (a lone row binds its values, no JSON), else failed.
    const polluter = replies[0];
    if (polluter?.type === 'done') {
      const rows = (await Promise.all([1, 2, 3].map((slot) => readRows(path.join(cluster.dataDir, `worker${slot}.db`))))).flat();
      expect(rows.filter((row) => row.task_id === polluter.taskId), 'the row it was answered from').to.have.length(1);
    } else {
      expect(polluter?.type, JSON.stringify(polluter)).to.equal('failed');
    }
    for (const [index, reply] of replies.entries()) {
      expect(client.messages.filter((message) => 'id' in message && message.id === submits[index]?.id), submits[index]?.id).to.have.length(1);
      if (index > 0 && reply.type !== 'done') expect(['INTERNAL', 'WORKER_LOST']).to.include(reply.type === 'failed' ? reply.error.code : reply.type);
    }
    const restarts = (await client.stats()).workers.reduce((sum, worker) => sum + worker.restarts, 0);
    expect(restarts).to.be.below(12);
  });
});
