import { expect } from 'chai';
import http from 'node:http';
import net from 'node:net';
import { startCluster, stopClusters, until, type Cluster } from '../helpers/cluster';
import { EventReader, parseMetrics, request } from '../helpers/http';

const HTTP = ['--http-port', '0', '--quiet'];

async function httpCluster(args: string[] = []): Promise<Cluster & { httpPort: number }> {
  const cluster = await startCluster({ args: [...HTTP, ...args] });
  expect(cluster.httpPort, 'the ready file names the HTTP port').to.be.a('number');
  return cluster as Cluster & { httpPort: number };
}

describe('HTTP API (the primary on --http-port 0)', function () {
  const readers: EventReader[] = [];
  afterEach(async () => {
    for (const reader of readers.splice(0)) reader.close();
    await stopClusters();
  });

  it('runs a task and answers its outcome: 200 done, 422 BAD_PAYLOAD and UNKNOWN_KIND, with stable error bodies', async function () {
    const { httpPort: port } = await httpCluster();
    const done = await request(port, '/api/tasks', { body: { kind: 'text', payload: 'hola', id: 'mine' } });
    expect(done.status).to.equal(200);
    expect(done.json).to.include({ type: 'done', id: 'mine', kind: 'text', result: "Task 'hola' processed by worker 1", worker: 1 });
    expect(done.json.taskId).to.be.a('string');

    const badPayload = await request(port, '/api/tasks', { body: { kind: 'sleep', payload: { ms: 'long' } } });
    expect(badPayload.status).to.equal(422);
    expect(badPayload.json.error).to.deep.equal({ code: 'BAD_PAYLOAD', message: 'payload.ms must be a number, not a string' });
    expect(badPayload.json).to.include({ type: 'failed', kind: 'sleep' });

    const unknown = await request(port, '/api/tasks', { body: { kind: 'nope', payload: 1 } });
    expect(unknown.status).to.equal(422);
    expect(unknown.json.error.code).to.equal('UNKNOWN_KIND');
    expect(unknown.json.error.message).to.match(/unknown task kind "nope"; known: text, hash, sleep, fib/);
  });

  it('refuses bad requests with the field named, and never a crash: BAD_JSON, BAD_MESSAGE, TOO_LARGE, NOT_FOUND', async function () {
    const cluster = await httpCluster();
    const port = cluster.httpPort;
    const cases: [string, Parameters<typeof request>[2] & { path?: string }, number, string, RegExp][] = [
      ['broken JSON', { rawBody: '{"kind": ', headers: { 'content-type': 'application/json' } }, 400, 'BAD_JSON', /not valid JSON/],
      ['no content type', { rawBody: 'hola', headers: { 'content-type': 'text/plain' } }, 400, 'BAD_MESSAGE', /Content-Type: application\/json/],
      ['an unknown field', { body: { kind: 'text', payload: 'x', priority: 9 } }, 400, 'BAD_MESSAGE', /priority/],
      ['a time limit over the maximum', { body: { kind: 'text', payload: 'x', timeoutMs: 10_000_000 } }, 400, 'BAD_MESSAGE', /--max-task-timeout-ms/],
      ['a body over 1 MiB', { body: { kind: 'text', payload: 'x'.repeat(1_100_000) } }, 413, 'TOO_LARGE', /1 MiB/],
      ['proto poisoning', { rawBody: '{"kind":"text","payload":"x","__proto__":{"a":1}}', headers: { 'content-type': 'application/json' } }, 400, 'BAD_JSON', /or has a "__proto__" or "constructor.prototype" field/],
      ['a null body', { rawBody: 'null', headers: { 'content-type': 'application/json' } }, 400, 'BAD_MESSAGE', /the body: value must be an object, not null/],
      ['a NUL in q', { path: '/api/results?q=a%00b', method: 'GET' }, 400, 'BAD_MESSAGE', /q may not contain a NUL character/],
      ['a URL that is not one', { path: '/%ff', method: 'GET' }, 400, 'BAD_MESSAGE', /the URL is not valid/],
      ['headers over 16 KiB', { path: '/api/stats', method: 'GET', headers: { 'x-big': 'a'.repeat(20_000) } }, 431, 'TOO_LARGE', /headers are over 16 KiB/],
      ['a bad wait', { path: '/api/tasks?wait=maybe', body: { kind: 'text', payload: 'x' } }, 400, 'BAD_MESSAGE', /wait/],
      ['an unknown route', { path: '/api/nothing', method: 'GET' }, 404, 'NOT_FOUND', /no route GET \/api\/nothing/],
      ['an unknown task', { path: '/api/tasks/no-such-task', method: 'GET' }, 404, 'NOT_FOUND', /no task no-such-task/],
      ['an unknown results filter', { path: '/api/results?colour=red', method: 'GET' }, 400, 'BAD_MESSAGE', /colour/],
      ['a worker the cluster lacks', { path: '/api/results?worker=9', method: 'GET' }, 400, 'BAD_MESSAGE', /worker/],
      ['a forged cursor', { path: '/api/results?before=abc', method: 'GET' }, 400, 'BAD_MESSAGE', /before must be the `next` of an earlier page/],
    ];
    for (const [what, options, status, code, message] of cases) {
      const reply = await request(port, options.path ?? '/api/tasks', options);
      expect(reply.status, what).to.equal(status);
      expect(reply.json?.error?.code, `${what}: ${reply.text}`).to.equal(code);
      expect(reply.json.error.message, what).to.match(message);
    }
    // fetch() will not send another Host: a page that rebinds its own name to 127.0.0.1 would.
    const rebound = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/api/stats', headers: { host: 'evil.example' } }, (response) => {
          let body = '';
          response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
        })
        .on('error', reject);
    });
    expect(rebound.status).to.equal(400);
    expect(JSON.parse(rebound.body).error.message).to.match(/the Host header "evil.example" is not this server's: open http:\/\/127\.0\.0\.1:\d+\//);
    // The TCP side was never disturbed.
    const client = await cluster.connect();
    expect((await client.submit('text', 'still here')).type).to.equal('done');
  });

  it('?wait=false answers 202 at once; GET /api/tasks/:taskId says queued or running, then gives the stored row', async function () {
    const { httpPort: port } = await httpCluster();
    const accepted = await request(port, '/api/tasks?wait=false', { body: { kind: 'sleep', payload: { ms: 600 } } });
    expect(accepted.status).to.equal(202);
    const { taskId } = accepted.json as { taskId: string };
    expect(accepted.headers.get('location')).to.equal(`/api/tasks/${taskId}`);
    const running = await request(port, `/api/tasks/${taskId}`);
    expect(running.status).to.equal(200);
    expect(running.json).to.deep.equal({ taskId, state: 'running', worker: 1 });
    await until(async () => (await request(port, `/api/tasks/${taskId}`)).json.state === 'done', 5_000, 'the task to be stored');
    const stored = await request(port, `/api/tasks/${taskId}`);
    expect(stored.json.row).to.include({ taskId, clientId: null, kind: 'sleep', status: 'done', worker: 1 });
    expect(stored.json.row.result).to.deep.equal({ sleptMs: 600 });
  });

  it('pages through the whole history newest first with a cursor, and filters by kind, status, worker and text', async function () {
    const cluster = await httpCluster();
    const port = cluster.httpPort;
    const client = await cluster.connect();
    const submits = [];
    for (let i = 0; i < 150; i += 1) submits.push(client.submit('text', `item-${i}${i % 10 === 0 ? ' Needle' : ''}`));
    for (let i = 0; i < 12; i += 1) submits.push(client.submit('sleep', { ms: i % 4 === 0 ? 'bad' : 1 }));
    await Promise.all(submits);

    const seen: string[] = [];
    let before: string | null = null;
    let previous: { timestamp: string; worker: number } | undefined;
    for (let pages = 0; pages < 10; pages += 1) {
      const reply = await request(port, `/api/results?limit=50${before === null ? '' : `&before=${before}`}`);
      expect(reply.status, reply.text).to.equal(200);
      for (const row of reply.json.rows as { taskId: string; timestamp: string; worker: number }[]) {
        if (previous !== undefined) expect(row.timestamp <= previous.timestamp, 'newest first').to.equal(true);
        previous = row;
        seen.push(row.taskId);
      }
      before = reply.json.next;
      if (before === null) break;
    }
    expect(seen.length).to.equal(162);
    expect(new Set(seen).size, 'no row twice across pages').to.equal(162);

    const byKind = await request(port, '/api/results?kind=sleep&limit=500');
    expect(byKind.json.rows.map((row: { kind: string }) => row.kind)).to.deep.equal(Array(12).fill('sleep'));
    const failed = await request(port, '/api/results?status=failed');
    expect(failed.json.rows).to.have.length(3);
    expect(failed.json.rows.every((row: { status: string; result: string }) => row.status === 'failed' && row.result.includes('BAD_PAYLOAD'))).to.equal(true);
    const worker2 = await request(port, '/api/results?worker=2&kind=text&limit=500');
    expect(worker2.json.rows).to.have.length(50);
    expect(worker2.json.rows.every((row: { worker: number }) => row.worker === 2)).to.equal(true);
    const found = await request(port, '/api/results?q=needle');
    expect(found.json.rows.map((row: { task: string }) => row.task).sort()).to.deep.equal(
      Array.from({ length: 15 }, (_, i) => `item-${i * 10} Needle`).sort(),
    );
    const literal = await request(port, `/api/results?q=${encodeURIComponent('%')}`);
    expect(literal.json.rows, 'a % in q is a character, not a wildcard').to.have.length(0);
  });

  it('with a token, every API route and /metrics need Authorization: Bearer; the page itself does not', async function () {
    const token = 'a-long-secret-token';
    const { httpPort: port } = await httpCluster(['--token', token]);
    // Each failure from an address doubles the wait before the next answer (250 ms, 500 ms, ...).
    // The route matched counts, not the URL's spelling: `/%61pi/stats` is `/api/stats`.
    for (const path of ['/metrics', '/api/events', '/%61pi/stats']) {
      const none = await request(port, path);
      expect(none.status, path).to.equal(401);
      expect(none.json.error.code).to.equal('UNAUTHORIZED');
      expect(none.headers.get('www-authenticate')).to.match(/^Bearer/);
    }
    const wrong = await request(port, '/api/stats', { token: 'not-the-token' });
    expect(wrong.status).to.equal(401);
    expect(wrong.json.error.message).to.equal('wrong token');
    const posted = await request(port, '/api/tasks', { body: { kind: 'text', payload: 'x' } });
    expect(posted.status).to.equal(401);
    expect((await request(port, '/api/stats', { token })).status).to.equal(200);
    expect((await request(port, '/api/tasks', { body: { kind: 'text', payload: 'x' }, token })).json.type).to.equal('done');
    const page = await request(port, '/');
    expect(page.status).to.equal(200);
    expect(page.headers.get('content-type')).to.match(/text\/html/);
  });

  it('streams events: hello and stats at once, a tick each second with the counts, a worker that died and came back', async function () {
    const cluster = await httpCluster();
    const port = cluster.httpPort;
    const reader = await EventReader.open(port);
    readers.push(reader);
    const hello = await reader.next((event) => event.name === 'hello');
    expect(hello.data).to.include({ server: 'ronda', workers: 3 });
    const first = await reader.next((event) => event.name === 'stats');
    const pid = first.data.workers[1].pid as number;

    const client = await cluster.connect();
    await Promise.all(Array.from({ length: 30 }, (_, i) => client.submit('text', `t${i}`)));
    const ticks = await until(() => reader.events.filter((event) => event.name === 'tick').reduce((sum, event) => sum + event.data.done, 0) >= 30, 4_000, '30 done in the ticks');
    void ticks;
    const feed = reader.events.filter((event) => event.name === 'tasks').flatMap((event) => event.data);
    expect(feed.length).to.be.within(1, 30);
    expect(feed[0]).to.include({ kind: 'text', status: 'done' });

    const from = reader.events.length;
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    const back = await reader.next((event) => event.name === 'stats' && event.data.workers[1].pid !== pid && event.data.workers[1].state === 'ready', 5_000, from);
    console.log(`      kill -9 -> stats event with the new pid: ${back.at - killedAt} ms`);
    expect(back.data.workers[1].restarts).to.equal(1);
    const events = reader.events.slice(from).filter((event) => event.name === 'worker' && event.data.slot === 2);
    expect(events.map((event) => event.data.state)).to.include('ready');
  });

  it('a subscriber that reads nothing neither slows the tasks nor stops the other subscribers', async function () {
    const cluster = await httpCluster();
    const port = cluster.httpPort;
    // A raw socket that asks for the stream and never reads a byte of it.
    const stalled = net.connect(port, '127.0.0.1');
    stalled.on('error', () => undefined);
    await new Promise((resolve) => stalled.once('connect', resolve));
    stalled.write('GET /api/events HTTP/1.1\r\nHost: x\r\n\r\n');
    stalled.pause();
    const reader = await EventReader.open(port);
    readers.push(reader);
    const client = await cluster.connect();
    const started = Date.now();
    const replies = await Promise.all(Array.from({ length: 5_000 }, (_, i) => client.submit('text', `p${i}`)));
    expect(replies.every((reply) => reply.type === 'done')).to.equal(true);
    console.log(`      5,000 tasks with a stalled subscriber: ${Date.now() - started} ms`);
    const from = reader.events.length;
    await reader.next((event) => event.name === 'tick', 3_000, from);
    const stats = await request(port, '/api/stats');
    expect(stats.json.workers.every((worker: { state: string }) => worker.state === 'ready')).to.equal(true);
    stalled.destroy();
  });

  it('counts in /metrics what a known load did: tasks by kind and outcome, durations, restarts, connections, gauges', async function () {
    const cluster = await httpCluster();
    const port = cluster.httpPort;
    const client = await cluster.connect();
    await Promise.all(Array.from({ length: 40 }, (_, i) => client.submit('text', `m${i}`)));
    await Promise.all([client.submit('sleep', { ms: 'x' }), client.submit('sleep', { ms: 'y' })]);
    await request(port, '/api/tasks', { body: { kind: 'fib', payload: { n: 10 } } });
    const stats = await request(port, '/api/stats');
    process.kill(stats.json.workers[0].pid, 'SIGKILL');
    await until(async () => (await request(port, '/api/stats')).json.workers[0].restarts === 1 && (await request(port, '/api/stats')).json.workers[0].state === 'ready', 5_000, 'worker 1 back');

    const reply = await request(port, '/metrics');
    expect(reply.status).to.equal(200);
    expect(reply.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
    const metrics = parseMetrics(reply.text);
    expect(metrics.get('ronda_tasks_total{kind="text",outcome="done"}')).to.equal(40);
    expect(metrics.get('ronda_tasks_total{kind="sleep",outcome="BAD_PAYLOAD"}')).to.equal(2);
    expect(metrics.get('ronda_tasks_total{kind="fib",outcome="done"}')).to.equal(1);
    expect(metrics.get('ronda_task_duration_seconds_count{kind="text"}')).to.equal(40);
    expect(metrics.get('ronda_task_duration_seconds_bucket{kind="text",le="+Inf"}')).to.equal(40);
    expect(metrics.get('ronda_task_duration_seconds_bucket{kind="text",le="0.0005"}')).to.be.at.most(40);
    expect(metrics.get('ronda_task_duration_seconds_sum{kind="text"}')).to.be.above(0);
    expect(metrics.get('ronda_worker_restarts_total{worker="1"}')).to.equal(1);
    expect(metrics.get('ronda_worker_restarts_total{worker="2"}')).to.equal(0);
    expect(metrics.get('ronda_connections_total')).to.equal(1);
    expect(metrics.get('ronda_connections')).to.equal(1);
    expect(metrics.get('ronda_workers_ready')).to.equal(3);
    expect(metrics.get('ronda_queue_depth')).to.equal(0);
    expect(metrics.get('ronda_tasks_in_flight{worker="3"}')).to.equal(0);
    expect(metrics.get('ronda_redeliveries_total')).to.equal(0);
    expect(metrics.get('process_cpu_user_seconds_total')).to.be.above(0);
    for (const slot of [1, 2, 3]) expect(metrics.get(`ronda_worker_resident_memory_bytes{worker="${slot}"}`)).to.be.above(10e6);
  });

  it('answers an HTTP task still running at shutdown, and refuses new ones with SHUTTING_DOWN', async function () {
    const cluster = await httpCluster();
    const port = cluster.httpPort;
    const running = request(port, '/api/tasks', { body: { kind: 'sleep', payload: { ms: 700 } } });
    await until(async () => (await request(port, '/api/stats')).json.workers[0].inflight === 1, 3_000, 'the task to run');
    const exit = cluster.kill('SIGTERM');
    let refused: Awaited<ReturnType<typeof request>> | undefined;
    await until(async () => {
      refused = await request(port, '/api/tasks', { body: { kind: 'text', payload: 'late' } });
      return refused.status !== 200;
    }, 3_000, 'new tasks to be refused');
    expect(refused?.status).to.equal(503);
    expect(refused?.json.error).to.deep.equal({ code: 'SHUTTING_DOWN', message: 'the server is shutting down' });
    const reply = await running;
    expect(reply.status).to.equal(200);
    expect(reply.json.result).to.deep.equal({ sleptMs: 700 });
    expect((await exit).code).to.equal(0);
  });

  it('past its connection limit answers 503 TOO_MANY_CONNECTIONS, and closes a silent connection within seconds', async function () {
    const { httpPort: port } = await httpCluster(['--max-connections', '4']);
    const silent = await Promise.all(
      Array.from({ length: 4 }, () => new Promise<net.Socket>((resolve) => {
        const socket = net.connect(port, '127.0.0.1', () => resolve(socket));
        socket.on('error', () => undefined);
      })),
    );
    // A task sent on the connection over the limit, in one packet with its headers: answered 503,
    // and not run.
    const body = '{"kind":"text","payload":"behind a 503"}';
    const over = net.connect(port, '127.0.0.1');
    let answer = '';
    over.on('data', (chunk: Buffer) => (answer += chunk.toString()));
    over.on('error', () => undefined);
    over.on('connect', () =>
      over.write(`POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`),
    );
    await new Promise((resolve) => over.once('close', resolve));
    expect(answer.split('\r\n')[0]).to.equal('HTTP/1.1 503 Service Unavailable');
    expect(JSON.parse(answer.slice(answer.indexOf('{'))).error.code).to.equal('TOO_MANY_CONNECTIONS');
    const openedAt = Date.now();
    const closedAt = await Promise.all(silent.map((socket) => new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now())))));
    console.log(`      silent connections closed ${Math.min(...closedAt) - openedAt}-${Math.max(...closedAt) - openedAt} ms later`);
    const stats = await request(port, '/api/stats');
    expect(stats.status, 'served again once they are gone').to.equal(200);
    expect(stats.json.accepted, 'the task behind the 503 did not run').to.equal(0);
  });

  it('takes at most 4,096 unfinished ?wait=false tasks, then QUEUE_FULL; waiting ones still go in', async function () {
    this.timeout(60_000);
    const cluster = await httpCluster();
    const port = cluster.httpPort;
    let sent = 0;
    const statuses: number[] = [];
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (sent < 4_100) {
          sent += 1;
          statuses.push((await request(port, '/api/tasks?wait=false', { body: { kind: 'sleep', payload: { ms: 20_000 } } })).status);
        }
      }),
    );
    expect(statuses.filter((status) => status === 202)).to.have.length(4_096);
    const refused = await request(port, '/api/tasks?wait=false', { body: { kind: 'text', payload: 'one more' } });
    expect(refused.status).to.equal(503);
    expect(refused.json.error.message).to.match(/4096 tasks sent with wait=false are unfinished/);
    expect(statuses.filter((status) => status === 503)).to.have.length(4);
    const stats = (await request(port, '/api/stats')).json as { queued: number; workers: { inflight: number }[] };
    expect(stats.queued + stats.workers.reduce((sum, worker) => sum + worker.inflight, 0)).to.equal(4_096);
    // What a client waits for is not counted: the queue still takes it (answered after the sleeps).
    const waited = request(port, '/api/tasks', { body: { kind: 'text', payload: 'waits' } }).catch(() => undefined);
    await until(async () => (await request(port, '/api/stats')).json.accepted === 4_097, 3_000, 'the waiting task to be accepted');
    await cluster.kill('SIGKILL');
    await waited;
  });

  it('says which option when --http-port is taken or not a port', async function () {
    const first = await httpCluster();
    const taken = await startCluster({ args: ['--http-port', String(first.httpPort)], wait: false });
    const exit = await taken.waitForExit();
    expect(exit.code).to.equal(1);
    expect(taken.output).to.include(`127.0.0.1:${first.httpPort} (--http-port) is in use by another program: pick another --http-port, or --http-port off`);
    const bad = await startCluster({ args: ['--http-port', 'eighty'], wait: false });
    expect((await bad.waitForExit()).code).to.equal(2);
    expect(bad.output).to.match(/--http-port must be a port from 0 to 65535 \(0 picks a free one\), or off/);
  });
});
