/**
 * A worker process, started by the primary: `main.js --slot N --db FILE [--handlers MODULE]`, or
 * started ahead of need as `main.js --standby` and told those arguments later. It talks to the
 * primary in JSON lines on fd 3 (shared/json-lines.ts).
 * It opens its database (proving it can write it), says `ready`, then runs what the primary sends
 * until told to stop. Its watchdog thread ends it, with whatever its handlers started, as soon as
 * the primary is gone, even while a handler blocks the event loop: no worker outlives its primary.
 */
import { fstatSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { z } from 'zod';
import { parseArgs } from '../shared/args';
import { intOption } from '../shared/options';
import { describeIssues, messageOf } from '../shared/errors';
import { fastTasks } from '../shared/fast-checks';
import { JsonLines } from '../shared/json-lines';
import {
  ActivateSchema,
  CHANNEL_FD,
  MAX_TO_WORKER_LINE_CHARS,
  ToWorkerSchema,
  WATCHDOG_FD,
  type FromWorker,
  type StandbyReady,
} from '../shared/protocol';
import { openWorkerDatabase } from '../shared/results-db';
import { close } from '../shared/sqlite';
import { kindSchemas, loadKinds } from './load-kinds';
import { ResultWriter } from './result-writer';
import { RunMarker } from './run-marker';
import { TaskRunner } from './task-runner';
import { endProcessGroup, ORPHAN_GRACE_MS, type WatchdogData } from './watchdog';

const WorkerArgsSchema = z.strictObject({
  slot: intOption(1, 64),
  db: z.string().min(1),
  handlers: z.string().min(1).optional(),
  /** What its file keeps (see shared/results-db.ts pruneBatch); everything when neither is given. */
  retainRows: intOption(1, 1_000_000_000).optional(),
  retainDays: intOption(1, 36_500).optional(),
});

/** Exit codes the primary reads: the worker could not start, or could no longer store results. */
export const EXIT_CANNOT_START = 1;
export const EXIT_STORAGE_FAILED = 3;

/** The channel to the primary, or undefined when this process was not started by one. */
function openChannel(): JsonLines | undefined {
  try {
    fstatSync(CHANNEL_FD);
  } catch {
    return undefined;
  }
  return new JsonLines(new net.Socket({ fd: CHANNEL_FD, readable: true, writable: true }), MAX_TO_WORKER_LINE_CHARS);
}

const channel = openChannel();

// Typed here and validated by zod where it arrives, in the primary.
function send(message: FromWorker): void {
  // With the primary gone there is no one to tell; the outcome is stored all the same.
  channel?.send(message);
}

/**
 * Tells the primary why this worker stops (it prints the reason once, for the slot), then exits
 * once the message is out. Started by hand, without a primary, it says so on stderr instead.
 */
function fatal(message: string, code: number): void {
  if (channel === undefined || !channel.connected) {
    process.stderr.write(`worker: ${message}\n`);
    process.exit(code);
  }
  const last: FromWorker = { type: 'fatal', message: message.slice(0, 4096) };
  channel.send(last, () => process.exit(code));
  setTimeout(() => process.exit(code), 1_000).unref();
}

/**
 * Starts the watchdog thread (worker/watchdog.ts). It reads the RunMarker and writes its reports
 * on the side channel, fd 4, when the primary gave one.
 */
function startWatchdog(marker: RunMarker): void {
  let reportFd: number | undefined;
  try {
    fstatSync(WATCHDOG_FD);
    reportFd = WATCHDOG_FD;
  } catch {
    reportFd = undefined;
  }
  const data: WatchdogData = { marker: marker.buffer, parentPid: process.ppid, reportFd };
  const thread = new Worker(path.join(__dirname, 'watchdog.js'), { workerData: data });
  thread.unref();
  thread.on('error', (error) => process.stderr.write(`worker: the watchdog thread failed: ${error.message}\n`));
}

/**
 * A standby (`main.js --standby`, see server/standby-pool.ts) has loaded every module and waits
 * here for the arguments of the slot it is to serve; until then it exits with its primary.
 */
function activation(lines: JsonLines): Promise<string[]> {
  return new Promise((resolve) => {
    const exit = (): never => process.exit(0);
    const onMessage = (raw: unknown): void => {
      const message = ActivateSchema.safeParse(raw);
      if (!message.success) return;
      lines.off('message', onMessage);
      lines.off('close', exit);
      process.off('SIGTERM', exit);
      resolve(message.data.args);
    };
    lines.on('message', onMessage);
    lines.on('close', exit);
    process.on('SIGTERM', exit);
    process.on('SIGINT', () => undefined);
    const ready: StandbyReady = { type: 'standby', pid: process.pid };
    lines.send(ready, () => undefined);
  });
}

async function main(): Promise<void> {
  // The primary's log reader may go away; a worker writes little there and must not die of it.
  process.stdout.on('error', () => undefined);
  process.stderr.on('error', () => undefined);
  // A handler that leaves a promise rejected with no one to catch it would otherwise end the
  // worker, and every task it holds would be blamed; its own task has been answered already.
  process.on('unhandledRejection', (reason) => {
    process.stderr.write(`worker: a handler left a promise rejected with no handler: ${String(reason).slice(0, 500)}\n`);
  });
  if (channel === undefined) return fatal('must be started by the primary (it needs its channel on fd 3)', EXIT_CANNOT_START);
  const marker = new RunMarker();
  startWatchdog(marker);
  const standby = process.argv.includes('--standby');
  // `ps` shows what each process is for; a standby names its cluster's data dir (its only argument).
  if (standby) process.title = `ronda standby worker ${process.argv[process.argv.indexOf('--data-dir') + 1] ?? ''}`;
  const argv = standby ? await activation(channel) : process.argv.slice(2);
  const args = WorkerArgsSchema.safeParse(parseArgs(argv, new Set()).options);
  if (!args.success) return fatal(describeIssues(args.error.issues), EXIT_CANNOT_START);
  const { slot, db: file, handlers, retainRows, retainDays } = args.data;
  process.title = `ronda worker ${slot} ${file}`;

  let kinds: ReturnType<typeof loadKinds>;
  let opened: Awaited<ReturnType<typeof openWorkerDatabase>>;
  try {
    kinds = loadKinds(handlers);
    opened = await openWorkerDatabase(file);
  } catch (error) {
    return fatal(messageOf(error), EXIT_CANNOT_START);
  }
  const { db, identity } = opened;
  const runner = new TaskRunner(slot, kinds, new ResultWriter(db, slot, identity, { rows: retainRows, days: retainDays }), send, marker);

  let closing: Promise<void> | undefined;
  /**
   * `asked`: the primary's shutdown, once every task held is done. `orphaned`: the primary is
   * gone and nobody is left to answer; keep what is being committed, then end the process group
   * (the watchdog does the same if this event loop is blocked). `terminated`: SIGTERM from outside,
   * the same without ending the group, which the primary does when it sees the exit.
   */
  const stop = (how: 'asked' | 'orphaned' | 'terminated'): Promise<void> =>
    (closing ??= (async () => {
      if (how === 'asked') await runner.idle();
      else setTimeout(() => (how === 'orphaned' ? endProcessGroup() : process.exit(0)), ORPHAN_GRACE_MS).unref();
      await runner.close();
      await close(db);
      if (how === 'orphaned') endProcessGroup();
      process.exit(0);
    })());

  runner.onStorageFailed((error) => {
    // What this worker runs can no longer be stored; the primary gives its tasks to other slots
    // and keeps trying a new worker here until the file can be written again.
    fatal(`cannot store results in ${file}: ${error.message}`, EXIT_STORAGE_FAILED);
  });

  channel.on('message', (raw: unknown) => {
    // Nearly every message is a batch of tasks, which a few property reads tell (see fast-checks).
    const tasks = fastTasks(raw);
    if (tasks !== undefined) {
      runner.handle(tasks);
      return;
    }
    const message = ToWorkerSchema.safeParse(raw);
    if (!message.success) {
      process.stderr.write(`worker ${slot}: ignored a malformed message: ${describeIssues(message.error.issues)}\n`);
      return;
    }
    switch (message.data.type) {
      case 'shutdown':
        void stop('asked');
        return;
      case 'cancel':
        runner.cancel(message.data.taskIds);
        return;
      case 'tasks':
        runner.handle(message.data);
        return;
      default: {
        const unreachable: never = message.data;
        throw new Error(`unhandled message ${JSON.stringify(unreachable)}`);
      }
    }
  });
  channel.on('malformed', (what: string) => process.stderr.write(`worker ${slot}: ignored ${what} from the primary\n`));
  channel.on('close', () => void stop('orphaned'));
  process.on('SIGTERM', () => void stop('terminated'));
  // Ctrl-C in a terminal reaches the whole process group; the primary decides how workers stop.
  process.on('SIGINT', () => undefined);

  send({ type: 'ready', pid: process.pid, kinds: [...kinds.keys()], schemas: kindSchemas(kinds) });
}

main().catch((error: unknown) => fatal(messageOf(error), EXIT_CANNOT_START));
