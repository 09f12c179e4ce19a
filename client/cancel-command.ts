/**
 * `ronda cancel <taskId...>`: cancels tasks in flight. Another client's tasks need the cluster's
 * token (`--token`), so without one set on the cluster only their sender can cancel them.
 */
import { RondaError } from '../shared/errors';
import { CancelOptionsSchema, CONNECTION_HELP } from './cli-options';
import { EXIT_FAILED, EXIT_OK, readCommandLine, usageError, withConnection } from './command-helpers';
import type { Output } from './output';

export const CANCEL_USAGE = `Usage: ronda cancel [options] <taskId...>

Cancels each task: a queued one fails CANCELLED at once (stored as such); a running one's
handler is told to stop (one that does not listen runs to its end). Prints where each was.
A task another client sent needs the cluster's token.

Options:
${CONNECTION_HELP}`;

export async function cancelCommand(argv: readonly string[], output: Output): Promise<number> {
  const commandLine = readCommandLine(CancelOptionsSchema, argv, output, { command: 'cancel', usage: CANCEL_USAGE, positionals: true });
  if (typeof commandLine === 'number') return commandLine;
  const { options, positionals } = commandLine;
  if (positionals.length === 0) return usageError(output, 'cancel', 'give the task id of each task to cancel');
  return withConnection(options, output, async (connection) => {
    let failed = false;
    for (const taskId of positionals) {
      try {
        const { state } = await connection.cancel(taskId);
        output.line(`${taskId}: cancelled (it was ${state})`);
      } catch (error) {
        if (!(error instanceof RondaError)) throw error;
        failed = true;
        output.error(`${taskId}: ${error.code}: ${error.message}`);
      }
    }
    return failed ? EXIT_FAILED : EXIT_OK;
  });
}
