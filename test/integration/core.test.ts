import { expect } from 'chai';
import net from 'node:net';
import path from 'node:path';
import { isAlive, startCluster, stopClusters, until } from '../helpers/cluster';
import { readRows } from '../helpers/db';
import { closeRawClients, rawClient } from '../helpers/raw-client';

describe('cluster (real primary, workers, sockets and SQLite files)', function () {
  afterEach(async () => {
    closeRawClients();
    await stopClusters();
  });

  it('spreads 30 tasks sent one after another round-robin, 10 to each worker file', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await cluster.connect();
    const replies = [];
    for (let i = 1; i <= 30; i += 1) replies.push(await client.submit('text', `tarea${i}`));

    expect(replies.map((reply) => reply.type === 'done' && reply.worker)).to.deep.equal(
      Array.from({ length: 30 }, (_, i) => (i % 3) + 1),
    );
    for (const slot of [1, 2, 3]) {
      const rows = await readRows(path.join(cluster.dataDir, `worker${slot}.db`));
      const expected = Array.from({ length: 10 }, (_, i) => `tarea${i * 3 + slot}`);
      expect(rows.map((row) => row.task)).to.deep.equal(expected);
      expect(rows.map((row) => row.result)).to.deep.equal(
        expected.map((task) => `Task '${task}' processed by worker ${slot}`),
      );
      expect(rows.every((row) => row.status === 'done' && row.worker === slot && row.kind === 'text')).to.equal(true);
    }
    const results = await client.results({ limit: 30 });
    expect(results.map((row) => row.task).sort()).to.deep.equal(
      Array.from({ length: 30 }, (_, i) => `tarea${i + 1}`).sort(),
    );
  });

  it('answers every pipelined submit exactly once, matched by id, and stores each once', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    // A bare socket sees every reply line: a duplicate would be counted, not swallowed.
    const client = await rawClient(cluster.port);
    const ids = Array.from({ length: 500 }, (_, i) => `p${i}`);
    client.send(ids.map((id) => `${JSON.stringify({ type: 'submit', id, kind: 'hash', payload: id })}\n`).join(''));
    for (const id of ids) await client.reply(id);
    // Replies leave on one socket in order: whatever was sent before the stats reply is in by now.
    await client.stats();

    const replies = client.messages.filter((message) => message.type !== 'stats');
    expect(replies.map((reply) => reply.type === 'done' && reply.id).sort()).to.deep.equal([...ids].sort());
    const stored: (string | null)[] = [];
    for (const slot of [1, 2, 3]) {
      const rows = await readRows(path.join(cluster.dataDir, `worker${slot}.db`));
      expect(rows.length, `rows in worker${slot}.db`).to.be.above(0);
      stored.push(...rows.map((row) => row.client_id));
    }
    expect(stored.sort()).to.deep.equal([...ids].sort());
  });

  it('respawns a worker killed with SIGKILL in the same slot, on the same database', async function () {
    const cluster = await startCluster();
    const client = await cluster.connect();
    for (let i = 0; i < 6; i += 1) await client.submit('text', `before${i}`);
    const before = await client.stats();
    const victim = before.workers.find((worker) => worker.slot === 2);
    expect(victim?.pid).to.be.a('number');
    expect(victim?.lastDeathAt, 'no death yet').to.equal(undefined);
    const killedAt = Date.now();
    process.kill(victim?.pid as number, 'SIGKILL');

    await until(async () => {
      const worker = (await client.stats()).workers.find((w) => w.slot === 2);
      return worker?.state === 'ready' && worker.pid !== victim?.pid;
    }, 5_000, 'slot 2 to be ready with a new pid');
    const after = (await client.stats()).workers.find((worker) => worker.slot === 2);
    expect(after?.restarts).to.equal(1);
    // When the primary saw the death and the replacement's ready, on its wall clock.
    expect(after?.lastDeathAt).to.be.within(killedAt - 5, Date.now());
    expect(after?.readyAt).to.be.within(after?.lastDeathAt as number, Date.now());
    expect((victim?.readyAt as number) < killedAt, 'the first worker was ready before the kill').to.equal(true);
    expect(cluster.output).to.match(/\[worker 2\] worker pid \d+ died \(signal SIGKILL\)/);
    expect(cluster.output).to.match(/\[worker 2\] respawned, ready, pid \d+ \(restart 1\)/);

    const replies = [];
    for (let i = 0; i < 6; i += 1) replies.push(await client.submit('text', `after${i}`));
    expect(replies.every((reply) => reply.type === 'done')).to.equal(true);
    const rows = await readRows(path.join(cluster.dataDir, 'worker2.db'));
    expect(rows.map((row) => row.task)).to.include.members(['before1', 'before4', 'after1', 'after4']);
  });

  it('answers a seed-style client (no newline, waits for each answer) with one line per task', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const socket = net.connect(cluster.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.setEncoding('utf8');
    const answers: string[] = [];
    for (const task of ['tarea1', 'tarea1', 'tarea2']) {
      socket.write(task);
      answers.push(await new Promise<string>((resolve) => socket.once('data', resolve)));
    }
    socket.end();
    expect(answers).to.deep.equal([
      "Task 'tarea1' processed by worker 1\n",
      "Task 'tarea1' processed by worker 2\n",
      "Task 'tarea2' processed by worker 3\n",
    ]);
  });

  it('keeps plain-text replies in the order the lines were sent', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const socket = net.connect(cluster.port, '127.0.0.1');
    socket.setEncoding('utf8');
    let text = '';
    socket.on('data', (chunk: string) => (text += chunk));
    const lines = Array.from({ length: 200 }, (_, i) => `line ${i}`);
    socket.end(`${lines.join('\n')}\n`);
    await new Promise((resolve) => socket.once('close', resolve));
    const answers = text.trimEnd().split('\n');
    expect(answers).to.have.length(200);
    answers.forEach((answer, i) => expect(answer).to.match(new RegExp(`^Task 'line ${i}' processed by worker [123]$`)));
  });

  it('refuses a bad option with its name and the rule, a hint where the options are, and exit code 2', async function () {
    const cluster = await startCluster({ args: ['--workers', 'many'], wait: false });
    const exit = await cluster.waitForExit();
    expect(exit.code).to.equal(2);
    expect(cluster.output).to.equal('ronda: --workers must be a number, not a string\nrun "npm start -- --help" for the options\n');
  });

  it('exits 0 on SIGTERM, SIGINT, SIGQUIT and every other signal that would end it (SIGHUP reloads), leaving no worker behind', async function () {
    this.timeout(40_000);
    const signals = ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGUSR2', 'SIGALRM', 'SIGVTALRM', 'SIGXCPU', 'SIGXFSZ', 'SIGPWR'] as const;
    for (const signal of signals) {
      const cluster = await startCluster({ args: ['--quiet'] });
      const client = await cluster.connect();
      await client.submit('text', 'one');
      const pids = (await client.stats()).workers.map((worker) => worker.pid as number);
      expect(pids.every(isAlive)).to.equal(true);
      const exit = await cluster.kill(signal);
      expect(exit, signal).to.deep.equal({ code: 0, signal: null });
      await until(() => pids.every((pid) => !isAlive(pid)), 2_000, 'workers to be gone');
    }
  });

  it('bounds the whole shutdown by --shutdown-timeout-ms, workers included, however long a task runs', async function () {
    this.timeout(20_000);
    const handlers = path.join(__dirname, '..', 'fixtures', 'hostile-kinds.js');
    const cluster = await startCluster({ args: ['--quiet', '--handlers', handlers, '--shutdown-timeout-ms', '1000'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'submit', id: 'long', kind: 'busy', payload: { ms: 15_000 } });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const pids = (await client.stats()).workers.map((worker) => worker.pid as number);
    const started = Date.now();
    expect(await cluster.kill('SIGTERM')).to.deep.equal({ code: 0, signal: null });
    const tookMs = Date.now() - started;
    // The drain's 1 s, the workers' 0.5 s more at most, the sockets' 0.5 s linger.
    expect(tookMs).to.be.below(2_500);
    expect(cluster.output).to.include('shutdown deadline passed with 1 task(s) unfinished');
    await until(() => pids.every((pid) => !isAlive(pid)), 2_000, 'workers to be gone');
  });

  it('answers every accepted task at a shutdown that cuts it short, queued ones included', async function () {
    this.timeout(20_000);
    const handlers = path.join(__dirname, '..', 'fixtures', 'hostile-kinds.js');
    const cluster = await startCluster({
      args: ['--quiet', '--handlers', handlers, '--shutdown-timeout-ms', '1000', '--max-inflight-per-worker', '2'],
    });
    const client = await rawClient(cluster.port);
    // Two a worker run for 3 s; the rest wait in the queue; one never ends.
    const ids = Array.from({ length: 12 }, (_, i) => `s${i}`);
    for (const id of ids) client.send({ type: 'submit', id, kind: 'sleep', payload: { ms: 3_000 } });
    client.send({ type: 'submit', id: 'hang', kind: 'busy', payload: { ms: 15_000 } });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await cluster.kill('SIGTERM')).to.deep.equal({ code: 0, signal: null });
    for (const id of [...ids, 'hang']) {
      const replies = client.messages.filter((message) => 'id' in message && message.id === id);
      expect(replies, id).to.have.length(1);
      expect(replies[0]?.type === 'failed' && replies[0].error.code, id).to.equal('SHUTTING_DOWN');
    }
  });

  it('answers every accepted task when a second signal forces the shutdown', async function () {
    this.timeout(20_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    const ids = Array.from({ length: 60 }, (_, i) => `s${i}`);
    for (const id of ids) client.send({ type: 'submit', id, kind: 'sleep', payload: { ms: 2_000 } });
    await until(async () => (await client.stats()).workers.every((worker) => worker.inflight > 0), 5_000, 'every worker busy');
    const pids = (await client.stats()).workers.map((worker) => worker.pid as number);
    process.kill(cluster.pid, 'SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await cluster.kill('SIGINT')).to.deep.equal({ code: 1, signal: null });
    await client.waitClosed(2_000);
    for (const id of ids) {
      const replies = client.messages.filter((message) => 'id' in message && message.id === id);
      expect(replies, id).to.have.length(1);
      expect(replies[0]?.type === 'failed' && replies[0].error.code, id).to.equal('SHUTTING_DOWN');
    }
    await until(() => pids.every((pid) => !isAlive(pid)), 2_000, 'workers to be gone');
  });

  it('goes on serving when whoever read its log goes away (EPIPE)', async function () {
    this.timeout(20_000);
    const cluster = await startCluster();
    const client = await rawClient(cluster.port);
    // The reading end of the primary's stdout closes: its next log line fails with EPIPE.
    cluster.process.stdout?.destroy();
    for (let i = 0; i < 50; i += 1) client.send({ type: 'submit', id: `t${i}`, payload: `t${i}` });
    for (let i = 0; i < 50; i += 1) expect(await client.reply(`t${i}`)).to.include({ type: 'done' });
    const [first] = (await client.stats()).workers;
    process.kill(first?.pid as number, 'SIGKILL');
    await until(async () => (await client.stats()).workers[0]?.pid !== first?.pid, 5_000, 'a respawn');
    client.send({ type: 'submit', id: 'after', payload: 'x' });
    expect(await client.reply('after')).to.include({ type: 'done' });
    expect(isAlive(cluster.pid)).to.equal(true);
  });

  it('writes a client\'s id into the log as one line, its newlines and terminal escapes made visible', async function () {
    const cluster = await startCluster();
    const client = await rawClient(cluster.port);
    const id = 'x\n09:00:00.000Z [primary ] FAKE: stopped\u001b[2J';
    client.send({ type: 'submit', id, payload: 'x' });
    expect(await client.reply(id)).to.include({ type: 'done' });
    await cluster.waitFor(/done #\d+\/x\\x0a09:00:00\.000Z \[primary \] FAKE: stopped\\x1b\[2J \(text\)/);
    expect(cluster.output).to.not.match(/^09:00:00\.000Z \[primary \] FAKE/m);
    expect(cluster.output).to.not.include('\u001b');
  });
});
