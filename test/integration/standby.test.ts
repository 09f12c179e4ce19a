import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { isAlive, startCluster, stopClusters, until } from '../helpers/cluster';
import { readRows } from '../helpers/db';

/** Pids of the standby workers (titled `ronda standby worker <data dir>`) whose parent is `primaryPid`. */
function standbysOf(primaryPid: number): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const command = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (parent === primaryPid && command.startsWith('ronda standby worker ')) pids.push(Number(name));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

describe('standby worker (forked ahead of need)', function () {
  afterEach(stopClusters);

  it('becomes the replacement of a killed worker, serves its slot and database, and is refilled', async function () {
    this.timeout(20_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await cluster.connect();
    const loaded = await cluster.waitFor(/standby worker pid (\d+) loaded/);
    const standby = Number(loaded[1]);
    expect(standbysOf(cluster.pid)).to.deep.equal([standby]);
    const before = (await client.stats()).workers.find((worker) => worker.slot === 2);
    expect(before?.pid).to.be.a('number');

    process.kill(before?.pid as number, 'SIGKILL');
    await until(
      async () => {
        const worker = (await client.stats()).workers.find((candidate) => candidate.slot === 2);
        return worker?.state === 'ready' && worker.pid !== before?.pid;
      },
      10_000,
      'a new worker in slot 2',
    );
    const after = (await client.stats()).workers.find((worker) => worker.slot === 2);
    expect(after?.pid, 'the standby took the slot').to.equal(standby);
    expect(cluster.output).to.match(new RegExp(`\\[worker 2\\] respawned, ready, pid ${standby}\\b`));

    // It writes the slot's own file.
    const replies = [];
    for (let i = 0; i < 6; i += 1) replies.push(await client.submit('text', `after-kill-${i}`));
    expect(replies.filter((reply) => reply.type === 'done' && reply.worker === 2)).to.have.length(2);
    const rows = await readRows(path.join(cluster.dataDir, 'worker2.db'));
    expect(rows.filter((row) => row.task.startsWith('after-kill-')).map((row) => row.worker)).to.deep.equal([2, 2]);

    // A new standby is forked for the next death.
    const next = await cluster.waitFor(new RegExp(`standby worker pid (?!${standby}\\b)(\\d+) loaded`));
    expect(standbysOf(cluster.pid)).to.deep.equal([Number(next[1])]);
    // `ps` names the promoted one by its role and slot now, not as the standby it was.
    expect(readFileSync(`/proc/${standby}/cmdline`, 'utf8')).to.match(new RegExp(`^ronda worker 2 ${cluster.dataDir}/worker2\\.db`));
  });

  it('exits with its primary: a SIGKILLed primary leaves no standby behind', async function () {
    this.timeout(20_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    await until(() => standbysOf(cluster.pid).length === 1, 10_000, 'a standby worker');
    const [standby] = standbysOf(cluster.pid);
    await cluster.kill('SIGKILL');
    await until(() => !isAlive(standby as number), 10_000, 'the standby to exit');
  });

  it('is stopped by an orderly shutdown', async function () {
    this.timeout(20_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    await until(() => standbysOf(cluster.pid).length === 1, 10_000, 'a standby worker');
    const [standby] = standbysOf(cluster.pid);
    expect(await cluster.kill('SIGTERM')).to.deep.equal({ code: 0, signal: null });
    await until(() => !isAlive(standby as number), 5_000, 'the standby to exit');
  });
});
