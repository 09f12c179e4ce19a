/** `ronda stats`: each worker's pid, state and counters, as a table or as the server's JSON. */
import { CONNECTION_HELP, StatsOptionsSchema } from './cli-options';
import { EXIT_OK, readCommandLine, withConnection } from './command-helpers';
import type { Output } from './output';
import { showStats } from './views';

export const STATS_USAGE = `Usage: ronda stats [options]

Options:
  --json            print the server's stats reply as one JSON line
${CONNECTION_HELP}`;

export async function statsCommand(argv: readonly string[], output: Output): Promise<number> {
  const commandLine = readCommandLine(StatsOptionsSchema, argv, output, { command: 'stats', usage: STATS_USAGE });
  if (typeof commandLine === 'number') return commandLine;
  const { options } = commandLine;
  return withConnection(options, output, async (connection) => {
    const stats = await connection.stats();
    if (options.json) output.json(stats);
    else showStats(output, stats);
    return EXIT_OK;
  });
}
