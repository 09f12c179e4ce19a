/**
 * The bare chain under Ronda, for the bench's floor (see floor.ts): a primary that listens
 * on TCP and hands tasks round-robin to N forked workers, each of which commits every task with the
 * sqlite3 package into its own WAL file of Ronda's schema before it answers. The same processes and
 * hops as a task's path through Ronda, and nothing else: no validation, no bookkeeping, no batching.
 *
 *   floor-chain.js primary <dataDir> <N>   (forked by the bench; says { port } when listening)
 *   floor-chain.js worker <file> <slot>    (forked by the primary; says { ready } when open)
 *
 * Both exit when their parent's IPC channel closes, the primary once its workers have; a worker
 * that cannot store a task exits with the reason, and its primary with it, so that the bench sees
 * the chain fail at once instead of waiting for an answer.
 */
import { fork, type ChildProcess } from 'node:child_process';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { messageOf } from '../shared/errors';
import { openWorkerDatabase } from '../shared/results-db';
import { prepare, runStatement } from '../shared/sqlite';

interface FloorTask {
  id: string;
  payload: string;
}

const INSERT_SQL = `INSERT INTO results (task_id, kind, task, result, status, worker, timestamp)
  VALUES (?, 'text', ?, ?, 'done', ?, ?)`;

function fail(error: unknown): never {
  process.stderr.write(`ronda bench floor chain: ${messageOf(error)}\n`);
  process.exit(1);
}

async function worker(file: string, slot: number): Promise<void> {
  process.on('disconnect', () => process.exit(0));
  const { db } = await openWorkerDatabase(file);
  const insert = await prepare(db, INSERT_SQL);
  process.on('message', (task: FloorTask) => {
    const result = `Task '${task.payload}' processed by worker ${slot}`;
    runStatement(insert, [task.id, task.payload, result, slot, new Date().toISOString()]).then(
      () => process.send?.({ id: task.id, result }),
      fail,
    );
  });
  process.send?.({ ready: true });
}

async function primary(dataDir: string, count: number): Promise<void> {
  const workers = Array.from({ length: count }, (_, index) =>
    fork(__filename, ['worker', path.join(dataDir, `floor${index + 1}.db`), String(index + 1)], { stdio: 'inherit' }),
  );
  const exited = workers.map((child) => new Promise((resolve) => child.once('exit', resolve)));
  let stopping = false;
  const stop = async (code: number): Promise<never> => {
    stopping = true;
    for (const child of workers) child.kill();
    await Promise.all(exited);
    process.exit(code);
  };
  process.on('disconnect', () => void stop(0));
  // A worker that dies on its own (it could not store a task) takes the chain down with it.
  for (const child of workers) {
    child.once('exit', () => {
      if (!stopping) void stop(1);
    });
  }
  await Promise.all(workers.map((child) => new Promise((resolve) => child.once('message', resolve))));
  let client: net.Socket | undefined;
  for (const child of workers) child.on('message', (reply) => client?.write(`${JSON.stringify(reply)}\n`));
  let next = 0;
  const server = net.createServer((socket) => {
    client = socket;
    socket.setNoDelay(true);
    socket.on('error', () => undefined); // the bench went away; 'close' follows
    let buffered = '';
    socket.setEncoding('utf8').on('data', (text: string) => {
      buffered += text;
      for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
        (workers[next] as ChildProcess).send(JSON.parse(buffered.slice(0, end)) as FloorTask);
        next = (next + 1) % workers.length;
        buffered = buffered.slice(end + 1);
      }
    });
  });
  server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
}

const [role, where, number] = process.argv.slice(2);
if (role === 'primary' && where !== undefined && Number(number) >= 1) primary(where, Number(number)).catch(fail);
else if (role === 'worker' && where !== undefined && Number(number) >= 1) worker(where, Number(number)).catch(fail);
else {
  process.stderr.write('usage: floor-chain.js primary <dataDir> <workers> | worker <file> <slot>\n');
  process.exit(2);
}
