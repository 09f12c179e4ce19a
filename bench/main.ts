#!/usr/bin/env node
/**
 * `npm run bench`: the benchmark's entry point (node dist/bench/main.js). It lives beside the
 * client, not inside the `ronda` command: it is a tool for Ronda's developers, not for its users.
 */
import { Output } from '../client/output';
import { messageOf } from '../shared/errors';
import { benchCommand } from './command';

/** A person sees one line, never a stack trace, whatever goes wrong. */
function fatal(error: unknown): void {
  new Output().error(`ronda bench: ${messageOf(error)}`);
  process.exit(1);
}
process.on('uncaughtException', fatal);
process.on('unhandledRejection', fatal);

benchCommand(process.argv.slice(2), new Output()).then((code) => {
  process.exitCode = code;
}, fatal);
