#!/usr/bin/env node
/**
 * `ronda <command>`: the client's entry point. It only picks the command; each lives in its own
 * module.
 */
import { closestName } from '../shared/args';
import { packageVersion } from '../shared/version';
import { EXIT_USAGE } from './command-helpers';
import { Output } from './output';

const USAGE = `Usage: ronda <command> [options]

Commands:
  client              interactive console (the default)
  submit <task...>    submit tasks and print their results (- reads one task per line)
  results             the latest stored results
  stats               the workers and their counters
  bench               measure throughput, latency and recovery

  ronda <command> --help   that command's options
  ronda --version          the version of Ronda`;

type Command = (argv: string[], output: Output) => Promise<number>;

/** Each command's module is loaded only when it runs, so that `ronda submit` never loads sqlite3. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  client: async () => (await import('./console-command.js')).consoleCommand,
  submit: async () => (await import('./submit-command.js')).submitCommand,
  results: async () => (await import('./results-command.js')).resultsCommand,
  stats: async () => (await import('./stats-command.js')).statsCommand,
  bench: async () => (await import('./bench.js')).benchCommand,
};

async function main(): Promise<number> {
  const output = new Output();
  const argv = process.argv.slice(2);
  // `ronda --port 5001` is the console with options, like `ronda` alone.
  const consoleOptions = argv[0]?.startsWith('--') === true && argv[0] !== '--help' && argv[0] !== '--version';
  const [name = 'client', ...rest] = consoleOptions ? ['client', ...argv] : argv;
  if (name === '--help' || name === '-h' || name === 'help') {
    output.line(USAGE);
    return 0;
  }
  if (name === '--version' || name === '-v') {
    output.line(packageVersion());
    return 0;
  }
  const load = COMMANDS[name];
  if (load === undefined) {
    const suggestion = closestName(name, Object.keys(COMMANDS));
    const meant = suggestion === undefined ? '' : ` (did you mean ${suggestion}?)`;
    output.error(`ronda: unknown command "${name}"${meant}\nrun "ronda --help" for the commands`);
    return EXIT_USAGE;
  }
  return (await load())(rest, output);
}

/** A person sees one line, never a stack trace, whatever goes wrong. */
function fatal(error: unknown): void {
  new Output().error(`ronda: ${error instanceof Error ? error.message : String(error)}`);
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
    new Output().error(`ronda: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  },
);
