/**
 * A worker process, forked by the primary: `main.js --slot N --db FILE [--handlers MODULE]`, or
 * forked ahead of need as `main.js --standby` and told those arguments later.
 * It opens its database, says `ready`, then runs what the primary sends until told to stop or
 * until the IPC channel closes (the primary is gone): no worker outlives its primary.
 */
import { z } from 'zod';
import { parseArgs } from '../shared/args';
import { intOption } from '../shared/config';
import { describeIssues } from '../shared/errors';
import { ActivateSchema, ToWorkerSchema, type FromWorker, type StandbyReady } from '../shared/protocol';
import { openWorkerDatabase } from '../shared/results-db';
import { close } from '../shared/sqlite';
import { loadKinds } from './load-kinds';
import { ResultWriter } from './result-writer';
import { TaskRunner } from './task-runner';

const WorkerArgsSchema = z.strictObject({
  slot: intOption(1, 64),
  db: z.string().min(1),
  handlers: z.string().min(1).optional(),
});

/** How long a worker whose primary vanished waits for running tasks before it closes. */
const ORPHAN_GRACE_MS = 2_000;

// Typed here and validated by zod where it arrives, in the primary.
function send(message: FromWorker): void {
  // With the primary gone there is no one to tell; the outcome is stored all the same. The
  // callback keeps a failed send from becoming an 'error' event that would crash the worker.
  if (process.connected) process.send?.(message, undefined, undefined, () => undefined);
}

/**
 * A standby (`main.js --standby`, see server/standby-pool.ts) has loaded every module and waits
 * here for the arguments of the slot it is to serve; until then it exits with its primary.
 */
function activation(): Promise<string[]> {
  return new Promise((resolve) => {
    const exit = (): never => process.exit(0);
    const onMessage = (raw: unknown): void => {
      const message = ActivateSchema.safeParse(raw);
      if (!message.success) return;
      process.off('message', onMessage);
      process.off('disconnect', exit);
      process.off('SIGTERM', exit);
      resolve(message.data.args);
    };
    process.on('message', onMessage);
    process.on('disconnect', exit);
    process.on('SIGTERM', exit);
    process.on('SIGINT', () => undefined);
    const ready: StandbyReady = { type: 'standby', pid: process.pid };
    process.send?.(ready, undefined, undefined, () => undefined);
  });
}

function fatal(message: string): never {
  process.stderr.write(`worker: ${message}\n`);
  process.exit(1);
}

async function main(): Promise<void> {
  if (process.send === undefined) fatal('must be started by the primary (it needs an IPC channel)');
  const argv = process.argv.includes('--standby') ? await activation() : process.argv.slice(2);
  const args = WorkerArgsSchema.safeParse(parseArgs(argv, new Set()).options);
  if (!args.success) fatal(describeIssues(args.error.issues));
  const { slot, db: file, handlers } = args.data;

  const kinds = loadKinds(handlers);
  const db = await openWorkerDatabase(file);
  const runner = new TaskRunner(slot, kinds, new ResultWriter(db, slot), send);

  let closing: Promise<never> | undefined;
  const stop = (graceMs: number | undefined): Promise<never> =>
    (closing ??= (async () => {
      const grace =
        graceMs === undefined ? [] : [new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref())];
      await Promise.race([runner.idle(), ...grace]);
      await runner.close();
      await close(db);
      process.exit(0);
    })());

  process.on('message', (raw: unknown) => {
    const message = ToWorkerSchema.safeParse(raw);
    if (!message.success) {
      process.stderr.write(`worker ${slot}: ignored a malformed message: ${describeIssues(message.error.issues)}\n`);
      return;
    }
    if (message.data.type === 'shutdown') void stop(undefined);
    else runner.handle(message.data);
  });
  process.on('disconnect', () => void stop(ORPHAN_GRACE_MS));
  process.on('SIGTERM', () => void stop(ORPHAN_GRACE_MS));
  // Ctrl-C in a terminal reaches the whole process group; the primary decides how workers stop.
  process.on('SIGINT', () => undefined);

  send({ type: 'ready', pid: process.pid, kinds: [...kinds.keys()] });
}

main().catch((error: unknown) => fatal(error instanceof Error ? error.message : String(error)));
