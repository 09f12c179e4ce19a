import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { cliEnv, lines, runCli, stopClis, unusedPort } from '../helpers/cli';
import { makeTempDir, PRIMARY_SCRIPT, ROOT, startCluster, stopClusters } from '../helpers/cluster';
import { readRows } from '../helpers/db';
import { RondaError } from '../../shared/errors';
import { MAX_LINE_BYTES, ResultRowSchema, ServerMessageSchema } from '../../shared/protocol';

/** Each line parsed as the server's message schema says it must be. */
const replies = (text: string) => lines(text).map((line) => ServerMessageSchema.parse(JSON.parse(line)));
const rowsOf = (text: string) => lines(text).map((line) => ResultRowSchema.parse(JSON.parse(line)));

/** `ronda ...` one-shot commands: the real compiled client against a real primary on port 0. */
describe('client one-shot commands (ronda submit / results / stats)', function () {
  this.timeout(30_000);
  const tempDirs: string[] = [];
  afterEach(async function () {
    await stopClis();
    await stopClusters();
    await Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
  });

  it('submit prints each result in argument order and exits 0 only if every task succeeded', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const port = ['--port', String(cluster.port)];

    const ok = await runCli(['submit', ...port, 'tarea1', 'tarea2', 'tarea3']);
    expect(ok.code, ok.stderr).to.equal(0);
    expect(lines(ok.stdout)).to.have.length(3);
    lines(ok.stdout).forEach((line, i) => {
      const worker = i + 1;
      expect(line).to.match(
        new RegExp(`^\\[worker ${worker}\\] tarea${worker} -> Task 'tarea${worker}' processed by worker ${worker} \\(\\d+(\\.\\d+)? m?s\\)$`),
      );
    });
    // Stored, by the worker that answered.
    const rows = await readRows(path.join(cluster.dataDir, 'worker2.db'));
    expect(rows.map((row) => row.task)).to.deep.equal(['tarea2']);

    const mixed = await runCli(['submit', ...port, '--kind', 'fib', '20', '99']);
    expect(mixed.code).to.equal(1);
    const [good, bad] = lines(mixed.stdout);
    expect(good).to.match(/ fib \{"n":20\} -> 6765 /);
    expect(bad).to.match(/ fib \{"n":99\} -> failed BAD_PAYLOAD: payload\.n must be at most 40/);

    const unknown = await runCli(['submit', ...port, '--kind', 'nope', 'x']);
    expect(unknown.code).to.equal(1);
    expect(lines(unknown.stderr)).to.deep.equal(['ronda: the server has no task kind "nope" (it knows: text, hash, sleep, fib)']);
  });

  it('submit --json prints the server reply objects, one per line, ids matching the input', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const run = await runCli(['submit', '--port', String(cluster.port), '--json', '--kind', 'sleep', '30', '{"ms":1}', '{"ms":-1}']);
    expect(run.code).to.equal(1);
    const got = replies(run.stdout);
    expect(got.map((reply) => 'id' in reply && reply.id)).to.deep.equal(['1', '2', '3']);
    expect(got[0]).to.deep.include({ type: 'done', kind: 'sleep', result: { sleptMs: 30 } });
    expect(got[1]).to.deep.include({ type: 'done', result: { sleptMs: 1 } });
    expect(got[2]).to.deep.include({ type: 'failed', error: { code: 'BAD_PAYLOAD', message: 'payload.ms must be at least 0' } });
    expect(got[0]).to.have.keys(['type', 'id', 'taskId', 'kind', 'worker', 'result', 'ms']);
  });

  it('a stdin pipe of 1,000 tasks returns 1,000 results in input order, and nothing else', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const tasks = Array.from({ length: 1000 }, (_, i) => `linea${i + 1}`);
    const run = await runCli(['submit', '--port', String(cluster.port)], { input: `${tasks.join('\n')}\n` });
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stderr).to.equal('');
    const output = lines(run.stdout);
    expect(output).to.have.length(1000);
    const workers = new Set<string>();
    output.forEach((line, i) => {
      const match = /^\[worker (\d)\] (\S+) -> Task '(\S+)' processed by worker (\d) \(/.exec(line);
      expect(match, line).to.not.equal(null);
      expect(match?.[2]).to.equal(tasks[i]);
      expect(match?.[3]).to.equal(tasks[i]);
      expect(match?.[4]).to.equal(match?.[1]);
      workers.add(match?.[1] ?? '');
    });
    expect([...workers].sort()).to.deep.equal(['1', '2', '3']);

    // `-` reads stdin too; --json ids are the line numbers, blank lines skipped but counted.
    const json = await runCli(['submit', '-', '--json', '--port', String(cluster.port)], { input: 'a\n\nb\n' });
    expect(json.code).to.equal(0);
    expect(replies(json.stdout).map((reply) => 'id' in reply && reply.id)).to.deep.equal(['1', '3']);

    let stored = 0;
    for (const slot of [1, 2, 3]) stored += (await readRows(path.join(cluster.dataDir, `worker${slot}.db`))).length;
    expect(stored).to.equal(1002);
  });

  it('refuses a task whose line would pass 1 MiB without sending it; the others on the connection go on', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const big = 'x'.repeat(2 * 1024 * 1024);
    const run = await runCli(['submit', '--port', String(cluster.port)], { input: `small1\n${big}\nsmall2\nsmall3\n` });
    expect(run.code).to.equal(1);
    expect(run.stderr).to.equal('');
    const out = lines(run.stdout);
    expect(out).to.have.length(4);
    expect(out[0]).to.match(/\] small1 -> Task 'small1' processed by worker \d/);
    expect(out[1]).to.match(
      /^\[ {3}-- {3}\] x{20,}… -> refused LINE_TOO_LONG: the task's message is 2097\d{3} bytes, over the server's limit of 1048576 \(1 MiB\) per line; it was not sent$/,
    );
    expect(out[1]?.length).to.be.below(300);
    expect(out[2]).to.match(/\] small2 -> Task 'small2' processed by worker \d/);
    expect(out[3]).to.match(/\] small3 -> Task 'small3' processed by worker \d/);
  });

  it('measures the line in UTF-8 bytes as the server does: exactly 1 MiB is sent, one byte more is not', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const connection = await cluster.connect();
    const payload = (extraBytes: number, id: string): string => {
      const overhead = Buffer.byteLength(JSON.stringify({ type: 'submit', id, kind: 'hash', payload: '' }));
      const room = MAX_LINE_BYTES - overhead + extraBytes;
      // Two-byte characters, so that counting characters instead of bytes would be far off.
      return 'é'.repeat(Math.floor(room / 2)) + 'a'.repeat(room % 2);
    };
    const atLimit = await connection.submit('hash', payload(0, 'b1'), { id: 'b1' });
    expect(atLimit.type).to.equal('done');
    let refused: unknown;
    await connection.submit('hash', payload(1, 'b2'), { id: 'b2' }).catch((error: unknown) => (refused = error));
    expect(refused).to.be.instanceOf(RondaError);
    expect((refused as RondaError).code).to.equal('LINE_TOO_LONG');
    expect(connection.closed).to.equal(false);
    expect((await connection.submit('text', 'after')).type).to.equal('done');
  });

  it('stats and results print tables or JSON; results --data-dir reads the files with no server', async function () {
    const dataDir = await makeTempDir();
    tempDirs.push(dataDir);
    const cluster = await startCluster({ args: ['--quiet'], dataDir });
    const port = ['--port', String(cluster.port)];
    const submitted = await runCli(['submit', ...port, 'r1', 'r2', 'r3', 'r4', 'r5', 'r6']);
    expect(submitted.code).to.equal(0);

    const statsJson = await runCli(['stats', ...port, '--json']);
    expect(statsJson.code).to.equal(0);
    const [stats] = replies(statsJson.stdout);
    if (stats?.type !== 'stats') throw new Error(`not a stats reply: ${statsJson.stdout}`);
    expect(stats.workers.map((worker) => [worker.slot, worker.done, worker.state])).to.deep.equal([
      [1, 2, 'ready'],
      [2, 2, 'ready'],
      [3, 2, 'ready'],
    ]);
    const statsTable = await runCli(['stats', ...port]);
    expect(statsTable.code).to.equal(0);
    const table = lines(statsTable.stdout);
    expect(table[0]).to.match(/^worker\s+pid\s+state\s+done\s+failed\s+in flight\s+restarts\s+uptime$/);
    expect(table.slice(1, 4).map((line) => line.trim().split(/\s+/).slice(0, 4))).to.deep.equal(
      stats.workers.map((worker) => [String(worker.slot), String(worker.pid), 'ready', '2']),
    );
    expect(table[4]).to.match(/^queued 0, accepted 6, 1 client connected, server up \d+s$/);

    const fromServer = await runCli(['results', ...port, '--json', '--limit', '4']);
    expect(fromServer.code).to.equal(0);
    const rows = rowsOf(fromServer.stdout);
    expect(rows).to.have.length(4);
    expect(rows.every((row) => row.status === 'done')).to.equal(true);
    const onlyTwo = await runCli(['results', ...port, '--json', '--worker', '2']);
    expect(rowsOf(onlyTwo.stdout).map((row) => row.task).sort()).to.deep.equal(['r2', 'r5']);
    // A worker the cluster does not have is a mistake the server names; the client does not hang.
    const tooHigh = await runCli(['results', ...port, '--worker', '9'], { timeoutMs: 5_000 });
    expect(tooHigh.code).to.equal(1);
    expect(lines(tooHigh.stderr)).to.deep.equal(['ronda: worker must be at most 3: the cluster has 3 workers']);
    const asTable = await runCli(['results', ...port, '--limit', '6']);
    expect(lines(asTable.stdout)[0]).to.match(/^worker\s+task id\s+kind\s+task\s+status\s+result\s+time \(UTC\)$/);
    expect(lines(asTable.stdout)).to.have.length(7);

    await cluster.kill('SIGTERM');
    const offline = await runCli(['results', '--data-dir', dataDir, '--json', '--limit', '100']);
    expect(offline.code, offline.stderr).to.equal(0);
    const offlineRows = rowsOf(offline.stdout);
    expect(offlineRows.map((row) => row.task).sort()).to.deep.equal(['r1', 'r2', 'r3', 'r4', 'r5', 'r6']);
    for (const row of offlineRows) expect(row.result).to.equal(`Task '${row.task}' processed by worker ${row.worker}`);
    const offlineWorker = await runCli(['results', '--data-dir', dataDir, '--worker', '3', '--json']);
    expect(rowsOf(offlineWorker.stdout).map((row) => row.task).sort()).to.deep.equal(['r3', 'r6']);

    const noSuchWorker = await runCli(['results', '--data-dir', dataDir, '--worker', '9']);
    expect(noSuchWorker.code).to.equal(1);
    expect(lines(noSuchWorker.stderr)).to.deep.equal([`ronda: ${dataDir} has no worker9.db (it has worker1.db to worker3.db)`]);
    const emptyDir = await makeTempDir();
    tempDirs.push(emptyDir);
    const wrongDir = await runCli(['results', '--data-dir', emptyDir]);
    expect(wrongDir.code).to.equal(1);
    expect(wrongDir.stdout).to.equal('');
    expect(lines(wrongDir.stderr)).to.deep.equal([
      `ronda: ${emptyDir} has no worker databases (workerN.db); is it the cluster's --data-dir?`,
    ]);
  });

  it('with no server: one clear line on stderr, exit code 1, no stack trace, for every command', async function () {
    const port = String(await unusedPort());
    const runs = await Promise.all([
      runCli(['client', '--port', port]),
      runCli(['submit', '--port', port, 'x']),
      runCli(['stats', '--port', port]),
      runCli(['results', '--port', port]),
      runCli(['--port', port]),
    ]);
    for (const run of runs) {
      expect(run.code).to.equal(1);
      expect(run.stdout).to.equal('');
      expect(lines(run.stderr)).to.deep.equal([
        `ronda: cannot connect to 127.0.0.1:${port}: no server is listening there (start one with: npm start)`,
      ]);
    }
    const missing = await runCli(['results', '--data-dir', path.join(await unusedDirName(), 'nope')]);
    expect(missing.code).to.equal(1);
    expect(lines(missing.stderr)).to.have.length(1);
    expect(missing.stderr).to.match(/is not a folder of worker databases/);
  });

  it('sends the token from --token or RONDA_TOKEN, as the server reads it; a wrong one is one line, exit 1', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--token', 'secret123'] });
    const env = { RONDA_PORT: String(cluster.port) };
    const missing = await runCli(['stats'], { env });
    expect(missing.code).to.equal(1);
    expect(lines(missing.stderr)).to.deep.equal([
      `ronda: the server at 127.0.0.1:${cluster.port} refused the token (wrong or missing token); pass --token or set RONDA_TOKEN`,
    ]);
    const wrong = await runCli(['submit', '--token', 'nope', 'x'], { env });
    expect(wrong.code).to.equal(1);
    expect(wrong.stderr).to.match(/refused the token/);
    const right = await runCli(['submit', 'x'], { env: { ...env, RONDA_TOKEN: 'secret123' } });
    expect(right.code, right.stderr).to.equal(0);
    expect(right.stdout).to.match(/^\[worker 1\] x -> Task 'x' processed by worker 1 /);
  });

  it('takes options before the command as after it; options alone are the console', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const port = String(cluster.port);
    const stats = await runCli(['--port', port, 'stats', '--json']);
    expect(stats.code, stats.stderr).to.equal(0);
    expect(replies(stats.stdout)[0]).to.deep.include({ type: 'stats' });
    const submit = await runCli([`--port=${port}`, 'submit', '--kind', 'hash', 'hola']);
    expect(submit.code, submit.stderr).to.equal(0);
    expect(submit.stdout).to.match(/\] hash hola -> b221d9dbb083a7f3/);
    const consoleRun = await runCli(['--port', port], { input: 'uno\nsalir\n' });
    expect(consoleRun.code, consoleRun.stderr).to.equal(0);
    expect(lines(consoleRun.stdout)[0]).to.equal(`connected to 127.0.0.1:${port}: 3 worker(s), task kinds text, hash, sleep, fib.`);
  });

  it('--version and -v print the package version, for the client and for the server', async function () {
    const { version } = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const args of [['--version'], ['-v']]) {
      const client = await runCli(args);
      expect(client.code, client.stderr).to.equal(0);
      expect(client.stdout).to.equal(`${version}\n`);
      const server = spawnSync(process.execPath, [PRIMARY_SCRIPT, ...args], { encoding: 'utf8', env: cliEnv() });
      expect(server.status, server.stderr).to.equal(0);
      expect(server.stdout).to.equal(`${version}\n`);
    }
  });

  it('bad usage exits 2 with the reason and a hint where the options are, not the whole usage; --help exits 0', async function () {
    const cases: [string[], string][] = [
      [['results', '--limit', '0'], 'ronda: --limit must be at least 1\nrun "ronda results --help" for the options\n'],
      [['submit', '--colour', 'red', 'x'], 'ronda: unknown option --colour\nrun "ronda submit --help" for the options\n'],
      [['stats', '--jsn'], 'ronda: unknown option --jsn (did you mean --json?)\nrun "ronda stats --help" for the options\n'],
      [['stats', 'now'], 'ronda: unexpected argument "now"\nrun "ronda stats --help" for the options\n'],
      [['client', '--retry=x'], 'ronda: --retry must be a number, not a string\nrun "ronda client --help" for the options\n'],
      [['bench'], 'ronda: unknown command "bench"\nrun "ronda --help" for the commands\n'],
      [['frobnicate'], 'ronda: unknown command "frobnicate"\nrun "ronda --help" for the commands\n'],
      [['stat'], 'ronda: unknown command "stat" (did you mean stats?)\nrun "ronda --help" for the commands\n'],
    ];
    for (const [args, stderr] of cases) {
      const run = await runCli(args);
      expect(run.code, args.join(' ')).to.equal(2);
      expect(run.stderr, args.join(' ')).to.equal(stderr);
    }
    const mixed = await runCli(['submit', '-', 'x']);
    expect(mixed.code).to.equal(2);
    expect(lines(mixed.stderr)).to.deep.equal([
      'ronda: "-" (read standard input) cannot be mixed with tasks given as arguments',
      'run "ronda submit --help" for the options',
    ]);
    for (const flag of ['--help', '-h']) {
      const help = await runCli(['submit', flag]);
      expect(help.code).to.equal(0);
      expect(help.stdout).to.match(/^Usage: ronda submit/);
    }
  });
});

async function unusedDirName(): Promise<string> {
  const dir = await makeTempDir();
  await rm(dir, { recursive: true, force: true });
  return dir;
}
