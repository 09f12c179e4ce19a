import { expect } from 'chai';
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { isAlive, processesMentioning, startCluster, stopClusters, testDir, until } from '../helpers/cluster';
import { closeRawClients, rawClient } from '../helpers/raw-client';

/** A handlers module outside the project: its folder has no node_modules. */
async function outsideModule(dir: string, name: string, source: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, name);
  await writeFile(file, source);
  return file;
}

describe('start-up: one cluster per data dir, and failures that name their cause', function () {
  afterEach(async function () {
    closeRawClients();
    await stopClusters();
  });


  it('refuses a second cluster on the same data dir, naming the folder and the owner, forking nothing', async function () {
    this.timeout(20_000);
    const first = await startCluster({ args: ['--quiet'] });
    await first.waitFor(/standby worker pid \d+ loaded/);
    const workersBefore = processesMentioning(first.dataDir).sort();
    const second = await startCluster({ args: ['--quiet'], dataDir: first.dataDir, wait: false });
    expect((await second.waitForExit()).code).to.equal(1);
    expect(second.output).to.include(`${first.dataDir} is in use by another Ronda cluster (its primary is pid ${first.pid})`);
    expect(processesMentioning(first.dataDir).sort(), 'no worker of the second one ran on the files').to.deep.equal(workersBefore);
    // The first one is untouched.
    const client = await rawClient(first.port);
    client.send({ type: 'submit', id: 'still', payload: 'x' });
    expect(await client.reply('still')).to.include({ type: 'done' });
  });

  it('takes its lock again when the lock file is deleted under it, so a second cluster is still refused', async function () {
    this.timeout(20_000);
    const first = await startCluster({ args: ['--quiet'] });
    await unlink(path.join(first.dataDir, 'ronda.lock'));
    await first.waitFor(/the lock file in .* was deleted or replaced; taking it again/, 5_000);
    const second = await startCluster({ args: ['--quiet'], dataDir: first.dataDir, wait: false });
    expect((await second.waitForExit()).code).to.equal(1);
    expect(second.output).to.include(`is in use by another Ronda cluster (its primary is pid ${first.pid})`);
  });

  it('names a data dir that is a file, and a lock file that is not one', async function () {
    const dir = await testDir();
    const file = path.join(dir, 'a-file');
    await writeFile(file, 'x');
    const onFile = await startCluster({ args: ['--quiet'], dataDir: file, wait: false });
    expect((await onFile.waitForExit()).code).to.equal(1);
    expect(onFile.output).to.include(`--data-dir ${file} is not a folder`);
    await writeFile(path.join(dir, 'ronda.lock'), Buffer.alloc(4096, 0x41));
    const badLock = await startCluster({ args: ['--quiet'], dataDir: dir, wait: false });
    expect((await badLock.waitForExit()).code).to.equal(1);
    expect(badLock.output).to.match(/cannot lock .*ronda\.lock: SQLITE_NOTADB/);
  });

  it('takes over the data dir of a primary that was SIGKILLed', async function () {
    this.timeout(20_000);
    const dataDir = await testDir();
    const first = await startCluster({ args: ['--quiet'], dataDir });
    await first.kill('SIGKILL');
    const second = await startCluster({ args: ['--quiet'], dataDir });
    const client = await rawClient(second.port);
    client.send({ type: 'submit', id: 'after', payload: 'x' });
    expect(await client.reply('after')).to.include({ type: 'done' });
  });

  it('writes --ready-file with its pid, host and port once it serves, for a program that started it', async function () {
    const dir = await testDir();
    const file = path.join(dir, 'ready.json');
    const cluster = await startCluster({ args: ['--quiet', '--ready-file', file] });
    const ready = JSON.parse(await readFile(file, 'utf8')) as { pid: number; host: string; port: number };
    expect(ready).to.deep.equal({ pid: cluster.pid, host: '127.0.0.1', port: cluster.port });
    const client = await rawClient(ready.port);
    client.send({ type: 'submit', id: 'r', payload: 'x' });
    expect(await client.reply('r')).to.include({ type: 'done' });
    const unwritable = await startCluster({ args: ['--quiet', '--ready-file', path.join(dir, 'no-such-folder', 'ready.json')], wait: false });
    expect((await unwritable.waitForExit()).code).to.equal(1);
    expect(unwritable.output).to.match(/cannot write --ready-file .*no-such-folder\/ready\.json: ENOENT/);
  });

  it('fails on a port in use before forking any worker', async function () {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      const cluster = await startCluster({ args: ['--quiet'], port, wait: false });
      expect((await cluster.waitForExit()).code).to.equal(1);
      expect(cluster.output).to.include(`127.0.0.1:${port} is in use by another program (another Ronda?)`);
      expect(cluster.output).to.not.match(/ready, pid/);
    } finally {
      server.close();
    }
  });

  it('names the handlers module and the line of its syntax error, once', async function () {
    const dir = await testDir();
    const bad = await outsideModule(path.join(dir, 'kinds'), 'bad.js', "'use strict';\nconst a = 1;\nconst b = ;\n");
    const cluster = await startCluster({ args: ['--quiet', '--handlers', bad], wait: false });
    expect((await cluster.waitForExit()).code).to.equal(1);
    const reason = `cannot load the handlers module ${bad}: SyntaxError: Unexpected token ';' (at ${bad}:3)`;
    expect(cluster.output.split(reason).length - 1, cluster.output).to.equal(1);
    await until(() => processesMentioning(cluster.dataDir).length === 0, 3_000, 'no worker left');
  });

  it('lets a handlers module outside the project require zod, and names a missing file', async function () {
    const dir = await testDir();
    const upper = await outsideModule(
      path.join(dir, 'kinds'),
      'upper.js',
      "const { z } = require('zod');\nexports.kinds = { upper: { schema: z.string(), run: (text) => text.toUpperCase() } };\n",
    );
    const cluster = await startCluster({ args: ['--quiet', '--handlers', upper] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'submit', id: 'u', kind: 'upper', payload: 'hola' });
    expect(await client.reply('u')).to.deep.include({ type: 'done', result: 'HOLA' });

    const missing = await startCluster({ args: ['--quiet', '--handlers', path.join(dir, 'nope.js')], wait: false });
    expect((await missing.waitForExit()).code).to.equal(2);
    expect(missing.output).to.include(`--handlers ${path.join(dir, 'nope.js')}: no such file`);
  });

  it('reads the token from --token-file, and warns when one is given on the command line', async function () {
    const dir = await testDir();
    const file = path.join(dir, 'token');
    await writeFile(file, 'file-secret-123\n');
    const fromFile = await startCluster({ args: ['--quiet', '--token-file', file] });
    const refused = await rawClient(fromFile.port);
    refused.send({ type: 'hello', token: 'wrong-one-123' });
    await refused.waitClosed(5_000);
    const allowed = await rawClient(fromFile.port);
    allowed.send({ type: 'hello', token: 'file-secret-123' });
    expect(await allowed.next((message) => message.type === 'hello')).to.include({ server: 'ronda' });
    expect(fromFile.output).to.not.include('shows in `ps`');

    const onCommandLine = await startCluster({ args: ['--quiet', '--token', 'visible-secret'] });
    expect(onCommandLine.output).to.include('--token on the command line shows in `ps` to every user of this machine');
  });

  it('makes room for a client with the token at the connection limit, and closes those that never say hello', async function () {
    this.timeout(20_000);
    const dir = await testDir();
    const file = path.join(dir, 'token');
    await writeFile(file, 'the-right-token\n');
    const cluster = await startCluster({ args: ['--quiet', '--token-file', file, '--max-connections', '4', '--idle-timeout-ms', '1500'] });
    const silent = [];
    for (let i = 0; i < 4; i += 1) silent.push(await rawClient(cluster.port));
    await new Promise((resolve) => setTimeout(resolve, 100));
    // The server is full of connections that say nothing; one with the token still gets in.
    const good = await rawClient(cluster.port);
    good.send({ type: 'hello', token: 'the-right-token' });
    expect(await good.next((message) => message.type === 'hello')).to.include({ server: 'ronda' });
    good.send({ type: 'submit', id: 'g', payload: 'x' });
    expect(await good.reply('g')).to.include({ type: 'done' });
    // The oldest silent one made room; the others are closed after the idle timeout (or 10 s). The
    // good client keeps talking meanwhile, or it would be idle as long as they are.
    const talking = setInterval(() => good.send({ type: 'stats' }), 300);
    try {
      for (const client of silent) await client.waitClosed(8_000);
    } finally {
      clearInterval(talking);
    }
    for (const client of silent) {
      const error = client.messages.find((message) => message.type === 'error');
      expect(['UNAUTHORIZED', 'IDLE_TIMEOUT']).to.include(error?.type === 'error' ? error.code : undefined);
    }
    expect(good.isOpen).to.equal(true);
  });

  it('reads only the first few KB of a --token-file, whatever it is', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--token-file', '/dev/zero'], wait: false });
    expect((await cluster.waitForExit()).code).to.equal(2);
    expect(cluster.output).to.include('--token-file /dev/zero: its first line must be a token of 8 to 1024 characters');
  });

  it('slows down a loop of wrong tokens and logs it', async function () {
    this.timeout(20_000);
    const cluster = await startCluster({ args: ['--token', 'right-token-1'] });
    let guesses = 0;
    const until = Date.now() + 3_000;
    while (Date.now() < until) {
      const client = await rawClient(cluster.port);
      client.send({ type: 'hello', token: `guess-${guesses}` });
      await client.waitClosed(10_000);
      guesses += 1;
    }
    console.log(`      ${guesses} wrong tokens in 3 s from one connection loop`);
    expect(guesses).to.be.below(10);
    expect(cluster.output).to.match(/authentication failed from 127\.0\.0\.1 \(wrong token; \d+ in a row from there, answered after \d+ ms\)/);
    // The right token is answered at once, whatever came before.
    const started = Date.now();
    const good = await rawClient(cluster.port);
    good.send({ type: 'hello', token: 'right-token-1' });
    await good.next((message) => message.type === 'hello');
    expect(Date.now() - started).to.be.below(200);
  });

  it('logs a killed standby worker and forks another', async function () {
    this.timeout(20_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const loaded = await cluster.waitFor(/standby worker pid (\d+) loaded/);
    const standby = Number(loaded[1]);
    process.kill(standby, 'SIGKILL');
    await cluster.waitFor(new RegExp(`standby worker pid ${standby} exited \\(SIGKILL\\); forking another`));
    const next = await cluster.waitFor(new RegExp(`standby worker pid (?!${standby}\\b)(\\d+) loaded`));
    expect(isAlive(Number(next[1]))).to.equal(true);
  });
});
