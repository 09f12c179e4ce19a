/**
 * `ronda client` (and `npm run client`): the interactive console. Wires the prompt, the session
 * and the output together; the behaviour lives in console-session.ts and console-line.ts.
 */
import { addressOf, CONNECTION_HELP, ConsoleOptionsSchema } from './cli-options';
import { EXIT_FAILED, readCommandLine } from './command-helpers';
import { ConsoleSession } from './console-session';
import { openConnection, type OpenedConnection } from './open-connection';
import type { Output } from './output';
import { Prompt } from './prompt';

export const CONSOLE_USAGE = `Usage: ronda client [options]       (or: npm run client -- [options])

Type a task and press Enter; results print as they arrive. :help lists the commands.

Options:
  --retry[=n]       when the server goes away, reconnect (up to n attempts, 20 by default)
${CONNECTION_HELP}`;

export async function consoleCommand(argv: readonly string[], output: Output): Promise<number> {
  const commandLine = readCommandLine(ConsoleOptionsSchema, argv, output, { command: 'client', usage: CONSOLE_USAGE });
  if (typeof commandLine === 'number') return commandLine;
  const { options } = commandLine;

  let opened: OpenedConnection;
  let workers: number;
  try {
    opened = await openConnection(options);
    workers = (await opened.connection.stats()).workers.length;
  } catch (error) {
    output.error(`ronda: ${error instanceof Error ? error.message : String(error)}`);
    return EXIT_FAILED;
  }
  output.line(
    `connected to ${addressOf(options)}: ${workers} worker(s), task kinds ${opened.hello.kinds.join(', ')}.` +
      (output.terminal ? ' Type a task, :help for commands, salir to leave.' : ''),
  );

  const session = new ConsoleSession(output, options, opened);
  const prompt = new Prompt(process.stdin, process.stdout, output.chalk.bold('ronda> '), {
    line: (text) => session.handle(text),
    end: () => session.leave(),
  });
  session.onFinish = () => prompt.close();
  output.attachPrompt(prompt);
  prompt.start();
  const code = await session.finished;
  // A paused TTY stdin can still hold the process open.
  process.stdin.unref?.();
  return code;
}
