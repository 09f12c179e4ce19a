// Ronda from code: submits tasks to a running cluster and reads them back.
//
//   npm start                    # in another terminal: a cluster on 127.0.0.1:5000
//   node examples/submit.js      # RONDA_PORT / RONDA_HOST / RONDA_TOKEN point it elsewhere
//
// In your own project, depend on Ronda (`npm install /path/to/ronda`, after `npm run build` there)
// and require it by name, as below.
const { connect, RondaError } = require('ronda');

async function main() {
  const client = await connect();

  const fib = await client.submit('fib', { n: 25 });
  console.log(`fib(25) = ${fib.result}, computed by worker ${fib.worker} in ${fib.ms} ms`);

  // Thousands at once on one connection: they are pipelined, and round-robin spreads them.
  const replies = await Promise.all(Array.from({ length: 3000 }, (_, i) => client.submit('text', `tarea${i}`)));
  const perWorker = {};
  for (const reply of replies) perWorker[reply.worker] = (perWorker[reply.worker] ?? 0) + 1;
  console.log(`3000 tasks done, per worker: ${JSON.stringify(perWorker)}`);

  try {
    await client.submit('fib', { n: 99 });
  } catch (error) {
    if (!(error instanceof RondaError)) throw error;
    console.log(`a bad payload is refused: ${error.code} (${error.message})`);
  }

  const [row] = await client.results({ taskId: fib.taskId });
  console.log(`stored: task ${row.task_id} by worker ${row.worker}: ${JSON.stringify(row.result)}`);
  const stats = await client.stats();
  console.log(`workers: ${stats.workers.map((worker) => `${worker.slot}:${worker.state}`).join(' ')}`);

  await client.close(); // nothing is left open: the script exits by itself
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
