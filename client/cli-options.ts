/**
 * The client's command-line options: one zod schema per command over shared/args.ts, with the
 * server's address and token also read from the same `RONDA_*` variables the server reads, so that
 * one exported RONDA_PORT points both at the same place.
 */
import { z } from 'zod';
import { ArgsError, camelCase, parseArgs, withEnvironment, type MergedOptions } from '../shared/args';
import { DEFAULT_HOST, DEFAULT_PORT, describeOptionIssues, flagOption, HostSchema, intOption, optionSpec } from '../shared/options';
import { DEFAULT_RESULTS_LIMIT, KindSchema, MAX_RESULTS_LIMIT } from '../shared/protocol';

/** Connection attempts `--retry` makes after the server goes away (about 35 s with the backoff). */
export const DEFAULT_RETRY_ATTEMPTS = 20;

/** Options taken from the environment when not on the command line; nothing else is. */
const ENVIRONMENT_OPTIONS = ['host', 'port', 'token'] as const;

const AddressShape = {
  host: HostSchema.default(DEFAULT_HOST),
  // Not PortSchema: port 0 means "any free port" to a listener, and nothing to a client.
  port: intOption(1, 65535).default(DEFAULT_PORT),
  token: z.string().min(1).max(1024).optional(),
  help: flagOption.default(false),
};

/** `--retry` alone, or `--retry=N` attempts; 0 (the default) means do not reconnect. */
const RetrySchema = z.preprocess((value) => (value === true ? DEFAULT_RETRY_ATTEMPTS : value), intOption(0, 1000));

export const ConsoleOptionsSchema = z.strictObject({ ...AddressShape, retry: RetrySchema.default(0) });
export type ConsoleOptions = z.infer<typeof ConsoleOptionsSchema>;

export const SubmitCommandSchema = z.strictObject({
  ...AddressShape,
  kind: KindSchema.default('text'),
  json: flagOption.default(false),
  timeoutMs: intOption(1, 3_600_000).optional(),
  retries: intOption(0, 100).optional(),
});
export type SubmitCommandOptions = z.infer<typeof SubmitCommandSchema>;

export const ResultsOptionsSchema = z.strictObject({
  ...AddressShape,
  limit: intOption(1, MAX_RESULTS_LIMIT).default(DEFAULT_RESULTS_LIMIT),
  worker: intOption(1, 64).optional(),
  json: flagOption.default(false),
  /** Read the worker files in this folder instead of asking a server. */
  dataDir: z.string().min(1).optional(),
});
export type ResultsOptions = z.infer<typeof ResultsOptionsSchema>;

/** `ronda prune`: offline retention of a stopped cluster's files. */
export const PruneOptionsSchema = z
  .strictObject({
    dataDir: z.string().min(1).optional(),
    retainRows: intOption(1, 1_000_000_000).optional(),
    retainDays: intOption(1, 36_500).optional(),
    help: flagOption.default(false),
  })
  .refine((options) => options.help || options.retainRows !== undefined || options.retainDays !== undefined, {
    path: ['retainRows'],
    message: 'or --retain-days is needed: say what to keep',
  });
export type PruneOptions = z.infer<typeof PruneOptionsSchema>;

export const CancelOptionsSchema = z.strictObject({ ...AddressShape });
export const ReloadOptionsSchema = z.strictObject({ ...AddressShape });

export const StatsOptionsSchema = z.strictObject({ ...AddressShape, json: flagOption.default(false) });
export type StatsOptions = z.infer<typeof StatsOptionsSchema>;

/** Options that are flags although their schema is not flagOption: `--retry` alone or `--retry=3`. */
const VALUE_OPTIONAL = ['retry'];

export type ParsedCommandLine<T> = { ok: true; options: T; positionals: string[] } | { ok: false; message: string };

/** Parses argv against `schema`; never throws. A bad value is named by its option and rule. */
export function parseCommandLine<Schema extends z.ZodObject>(
  schema: Schema,
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): ParsedCommandLine<z.output<Schema>> {
  let merged: MergedOptions;
  let positionals: string[];
  try {
    const parsed = parseArgs(argv, optionSpec(schema, VALUE_OPTIONAL));
    merged = withEnvironment(parsed.options, ENVIRONMENT_OPTIONS, env);
    positionals = parsed.positionals;
  } catch (error) {
    if (error instanceof ArgsError) return { ok: false, message: error.message };
    throw error;
  }
  const result = schema.safeParse(merged.options);
  if (!result.success) return { ok: false, message: describeOptionIssues(result.error.issues, merged.fromEnvironment) };
  return { ok: true, options: result.data, positionals };
}

/** Every option of a command that takes a value, so that a value before the command is skipped. */
const VALUE_OPTIONS: ReadonlySet<string> = new Set(
  [ConsoleOptionsSchema, SubmitCommandSchema, ResultsOptionsSchema, StatsOptionsSchema].flatMap((schema) => [
    ...(optionSpec(schema, VALUE_OPTIONAL).values ?? []),
  ]),
);

/**
 * Splits `ronda [options] [command] [options]` into the command and the rest of its arguments, so
 * that `ronda --port 5600 stats` is `ronda stats --port 5600`. The command is the first word that
 * is neither an option nor an option's value (`ronda --token stats` has none); without one, the
 * command is the console.
 */
export function splitCommand(argv: readonly string[]): { command: string | undefined; args: string[] } {
  for (let i = 0; i < argv.length; i += 1) {
    const word = argv[i] as string;
    if (word === '--') break;
    if (word.startsWith('-') && word !== '-') {
      if (word.startsWith('--') && !word.includes('=') && VALUE_OPTIONS.has(camelCase(word.slice(2)))) i += 1;
      continue;
    }
    return { command: word, args: [...argv.slice(0, i), ...argv.slice(i + 1)] };
  }
  return { command: undefined, args: [...argv] };
}

/** Where a command connects, for messages: `127.0.0.1:5000`. */
export function addressOf(options: { host: string; port: number }): string {
  return options.host.includes(':') ? `[${options.host}]:${options.port}` : `${options.host}:${options.port}`;
}

/** The usage lines of the options every command that talks to a server takes. */
export const CONNECTION_HELP = `  --host <addr>     server address   RONDA_HOST  (${DEFAULT_HOST})
  --port <n>        server port      RONDA_PORT  (${DEFAULT_PORT})
  --token <secret>  server's token   RONDA_TOKEN`;
