import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import {
  makeTempDir,
  PRIMARY_SCRIPT,
  ROOT,
  startCluster,
  stopClusters,
  until,
} from '../helpers/cluster';
import { readRows } from '../helpers/db';
import { closeRawClients, rawClient, type RawClient } from '../helpers/raw-client';

const HOSTILE_KINDS = path.join(ROOT, 'test', 'fixtures', 'hostile-kinds.js');

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Samples `stats` every 10 ms until `stop()`; resolves with the largest values seen. */
function sampleStats(observer: RawClient): { stop: () => Promise<{ queued: number; inflight: number }> } {
  let running = true;
  const max = { queued: 0, inflight: 0 };
  const loop = (async () => {
    while (running) {
      const stats = await observer.stats();
      max.queued = Math.max(max.queued, stats.queued);
      for (const worker of stats.workers) max.inflight = Math.max(max.inflight, worker.inflight);
      await sleep(10);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return max;
    },
  };
}

describe('guarantees: bounded work in flight, hostile input, exposure', function () {
  let trickle: NodeJS.Timeout | undefined;
  afterEach(async () => {
    clearInterval(trickle);
    closeRawClients();
    await stopClusters();
  });

  it('holds at most --max-inflight-per-worker tasks per worker and queues the rest', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--workers', '2', '--max-inflight-per-worker', '3'] });
    const client = await rawClient(cluster.port);
    const observer = await rawClient(cluster.port);
    const sampler = sampleStats(observer);
    const ids = Array.from({ length: 40 }, (_, i) => `n${i}`);
    for (const id of ids) client.send({ type: 'submit', id, kind: 'sleep', payload: { ms: 40 } });
    for (const id of ids) expect(await client.reply(id)).to.include({ type: 'done' });
    const max = await sampler.stop();
    expect(max.inflight).to.equal(3);
    expect(max.queued).to.be.at.least(20);
  });

  it('stops reading from every client while the queue is full (--max-queue), then serves them all', async function () {
    this.timeout(40_000);
    const clients = 3;
    const perClient = 3_000;
    /** Floods one worker from `clients` connections; the largest queue `stats` showed meanwhile. */
    const largestQueue = async (maxQueue: number): Promise<number> => {
      const cluster = await startCluster({
        args: ['--quiet', '--workers', '1', '--max-inflight-per-worker', '4', '--max-queue', String(maxQueue)],
      });
      const observer = await rawClient(cluster.port);
      const senders = await Promise.all(Array.from({ length: clients }, () => rawClient(cluster.port)));
      senders.forEach((client, c) => {
        let lines = '';
        for (let i = 0; i < perClient; i += 1) {
          lines += `${JSON.stringify({ type: 'submit', id: `q${c}-${i}`, kind: 'text', payload: 'q' })}\n`;
        }
        client.send(lines);
      });
      const sampler = sampleStats(observer);
      await until(
        () => senders.every((client) => client.messages.filter((m) => m.type === 'done').length === perClient),
        30_000,
        'every task to be done',
      );
      const max = await sampler.stop();
      expect(senders.flatMap((client) => client.messages.filter((m) => m.type !== 'done'))).to.deep.equal([]);
      await stopClusters();
      return max.queued;
    };
    const bounded = await largestQueue(50);
    const unbounded = await largestQueue(1_000_000);
    process.stdout.write(`      largest queue seen: ${bounded} with --max-queue 50, ${unbounded} without\n`);
    // Lines read after the queue filled wait in their connections, not in the queue. Without the
    // pause each connection stops only at its own cap of 4096 unanswered tasks.
    expect(unbounded, 'the same flood with no queue limit').to.be.above(5_000);
    expect(bounded).to.be.at.most(50);
  });

  it('while the queue is full, reads each client up to its next task: other requests are answered, the task waits', async function () {
    this.timeout(20_000);
    // Not --quiet: the primary logs when the queue fills. The idle timeout is shorter than the wait
    // below: a task line waiting for room is not idleness.
    const cluster = await startCluster({
      args: ['--workers', '1', '--max-inflight-per-worker', '1', '--max-queue', '1', '--idle-timeout-ms', '1000'],
    });
    const first = await rawClient(cluster.port);
    // One task runs, one waits: the queue is full.
    first.send({ type: 'submit', id: 'running', kind: 'sleep', payload: { ms: 2_000 } });
    first.send({ type: 'submit', id: 'queued', kind: 'sleep', payload: { ms: 1 } });
    await cluster.waitFor(/queue full \(1 queued\): reading from clients paused/);
    // A line that is not a task is still read and answered, from a client already connected and
    // from one that connects now.
    first.send('{not json\n');
    expect(await first.next((message) => message.type === 'error', 1_000)).to.include({ code: 'BAD_JSON' });
    const late = await rawClient(cluster.port);
    late.send({ type: 'stats' });
    expect(await late.next((message) => message.type === 'stats', 1_000)).to.include({ queued: 1 });
    // A task waits for room, and so does what the same client sent after it.
    late.send({ type: 'submit', id: 'late', kind: 'text', payload: 'late' });
    late.send({ type: 'stats' });
    await sleep(1_300);
    expect(late.messages.map((message) => message.type), 'while the queue is full').to.deep.equal(['stats']);
    expect(late.isOpen, 'a client whose task waits is not idle').to.equal(true);

    // Once the queue drains, both are served.
    expect(await late.reply('late', 5_000)).to.include({ type: 'done' });
    await late.next((message) => message.type === 'stats', 5_000, 1);
    expect(await first.reply('queued', 5_000)).to.include({ type: 'done' });
    expect(first.messages.map((message) => message.type).sort()).to.deep.equal(['done', 'done', 'error']);
  });

  it('answers a new client at once while floods of long tasks fill the queue', async function () {
    this.timeout(30_000);
    const cluster = await startCluster({ args: ['--quiet', '--max-queue', '1000', '--shutdown-timeout-ms', '500'] });
    const flooders = await Promise.all([0, 1, 2].map(() => rawClient(cluster.port)));
    flooders.forEach((client, c) => {
      let lines = '';
      for (let i = 0; i < 1_500; i += 1) lines += `${JSON.stringify({ type: 'submit', id: `f${c}-${i}`, kind: 'sleep', payload: { ms: 60_000 } })}\n`;
      client.send(lines);
    });
    const observer = await rawClient(cluster.port);
    await until(async () => (await observer.stats()).queued >= 1_000, 10_000, 'the queue to fill');
    const fresh = await rawClient(cluster.port);
    const askedAt = Date.now();
    fresh.send({ type: 'hello' });
    await fresh.next((message) => message.type === 'hello', 2_000);
    fresh.send({ type: 'stats' });
    await fresh.next((message) => message.type === 'stats', 2_000);
    fresh.send({ type: 'results', limit: 1 });
    await fresh.next((message) => message.type === 'results', 2_000);
    expect(Date.now() - askedAt, 'hello, stats and results while the queue is full').to.be.below(2_000);
  });

  it('shrugs off hostile input from one client while another is served', async function () {
    this.timeout(20_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const good = await rawClient(cluster.port);
    const ids = Array.from({ length: 300 }, (_, i) => `g${i}`);
    let next = 0;
    trickle = setInterval(() => {
      for (let i = 0; i < 10 && next < ids.length; i += 1) {
        const id = ids[next++] as string;
        good.send({ type: 'submit', id, kind: 'hash', payload: id });
      }
    }, 5);

    const hostile: Buffer[] = [
      Buffer.from([0xc3, 0x28, 0x0a]), // invalid UTF-8
      Buffer.from(`{"type":"submit","payload":${'['.repeat(400_000)}${']'.repeat(400_000)}}\n`), // deep, under 1 MiB
      Buffer.from(`{"type":"submit","payload":${'{"a":'.repeat(33)}1${'}'.repeat(33)}}\n`),
      Buffer.from('{"type":"submit","payload":"x","__proto__":{"admin":true}}\n'),
      Buffer.from('{"type":"submit","kind":"fib","payload":{"n":1e308}}\n'),
      Buffer.from('{"type":"results","limit":-1}\n'),
      Buffer.from('{"type":"submit","id":"","payload":"x"}\n'),
      Buffer.from('\0\0\0\n'),
      Buffer.from(`${'}'.repeat(1000)}\n`),
      Buffer.from(`{"type":"submit","payload":"${'x'.repeat(2 * 1024 * 1024)}"}\n`), // over the limit
    ];
    const evil = await rawClient(cluster.port);
    for (const chunk of hostile) evil.send(chunk);
    await evil.waitClosed(10_000); // closed after LINE_TOO_LONG, the last one
    const codes = evil.messages.map((message) =>
      message.type === 'error' ? message.code : message.type === 'failed' ? message.error.code : message.type,
    );
    expect(codes.sort()).to.deep.equal(
      ['BAD_UTF8', 'BAD_MESSAGE', 'BAD_MESSAGE', 'BAD_MESSAGE', 'BAD_MESSAGE', 'BAD_MESSAGE', 'LINE_TOO_LONG', 'BAD_PAYLOAD'].sort(),
    );
    // Lines that do not start with `{` are plain-text tasks, answered in plain text.
    expect(evil.plain).to.have.length(2);

    await until(() => next >= ids.length, 10_000, 'the good client to send all');
    clearInterval(trickle);
    for (const id of ids) expect(await good.reply(id)).to.include({ type: 'done' });
    const stats = await good.stats();
    expect(stats.workers.every((worker) => worker.restarts === 0)).to.equal(true);
  });

  it('answers a handler\'s unserialisable result, odd throw or throwing schema alone; the rest of its batch goes on', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--workers', '1', '--handlers', HOSTILE_KINDS] });
    const client = await rawClient(cluster.port);
    const submits = [
      ...Array.from({ length: 30 }, (_, i) => ({ type: 'submit', id: `a${i}`, payload: `a${i}` })),
      { type: 'submit', id: 'fn', kind: 'returns-function', payload: null },
      { type: 'submit', id: 'np', kind: 'throws-null-proto', payload: null },
      { type: 'submit', id: 'st', kind: 'schema-throws', payload: 'x' },
      ...Array.from({ length: 30 }, (_, i) => ({ type: 'submit', id: `b${i}`, payload: `b${i}` })),
    ];
    const started = Date.now();
    client.send(submits.map((submit) => JSON.stringify(submit)).join('\n') + '\n');
    const replies = await Promise.all(submits.map((submit) => client.reply(submit.id, 5_000)));
    expect(Date.now() - started, 'no task waited for a time limit').to.be.below(3_000);
    expect(replies.filter((reply) => reply.type === 'done')).to.have.length(60);
    const fn = replies[30];
    expect(fn?.type === 'failed' && fn.error).to.deep.equal({
      code: 'HANDLER_FAILED',
      message: 'the result is not JSON: the handler returned a function',
    });
    const np = replies[31];
    expect(np?.type === 'failed' && np.error.code).to.equal('HANDLER_FAILED');
    const st = replies[32];
    expect(st?.type === 'failed' && st.error).to.deep.equal({
      code: 'HANDLER_FAILED',
      message: 'the payload schema of "schema-throws" threw: schema trap',
    });
    expect((await client.stats()).workers[0]?.restarts, 'the worker did not die of it').to.equal(0);
  });

  it('stores the result of a task whose client disconnected before the reply', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--workers', '1'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'submit', id: 'orphan', kind: 'sleep', payload: { ms: 300 } });
    await sleep(50);
    client.destroy();
    const file = path.join(cluster.dataDir, 'worker1.db');
    await until(async () => (await readRows(file)).some((row) => row.client_id === 'orphan'), 5_000, 'the row');
    const [row] = (await readRows(file)).filter((r) => r.client_id === 'orphan');
    expect(row).to.include({ status: 'done', result: '{"sleptMs":300}' });
    const other = await rawClient(cluster.port);
    other.send({ type: 'submit', id: 'next', payload: 'next' });
    expect(await other.reply('next')).to.include({ type: 'done' });
  });

  it('finds a task by its task id even when another client gave that id to its own task', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const victim = await rawClient(cluster.port);
    victim.send({ type: 'submit', kind: 'hash', payload: 'mine' });
    const mine = await victim.next((message) => message.type === 'done');
    const taskId = mine.type === 'done' ? mine.taskId : '';
    // Another client names its task after the victim's task id; its row is the newer one.
    const other = await rawClient(cluster.port);
    other.send({ type: 'submit', id: taskId, kind: 'text', payload: 'EVIL' });
    expect(await other.reply(taskId)).to.include({ type: 'done' });
    const found = await victim.results({ id: taskId, limit: 5 });
    expect(found.map((row) => row.task_id)).to.deep.equal([taskId]);
    expect(found[0]?.result).to.equal(mine.type === 'done' ? mine.result : undefined);
    // An id that is no task's still finds the rows clients gave it.
    expect(await other.results({ id: 'nobody', limit: 5 })).to.deep.equal([]);
    other.send({ type: 'submit', id: 'named', kind: 'text', payload: 'named' });
    await other.reply('named');
    expect((await other.results({ id: 'named', limit: 5 })).map((row) => row.client_id)).to.deep.equal(['named']);
  });

  it('closes a half-open connection once its tasks are answered', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'submit', id: 'last', kind: 'sleep', payload: { ms: 200 } });
    client.socket.end(); // half-close: no more requests, still reading
    await client.waitClosed();
    expect(client.messages.map((m) => m.type)).to.deep.equal(['done']);
  });

  it('binds loopback by default and refuses a non-loopback address without a token', async function () {
    const dataDir = await makeTempDir();
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
      delete env.RONDA_HOST;
      delete env.RONDA_TOKEN;
      const refused = spawn(process.execPath, [PRIMARY_SCRIPT, '--host', '0.0.0.0', '--port', '0', '--data-dir', dataDir], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      refused.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
      const code = await new Promise((resolve) => refused.once('exit', resolve));
      expect(code).to.equal(2);
      expect(stderr).to.include('--token is required to listen on a non-loopback address');

      const primary = spawn(process.execPath, [PRIMARY_SCRIPT, '--port', '0', '--http-port', '0', '--data-dir', dataDir, '--quiet'], {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      primary.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
      const exited = new Promise((resolve) => primary.once('exit', resolve));
      try {
        await until(() => /listening on/.test(stdout), 10_000, 'the primary to listen');
        expect(stdout).to.match(/listening on 127\.0\.0\.1:\d+/);
      } finally {
        primary.kill('SIGTERM');
        await exited;
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
