/**
 * `ronda client` (and `npm run client`): the interactive console. Wires the prompt, the session
 * and the output together; the behaviour lives in console-session.ts and console-line.ts.
 */
import { messageOf, RondaError } from '../shared/errors';
import { addressOf, CONNECTION_HELP, ConsoleOptionsSchema, type ConsoleOptions } from './cli-options';
import { EXIT_FAILED, readCommandLine } from './command-helpers';
import { RondaConnection } from './ronda-connection';
import { ConsoleSession } from './console-session';
import { describeConnectError, openConnection, opened, type OpenedConnection } from './open-connection';
import type { Output } from './output';
import { Prompt } from './prompt';

export const CONSOLE_USAGE = `Usage: ronda client [options]       (or: npm run client -- [options])

Type a task and press Enter; results print as they arrive. :help lists the commands.

Options:
  --retry[=n]       wait for the server to be up, and reconnect when it goes away
                    (up to n attempts each time, 20 by default: about 35 s; Ctrl-C stops)
${CONNECTION_HELP}`;

export async function consoleCommand(argv: readonly string[], output: Output): Promise<number> {
  const commandLine = readCommandLine(ConsoleOptionsSchema, argv, output, { command: 'client', usage: CONSOLE_USAGE });
  if (typeof commandLine === 'number') return commandLine;
  const { options } = commandLine;

  let opened: OpenedConnection;
  let workers: number;
  try {
    opened = await connectFirst(options, output);
    workers = (await opened.connection.stats()).workers.length;
  } catch (error) {
    output.error(`ronda: ${messageOf(error)}`);
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

/**
 * The console's first connection. With --retry the server may not be up yet (it is being started
 * in another terminal): try as a reconnect does, counting the attempts, until Ctrl-C. A refused
 * token is not tried again. Rejects with an error whose message is ready to print.
 */
async function connectFirst(options: ConsoleOptions, output: Output): Promise<OpenedConnection> {
  if (options.retry === 0) return openConnection(options);
  let interrupted = false;
  let stop = (): void => undefined;
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const onSignal = (): void => {
    interrupted = true;
    stop();
  };
  // Without it Ctrl-C would kill the process mid-sentence; with it, the attempt under way (at most
  // its connect timeout) ends and no other is made.
  process.once('SIGINT', onSignal);
  const { host, port, token } = options;
  try {
    const connection = await RondaConnection.connectWithRetry(
      { host, port, token, hello: true },
      {
        attempts: options.retry,
        cancel: stopped,
        onAttempt: (attempt, attempts) => {
          // The first attempt is no news; the count starts when there is something to wait for.
          if (attempt > 1) output.line(output.chalk.yellow(`connecting to ${addressOf(options)} (attempt ${attempt}/${attempts})`));
        },
      },
    );
    return opened(connection);
  } catch (error) {
    if (interrupted) throw new Error(`stopped connecting to ${addressOf(options)}`);
    const reason = describeConnectError(error, options);
    // A server that answered and refused (the token) was reached: nothing was given up on.
    throw new Error(error instanceof RondaError ? reason : `gave up connecting: ${reason}`);
  } finally {
    process.off('SIGINT', onSignal);
  }
}
