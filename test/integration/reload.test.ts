import { expect } from 'chai';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isAlive, startCluster, stopClusters, testDir, until, type Cluster } from '../helpers/cluster';
import { runCli } from '../helpers/cli';
import { readRows } from '../helpers/db';
import { request } from '../helpers/http';
import { closeRawClients, rawClient, type RawClient } from '../helpers/raw-client';
import { connect } from '../../client/index';
import type { ServerMessage } from '../../shared/protocol';

/** A handlers module whose one kind says which version of the module ran it. */
function versionModule(version: number): string {
  return `const { z } = require('zod');
exports.kinds = { version: { schema: z.object({}).passthrough(), run: () => ({ version: ${version}, pid: process.pid }) } };
`;
}

async function workerPids(client: RawClient): Promise<number[]> {
  return (await client.stats()).workers.map((worker) => worker.pid as number);
}

/** Every row across the cluster's files (task ids, with repeats if any). */
async function allRows(dataDir: string, workers: number): Promise<{ task_id: string; status: string }[]> {
  const rows = [];
  for (let slot = 1; slot <= workers; slot += 1) rows.push(...(await readRows(path.join(dataDir, `worker${slot}.db`))));
  return rows;
}

/**
 * A one-worker cluster whose worker holds `naps` tasks of `ms` each (a kind that waits and says
 * its pid): the old worker a reload leaves holding them.
 */
async function clusterHoldingNaps(naps: number, ms: number): Promise<{ cluster: Cluster; client: RawClient; old: number }> {
  const dir = await testDir();
  const module = path.join(dir, 'kinds.js');
  await writeFile(
    module,
    `const { z } = require('zod');
exports.kinds = { nap: { schema: z.object({ ms: z.number() }), run: ({ ms }) => new Promise((resolve) => setTimeout(() => resolve({ pid: process.pid }), ms)) } };
`,
  );
  const cluster = await startCluster({ args: ['--quiet', '--handlers', module, '--workers', '1'] });
  const client = await rawClient(cluster.port);
  client.send({ type: 'hello', protocol: 2 });
  const [old] = await workerPids(client);
  for (let index = 0; index < naps; index += 1) client.send({ type: 'submit', id: `n${index}`, kind: 'nap', payload: { ms } });
  await until(async () => (await client.stats()).workers[0]?.inflight === naps, 5_000, `the worker to hold all ${naps}`);
  return { cluster, client, old: old as number };
}

describe('reload: every worker replaced, one slot at a time, with no task lost', function () {
  afterEach(async () => {
    closeRawClients();
    await stopClusters();
  });

  it('SIGHUP in the middle of 20,000 pipelined tasks: each answered once, none failed, every pid new, each row once', async function () {
    this.timeout(90_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    const before = await workerPids(client);
    const total = 20_000;
    const replies = new Map<string, ServerMessage[]>();
    client.onMessage((message) => {
      if ((message.type === 'done' || message.type === 'failed') && message.id !== undefined) {
        const seen = replies.get(message.id) ?? [];
        seen.push(message);
        replies.set(message.id, seen);
      }
    });
    const lines: string[] = [];
    for (let index = 0; index < total; index += 1) {
      lines.push(JSON.stringify({ type: 'submit', id: `t${index}`, kind: 'text', payload: `task ${index}` }));
    }
    client.send(`${lines.join('\n')}\n`);
    await until(() => replies.size >= total / 4, 30_000, 'a quarter of the tasks to be answered');
    process.kill(cluster.pid, 'SIGHUP');
    await cluster.waitFor(/reloaded in \d+ ms/, 30_000);
    await until(() => replies.size === total, 60_000, 'every task to be answered');
    const answeredAfterReload = replies.size;
    expect(answeredAfterReload).to.equal(total);
    const repeated = [...replies.entries()].filter(([, seen]) => seen.length !== 1);
    expect(repeated, 'answered more than once').to.deep.equal([]);
    const failed = [...replies.values()].flat().filter((message) => message.type !== 'done');
    expect(failed, 'failed replies').to.deep.equal([]);
    const after = await workerPids(client);
    for (const pid of after) expect(before).not.to.include(pid);
    await until(() => before.every((pid) => !isAlive(pid)), 10_000, 'the old workers to exit');
    const stats = await client.stats();
    expect(stats.workers.map((worker) => worker.restarts), 'a reload is not a death').to.deep.equal([0, 0, 0]);
    expect(stats.workers.reduce((sum, worker) => sum + worker.done, 0), 'done counts carry over').to.equal(total);
    const rows = await allRows(cluster.dataDir, 3);
    expect(rows.length).to.equal(total);
    expect(new Set(rows.map((row) => row.task_id)).size).to.equal(total);
    expect(rows.every((row) => row.status === 'done')).to.equal(true);
    // The reload happened while tasks flowed: tasks were still being answered when it began.
    expect(cluster.output).to.match(/SIGHUP: reloading the workers/);
  });

  it('loads the handlers module afresh: ronda reload, the library and POST /api/reload each bring in the new version', async function () {
    this.timeout(60_000);
    const dir = await testDir();
    const module = path.join(dir, 'kinds.js');
    await writeFile(module, versionModule(1));
    const cluster = await startCluster({ args: ['--quiet', '--handlers', module, '--http-port', '0'] });
    const client = await connect({ port: cluster.port });
    try {
      expect((await client.submit('version', {})).result).to.deep.include({ version: 1 });

      await writeFile(module, versionModule(2));
      const cli = await runCli(['reload', '--port', String(cluster.port)]);
      expect(cli.code, cli.stderr).to.equal(0);
      expect(cli.stdout).to.match(/^reloaded in \d+ ms: worker 1 pid \d+, worker 2 pid \d+, worker 3 pid \d+/);
      for (let index = 0; index < 6; index += 1) {
        expect((await client.submit('version', {})).result).to.deep.include({ version: 2 });
      }

      await writeFile(module, versionModule(3));
      const report = await client.reload();
      expect(report.workers.map((worker) => worker.slot)).to.deep.equal([1, 2, 3]);
      const pids = new Set<number>();
      for (let index = 0; index < 6; index += 1) {
        const result = (await client.submit('version', {})).result as { version: number; pid: number };
        expect(result.version).to.equal(3);
        pids.add(result.pid);
      }
      expect([...pids].sort()).to.deep.equal(report.workers.map((worker) => worker.pid).sort());

      await writeFile(module, versionModule(4));
      const refused = await request(cluster.httpPort as number, '/api/reload', { method: 'POST', rawBody: '' });
      expect(refused.status, 'a body-less POST (what another site could send) does nothing').to.equal(400);
      expect((await client.submit('version', {})).result).to.deep.include({ version: 3 });
      const http = await request(cluster.httpPort as number, '/api/reload', { method: 'POST', body: {} });
      expect(http.status).to.equal(200);
      expect(http.json.workers).to.have.length(3);
      expect((await client.submit('version', {})).result).to.deep.include({ version: 4 });
    } finally {
      await client.close();
    }
  });

  it('a module that no longer loads stops the reload: RELOAD_FAILED says why, the old workers serve on', async function () {
    this.timeout(60_000);
    const dir = await testDir();
    const module = path.join(dir, 'kinds.js');
    await writeFile(module, versionModule(1));
    const cluster = await startCluster({ args: ['--quiet', '--handlers', module] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    const before = await workerPids(client);
    await writeFile(module, "throw new Error('this module is broken on purpose');\n");
    client.send({ type: 'reload', id: 'r1' });
    const answer = await client.reply('r1', 20_000);
    expect(answer).to.include({ type: 'error', code: 'RELOAD_FAILED' });
    expect(answer.type === 'error' && answer.message).to.match(/^reload stopped: worker 1: the new worker could not start \(.*this module is broken on purpose.*\); the workers not replaced keep serving$/);
    expect(await workerPids(client)).to.deep.equal(before);
    for (let index = 0; index < 3; index += 1) {
      client.send({ type: 'submit', id: `after${index}`, kind: 'version', payload: {} });
      expect(await client.reply(`after${index}`)).to.deep.include({ type: 'done', result: { version: 1, pid: before[index] } });
    }
    const cli = await runCli(['reload', '--port', String(cluster.port)]);
    expect(cli.code).to.equal(1);
    expect(cli.stderr).to.match(/RELOAD_FAILED: reload stopped: worker 1/);
    // Mended, the next reload goes through.
    await writeFile(module, versionModule(2));
    client.send({ type: 'reload', id: 'r2' });
    expect(await client.reply('r2', 20_000)).to.include({ type: 'reload' });
    client.send({ type: 'submit', id: 'mended', kind: 'version', payload: {} });
    const mended = await client.reply('mended');
    expect(mended.type === 'done' && mended.result).to.deep.include({ version: 2 });
  });

  it('with a token, only a client that gave it may reload', async function () {
    this.timeout(30_000);
    const token = 'reload-token-123';
    const cluster = await startCluster({ args: ['--quiet', '--token', token] });
    const stranger = await rawClient(cluster.port);
    stranger.send({ type: 'reload', id: 'r' });
    expect(await stranger.reply('r').catch(() => stranger.next((message) => message.type === 'error'))).to.include({ code: 'UNAUTHORIZED' });
    const denied = await runCli(['reload', '--port', String(cluster.port)]);
    expect(denied.code).not.to.equal(0);
    expect(denied.stderr).to.match(/refused the token/);
    const allowed = await runCli(['reload', '--port', String(cluster.port), '--token', token]);
    expect(allowed.code, allowed.stderr).to.equal(0);
  });

  it('a worker killed while it retires hands what it held to its successor: nothing lost, nothing twice', async function () {
    this.timeout(60_000);
    // Tasks held by a worker that died are run again one at a time (to find one that kills it): few and short.
    const { cluster, client, old } = await clusterHoldingNaps(5, 1_500);
    client.send({ type: 'reload', id: 'r' });
    expect(await client.reply('r', 20_000)).to.include({ type: 'reload' });
    // The old worker still holds its naps; it dies before it finishes them.
    expect(isAlive(old)).to.equal(true);
    process.kill(old, 'SIGKILL');
    const answers: ServerMessage[] = [];
    for (let index = 0; index < 5; index += 1) answers.push(await client.reply(`n${index}`, 20_000));
    expect(answers.map((answer) => answer.type)).to.deep.equal(['done', 'done', 'done', 'done', 'done']);
    // Run by the successor, which kept serving: the slot was never without a worker.
    const [successor] = await workerPids(client);
    expect(answers.map((answer) => answer.type === 'done' && (answer.result as { pid: number }).pid)).to.deep.equal(Array(5).fill(successor));
    expect((await client.stats()).workers[0]?.restarts).to.equal(0);
    const rows = await allRows(cluster.dataDir, 1);
    expect(rows.length).to.equal(5);
    expect(new Set(rows.map((row) => row.task_id)).size).to.equal(5);
  });

  it('two reloads in a row, then the first old worker killed: what it held reaches the worker that serves', async function () {
    this.timeout(60_000);
    const { cluster, client, old: first } = await clusterHoldingNaps(3, 3_000);
    client.send({ type: 'reload', id: 'r1' });
    expect(await client.reply('r1', 20_000)).to.include({ type: 'reload' });
    client.send({ type: 'reload', id: 'r2' });
    expect(await client.reply('r2', 20_000)).to.include({ type: 'reload' });
    const [serving] = await workerPids(client);
    expect(isAlive(first), 'the first worker still finishes its naps').to.equal(true);
    process.kill(first, 'SIGKILL');
    const answers: ServerMessage[] = [];
    for (let index = 0; index < 3; index += 1) answers.push(await client.reply(`n${index}`, 30_000));
    expect(answers.map((answer) => answer.type === 'done' && (answer.result as { pid: number }).pid)).to.deep.equal([serving, serving, serving]);
    const rows = await allRows(cluster.dataDir, 1);
    expect(rows.length).to.equal(3);
  });

  it('a new worker that fails to start once is tried again, so one failure does not stop a reload', async function () {
    this.timeout(60_000);
    const dir = await testDir();
    const module = path.join(dir, 'kinds.js');
    const failOnce = path.join(dir, 'fail-once');
    await writeFile(
      module,
      `const fs = require('node:fs');
if (fs.existsSync(${JSON.stringify(failOnce)})) { fs.unlinkSync(${JSON.stringify(failOnce)}); throw new Error('failing this one load'); }
${versionModule(2)}`,
    );
    const cluster = await startCluster({ args: ['--quiet', '--handlers', module] });
    await writeFile(failOnce, '');
    const client = await rawClient(cluster.port);
    client.send({ type: 'reload', id: 'r' });
    expect(await client.reply('r', 30_000)).to.include({ type: 'reload' });
    expect(cluster.output).to.match(/a new worker could not start \(.*failing this one load.*\); trying once more/);
  });

  it('SIGHUP while the workers are still starting neither ends the primary nor reloads anything', async function () {
    this.timeout(30_000);
    const dir = await testDir();
    const module = path.join(dir, 'slow.js');
    // Each worker takes 1.5 s to load this module: the primary runs, its workers are not ready.
    await writeFile(module, `const until = Date.now() + 1500; while (Date.now() < until);\n${versionModule(1)}`);
    const cluster = await startCluster({ args: ['--quiet', '--handlers', module], wait: false });
    await new Promise((resolve) => setTimeout(resolve, 700));
    process.kill(cluster.pid, 'SIGHUP');
    await cluster.listening();
    const client = await rawClient(cluster.port);
    client.send({ type: 'submit', id: 'a', kind: 'version', payload: {} });
    expect(await client.reply('a', 10_000)).to.include({ type: 'done' });
    expect(cluster.output).to.match(/SIGHUP: reloading the workers|SIGHUP while starting/);
    expect(cluster.output).not.to.match(/reloaded in/);
  });
});
