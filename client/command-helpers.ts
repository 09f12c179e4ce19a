/** What every one-shot command does the same way: read its options, open and close a connection. */
import type { z } from 'zod';
import { messageOf, RondaError } from '../shared/errors';
import { parseCommandLine } from './cli-options';
import type { RondaConnection } from './ronda-connection';
import { describeLostConnection, openConnection, type OpenedConnection, type ServerAddress } from './open-connection';
import type { Output } from './output';

/** Exit codes: 0 all went well, 1 a task failed or the server could not be reached, 2 bad usage. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export type CommandLine<T> = { options: T; positionals: string[] };

export interface CommandUsage {
  /** The command's name, for the hint: `submit`. */
  command: string;
  /** The whole usage text, printed on --help. */
  usage: string;
  /** Whether the command takes words that are not options (tasks); otherwise one is an error. */
  positionals?: boolean;
}

/**
 * Parses the command's options; on a bad option prints the reason and a hint and returns the exit
 * code, on --help prints the usage and returns 0.
 */
export function readCommandLine<Schema extends z.ZodObject & z.ZodType<{ help: boolean }>>(
  schema: Schema,
  argv: readonly string[],
  output: Output,
  { command, usage, positionals = false }: CommandUsage,
): CommandLine<z.output<Schema>> | number {
  const parsed = parseCommandLine(schema, argv, process.env);
  if (!parsed.ok) return usageError(output, command, parsed.message);
  if (parsed.options.help) {
    output.line(usage);
    return EXIT_OK;
  }
  if (!positionals && parsed.positionals.length > 0) {
    return usageError(output, command, `unexpected argument "${parsed.positionals[0]}"`);
  }
  return { options: parsed.options, positionals: parsed.positionals };
}

/**
 * Prints a usage error as the reason and where to read the options, and returns EXIT_USAGE. Not
 * the whole usage: its twenty lines scrolled the one line that said what was wrong out of sight.
 */
export function usageError(output: Output, command: string, message: string): number {
  output.error(`ronda: ${message}\nrun "ronda ${command} --help" for the options`);
  return EXIT_USAGE;
}

/**
 * Runs `body` on a fresh connection and closes it afterwards. A server that cannot be reached, or
 * that goes away during `body`, is reported in one line and gives exit code 1.
 */
export async function withConnection(
  address: ServerAddress,
  output: Output,
  body: (connection: RondaConnection, opened: OpenedConnection) => Promise<number>,
): Promise<number> {
  let opened: OpenedConnection;
  try {
    opened = await openConnection(address);
  } catch (error) {
    output.error(`ronda: ${messageOf(error)}`);
    return EXIT_FAILED;
  }
  try {
    return await body(opened.connection, opened);
  } catch (error) {
    // A refusal on an open connection is the server's answer, not a lost connection.
    const refused = error instanceof RondaError && !opened.connection.closed;
    output.error(refused ? `ronda: ${error.message}` : `ronda: lost the connection to the server: ${describeLostConnection(error)}`);
    return EXIT_FAILED;
  } finally {
    await opened.connection.close();
  }
}
