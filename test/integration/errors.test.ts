import { expect } from 'chai';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ERROR_CODES, ErrorCode } from '../../shared/errors';
import { MAX_LINE_BYTES, type ServerMessage } from '../../shared/protocol';
import { ROOT, startCluster, stopClusters, testDir, until, type Cluster } from '../helpers/cluster';
import { request } from '../helpers/http';
import { readRows } from '../helpers/db';
import { closeRawClients, rawClient, type RawClient } from '../helpers/raw-client';

const HOSTILE_KINDS = path.join(ROOT, 'test', 'fixtures', 'hostile-kinds.js');

/** Codes a test below has seen the server send; the last test checks that none is missing. */
const reached = new Set<string>();

let sequence = 0;

/** Submits a good text task on `client` and checks its stored-and-answered result. */
async function servesGoodTask(client: RawClient): Promise<void> {
  const id = `good-${(sequence += 1)}`;
  client.send({ type: 'submit', id, kind: 'text', payload: id });
  const reply = await client.reply(id);
  expect(reply).to.include({ type: 'done', id });
  expect(reply.type === 'done' && reply.result).to.match(new RegExp(`^Task '${id}' processed by worker \\d$`));
}

/** The server still serves a good task, on a fresh connection. */
async function stillServes(cluster: Cluster): Promise<void> {
  const client = await rawClient(cluster.port);
  await servesGoodTask(client);
  client.destroy();
}

function expectError(message: ServerMessage, code: ErrorCode, text?: RegExp): void {
  expect(message.type, JSON.stringify(message)).to.equal('error');
  if (message.type !== 'error') return;
  expect(message.code).to.equal(code);
  if (text !== undefined) expect(message.message).to.match(text);
  reached.add(code);
}

function expectFailed(message: ServerMessage, code: ErrorCode, text?: RegExp): void {
  expect(message.type, JSON.stringify(message)).to.equal('failed');
  if (message.type !== 'failed') return;
  expect(message.error.code).to.equal(code);
  if (text !== undefined) expect(message.error.message).to.match(text);
  reached.add(code);
}

const isError = (message: ServerMessage): boolean => message.type === 'error';

describe('error codes: each is reachable, and the server serves a good task afterwards', function () {
  describe('on one cluster, connection kept', function () {
    let cluster: Cluster;
    before(async function () {
      cluster = await startCluster({
        args: ['--quiet', '--handlers', HOSTILE_KINDS, '--max-attempts', '1', '--min-task-timeout-ms', '100'],
      });
    });
    afterEach(closeRawClients);
    after(stopClusters);

    it('BAD_JSON for a line that starts with { but is not JSON', async function () {
      const client = await rawClient(cluster.port);
      client.send('{"type":"submit",\n');
      expectError(await client.next(isError), ErrorCode.BAD_JSON, /not valid JSON/);
      await servesGoodTask(client);
    });

    it('BAD_MESSAGE for unknown fields, unknown types, out-of-range numbers and deep nesting', async function () {
      const client = await rawClient(cluster.port);
      const deep = JSON.parse(`${'['.repeat(40)}${']'.repeat(40)}`) as unknown;
      const cases: [object, RegExp][] = [
        [{ type: 'submit', id: 'm1', payload: 'x', color: 'red' }, /unknown field "color"/],
        [{ type: 'launch', id: 'm2' }, /type/],
        [{ type: 'submit', id: 'm4', payload: deep }, /must not nest deeper than 32 levels/],
        [{ type: 'submit', id: 'm5', payload: 'x', timeoutMs: 10_000_000 }, /timeoutMs must be at most 600000 \(the server's --max-task-timeout-ms\)/],
        [{ type: 'submit', id: 'm6b', payload: 'x', timeoutMs: 0 }, /timeoutMs must be at least 100 \(the server's --min-task-timeout-ms\)/],
        [{ type: 'submit', id: 'm7', payload: 'x', timeoutMs: 1e308 }, /timeoutMs must be at most 600000/],
        [{ type: 'submit', id: 'm8', payload: 'x', timeoutMs: 1500.5 }, /timeoutMs must be a whole number of ms from 100 to 600000/],
        [{ type: 'submit', id: 'm6', kind: 'Bad Kind!', payload: 'x' }, /kind/],
      ];
      for (const [message, text] of cases) client.send(message);
      for (const [message, text] of cases) {
        const id = (message as { id: string }).id;
        expectError(await client.reply(id), ErrorCode.BAD_MESSAGE, text);
      }
      // A results query's `id` names the task to look up, so its error does not carry it.
      const from = client.messages.length;
      client.send({ type: 'results', id: 'm3', limit: 100_000 });
      const error = await client.next(isError, 5_000, from);
      expectError(error, ErrorCode.BAD_MESSAGE, /limit must be at most 1000/);
      expect(error).to.not.have.property('id');
      await servesGoodTask(client);
    });

    it('BAD_UTF8 for a line that is not UTF-8', async function () {
      const client = await rawClient(cluster.port);
      client.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a]));
      expectError(await client.next(isError), ErrorCode.BAD_UTF8);
      await servesGoodTask(client);
    });

    it('UNKNOWN_KIND for a kind no worker has', async function () {
      const client = await rawClient(cluster.port);
      client.send({ type: 'submit', id: 'k1', kind: 'rm-rf', payload: 'x' });
      expectFailed(await client.reply('k1'), ErrorCode.UNKNOWN_KIND, /unknown task kind "rm-rf"/);
      await servesGoodTask(client);
    });

    it('BAD_PAYLOAD naming the field and the rule', async function () {
      const client = await rawClient(cluster.port);
      client.send({ type: 'submit', id: 'p1', kind: 'fib', payload: { n: 1000 } });
      client.send({ type: 'submit', id: 'p2', kind: 'sleep', payload: { ms: 'long' } });
      expectFailed(await client.reply('p1'), ErrorCode.BAD_PAYLOAD, /^payload\.n must be at most 40$/);
      expectFailed(await client.reply('p2'), ErrorCode.BAD_PAYLOAD, /^payload\.ms must be a number, not a string$/);
      await servesGoodTask(client);
    });

    it('HANDLER_FAILED when a handler throws; the failure is stored', async function () {
      const client = await rawClient(cluster.port);
      client.send({ type: 'submit', id: 'h1', kind: 'throw', payload: { message: 'kaput' } });
      const reply = await client.reply('h1');
      expectFailed(reply, ErrorCode.HANDLER_FAILED, /^kaput$/);
      const worker = reply.type === 'failed' ? reply.worker : undefined;
      const rows = await readRows(path.join(cluster.dataDir, `worker${worker}.db`));
      const row = rows.find((r) => r.client_id === 'h1');
      expect(row?.status).to.equal('failed');
      expect(JSON.parse(row?.result ?? 'null')).to.deep.equal({ code: 'HANDLER_FAILED', message: 'kaput' });
      await servesGoodTask(client);
    });

    it('WORKER_LOST when a task kills its worker (--max-attempts 1)', async function () {
      const client = await rawClient(cluster.port);
      client.send({ type: 'submit', id: 'w1', kind: 'crash', payload: null });
      expectFailed(await client.reply('w1'), ErrorCode.WORKER_LOST, /worker died 1 time;/);
      await servesGoodTask(client);
    });

    it('TIMEOUT when a task runs past its timeoutMs', async function () {
      const client = await rawClient(cluster.port);
      client.send({ type: 'submit', id: 't1', kind: 'hang', payload: null, timeoutMs: 200 });
      expectFailed(await client.reply('t1'), ErrorCode.TIMEOUT, /time limit of 200 ms/);
      await servesGoodTask(client);
    });

    it('DUPLICATE_ID for an id already in flight on the connection, free again once answered', async function () {
      const client = await rawClient(cluster.port);
      client.send({ type: 'submit', id: 'dup', kind: 'sleep', payload: { ms: 300 } });
      client.send({ type: 'submit', id: 'dup', kind: 'text', payload: 'second' });
      expectError(await client.next(isError), ErrorCode.DUPLICATE_ID, /"dup" is already in flight/);
      const first = await client.next((m) => m.type === 'done' && m.id === 'dup');
      expect(first.type === 'done' && first.result).to.deep.equal({ sleptMs: 300 });
      client.send({ type: 'submit', id: 'dup', kind: 'text', payload: 'again' });
      const again = await client.next((m) => m.type === 'done' && m.id === 'dup' && m !== first);
      expect(again.type === 'done' && again.result).to.match(/^Task 'again' processed/);
      await servesGoodTask(client);
    });

    it('INTERNAL when the result files cannot be read', async function () {
      // Not a database: every `results` query that reads it fails inside the primary.
      await writeFile(path.join(cluster.dataDir, 'worker9.db'), 'this is not a SQLite file, '.repeat(100));
      const client = await rawClient(cluster.port);
      client.send({ type: 'results', limit: 5 });
      expectError(await client.next(isError), ErrorCode.INTERNAL, /could not read results/);
      await servesGoodTask(client);
      client.send({ type: 'results', limit: 5, worker: 1 });
      const results = await client.next((m) => m.type === 'results');
      expect(results.type === 'results' && results.rows.length).to.be.greaterThan(0);
    });
  });

  describe('on the connection, which the server then closes', function () {
    afterEach(async () => {
      closeRawClients();
      await stopClusters();
    });

    it('LINE_TOO_LONG for a line over 1 MiB, then the connection is closed', async function () {
      const cluster = await startCluster({ args: ['--quiet'] });
      const client = await rawClient(cluster.port);
      client.send(`{"type":"submit","payload":"${'a'.repeat(MAX_LINE_BYTES)}"}\n`);
      expectError(await client.next(isError), ErrorCode.LINE_TOO_LONG);
      await client.waitClosed();
      await stillServes(cluster);
    });

    it('TOO_MANY_CONNECTIONS past --max-connections', async function () {
      const cluster = await startCluster({ args: ['--quiet', '--max-connections', '2'] });
      const first = await rawClient(cluster.port);
      const second = await rawClient(cluster.port);
      await servesGoodTask(first);
      await servesGoodTask(second);
      const third = await rawClient(cluster.port);
      expectError(await third.next(isError), ErrorCode.TOO_MANY_CONNECTIONS, /limit of 2 connections/);
      await third.waitClosed();
      await servesGoodTask(first);
      first.destroy();
      await first.closed;
      // The server learns of the close asynchronously: allow it a few tries.
      let fourth: RawClient | undefined;
      for (let attempt = 0; attempt < 50 && fourth === undefined; attempt += 1) {
        const candidate = await rawClient(cluster.port);
        await new Promise((resolve) => setTimeout(resolve, 20));
        if (candidate.messages.length === 0 && candidate.isOpen) fourth = candidate;
      }
      expect(fourth, 'a connection once one was closed').to.not.equal(undefined);
      await servesGoodTask(fourth as RawClient);
    });

    it('UNAUTHORIZED without the token first, or with a wrong one; the right one is served', async function () {
      const cluster = await startCluster({ args: ['--quiet', '--token', 'sesame-0123'] });
      const anonymous = await rawClient(cluster.port);
      anonymous.send({ type: 'submit', id: 'a1', payload: 'x' });
      expectError(await anonymous.next(isError), ErrorCode.UNAUTHORIZED, /hello/);
      await anonymous.waitClosed();

      const plain = await rawClient(cluster.port);
      plain.send('hello there\n');
      expectError(await plain.next(isError), ErrorCode.UNAUTHORIZED);
      await plain.waitClosed();

      const wrong = await rawClient(cluster.port);
      wrong.send({ type: 'hello', token: 'sesame-0124' });
      expectError(await wrong.next(isError), ErrorCode.UNAUTHORIZED, /wrong or missing token/);
      await wrong.waitClosed();

      const right = await rawClient(cluster.port);
      right.send({ type: 'hello', token: 'sesame-0123' });
      const hello = await right.next((m) => m.type === 'hello');
      expect(hello).to.include({ server: 'ronda' });
      await servesGoodTask(right);
    });

    it('IDLE_TIMEOUT for a connection that sends nothing, but not while its task runs', async function () {
      const cluster = await startCluster({ args: ['--quiet', '--idle-timeout-ms', '300'] });
      const busy = await rawClient(cluster.port);
      busy.send({ type: 'submit', id: 'slow', kind: 'sleep', payload: { ms: 700 } });
      const idle = await rawClient(cluster.port);
      expectError(await idle.next(isError), ErrorCode.IDLE_TIMEOUT, /idle for 300 ms/);
      await idle.waitClosed();
      const slow = await busy.reply('slow');
      expect(slow.type).to.equal('done');
      await servesGoodTask(busy);
    });

    it('SHUTTING_DOWN for tasks sent after SIGTERM; accepted ones still finish; a restart serves', async function () {
      const cluster = await startCluster({ args: ['--quiet'] });
      const client = await rawClient(cluster.port);
      // Long enough that 'after' surely arrives while 'before' still holds the shutdown open.
      client.send({ type: 'submit', id: 'before', kind: 'sleep', payload: { ms: 1_500 } });
      await new Promise((resolve) => setTimeout(resolve, 100));
      cluster.process.kill('SIGTERM');
      await cluster.waitFor(/shutting down/);
      client.send({ type: 'submit', id: 'after', kind: 'text', payload: 'late' });
      expectFailed(await client.reply('after'), ErrorCode.SHUTTING_DOWN, /shutting down/);
      expect(await client.reply('before')).to.include({ type: 'done' });
      expect(await cluster.waitForExit()).to.deep.equal({ code: 0, signal: null });

      const restarted = await startCluster({ args: ['--quiet'], dataDir: cluster.dataDir });
      await stillServes(restarted);
    });
  });

  describe('over HTTP, the same codes with a status', function () {
    afterEach(async () => {
      closeRawClients();
      await stopClusters();
    });

    /** Checks an HTTP error body, and counts its code as reached. */
    function expectHttpError(reply: Awaited<ReturnType<typeof request>>, status: number, code: ErrorCode, text: RegExp): void {
      expect(reply.status, reply.text).to.equal(status);
      expect(reply.json.error.code).to.equal(code);
      expect(reply.json.error.message).to.match(text);
      reached.add(code);
    }

    it('NOT_FOUND and TOO_LARGE', async function () {
      const cluster = await startCluster({ args: ['--quiet', '--http-port', '0'] });
      const port = cluster.httpPort as number;
      expectHttpError(await request(port, '/api/tasks/nobody'), 404, ErrorCode.NOT_FOUND, /no task nobody is queued, running or stored/);
      expectHttpError(await request(port, '/api/tasks', { body: { kind: 'text', payload: 'x'.repeat(1_048_577) } }), 413, ErrorCode.TOO_LARGE, /over 1048576 bytes/);
      await stillServes(cluster);
    });

    it('QUEUE_FULL, with Retry-After, while TCP clients are paused instead; then it serves again', async function () {
      const cluster = await startCluster({ args: ['--quiet', '--http-port', '0', '--workers', '1', '--max-inflight-per-worker', '1', '--max-queue', '1'] });
      const port = cluster.httpPort as number;
      const client = await rawClient(cluster.port);
      for (const id of ['a', 'b', 'c']) client.send({ type: 'submit', id, kind: 'sleep', payload: { ms: 400 } });
      await until(async () => (await request(port, '/api/stats')).json.queued >= 1, 3_000, 'the queue to fill');
      const full = await request(port, '/api/tasks', { body: { kind: 'text', payload: 'x' } });
      expectHttpError(full, 503, ErrorCode.QUEUE_FULL, /the queue is full; try again in a second/);
      expect(full.headers.get('retry-after')).to.equal('1');
      for (const id of ['a', 'b', 'c']) expect(await client.reply(id)).to.include({ type: 'done' });
      expect((await request(port, '/api/tasks', { body: { kind: 'text', payload: 'after' } })).json.type).to.equal('done');
    });
  });

  describe('a task taken back', function () {
    afterEach(async () => {
      closeRawClients();
      await stopClusters();
    });

    it('CANCELLED for a queued task its client cancels', async function () {
      const cluster = await startCluster({ args: ['--quiet', '--workers', '1', '--max-inflight-per-worker', '1'] });
      const client = await rawClient(cluster.port);
      client.send({ type: 'submit', id: 'running', kind: 'sleep', payload: { ms: 300 } });
      client.send({ type: 'submit', id: 'queued', kind: 'sleep', payload: { ms: 300 } });
      client.send({ type: 'cancel', id: 'c', taskId: 'queued' });
      expect(await client.reply('c')).to.include({ type: 'cancel' });
      expectFailed(await client.reply('queued'), ErrorCode.CANCELLED, /the task was cancelled/);
      await servesGoodTask(client);
    });
  });

  describe('a reload that cannot start its workers', function () {
    afterEach(async () => {
      closeRawClients();
      await stopClusters();
    });

    it('RELOAD_FAILED when the handlers module no longer loads; the old workers serve on', async function () {
      this.timeout(30_000);
      const dir = await testDir();
      const module = path.join(dir, 'kinds.js');
      await writeFile(module, "exports.kinds = { ok: { schema: require('zod').z.any(), run: () => 'ok' } };\n");
      const cluster = await startCluster({ args: ['--quiet', '--handlers', module] });
      await writeFile(module, 'this is not JavaScript\n');
      const client = await rawClient(cluster.port);
      client.send({ type: 'reload', id: 'r' });
      expectError(await client.reply('r', 20_000), ErrorCode.RELOAD_FAILED, /^reload stopped: worker 1: the new worker could not start .*SyntaxError/);
      client.send({ type: 'submit', id: 'ok', kind: 'ok', payload: 1 });
      expect(await client.reply('ok')).to.include({ type: 'done', result: 'ok' });
    });
  });

  describe('coverage', function () {
    it('every error code was reached above', function () {
      expect([...reached].sort()).to.deep.equal([...ERROR_CODES].sort());
    });
  });
});
