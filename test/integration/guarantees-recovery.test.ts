import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ServerMessage, StatsReply } from '../../shared/protocol';
import { isAlive, processesMentioning, ROOT, startCluster, stopClusters, testDir, until, type Cluster } from '../helpers/cluster';
import { integrityCheck, readRows, type StoredRow } from '../helpers/db';
import { closeRawClients, rawClient, type RawClient } from '../helpers/raw-client';

const HOSTILE_KINDS = path.join(ROOT, 'test', 'fixtures', 'hostile-kinds.js');

function stats(client: RawClient): Promise<StatsReply> {
  return client.stats();
}

async function rowsOf(cluster: Cluster, slots: number): Promise<StoredRow[]> {
  const rows: StoredRow[] = [];
  for (let slot = 1; slot <= slots; slot += 1) {
    rows.push(...(await readRows(path.join(cluster.dataDir, `worker${slot}.db`))));
  }
  return rows;
}

/** Every reply for `id` on `client` (there must be exactly one). */
function repliesFor(client: RawClient, id: string): ServerMessage[] {
  return client.messages.filter((message) => 'id' in message && message.id === id);
}

describe('guarantees: recovery from dying workers, hanging tasks and a dying primary', function () {
  afterEach(async () => {
    closeRawClients();
    await stopClusters();
  });


  it('redelivers the tasks a dead worker held to its replacement in the same slot', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--workers', '1', '--handlers', HOSTILE_KINDS] });
    const client = await rawClient(cluster.port);
    const [before] = (await stats(client)).workers;
    const marker = path.join(await testDir(), 'crashed-once');
    const sleepers = ['s1', 's2', 's3'];
    for (const id of sleepers) client.send({ type: 'submit', id, kind: 'sleep', payload: { ms: 300 } });
    client.send({ type: 'submit', id: 'boom', kind: 'crash-once', payload: { marker } });

    for (const id of [...sleepers, 'boom']) expect(await client.reply(id)).to.include({ type: 'done', worker: 1 });
    const [after] = (await stats(client)).workers;
    expect(after?.pid).to.be.a('number').and.not.equal(before?.pid);
    expect(after?.restarts).to.equal(1);
    // The marker holds the pid of the worker that died: the task did run there first.
    expect(Number(readFileSync(marker, 'utf8'))).to.equal(before?.pid);
    expect(repliesFor(client, 'boom')).to.have.length(1);
    expect(repliesFor(client, 'boom')[0]).to.include({ result: 'survived' });

    const rows = await rowsOf(cluster, 1);
    expect(rows.map((row) => row.client_id).sort()).to.deep.equal(['boom', 's1', 's2', 's3']);
    expect(rows.every((row) => row.status === 'done')).to.equal(true);
    for (const id of sleepers) expect(repliesFor(client, id)).to.have.length(1);
  });

  it('does not run a redelivered task again when its result was committed before the worker died', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--workers', '1', '--handlers', HOSTILE_KINDS] });
    const client = await rawClient(cluster.port);
    const log = path.join(await testDir(), 'runs.log');
    const [before] = (await stats(client)).workers;
    // From `mute` on, the worker commits results but its replies never reach the primary; 400 ms
    // later it dies. Every task here is then committed and unanswered: the worst moment to die.
    const early = ['r1', 'r2', 'r3'];
    const late = ['r4', 'r5', 'r6'];
    for (const tag of early) client.send({ type: 'submit', id: tag, kind: 'record', payload: { log, tag } });
    client.send({ type: 'submit', id: 'mute', kind: 'mute-then-die', payload: { ms: 400 } });
    await new Promise((resolve) => setTimeout(resolve, 150));
    for (const tag of late) client.send({ type: 'submit', id: tag, kind: 'record', payload: { log, tag } });

    for (const id of [...early, ...late]) expect(await client.reply(id)).to.include({ type: 'done', result: id });
    // Run again, `mute-then-die` would silence and kill the replacement too, and end as WORKER_LOST.
    expect(await client.reply('mute')).to.include({ type: 'done', result: 'muted' });
    const [after] = (await stats(client)).workers;
    expect(after?.pid).to.not.equal(before?.pid);
    expect(after?.restarts).to.equal(1);

    expect(readFileSync(log, 'utf8').trim().split('\n').sort()).to.deep.equal([...early, ...late]);
    const rows = await rowsOf(cluster, 1);
    expect(rows.map((row) => row.client_id).sort()).to.deep.equal([...early, 'mute', ...late].sort());
    for (const id of [...early, ...late, 'mute']) expect(repliesFor(client, id)).to.have.length(1);
  });

  it('fails a task that killed its worker --max-attempts times with WORKER_LOST, stored, and not again', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--workers', '2', '--handlers', HOSTILE_KINDS] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'submit', id: 'poison', kind: 'crash', payload: null });
    // Keep tasks coming while the poison is retried: none may be put at risk beside it.
    const others: string[] = [];
    while (repliesFor(client, 'poison').length === 0 && others.length < 5_000) {
      const id = `ok${others.length}`;
      others.push(id);
      client.send({ type: 'submit', id, kind: 'text', payload: id });
      await client.reply(id, 10_000);
    }
    const poison = await client.reply('poison');
    expect(poison.type === 'failed' && poison.error).to.deep.equal({
      code: 'WORKER_LOST',
      message: 'task was running when its worker died 3 times; not trying again',
    });
    for (const id of others) expect(await client.reply(id)).to.include({ type: 'done' });
    const slot = poison.type === 'failed' ? poison.worker : undefined;
    expect(slot).to.equal(1);
    const slotStats = (await stats(client)).workers.find((worker) => worker.slot === slot);
    expect(slotStats?.restarts).to.equal(3);

    // The slot keeps serving, and the poison is not tried again: no more deaths.
    for (let i = 0; i < 6; i += 1) client.send({ type: 'submit', id: `after${i}`, kind: 'text', payload: 'x' });
    for (let i = 0; i < 6; i += 1) expect(await client.reply(`after${i}`)).to.include({ type: 'done' });
    expect((await stats(client)).workers.find((worker) => worker.slot === slot)).to.include({
      restarts: 3,
      pid: slotStats?.pid,
    });
    // After its first death the poison ran alone: tasks sent meanwhile were not put at risk with it.
    const held = [...cluster.output.matchAll(/\[worker 1\] worker pid \d+ died \(signal SIGKILL\) holding (\d+) task/g)];
    expect(held.map((match) => Number(match[1])).slice(1)).to.deep.equal([1, 1]);
    const rows = (await rowsOf(cluster, 2)).filter((row) => row.client_id === 'poison');
    expect(rows.map((row) => [row.status, row.worker])).to.deep.equal([['failed', 1]]);
    expect(JSON.parse(rows[0]?.result ?? 'null')).to.include({ code: 'WORKER_LOST' });
  });

  it('backs off a slot whose worker keeps dying young, shows it in stats, serves on the others', async function () {
    this.timeout(20_000);
    const cluster = await startCluster({
      args: ['--quiet', '--workers', '2', '--handlers', HOSTILE_KINDS, '--max-attempts', '5'],
    });
    const client = await rawClient(cluster.port);
    const observer = await rawClient(cluster.port);
    client.send({ type: 'submit', id: 'loop', kind: 'crash', payload: null });
    const states = new Set<string>();
    const sampler = (async () => {
      while (repliesFor(client, 'loop').length === 0 && observer.isOpen) {
        const slot1 = (await stats(observer)).workers.find((worker) => worker.slot === 1);
        if (slot1 !== undefined) states.add(slot1.state);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    let served = 0;
    let bySlot2 = 0;
    let sent = 0;
    // While slot 1 crash-loops, keep sending: every task must be served, by slot 2 meanwhile.
    while (repliesFor(client, 'loop').length === 0) {
      const id = `t${(sent += 1)}`;
      client.send({ type: 'submit', id, kind: 'text', payload: id });
      const reply = await client.reply(id, 10_000);
      if (reply.type === 'done') served += 1;
      if (reply.type === 'done' && reply.worker === 2) bySlot2 += 1;
      expect(sent, 'tasks sent while waiting for the crash loop to end').to.be.below(5_000);
    }
    await sampler;
    expect(served, 'tasks served').to.equal(sent);
    // Slot 1 takes work only before the first death and while its last worker stores WORKER_LOST.
    expect(sent - bySlot2, 'tasks served by slot 1').to.be.at.most(3);
    expect(states, cluster.output).to.include('backoff');
    expect(cluster.output).to.include('worker keeps dying young (2 in a row); respawning in 100 ms');
    expect(cluster.output).to.include('worker keeps dying young (3 in a row); respawning in 200 ms');
    expect(cluster.output).to.include('worker keeps dying young (4 in a row); respawning in 400 ms');
    expect(cluster.output).to.include('worker keeps dying young (5 in a row); respawning in 800 ms');
    expect(await client.reply('loop')).to.deep.include({ type: 'failed', worker: 1 });

    // Back to ready, and once it has lived past MIN_UPTIME_MS a death is no longer a crash loop.
    await until(async () => (await stats(observer)).workers[0]?.state === 'ready', 5_000, 'slot 1 ready');
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    const pid = (await stats(observer)).workers[0]?.pid as number;
    process.kill(pid, 'SIGKILL');
    await until(async () => {
      const slot1 = (await stats(observer)).workers[0];
      return slot1?.state === 'ready' && slot1.pid !== pid;
    }, 5_000, 'slot 1 respawned');
    expect(cluster.output.match(/keeps dying young/g)).to.have.length(4);
    await until(() => !isAlive(pid), 2_000, 'the killed worker to be gone');
  });

  it('kills a replacement that is not ready in time, backs off, serves on the others meanwhile', async function () {
    this.timeout(20_000);
    const marker = path.join(await testDir(), 'hang-on-load');
    // Long enough for a fresh fork on a busy 2-core machine; far shorter than the 30 s hang.
    const readyTimeoutMs = 1_500;
    const cluster = await startCluster({
      args: ['--quiet', '--workers', '2', '--handlers', HOSTILE_KINDS, '--worker-ready-timeout-ms', String(readyTimeoutMs)],
      env: { RONDA_TEST_HANG_ON_LOAD: marker },
    });
    const client = await rawClient(cluster.port);
    const first = (await stats(client)).workers[0]?.pid as number;
    // From now on a new worker's handlers module blocks its loading for up to 30 s.
    await writeFile(marker, '');
    process.kill(first, 'SIGKILL');

    const notReady = new RegExp(`\\[worker 1\\] worker pid (\\d+) exited before it was ready \\(killed: not ready within ${readyTimeoutMs} ms\\)`, 'g');
    await until(() => [...cluster.output.matchAll(notReady)].length >= 2, 10_000, 'two replacements killed');
    // Each counts as dying young: the second at the latest is respawned with a delay.
    await cluster.waitFor(/\[worker 1\] worker keeps dying young \([23] in a row\); respawning in [12]00 ms/, 2_000);
    for (let index = 1; index <= 6; index += 1) {
      client.send({ type: 'submit', id: `meanwhile${index}`, kind: 'text', payload: 'x' });
      expect(await client.reply(`meanwhile${index}`)).to.deep.include({ type: 'done', worker: 2 });
    }
    expect(['starting', 'backoff']).to.include((await stats(client)).workers[0]?.state);

    await rm(marker);
    await until(async () => (await stats(client)).workers[0]?.state === 'ready', 10_000, 'slot 1 ready again');
    const workers = new Set<unknown>();
    for (let index = 1; index <= 4; index += 1) {
      client.send({ type: 'submit', id: `after${index}`, kind: 'text', payload: 'x' });
      workers.add(((await client.reply(`after${index}`)) as { worker?: number }).worker);
    }
    expect([...workers].sort()).to.deep.equal([1, 2]);
    for (const [, pid] of [...cluster.output.matchAll(notReady)]) {
      expect(isAlive(Number(pid)), `hung worker ${pid}`).to.equal(false);
    }
  });

  it('exits with the reason, leaving no worker, when a first worker is not ready in time', async function () {
    const marker = path.join(await testDir(), 'hang-on-load');
    await writeFile(marker, '');
    const cluster = await startCluster({
      args: ['--quiet', '--workers', '2', '--handlers', HOSTILE_KINDS, '--worker-ready-timeout-ms', '1000'],
      env: { RONDA_TEST_HANG_ON_LOAD: marker },
      wait: false,
    });
    const exit = await cluster.waitForExit();
    expect(exit.code, cluster.output).to.equal(1);
    expect(cluster.output).to.match(/could not start: worker \d: worker pid \d+ exited before it was ready \(killed: not ready within 1000 ms\)/);
    expect(cluster.output).to.not.match(/listening on/);
    // Both workers hang (for 30 s if nobody kills them); each one's --db names the data directory.
    await until(() => processesMentioning(cluster.dataDir).length === 0, 3_000, 'the hung workers to be gone');
  });

  it('fails a task past its time limit with TIMEOUT, replaces the worker, redelivers the others', async function () {
    const cluster = await startCluster({
      args: ['--quiet', '--workers', '1', '--handlers', HOSTILE_KINDS, '--task-timeout-ms', '500', '--min-task-timeout-ms', '100'],
    });
    const client = await rawClient(cluster.port);
    const [before] = (await stats(client)).workers;
    client.send({ type: 'submit', id: 'nap', kind: 'sleep', payload: { ms: 100 } });
    client.send({ type: 'submit', id: 'spin', kind: 'hang', payload: null, timeoutMs: 300 });
    const spin = await client.reply('spin');
    expect(spin.type === 'failed' && spin.error).to.deep.equal({
      code: 'TIMEOUT',
      message: 'task ran past its time limit of 300 ms',
    });
    // `nap` could not finish while `spin` held the event loop; it ran again on the replacement.
    expect(await client.reply('nap')).to.deep.include({ type: 'done', result: { sleptMs: 100 } });
    const [after] = (await stats(client)).workers;
    expect(after?.pid).to.not.equal(before?.pid);
    expect(after?.restarts).to.equal(1);
    expect(isAlive(before?.pid as number)).to.equal(false);

    // The server-wide default applies when a task names no limit.
    client.send({ type: 'submit', id: 'spin2', kind: 'hang', payload: null });
    const spin2 = await client.reply('spin2');
    expect(spin2.type === 'failed' && spin2.error.message).to.equal('task ran past its time limit of 500 ms');
    client.send({ type: 'submit', id: 'fine', kind: 'text', payload: 'fine' });
    expect(await client.reply('fine')).to.include({ type: 'done' });

    const rows = await rowsOf(cluster, 1);
    const byId = new Map(rows.map((row) => [row.client_id, row]));
    expect(rows).to.have.length(4);
    expect(byId.get('spin')?.status).to.equal('failed');
    expect(JSON.parse(byId.get('spin')?.result ?? 'null')).to.include({ code: 'TIMEOUT' });
    expect(byId.get('nap')?.status).to.equal('done');
    expect(cluster.output).to.not.include('keeps dying young');
  });

  it('survives SIGKILL of the primary: workers exit by themselves, acknowledged results are kept', async function () {
    this.timeout(30_000);
    const dataDir = await testDir();
    const cluster = await startCluster({ args: ['--quiet'], dataDir });
    const observer = await rawClient(cluster.port);
    const workerPids = (await stats(observer)).workers.map((worker) => worker.pid as number);
    const clients = await Promise.all([0, 1, 2].map(() => rawClient(cluster.port)));
    const done = new Set<string>();
    let sent = 0;
    clients.forEach((client, c) => {
      const next = (): void => {
        const i = (sent += 1);
        client.send({ type: 'submit', id: `k${c}-${i}`, kind: i % 2 === 0 ? 'text' : 'hash', payload: `p${i}` });
      };
      client.onMessage((message) => {
        if (message.type === 'done') done.add(message.id);
        next();
      });
      for (let i = 0; i < 20; i += 1) next();
    });
    await until(() => done.size >= 2_000, 15_000, '2000 tasks done');
    cluster.process.kill('SIGKILL');
    const exit = await cluster.waitForExit();
    expect(exit.signal).to.equal('SIGKILL');
    const acknowledged = [...done];

    await until(() => workerPids.every((pid) => !isAlive(pid)), 5_000, 'orphaned workers to exit');
    for (let slot = 1; slot <= 3; slot += 1) {
      expect(await integrityCheck(path.join(dataDir, `worker${slot}.db`))).to.equal('ok');
    }
    const restarted = await startCluster({ args: ['--quiet'], dataDir });
    const rows = await rowsOf(restarted, 3);
    const stored = new Set(rows.filter((row) => row.status === 'done').map((row) => row.client_id));
    expect(acknowledged.filter((id) => !stored.has(id)), 'acknowledged but not stored').to.deep.equal([]);
    expect(new Set(rows.map((row) => row.task_id)).size).to.equal(rows.length);
    const client = await rawClient(restarted.port);
    client.send({ type: 'submit', id: 'again', kind: 'text', payload: 'again' });
    expect(await client.reply('again')).to.include({ type: 'done' });
    process.stdout.write(`      primary death: ${acknowledged.length} acknowledged, ${rows.length} rows stored\n`);
  });
});
