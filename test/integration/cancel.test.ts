import { expect } from 'chai';
import path from 'node:path';
import { ROOT, startCluster, stopClusters, until } from '../helpers/cluster';
import { readRows } from '../helpers/db';
import { request } from '../helpers/http';
import { closeRawClients, rawClient } from '../helpers/raw-client';
import { runCli } from '../helpers/cli';
import { connect } from '../../client/index';

const KINDS = path.join(ROOT, 'test', 'fixtures', 'cancel-kinds.js');

/** Every row across the cluster's files, by task id. */
async function rowsById(dataDir: string, workers = 1): Promise<Map<string, { status: string; result: string | null }>> {
  const rows = new Map<string, { status: string; result: string | null }>();
  for (let slot = 1; slot <= workers; slot += 1) {
    for (const row of await readRows(path.join(dataDir, `worker${slot}.db`))) rows.set(row.task_id, row);
  }
  return rows;
}

describe('cancel: a task in flight taken back', function () {
  afterEach(async () => {
    closeRawClients();
    await stopClusters();
  });

  it('fails a queued task CANCELLED at once, stored as such, without running it', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--handlers', KINDS, '--workers', '1', '--max-inflight-per-worker', '1'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    client.send({ type: 'submit', id: 'first', kind: 'stubborn', payload: { ms: 3_000 } });
    client.send({ type: 'submit', id: 'queued', kind: 'stubborn', payload: { ms: 5_000 } });
    await until(async () => (await client.stats()).queued === 1, 3_000, 'the second task to queue');
    const startedAt = Date.now();
    client.send({ type: 'cancel', id: 'c1', taskId: 'queued' });
    const ack = await client.reply('c1');
    expect(ack).to.include({ type: 'cancel', state: 'queued' });
    const cancelled = await client.reply('queued');
    expect(cancelled.type === 'failed' && cancelled.error).to.deep.equal({ code: 'CANCELLED', message: 'the task was cancelled' });
    // It did not wait 5 s, nor for the full worker to finish its 3 s task: stored unrun at once.
    expect(Date.now() - startedAt).to.be.below(1_000);
    expect(client.messages.some((message) => message.type === 'done'), 'the running task is still running').to.equal(false);
    expect((await client.reply('first')).type).to.equal('done');
    const rows = await rowsById(cluster.dataDir);
    const taskId = cancelled.type === 'failed' ? (cancelled.taskId as string) : '';
    expect(rows.get(taskId)?.status).to.equal('failed');
    expect(JSON.parse(rows.get(taskId)?.result ?? '{}').code).to.equal('CANCELLED');
  });

  it('aborts a running task whose handler listens; one that ignores it, or is synchronous, runs to its end', async function () {
    const cluster = await startCluster({ args: ['--quiet', '--handlers', KINDS] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', protocol: 2 });
    client.send({ type: 'submit', id: 'patient', kind: 'patient', payload: { ms: 10_000 } });
    client.send({ type: 'submit', id: 'stubborn', kind: 'stubborn', payload: { ms: 700 } });
    client.send({ type: 'submit', id: 'spin', kind: 'spin', payload: { ms: 700 } });
    await until(async () => (await client.stats()).workers.every((worker) => worker.inflight === 1), 3_000, 'all three to run');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const startedAt = Date.now();
    for (const id of ['patient', 'stubborn', 'spin']) client.send({ type: 'cancel', id: `c-${id}`, taskId: id });
    for (const id of ['patient', 'stubborn', 'spin']) expect(await client.reply(`c-${id}`)).to.include({ type: 'cancel', state: 'running' });
    const patient = await client.reply('patient');
    expect(patient.type === 'failed' && patient.error.code).to.equal('CANCELLED');
    expect(Date.now() - startedAt, 'the patient one stopped at once').to.be.below(1_000);
    expect(await client.reply('stubborn')).to.deep.include({ type: 'done', result: { waitedMs: 700 } });
    expect(await client.reply('spin')).to.deep.include({ type: 'done', result: { spunMs: 700 } });
  });

  it('refuses another client\'s task without the token, allows it with the token, and says NOT_FOUND for one not in flight', async function () {
    const open = await startCluster({ args: ['--quiet', '--handlers', KINDS, '--http-port', '0'] });
    const openHttp = open.httpPort as number;
    // A task sent over HTTP belongs to the HTTP door: a TCP client that knows its id is a stranger.
    const theirs = (await request(openHttp, '/api/tasks?wait=false', { body: { kind: 'patient', payload: { ms: 1_000 } } })).json.taskId as string;
    const stranger = await rawClient(open.port);
    stranger.send({ type: 'cancel', id: 'x', taskId: theirs });
    const refused = await stranger.reply('x');
    expect(refused).to.include({ type: 'error', code: 'UNAUTHORIZED' });
    expect(refused.type === 'error' && refused.message).to.match(/was sent by another client: only its sender, or a client with the cluster's token, may cancel it/);
    stranger.send({ type: 'cancel', id: 'y', taskId: 'no-such-task' });
    expect(await stranger.reply('y')).to.include({ type: 'error', code: 'NOT_FOUND' });
    const cli = await runCli(['cancel', '--port', String(open.port), 'no-such-task']);
    expect(cli.code).to.equal(1);
    expect(cli.stderr).to.match(/no-such-task: NOT_FOUND: no task no-such-task is queued or running/);
    // The HTTP door may cancel what it sent.
    expect((await request(openHttp, `/api/tasks/${theirs}`, { method: 'DELETE' })).json).to.include({ cancelled: true, state: 'running' });
    await until(async () => (await request(openHttp, `/api/tasks/${theirs}`)).json.state === 'failed', 3_000, 'the task to be stored as cancelled');

    const token = 'cancel-token-1234';
    const guarded = await startCluster({ args: ['--quiet', '--handlers', KINDS, '--token', token, '--http-port', '0'] });
    const httpPort = guarded.httpPort as number;
    const running = (await request(httpPort, '/api/tasks?wait=false', { body: { kind: 'patient', payload: { ms: 10_000 } }, token })).json.taskId as string;
    const other = await rawClient(guarded.port);
    other.send({ type: 'hello', token, protocol: 2 });
    await other.next((message) => message.type === 'hello');
    await until(async () => (await request(httpPort, `/api/tasks/${running}`, { token })).json.state === 'running', 3_000, 'the task to run');
    other.send({ type: 'cancel', id: 'z', taskId: running });
    expect(await other.reply('z')).to.include({ type: 'cancel', state: 'running' });
    await until(async () => (await request(httpPort, `/api/tasks/${running}`, { token })).json.state === 'failed', 3_000, 'the task to be stored as cancelled');
    expect((await request(httpPort, `/api/tasks/${running}`, { token })).json.row.result.code).to.equal('CANCELLED');
  });

  it('cancels from the library by the id it gave, and from ronda cancel with the token; DELETE /api/tasks/:taskId too', async function () {
    const token = 'cancel-token-5678';
    const cluster = await startCluster({ args: ['--quiet', '--handlers', KINDS, '--token', token, '--http-port', '0'] });
    const httpPort = cluster.httpPort as number;
    const client = await connect({ port: cluster.port, token });
    const waiting = client.submit('patient', { ms: 10_000 }, { id: 'lib' }).catch((error: unknown) => error);
    await until(async () => (await client.stats()).workers[0]?.inflight === 1, 3_000, 'the task to run');
    expect(await client.cancel('lib')).to.include({ state: 'running' });
    expect(await waiting).to.include({ code: 'CANCELLED' });

    const accepted = await request(httpPort, '/api/tasks?wait=false', { body: { kind: 'patient', payload: { ms: 10_000 } }, token });
    const { taskId } = accepted.json as { taskId: string };
    const cli = await runCli(['cancel', '--port', String(cluster.port), '--token', token, taskId]);
    expect(cli.code, cli.stderr).to.equal(0);
    expect(cli.stdout).to.match(new RegExp(`^${taskId}: cancelled \\(it was (running|queued)\\)$`, 'm'));

    const another = await request(httpPort, '/api/tasks?wait=false', { body: { kind: 'patient', payload: { ms: 10_000 } }, token });
    const deleted = await request(httpPort, `/api/tasks/${another.json.taskId as string}`, { method: 'DELETE', token });
    expect(deleted.status).to.equal(200);
    expect(deleted.json).to.include({ cancelled: true });
    const again = await request(httpPort, `/api/tasks/${another.json.taskId as string}`, { method: 'DELETE', token });
    expect(again.status === 404 || again.json.cancelled === true).to.equal(true);
    await client.close();
  });
});
