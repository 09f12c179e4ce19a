#!/usr/bin/env node
/**
 * `ronda <command>`: the client's entry point. It only picks the command; each lives in its own
 * module.
 */
import { closestName } from '../shared/args';
import { packageVersion } from '../shared/version';
import { splitCommand } from './cli-options';
import { EXIT_USAGE } from './command-helpers';
import { Output } from './output';
import { messageOf } from '../shared/errors';

const USAGE = `Usage: ronda [options] <command> [options]      (options before or after the command)

Commands:
  client              interactive console (the default)
  submit <task...>    submit tasks and print their results (- reads one task per line)
  results             the latest stored results
  stats               the workers and their counters
  cancel <taskId...>  cancel tasks in flight
  reload              replace every worker, one at a time (new handlers)
  prune               delete old rows of a stopped cluster's files

  ronda <command> --help   that command's options
  ronda --version          the version of Ronda`;

type Command = (argv: string[], output: Output) => Promise<number>;

/** Each command's module is loaded only when it runs, so that `ronda submit` never loads sqlite3. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  client: async () => (await import('./console-command.js')).consoleCommand,
  submit: async () => (await import('./submit-command.js')).submitCommand,
  results: async () => (await import('./results-command.js')).resultsCommand,
  stats: async () => (await import('./stats-command.js')).statsCommand,
  prune: async () => (await import('./prune-command.js')).pruneCommand,
  cancel: async () => (await import('./cancel-command.js')).cancelCommand,
  reload: async () => (await import('./reload-command.js')).reloadCommand,
};

async function main(): Promise<number> {
  const output = new Output();
  const argv = process.argv.slice(2);
  const first = argv[0];
  if (first === '--help' || first === '-h' || first === 'help') {
    output.line(USAGE);
    return 0;
  }
  if (first === '--version' || first === '-v') {
    output.line(packageVersion());
    return 0;
  }
  // Options may come before the command (`ronda --port 5600 stats`); options alone are the console.
  const { command: name = 'client', args } = splitCommand(argv);
  const load = COMMANDS[name];
  if (load === undefined) {
    const suggestion = closestName(name, Object.keys(COMMANDS));
    const meant = suggestion === undefined ? '' : ` (did you mean ${suggestion}?)`;
    output.error(`ronda: unknown command "${name}"${meant}\nrun "ronda --help" for the commands`);
    return EXIT_USAGE;
  }
  return (await load())(args, output);
}

/** A person sees one line, never a stack trace, whatever goes wrong. */
function fatal(error: unknown): void {
  new Output().error(`ronda: ${messageOf(error)}`);
  process.exit(1);
}
process.on('uncaughtException', fatal);
process.on('unhandledRejection', fatal);
// `ronda results | head -1`: the reader left; that is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  fatal(error);
});

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    new Output().error(`ronda: ${messageOf(error)}`);
    process.exitCode = 1;
  },
);
