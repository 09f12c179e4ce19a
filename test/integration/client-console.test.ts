import { expect } from 'chai';
import { Chalk } from 'chalk';
import { spawnSync } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { lines, startCli, stopClis, unusedPort } from '../helpers/cli';
import { CLI_SCRIPT, makeTempDir, startCluster, stopClusters, until } from '../helpers/cluster';
import { readRows } from '../helpers/db';
import { paintSlot } from '../../shared/logger';

const ANSI = /\u001b\[[0-9;?]*[A-Za-z]/g;
const hasScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;

/**
 * A TCP proxy in front of a cluster, on port 0, that can drop every connection and refuse new
 * ones for a while: the client sees the server go away and come back on the same address, without
 * the test ever binding a port of its choosing.
 */
class FlakyProxy {
  up = true;
  private readonly sockets = new Set<net.Socket>();
  private readonly server: net.Server;

  private constructor(targetPort: number) {
    this.server = net.createServer((client) => {
      client.on('error', () => undefined);
      if (!this.up) {
        client.destroy();
        return;
      }
      const upstream = net.connect(targetPort, '127.0.0.1');
      upstream.on('error', () => client.destroy());
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.once('close', () => this.sockets.delete(socket));
      }
      client.pipe(upstream).pipe(client);
      client.once('close', () => upstream.destroy());
      upstream.once('close', () => client.destroy());
    });
  }

  static async start(targetPort: number): Promise<FlakyProxy> {
    const proxy = new FlakyProxy(targetPort);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Cuts every connection and refuses new ones until restore(). */
  drop(): void {
    this.up = false;
    for (const socket of this.sockets) socket.destroy();
  }

  restore(): void {
    this.up = true;
  }

  close(): Promise<void> {
    this.drop();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('client console (ronda client) driven through stdin', function () {
  this.timeout(30_000);
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async function () {
    await stopClis();
    await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
    await stopClusters();
  });

  it('runs tasks, :commands and :stats from piped lines, and leaves on SALIR after the replies are in', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const input = [
      'hola', ':hash hola', ':sleep 300', ':fib 20', ':submit sleep {"ms":5}', ':stats', ':nope 1', ':fib 99',
      ':sleep abc', ':submit fib {n:25}', 'SALIR', 'never sent', '',
    ].join('\n');
    const cli = startCli(['client', '--port', String(cluster.port)], { input });
    const run = await cli.result();

    expect(run.code, run.stderr).to.equal(0);
    const out = lines(run.stdout);
    expect(out[0]).to.equal(`connected to 127.0.0.1:${cluster.port}: 3 worker(s), task kinds text, hash, sleep, fib.`);
    const line = (pattern: RegExp) => out.filter((l) => pattern.test(l));
    expect(line(/^\[worker 1\] hola -> Task 'hola' processed by worker 1 \(\d+(\.\d+)? ms\)$/)).to.have.length(1);
    expect(line(/^\[worker 2\] hash hola -> b221d9dbb083a7f33428d7c2a3c3198ae925614d70210e28716ccaa7cd4ddb79 \(/)).to.have.length(1);
    // Printed when it arrived, and still waited for before leaving.
    expect(line(/^\[worker 3\] sleep \{"ms":300\} -> \{"sleptMs":300\} \(\d+ ms\)$/)).to.have.length(1);
    expect(line(/^\[worker 1\] fib \{"n":20\} -> 6765 \(/)).to.have.length(1);
    expect(line(/^\[worker 2\] sleep \{"ms":5\} -> \{"sleptMs":5\} \(/)).to.have.length(1);
    // Refused by the console itself, before anything is sent: no reply line for them.
    expect(line(/fib \{"n":99\}|sleep abc|fib \{n:25\}/)).to.deep.equal([]);
    const statsHeader = out.findIndex((l) => /^worker\s+pid\s+state\s+done\s+failed\s+in flight\s+restarts\s+uptime$/.test(l));
    expect(statsHeader).to.be.greaterThan(0);
    expect(out.slice(statsHeader + 1, statsHeader + 4).map((l) => l.trim().split(/\s+/)[0])).to.deep.equal(['1', '2', '3']);
    expect(out[statsHeader + 4]).to.match(/^queued \d+, accepted \d+, 1 client connected, server up \d+s$/);
    const refusals = lines(run.stderr);
    expect(refusals.slice(0, 3)).to.deep.equal([
      'unknown command or task kind ":nope" (the server knows: text, hash, sleep, fib); type :help',
      ':fib takes a whole number n from 0 to 40, not "99"; e.g. :fib 30',
      ':sleep takes a whole number of milliseconds from 0 to 60000, not "abc"; e.g. :sleep 500',
    ]);
    expect(refusals[3]).to.match(/^:submit fib: the payload is not JSON \(.+\); e\.g\. :submit fib \{"n":30\}$/);
    expect(refusals).to.have.length(4);
    expect(run.stdout).to.not.include('never sent');
    const stored = await readRows(path.join(cluster.dataDir, 'worker1.db'));
    expect(stored.map((row) => row.task)).to.include('hola');

    // A second session reads what the first one stored (asked in the first, the rows could still
    // be on their way: lines are pipelined).
    const second = await startCli(['client', '--port', String(cluster.port)], { input: ':results 2 --worker 1\n:results 3\nexit\n' }).result();
    expect(second.code, second.stderr).to.equal(0);
    const tables = lines(second.stdout).slice(1);
    expect(tables.filter((l) => /^worker\s+task id\s+kind\s+task\s+status\s+result\s+time \(UTC\)$/.test(l))).to.have.length(2);
    expect(tables.filter((l) => /^\s+1\s/.test(l)).length).to.be.at.least(2);
    expect(tables).to.have.length(2 + 2 + 3);
  });

  it('says in one line that the server went away, and exits 1, when the primary is killed mid-session', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const cli = startCli(['client', '--port', String(cluster.port)]);
    cli.write(':sleep 10000\nhola\n');
    await cli.waitFor(/\[worker 2\] hola -> /);
    await cluster.kill('SIGKILL');
    const run = await cli.result();
    expect(run.code).to.equal(1);
    expect(lines(run.stderr)).to.deep.equal([
      `ronda: lost the connection to the server at 127.0.0.1:${cluster.port}: the server closed the connection ` +
        '(1 task(s) got no reply; a task the server accepted may still be stored)',
    ]);
    expect(run.stderr).to.not.match(/\n\s+at /);
  });

  it('--retry reconnects with a visible attempt count, and the session goes on', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const proxy = await FlakyProxy.start(cluster.port);
    cleanups.push(() => proxy.close());
    const cli = startCli(['client', '--port', String(proxy.port), '--retry=20']);
    cli.write('uno\n');
    await cli.waitFor(/\] uno -> Task 'uno'/);

    proxy.drop();
    await cli.waitFor(/reconnecting to 127\.0\.0\.1:\d+ \(attempt 3\/20\)/);
    cli.write('while down\n');
    await cli.waitFor(/not connected: it will be sent once reconnected/);
    proxy.restore();
    await cli.waitFor(/reconnected to 127\.0\.0\.1:\d+/);
    cli.write('dos\nsalir\n');
    const run = await cli.result();

    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/\] while down -> Task 'while down' processed by worker \d/);
    expect(run.stdout).to.match(/\] dos -> Task 'dos' processed by worker \d/);
    expect(run.stdout).to.match(/attempt 1\/20\)\nreconnecting to [\d.:]+ \(attempt 2\/20\)\nreconnecting to [\d.:]+ \(attempt 3\/20\)/);
    expect(lines(run.stderr)[0]).to.equal(
      `ronda: lost the connection to the server at 127.0.0.1:${proxy.port}: the server closed the connection`,
    );
  });

  it('connects again, silently, when the server closes a console left idle', async function () {
    // Not --quiet: the primary's log says when it closes the console's connection.
    const cluster = await startCluster({ args: ['--idle-timeout-ms', '200'] });
    const cli = startCli(['client', '--port', String(cluster.port)]);
    cli.write('uno\n');
    await cli.waitFor(/\] uno -> /);
    await cluster.waitFor(/client #\d+ 127\.0\.0\.1:\d+ disconnected/, 5_000);
    cli.write('dos\nsalir\n');
    const run = await cli.result();
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/\] dos -> Task 'dos' processed by worker \d/);
    expect(run.stderr).to.equal('');
    expect(run.stdout).to.not.match(/reconnect/);
  });

  it('--retry also waits for the first connection, counting the attempts, until the server is up', async function () {
    const port = await unusedPort();
    const cli = startCli(['client', '--port', String(port), '--retry']);
    await cli.waitFor(/^connecting to 127\.0\.0\.1:\d+ \(attempt 2\/20\)$/m);
    await startCluster({ args: ['--quiet'], port });
    await cli.waitFor(/^connected to 127\.0\.0\.1:\d+: 3 worker\(s\)/m);
    cli.write('uno\nsalir\n');
    const run = await cli.result();
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stderr).to.equal('');
    expect(run.stdout).to.match(/\] uno -> Task 'uno' processed by worker 1/);
    expect(run.stdout).to.not.match(/attempt 1\//);
  });

  it('--retry on the first connection stops on Ctrl-C, or after its attempts, with one line and exit code 1', async function () {
    const port = await unusedPort();
    const waiting = startCli(['client', '--port', String(port), '--retry']);
    await waiting.waitFor(/\(attempt 2\/20\)/);
    waiting.process.kill('SIGINT');
    const stopped = await waiting.result(5_000);
    expect(stopped.code).to.equal(1);
    expect(lines(stopped.stderr)).to.deep.equal([`ronda: stopped connecting to 127.0.0.1:${port}`]);

    const run = await startCli(['client', '--port', String(port), '--retry=2']).result();
    expect(run.code).to.equal(1);
    expect(lines(run.stdout)).to.deep.equal([`connecting to 127.0.0.1:${port} (attempt 2/2)`]);
    expect(lines(run.stderr)).to.deep.equal([
      `ronda: gave up connecting: cannot connect to 127.0.0.1:${port}: no server is listening there (start one with: npm start)`,
    ]);
  });

  it('--retry=N gives up after N attempts with one line and exit code 1', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const cli = startCli(['client', '--port', String(cluster.port), '--retry=2']);
    await cli.waitFor(/^connected to/);
    await cluster.kill('SIGKILL');
    const run = await cli.result();
    expect(run.code).to.equal(1);
    expect(run.stdout).to.match(/\(attempt 1\/2\)\n.*\(attempt 2\/2\)\n$/);
    expect(lines(run.stderr)).to.deep.equal([
      `ronda: lost the connection to the server at 127.0.0.1:${cluster.port}: the server closed the connection`,
      `ronda: gave up reconnecting: cannot connect to 127.0.0.1:${cluster.port}: no server is listening there (start one with: npm start)`,
    ]);
  });
});

describe('client on a terminal (a pseudo-terminal made by script(1))', function () {
  this.timeout(30_000);
  const cleanups: (() => Promise<void>)[] = [];
  before(function () {
    if (!hasScript) this.skip();
  });
  afterEach(async function () {
    await stopClis();
    await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()));
    await stopClusters();
  });

  /**
   * Runs a command line inside a pseudo-terminal; stdin and stdout are the terminal's. script(1)
   * runs it through $SHELL, pinned here to /bin/sh, and `exec` makes the command that shell's
   * replacement: otherwise a shell that stays (dash does) takes the terminal's Ctrl-C as its own
   * SIGINT and dies with it, and the command's exit code is lost.
   */
  function inTerminal(commandLine: string) {
    const env = { FORCE_COLOR: '1', COLUMNS: '120', LINES: '40', SHELL: '/bin/sh' };
    return startCli([], { env }, ['script', '-qefc', `exec ${commandLine}`, '-E', 'never', '/dev/null']);
  }
  const quote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;

  it('prints a result above the prompt without losing the half-typed line; Ctrl-C on an empty line leaves', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const cli = inTerminal(`${quote(process.execPath)} ${quote(CLI_SCRIPT)} client --port ${cluster.port}`);
    await cli.waitFor(/ronda> /);
    cli.write(':sleep 300\r');
    await until(() => cli.stdout.replace(ANSI, '').includes('ronda> :sleep 300'), 5_000, 'the typed line to echo');
    cli.write('abc');
    const label = paintSlot(new Chalk({ level: 1 }), 1, '[worker 1]');
    await cli.waitFor(/sleptMs":300\}/);
    await until(() => /sleptMs":300\}[^\n]*\n[^\n]*ronda> abc/.test(cli.stdout.replace(ANSI, '')), 5_000, 'the prompt and "abc" drawn again');
    expect(cli.stdout).to.include(`${label} sleep {"ms":300} -> {"sleptMs":300}`);

    cli.write('\u0003'); // Ctrl-C with text: clears the line, stays
    cli.write(':sleep 20000\r');
    await until(() => cli.stdout.replace(ANSI, '').includes('ronda> :sleep 20000'), 5_000, 'the typed line to echo');
    cli.write('\u0003'); // Ctrl-C on the empty line: leaves, once the replies owed are in...
    await cli.waitFor(/waiting for 1 reply\(s\) still owed; Ctrl-C leaves now/);
    cli.write('\u0003'); // ...or right away on another Ctrl-C.
    const run = await cli.result(5_000);
    expect(run.code).to.equal(0);
    expect(run.stdout).to.not.include('abc ->');
    expect(run.stdout).to.not.include('sleptMs":20000');
    // The sleep is still running and an orderly stop would wait for it; its worker goes within
    // 2 s of losing its primary (ORPHAN_GRACE_MS).
    await cluster.kill('SIGKILL');
  });

  it('shows a progress bar for a long submit run on a terminal, and none when piped', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const dir = await makeTempDir();
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = path.join(dir, 'tasks.txt');
    // 40 tasks finishing one after another over about 0.8 s.
    await writeFile(file, Array.from({ length: 40 }, (_, i) => String(i * 20)).join('\n'));
    const submit = `${quote(process.execPath)} ${quote(CLI_SCRIPT)} submit --kind sleep --port ${cluster.port} < ${quote(file)}`;
    const terminal = await inTerminal(submit).result();
    expect(terminal.code, terminal.stdout).to.equal(0);
    expect(terminal.stdout).to.match(/\r\[#+-*\] \d+\/40 replies/);

    const piped = await startCli(['-c', submit], {}, ['/bin/sh']).result();
    expect(piped.code).to.equal(0);
    expect(lines(piped.stdout)).to.have.length(40);
    expect(piped.stdout).to.not.include('\r');
    expect(piped.stdout).to.not.include('replies');
  });
});
