import { expect } from 'chai';
import net from 'node:net';
import { ErrorCode, RondaError } from '../../shared/errors';
import { MAX_LINE_BYTES } from '../../shared/protocol';
import { startCluster, stopClusters } from '../helpers/cluster';
import { closeRawClients, rawClient } from '../helpers/raw-client';

/** Connects a bare socket and collects everything the server sends until it closes. */
async function rawSocket(port: number, options: { allowHalfOpen?: boolean } = {}) {
  const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: options.allowHalfOpen ?? false });
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (text += chunk));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, closed, text: () => text, lines: () => text.split('\n').filter((line) => line !== '') };
}

describe('connection edge cases', function () {
  afterEach(async () => {
    closeRawClients();
    await stopClusters();
  });

  it('never splits a plain-text line, even while it stops reading from a client that is not reading', async function () {
    this.timeout(60_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const raw = await rawSocket(cluster.port);
    raw.socket.pause(); // read nothing at first: the server's writes back up and it stops reading
    const count = 40_000;
    const lines = Array.from({ length: count }, (_, i) => `line-${String(i).padStart(6, '0')}-${'x'.repeat(40)}`);
    raw.socket.end(`${lines.join('\n')}\n`);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    raw.socket.resume();
    await raw.closed;
    const replies = raw.lines();
    expect(replies).to.have.length(count);
    replies.forEach((reply, i) => {
      if (!reply.startsWith(`Task '${lines[i]}' processed by worker `)) expect.fail(`reply ${i} is "${reply.slice(0, 80)}"`);
    });
  });

  it('answers a results query from a client that half-closes right after sending it', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await cluster.connect();
    await client.submit('text', 'stored first');
    const raw = await rawSocket(cluster.port, { allowHalfOpen: true });
    raw.socket.end('{"type":"results","limit":5}\n');
    await raw.closed;
    const [reply] = raw.lines();
    expect(JSON.parse(reply as string)).to.have.property('type', 'results');
    expect(JSON.parse(reply as string).rows[0]).to.include({ task: 'stored first' });
  });

  it('keeps a plain-text client\'s replies in line order around a line that is not UTF-8', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const raw = await rawSocket(cluster.port);
    raw.socket.end(Buffer.concat([Buffer.from('uno\n'), Buffer.from([0xff, 0xfe, 0x0a]), Buffer.from('tres\n')]));
    await raw.closed;
    expect(raw.lines()).to.have.length(3);
    expect(raw.lines()[0]).to.match(/^Task 'uno' processed by worker \d$/);
    expect(raw.lines()[1]).to.equal('error: line is not valid UTF-8');
    expect(raw.lines()[2]).to.match(/^Task 'tres' processed by worker \d$/);
  });

  it('closes a connection that sends anything but hello first when a token is set, garbage included', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--token', 'a-long-secret'] });
    for (const line of ['{not json', '{"type":"nope"}', 'plain words']) {
      const raw = await rawSocket(cluster.port);
      raw.socket.write(`${line}\n`);
      await raw.closed;
      expect(JSON.parse(raw.lines()[0] as string)).to.include({ type: 'error', code: 'UNAUTHORIZED' });
    }
  });

  it('shuts down even while a refused client keeps its half of the connection open', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--max-connections', '1'] });
    const first = await cluster.connect();
    await first.submit('text', 'one');
    const refused = await rawSocket(cluster.port, { allowHalfOpen: true });
    await new Promise<void>((resolve) => refused.socket.once('end', () => resolve()));
    expect(JSON.parse(refused.lines()[0] as string)).to.include({ code: 'TOO_MANY_CONNECTIONS' });
    // The refused socket never ends its side; the primary must still exit, and exit 0.
    const exit = await cluster.kill('SIGTERM', 10_000);
    expect(exit).to.deep.equal({ code: 0, signal: null });
    refused.socket.destroy();
  });

  it('refuses a bad results query in the client, and the next query is still answered', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await cluster.connect();
    const error = await client.results({ limit: 5000 }).then(
      () => undefined,
      (rejected: unknown) => rejected,
    );
    expect(error).to.be.instanceOf(RondaError);
    expect(error).to.include({ code: ErrorCode.BAD_MESSAGE });
    expect((error as Error).message).to.equal('limit must be at most 1000');
    expect(await client.results({ limit: 1 })).to.deep.equal([]);
  });
});

describe('memory bounded by payload size, not only task count', function () {
  afterEach(async () => {
    closeRawClients();
    await stopClusters();
  });

  it('takes a line of exactly 1 MiB ending in CRLF, as one ending in LF, and refuses one byte more', async function () {
    this.timeout(20_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    const line = (id: string, bytes: number) => {
      const empty = JSON.stringify({ type: 'submit', id, kind: 'hash', payload: '' });
      return JSON.stringify({ type: 'submit', id, kind: 'hash', payload: 'z'.repeat(bytes - Buffer.byteLength(empty)) });
    };
    expect(Buffer.byteLength(line('crlf', MAX_LINE_BYTES))).to.equal(MAX_LINE_BYTES);
    client.send(`${line('crlf', MAX_LINE_BYTES)}\r\n${line('lf', MAX_LINE_BYTES)}\n`);
    expect(await client.reply('crlf', 10_000)).to.include({ type: 'done' });
    expect(await client.reply('lf', 10_000)).to.include({ type: 'done' });
    client.send(`${line('over', MAX_LINE_BYTES + 1)}\r\n`);
    expect(await client.next((message) => message.type === 'error', 10_000)).to.include({ code: 'LINE_TOO_LONG' });
  });

  it('answers pipelined lines behind a reply of over 1 Mi characters: two big tasks, a small one, stats', async function () {
    this.timeout(20_000);
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    // A text task's reply carries its payload: this one's is just over the 1 Mi characters a
    // connection may owe, so the lines after it wait for it to be written.
    const big = (id: string) => JSON.stringify({ type: 'submit', id, payload: 'q'.repeat(1_048_500) });
    client.send(`${big('big1')}\n${big('big2')}\n${JSON.stringify({ type: 'submit', id: 'small', payload: 's' })}\n{"type":"stats"}\n`);
    for (const id of ['big1', 'big2', 'small']) expect(await client.reply(id, 10_000), id).to.include({ type: 'done' });
    await client.next((message) => message.type === 'stats', 5_000);
  });

  it('answers a request of 80,000 fields briefly and cheaply, with its id', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    const fields = ['"type":"stats"', '"id":"wide"', ...Array.from({ length: 80_000 }, (_, i) => `"k${i}":1`)];
    client.send(`{${fields.join(',')}}\n{"type":"submit","id":"extra","payload":"x","a":1,"b":2}\n`);
    const wide = await client.reply('wide');
    expect(wide).to.deep.include({ type: 'error', code: 'BAD_MESSAGE' });
    expect(wide.type === 'error' && wide.message).to.match(/^message has more than 16 fields/);
    const extra = await client.reply('extra');
    expect(extra.type === 'error' && extra.message).to.equal('message has unknown fields "a", "b"');
  });

  it('stops taking tasks from a client once its unanswered tasks hold 1 Mi characters', async function () {
    this.timeout(30_000);
    const cluster = await startCluster({ args: ['--quiet', '--workers', '1', '--max-inflight-per-worker', '1'] });
    const observer = await cluster.connect();
    // The only worker is busy with this for the whole test, so the big tasks below can only queue.
    const busy = observer.submit('sleep', { ms: 4_000 });
    const raw = await rawSocket(cluster.port);
    const payload = 'y'.repeat(1_000_000);
    for (let i = 0; i < 60; i += 1) raw.socket.write(`${JSON.stringify({ type: 'submit', id: `big${i}`, kind: 'hash', payload })}\n`);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    const stats = await observer.stats();
    // One such line is 1 Mi characters: it is taken (none was pending), the next waits unread.
    expect(stats.queued).to.equal(1);
    raw.socket.destroy();
    expect((await busy).type).to.equal('done');
  });
});
