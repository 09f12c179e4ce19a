import { expect } from 'chai';
import { startCluster, stopClusters } from '../helpers/cluster';
import { closeRawClients, rawClient } from '../helpers/raw-client';

describe('protocol 2: every request has an id; protocol 1 is served unchanged', function () {
  afterEach(async function () {
    closeRawClients();
    await stopClusters();
  });

  it('echoes the id of every request in its reply or its error, and finds results by taskId', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    client.send({ type: 'hello', id: 'h1', protocol: 2 });
    expect(await client.reply('h1')).to.include({ type: 'hello', protocol: 2 });
    client.send({ type: 'submit', id: 'task1', kind: 'text', payload: 'one' });
    const done = await client.reply('task1');
    const taskId = done.type === 'done' ? done.taskId : '';
    // Pipelined: the replies come in any order, and the ids tie them to their requests.
    client.send(
      [
        { type: 'stats', id: 's1' },
        { type: 'results', id: 'r1', taskId },
        { type: 'results', id: 'r2', taskId: 'task1' },
        { type: 'results', id: 'r3', worker: 9 },
        { type: 'results', id: 'r4', limit: -1 },
        { type: 'stats', id: 's2', extra: 1 },
      ]
        .map((message) => JSON.stringify(message))
        .join('\n') + '\n',
    );
    expect(await client.reply('s1')).to.include({ type: 'stats' });
    const byTaskId = await client.reply('r1');
    expect(byTaskId.type === 'results' && byTaskId.rows.map((row) => row.task_id)).to.deep.equal([taskId]);
    const byClientId = await client.reply('r2');
    expect(byClientId.type === 'results' && byClientId.rows.map((row) => row.client_id)).to.deep.equal(['task1']);
    expect(await client.reply('r3')).to.include({ type: 'error', code: 'BAD_MESSAGE' });
    expect(await client.reply('r4')).to.include({ type: 'error', code: 'BAD_MESSAGE' });
    expect(await client.reply('s2')).to.include({ type: 'error', code: 'BAD_MESSAGE' });
  });

  it('serves protocol 1 unchanged: results id is the filter, and query replies carry no id', async function () {
    const cluster = await startCluster({ args: ['--quiet'] });
    const client = await rawClient(cluster.port);
    // No hello, and a submit with no id: the reply names the task by the server's id.
    client.send({ type: 'submit', kind: 'text', payload: 'anonymous' });
    const anonymous = await client.next((message) => message.type === 'done');
    client.send({ type: 'submit', id: 'named', kind: 'text', payload: 'named' });
    await client.reply('named');
    const from = client.messages.length;
    client.send({ type: 'results', id: 'named' });
    const results = await client.next((message) => message.type === 'results', 5_000, from);
    expect(results).to.not.have.property('id');
    expect(results.type === 'results' && results.rows.map((row) => row.client_id)).to.deep.equal(['named']);
    client.send({ type: 'results', id: anonymous.type === 'done' ? anonymous.taskId : '' });
    const byTask = await client.next((message) => message.type === 'results', 5_000, from + 1);
    expect(byTask.type === 'results' && byTask.rows.map((row) => row.task)).to.deep.equal(['anonymous']);
    // A hello that names no protocol keeps the connection at 1.
    client.send({ type: 'hello' });
    expect(await client.next((message) => message.type === 'hello', 5_000, from)).to.include({ protocol: 2 });
    client.send({ type: 'results', id: 'named', limit: 1 });
    const still = await client.next((message) => message.type === 'results', 5_000, from + 2);
    expect(still.type === 'results' && still.rows.map((row) => row.client_id)).to.deep.equal(['named']);
  });
});
