import { expect } from 'chai';
import net from 'node:net';
import { memoryMb, startCluster, stopClusters, until } from '../helpers/cluster';
import { closeRawClients, rawClient } from '../helpers/raw-client';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Samples the primary's resident memory every 100 ms while `during` runs; resolves its peak. */
async function peakRssDuring(pid: number, during: () => Promise<void>): Promise<number> {
  let peak = memoryMb(pid, 'VmRSS');
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, memoryMb(pid, 'VmRSS'));
    } catch {
      // The process is gone; the test says so where it talks to it.
    }
  }, 100);
  try {
    await during();
  } finally {
    clearInterval(sampler);
  }
  return Math.max(peak, memoryMb(pid, 'VmRSS'));
}

/** A bare socket that writes `data` and reads nothing: its replies are left to pile up. */
async function nonReader(port: number, data: string | Buffer): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.on('error', () => undefined);
  socket.pause();
  socket.write(data);
  return socket;
}

describe('backpressure on every request: memory bounded per connection', function () {
  const sockets: net.Socket[] = [];
  afterEach(async function () {
    for (const socket of sockets.splice(0)) socket.destroy();
    closeRawClients();
    await stopClusters();
  });

  it('stops reading a client that asks for results and reads none: 2,000 queries of 1,000 rows', async function () {
    this.timeout(60_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const filler = await rawClient(cluster.port);
    let lines = '';
    for (let i = 0; i < 6_000; i += 1) lines += `${JSON.stringify({ type: 'submit', id: `f${i}`, payload: `row ${i} ${'x'.repeat(60)}` })}\n`;
    filler.send(lines);
    await filler.next(() => filler.messages.length >= 6_000, 30_000);

    const baseline = memoryMb(cluster.pid, 'VmRSS');
    const query = `${JSON.stringify({ type: 'results', limit: 1_000 })}\n`;
    const peak = await peakRssDuring(cluster.pid, async () => {
      sockets.push(await nonReader(cluster.port, query.repeat(2_000)));
      await sleep(4_000);
    });
    // Each reply is about 150 KB: 2,000 of them would be 300 MB held for a client that reads nothing.
    console.log(`      results flood: baseline ${baseline.toFixed(0)} MB, peak ${peak.toFixed(0)} MB`);
    expect(peak - baseline, `baseline ${baseline.toFixed(0)} MB, peak ${peak.toFixed(0)} MB`).to.be.below(60);

    // The same client, reading now, gets its replies in order; another client is served meanwhile.
    const other = await rawClient(cluster.port);
    other.send({ type: 'submit', id: 'other', payload: 'x' });
    expect(await other.reply('other')).to.include({ type: 'done' });
    const reader = sockets[0] as net.Socket;
    let received = '';
    reader.setEncoding('utf8').on('data', (text: string) => (received += text));
    reader.resume();
    await until(() => (received.match(/"type":"results"/g) ?? []).length >= 50, 20_000, '50 results replies');
  });

  it('holds under 8 MB per connection once 50 clients sending 1 MiB tasks and reading nothing are stopped', async function () {
    this.timeout(60_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const baseline = memoryMb(cluster.pid, 'VmRSS');
    const big = 'x'.repeat(1024 * 1024 - 64);
    const submits = Array.from({ length: 8 }, (_, i) => `${JSON.stringify({ type: 'submit', id: `big${i}`, payload: big })}\n`).join('');
    const peak = await peakRssDuring(cluster.pid, async () => {
      for (let i = 0; i < 50; i += 1) sockets.push(await nonReader(cluster.port, submits));
      await sleep(5_000);
    });
    // Each connection is stopped by what it owes (its replies, unread); what it held while its
    // tasks ran is garbage by now, given back as the collector gets to it.
    let held = memoryMb(cluster.pid, 'VmRSS');
    const settled = Date.now();
    while (Date.now() - settled < 20_000 && (held - baseline) / 50 >= 8) {
      await sleep(250);
      held = memoryMb(cluster.pid, 'VmRSS');
    }
    const peakEach = (peak - baseline) / 50;
    const heldEach = (held - baseline) / 50;
    console.log(
      `      50 non-readers of 1 MiB tasks: baseline ${baseline.toFixed(0)} MB, peak ${peak.toFixed(0)} MB (${peakEach.toFixed(1)} MB each), ` +
        `${held.toFixed(0)} MB (${heldEach.toFixed(1)} MB each) ${((Date.now() - settled) / 1000).toFixed(1)} s later`,
    );
    expect(heldEach, 'held per connection').to.be.below(8);
    expect(peakEach, 'peak per connection, garbage included').to.be.below(20);
    // The server still serves.
    const other = await rawClient(cluster.port);
    other.send({ type: 'submit', id: 'other', payload: 'x' });
    expect(await other.reply('other', 10_000)).to.include({ type: 'done' });
  });

  it('holds a queued task of 1 MiB of small objects as its text, not as 25 MB of objects', async function () {
    this.timeout(60_000);
    // A heap limit the parsed objects of 40 such tasks (1 GB) would break and their text (40 MB)
    // does not: what is held, not what the collector has yet to give back, decides.
    const cluster = await startCluster({
      args: ['--quiet', '--workers', '1', '--max-inflight-per-worker', '1', '--shutdown-timeout-ms', '500'],
      env: { NODE_OPTIONS: '--max-old-space-size=256' },
    });
    const client = await rawClient(cluster.port);
    // The only worker is busy: every task below waits in the primary's queue.
    client.send({ type: 'submit', id: 'busy', kind: 'sleep', payload: { ms: 30_000 } });
    await new Promise((resolve) => setTimeout(resolve, 200));
    const baseline = memoryMb(cluster.pid, 'VmRSS');
    const objects = `[${Array(330_000).fill('{}').join(',')}]`;
    const line = `{"type":"submit","kind":"hash","payload":${objects}}\n`;
    const peak = await peakRssDuring(cluster.pid, async () => {
      for (let i = 0; i < 40; i += 1) sockets.push(await nonReader(cluster.port, line));
      await until(async () => (await client.stats()).queued === 40, 30_000, '40 tasks queued');
    });
    console.log(`      40 queued tasks of 1 MiB of {}, heap limit 256 MB: baseline ${baseline.toFixed(0)} MB, peak ${peak.toFixed(0)} MB`);
    expect((await client.stats()).queued).to.equal(40);
  });

  it('closes a connection that trickles bytes without ever ending a line, after --idle-timeout-ms', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--idle-timeout-ms', '1000'] });
    const slow = await rawClient(cluster.port);
    // JSON never ends by a pause (plain text does: the seed's client sends a task that way).
    slow.send('{"type":"submit","payload":"');
    const trickle = setInterval(() => slow.send('x'), 300);
    try {
      await slow.waitClosed(4_000);
    } finally {
      clearInterval(trickle);
    }
    expect(slow.messages.find((message) => message.type === 'error')).to.deep.include({ code: 'IDLE_TIMEOUT' });
  });

  it('drops a connection that reads none of its replies for --idle-timeout-ms', async function () {
    this.timeout(20_000);
    const cluster = await startCluster({ args: ['--quiet', '--idle-timeout-ms', '1500'] });
    let lines = '';
    for (let i = 0; i < 20_000; i += 1) lines += `${JSON.stringify({ type: 'submit', id: `r${i}`, payload: 'y'.repeat(1000) })}\n`;
    const socket = await nonReader(cluster.port, lines);
    sockets.push(socket);
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    const gone = await Promise.race([closed.then(() => true), sleep(8_000).then(() => false)]);
    expect(gone, 'closed by the server').to.equal(true);
    const other = await rawClient(cluster.port);
    expect((await other.stats()).connections).to.equal(1);
  });
});
