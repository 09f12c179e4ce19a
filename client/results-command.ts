/**
 * `ronda results`: the latest stored results across the workers, from the server, or straight
 * from the worker files with --data-dir when no server is running.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ResultRow } from '../shared/protocol';
import { readResults } from '../shared/results-db';
import { CONNECTION_HELP, ResultsOptionsSchema } from './cli-options';
import { EXIT_FAILED, EXIT_OK, readCommandLine, withConnection } from './command-helpers';
import { describeWorkerFiles } from './format';
import type { Output } from './output';
import { showResults } from './views';
import { messageOf } from '../shared/errors';

export const RESULTS_USAGE = `Usage: ronda results [options]

Options:
  --limit <n>       how many of the latest rows, 1-1000      (20)
  --worker <k>      only rows stored by worker k
  --json            one row per line as JSON
  --data-dir <dir>  read the workerN.db files in <dir> directly (read-only; no server needed)
${CONNECTION_HELP}`;

/** The slots of the worker files among these file names (`worker2.db` -> 2), as readResults reads them. */
function workerSlots(names: readonly string[]): number[] {
  return names.flatMap((name) => {
    const match = /^worker(\d+)\.db$/.exec(name);
    return match === null ? [] : [Number(match[1])];
  });
}

export async function resultsCommand(argv: readonly string[], output: Output): Promise<number> {
  const commandLine = readCommandLine(ResultsOptionsSchema, argv, output, { command: 'results', usage: RESULTS_USAGE });
  if (typeof commandLine === 'number') return commandLine;
  const { options } = commandLine;
  const print = (rows: readonly ResultRow[]): number => {
    if (options.json) for (const row of rows) output.json(row);
    else showResults(output, rows);
    return EXIT_OK;
  };
  const query = { limit: options.limit, ...(options.worker === undefined ? {} : { worker: options.worker }) };
  if (options.dataDir === undefined) {
    return withConnection(options, output, async (connection) => print(await connection.results(query)));
  }
  const dataDir = path.resolve(options.dataDir);
  let slots: number[];
  try {
    if (!(await stat(dataDir)).isDirectory()) throw new Error('not a directory');
    slots = workerSlots(await readdir(dataDir));
  } catch {
    output.error(`ronda: ${options.dataDir} is not a folder of worker databases (workerN.db)`);
    return EXIT_FAILED;
  }
  // Said here: reading no file gives no rows, and "no results stored yet" sent people looking
  // for a cluster problem when the folder was the wrong one.
  if (slots.length === 0) {
    output.error(`ronda: ${options.dataDir} has no worker databases (workerN.db); is it the cluster's --data-dir?`);
    return EXIT_FAILED;
  }
  if (options.worker !== undefined && !slots.includes(options.worker)) {
    output.error(`ronda: ${options.dataDir} has no worker${options.worker}.db (it has ${describeWorkerFiles(slots)})`);
    return EXIT_FAILED;
  }
  try {
    return print(await readResults(dataDir, query));
  } catch (error) {
    const reason = messageOf(error);
    output.error(`ronda: cannot read the worker databases in ${options.dataDir}: ${reason}`);
    return EXIT_FAILED;
  }
}
