/** What every one-shot command does the same way: read its options, open and close a connection. */
import type { z } from 'zod';
import { parseCommandLine } from './cli-options';
import type { RondaConnection } from './connection';
import { describeLostConnection, openConnection, type OpenedConnection, type ServerAddress } from './open-connection';
import type { Output } from './output';

/** Exit codes: 0 all went well, 1 a task failed or the server could not be reached, 2 bad usage. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export type CommandLine<T> = { options: T; positionals: string[] };

/**
 * Parses the command's options; on a bad option prints it with the usage and returns the exit
 * code, on --help prints the usage and returns 0.
 */
export function readCommandLine<Schema extends z.ZodObject & z.ZodType<{ help: boolean }>>(
  schema: Schema,
  argv: readonly string[],
  output: Output,
  usage: string,
  { positionals = false }: { positionals?: boolean } = {},
): CommandLine<z.output<Schema>> | number {
  const parsed = parseCommandLine(schema, argv, process.env);
  if (!parsed.ok) {
    output.error(`ronda: ${parsed.message}\n\n${usage}`);
    return EXIT_USAGE;
  }
  if (parsed.options.help) {
    output.line(usage);
    return EXIT_OK;
  }
  if (!positionals && parsed.positionals.length > 0) {
    output.error(`ronda: unexpected argument "${parsed.positionals[0]}"\n\n${usage}`);
    return EXIT_USAGE;
  }
  return { options: parsed.options, positionals: parsed.positionals };
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
    output.error(`ronda: ${error instanceof Error ? error.message : String(error)}`);
    return EXIT_FAILED;
  }
  try {
    return await body(opened.connection, opened);
  } catch (error) {
    output.error(`ronda: lost the connection to the server: ${describeLostConnection(error)}`);
    return EXIT_FAILED;
  } finally {
    await opened.connection.close();
  }
}
