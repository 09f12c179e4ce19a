/**
 * `ronda prune --data-dir <dir> --retain-rows N --retain-days D`: what a cluster with those
 * options does as it runs, done to a stopped cluster's files: the oldest rows past the bound go,
 * in the same bounded batches, then VACUUM gives the space back to the disk (a running worker only
 * reuses it). It takes the data directory's lock for its whole run, so no cluster starts on the
 * files meanwhile, and refuses while one runs there.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { DataDirLock, DataDirLockedError } from '../shared/data-dir-lock';
import { messageOf } from '../shared/errors';
import { pruneBatch, PRUNE_BATCH, storageError, workerDatabaseFiles } from '../shared/results-db';
import { all, close, exec, openDatabase, type Database } from '../shared/sqlite';
import { PruneOptionsSchema } from './cli-options';
import { EXIT_FAILED, EXIT_OK, readCommandLine, usageError } from './command-helpers';
import type { Output } from './output';

export const PRUNE_USAGE = `Usage: ronda prune --data-dir <dir> [--retain-rows <n>] [--retain-days <n>]

Deletes the oldest rows of a stopped cluster's worker files (workerN.db), as a cluster started
with the same options does while it runs, then shrinks the files (VACUUM).

Options:
  --data-dir <dir>     the cluster's data folder (it must not be running)
  --retain-rows <n>    rows each file keeps, the newest
  --retain-days <n>    days a row is kept`;

/** Bytes of a file and its WAL. */
async function bytesOf(file: string): Promise<number> {
  const sizes = await Promise.all([file, `${file}-wal`].map((each) => stat(each).then((info) => info.size, () => 0)));
  return sizes.reduce((sum, size) => sum + size, 0);
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

export async function pruneCommand(argv: readonly string[], output: Output): Promise<number> {
  const commandLine = readCommandLine(PruneOptionsSchema, argv, output, { command: 'prune', usage: PRUNE_USAGE });
  if (typeof commandLine === 'number') return commandLine;
  const { options } = commandLine;
  if (options.dataDir === undefined) return usageError(output, 'prune', '--data-dir is required: the folder of the stopped cluster');
  const dataDir = path.resolve(options.dataDir);
  const files = await workerDatabaseFiles(dataDir).catch(() => []);
  if (files.length === 0) {
    output.error(`ronda: ${options.dataDir} has no worker databases (workerN.db); is it the cluster's --data-dir?`);
    return EXIT_FAILED;
  }
  let lock: DataDirLock;
  try {
    lock = await DataDirLock.acquire(dataDir);
  } catch (error) {
    output.error(
      error instanceof DataDirLockedError
        ? `ronda: ${options.dataDir} is in use by a running Ronda cluster or another prune${error.ownerPid === undefined ? '' : ` (pid ${error.ownerPid})`}: ` +
            'stop it first, or start the cluster with --retain-rows/--retain-days to prune as it runs'
        : `ronda: ${messageOf(error)}`,
    );
    return EXIT_FAILED;
  }
  try {
    const retention = { rows: options.retainRows, days: options.retainDays };
    let failed = false;
    for (const file of files.sort()) {
      const before = await bytesOf(file);
      let db: Database;
      try {
        db = await openDatabase(file, 'readwrite');
      } catch (error) {
        failed = true;
        output.error(`ronda: ${storageError(file, 'cannot open', error).message}`);
        continue;
      }
      try {
        db.configure('busyTimeout', 5_000);
        let deleted = 0;
        for (let batch = await pruneBatch(db, retention, { exact: true }); ; batch = await pruneBatch(db, retention, { exact: true })) {
          deleted += batch;
          if (batch < PRUNE_BATCH) break;
        }
        await exec(db, 'VACUUM; PRAGMA wal_checkpoint(TRUNCATE);');
        const kept = (await all<{ n: number }>(db, 'SELECT count(*) AS n FROM results'))[0]?.n ?? 0;
        output.line(
          `${path.basename(file)}: ${deleted.toLocaleString('en-US')} rows deleted, ${kept.toLocaleString('en-US')} kept, ` +
            `${megabytes(before)} -> ${megabytes(await bytesOf(file))}`,
        );
      } catch (error) {
        failed = true;
        output.error(`ronda: ${storageError(file, 'cannot prune', error).message}`);
      } finally {
        await close(db).catch(() => undefined);
      }
    }
    return failed ? EXIT_FAILED : EXIT_OK;
  } catch (error) {
    output.error(`ronda: ${messageOf(error)}`);
    return EXIT_FAILED;
  } finally {
    await lock.release();
  }
}
