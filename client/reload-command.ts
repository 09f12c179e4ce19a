/**
 * `ronda reload`: a rolling reload of the cluster's workers (as SIGHUP to the primary does). With
 * a token set on the cluster, it needs the token.
 */
import { RondaError } from '../shared/errors';
import { CONNECTION_HELP, ReloadOptionsSchema } from './cli-options';
import { EXIT_FAILED, EXIT_OK, readCommandLine, withConnection } from './command-helpers';
import type { Output } from './output';

export const RELOAD_USAGE = `Usage: ronda reload [options]

Replaces every worker, one at a time, with one that loads the handlers module afresh: each new
worker is ready before the old one stops taking tasks, and the old one finishes what it holds.
Prints the new workers' pids. If a new worker cannot start (the module does not load), the reload
stops, the old workers keep serving, and the reason is printed (exit code 1).

Options:
${CONNECTION_HELP}`;

export async function reloadCommand(argv: readonly string[], output: Output): Promise<number> {
  const commandLine = readCommandLine(ReloadOptionsSchema, argv, output, { command: 'reload', usage: RELOAD_USAGE });
  if (typeof commandLine === 'number') return commandLine;
  return withConnection(commandLine.options, output, async (connection) => {
    try {
      const { workers, ms } = await connection.reload();
      output.line(`reloaded in ${ms} ms: ${workers.map(({ slot, pid }) => `worker ${slot} pid ${pid ?? '-'}`).join(', ')}`);
      return EXIT_OK;
    } catch (error) {
      if (!(error instanceof RondaError)) throw error;
      output.error(`${error.code}: ${error.message}`);
      return EXIT_FAILED;
    }
  });
}
