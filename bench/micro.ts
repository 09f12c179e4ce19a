/**
 * `npm run bench:micro`: the two costs issue 10 put on every task, measured alone, where the
 * cluster's own figures are too noisy to show them. `metrics`: TaskMetrics.settled per call (and
 * prom-client's own labelled counter and histogram, for comparison). `indexes`: an insert into a
 * results table in the worker's way, with no index, with schema 2's, and with the three first tried.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import client from 'prom-client';
import { TaskMetrics } from '../server/metrics';
import { NO_ATTEMPTS, type Outcome, type Task } from '../server/task';
import { MIGRATIONS } from '../shared/results-db';
import { close, exec, openDatabase, prepare, runStatement, finalize } from '../shared/sqlite';

const ROUNDS = 3;

function nsPer(calls: number, body: () => void): number {
  const started = process.hrtime.bigint();
  body();
  return Number(process.hrtime.bigint() - started) / calls;
}

function metrics(): void {
  const tasks: Task[] = Array.from({ length: 1_000 }, (_, i) => ({
    taskId: `t${i}`,
    clientId: undefined,
    kind: i % 10 === 0 ? 'fib' : 'text',
    payload: '',
    payloadJson: undefined,
    chars: 1,
    timeoutMs: 1_000,
    retries: 0,
    owner: { label: '#1', settle: () => undefined },
    acceptedAt: 0,
    ...NO_ATTEMPTS,
  }));
  const done: Outcome = { status: 'done', result: '"x"', json: true, worker: 1 };
  const failed: Outcome = { status: 'failed', error: { code: 'TIMEOUT', message: 'x' }, worker: 1 };
  const calls = 2_000_000;
  for (const watching of [false, true]) {
    const counted = new TaskMetrics();
    counted.watching = watching;
    const figures = [];
    for (let round = 0; round <= ROUNDS; round += 1) {
      const ns = nsPer(calls, () => {
        for (let i = 0; i < calls; i += 1) {
          counted.settled(tasks[i % 1_000] as Task, i % 100 === 0 ? failed : done, 0.5 + (i % 50) * 0.1);
          if (i % 50_000 === 0) {
            counted.tick();
            counted.takeRecent();
          }
        }
      });
      if (round > 0) figures.push(ns.toFixed(0)); // the first round warms the JIT
    }
    console.log(`TaskMetrics.settled${watching ? ', a console watching' : ''}: ${figures.join(' / ')} ns per task`);
  }
  const registry = new client.Registry();
  const counter = new client.Counter({ name: 'c', help: 'c', labelNames: ['kind', 'outcome'], registers: [registry] });
  const histogram = new client.Histogram({ name: 'h', help: 'h', labelNames: ['kind'], registers: [registry] });
  const figures = [];
  const few = 500_000;
  for (let round = 0; round <= ROUNDS; round += 1) {
    const ns = nsPer(few, () => {
      for (let i = 0; i < few; i += 1) {
        counter.inc({ kind: 'text', outcome: 'done' });
        histogram.observe({ kind: 'text' }, 0.001 * (i % 7));
      }
    });
    if (round > 0) figures.push(ns.toFixed(0));
  }
  console.log(`prom-client counter.inc + histogram.observe with labels: ${figures.join(' / ')} ns per task`);
}

const ROWS = 200_000;
const BATCH = 100;
const THREE_FIRST_TRIED = `CREATE INDEX a ON results (timestamp); CREATE INDEX b ON results (kind, timestamp);
  CREATE INDEX c ON results (status, timestamp);`;

async function insertCost(indexes: string): Promise<{ us: number; mb: number }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ronda-micro-'));
  const file = path.join(dir, 'worker1.db');
  const db = await openDatabase(file, 'readwrite');
  try {
    await exec(db, `PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; ${MIGRATIONS[1] as string} ${indexes}`);
    const insert = await prepare(
      db,
      `INSERT INTO results (task_id, client_id, kind, task, result, result_json, status, worker, timestamp)
       SELECT value ->> 0, NULL, value ->> 1, value ->> 2, value ->> 3, 0, value ->> 4, 1, ?2 FROM json_each(?1)`,
    );
    const started = process.hrtime.bigint();
    for (let batch = 0; batch < ROWS / BATCH; batch += 1) {
      const rows = Array.from({ length: BATCH }, (_, i) => {
        const n = batch * BATCH + i;
        return [`boot-${n}`, n % 10 === 0 ? 'fib' : 'text', `bench ${n}`, `Task 'bench ${n}' processed by worker 1`, n % 50 === 0 ? 'failed' : 'done'];
      });
      await exec(db, 'BEGIN');
      await runStatement(insert, [JSON.stringify(rows), new Date().toISOString()]);
      await exec(db, 'COMMIT');
    }
    const us = Number(process.hrtime.bigint() - started) / ROWS / 1_000;
    await finalize(insert);
    await exec(db, 'PRAGMA wal_checkpoint(TRUNCATE)');
    return { us, mb: statSync(file).size / 1e6 };
  } finally {
    await close(db);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function indexes(): Promise<void> {
  const cases: [string, string][] = [
    ['no index', ''],
    ['schema 2 (kind; failed rows)', MIGRATIONS[2] as string],
    ['the three first tried', THREE_FIRST_TRIED],
  ];
  const results = new Map<string, { us: number; mb: number }[]>(cases.map(([name]) => [name, []]));
  for (let round = 0; round < ROUNDS; round += 1) {
    for (const [name, sql] of cases) results.get(name)?.push(await insertCost(sql));
  }
  for (const [name, runs] of results) {
    console.log(`${name}: ${runs.map((run) => run.us.toFixed(2)).join(' / ')} µs per row, ${runs[0]?.mb.toFixed(1)} MB for ${ROWS.toLocaleString('en-US')} rows`);
  }
}

const which = process.argv[2] ?? 'all';
void (async () => {
  if (which === 'metrics' || which === 'all') metrics();
  if (which === 'indexes' || which === 'all') await indexes();
})();
