/**
 * The primary's configuration: one zod schema over command-line options and `RONDA_*` environment
 * variables (the command line wins). A bad value is reported by option name and rule.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { ArgsError, camelCase, envName, parseArgs, withEnvironment, type MergedOptions } from '../shared/args';
import {
  DEFAULT_HOST,
  DEFAULT_PORT,
  describeOptionIssues,
  flagOption,
  HostSchema,
  intOption,
  optionSpec,
  PortSchema,
} from '../shared/options';

/** How the primary picks the worker of the next task: see round-robin.ts. */
export const DISPATCH_MODES = ['round-robin', 'least-loaded'] as const;
export type DispatchMode = (typeof DISPATCH_MODES)[number];

/** Defaults of the primary's options, shared by the schema and the usage text. */
export const SERVER_DEFAULTS = {
  host: DEFAULT_HOST,
  port: DEFAULT_PORT,
  workers: 3,
  dataDir: 'data',
  dispatch: 'round-robin' as DispatchMode,
  taskTimeoutMs: 90_000,
  minTaskTimeoutMs: 1_000,
  maxTaskTimeoutMs: 600_000,
  maxConnections: 1_000,
  maxInflightPerWorker: 256,
  maxQueue: 10_000,
  maxAttempts: 3,
  maxRetries: 5,
  retryBaseMs: 100,
  idleTimeoutMs: 300_000,
  shutdownTimeoutMs: 10_000,
  workerReadyTimeoutMs: 10_000,
  httpPort: 5080,
} as const;

/** `--http-port off` serves no HTTP at all. */
export const HTTP_OFF = 'off';

export const ServerConfigSchema = z
  .strictObject({
    host: HostSchema.default(SERVER_DEFAULTS.host),
    port: PortSchema.default(SERVER_DEFAULTS.port),
    /** The web console, the JSON API and /metrics, on the same host; `off` for none. */
    httpPort: z
      .preprocess(
        (value) => (typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : value),
        z.custom<number | typeof HTTP_OFF>(
          (value) => value === HTTP_OFF || (Number.isInteger(value) && (value as number) >= 0 && (value as number) <= 65_535),
          { message: 'must be a port from 0 to 65535 (0 picks a free one), or off' },
        ),
      )
      .default(SERVER_DEFAULTS.httpPort),
    workers: intOption(1, 64).default(SERVER_DEFAULTS.workers),
    dataDir: z.string().min(1).default(SERVER_DEFAULTS.dataDir),
    /** A module that exports more task kinds; loaded by every worker. */
    handlers: z.string().min(1).optional(),
    quiet: flagOption.default(false),
    /** Written once the cluster serves: `{"pid","host","port"}` as JSON, for programs that start it. */
    readyFile: z.string().min(1).optional(),
    /** Required to listen on anything but loopback; clients send it in `hello`. */
    token: z.string().min(8).max(1024).optional(),
    /** A file holding the token (its first line), so that it shows neither in `ps` nor in the environment. */
    tokenFile: z.string().min(1).optional(),
    /** How the next task's worker is chosen: see server/round-robin.ts. */
    dispatch: z.enum(DISPATCH_MODES).default(SERVER_DEFAULTS.dispatch),
    taskTimeoutMs: intOption(1, 3_600_000).default(SERVER_DEFAULTS.taskTimeoutMs),
    /**
     * The smallest timeoutMs a client may ask for. A time limit kills its worker, and the worker's
     * other tasks are run again: a client asking for 1 ms would make the server kill workers all
     * day, slowing every other client.
     */
    minTaskTimeoutMs: intOption(1, 3_600_000).default(SERVER_DEFAULTS.minTaskTimeoutMs),
    maxTaskTimeoutMs: intOption(1, 3_600_000).default(SERVER_DEFAULTS.maxTaskTimeoutMs),
    maxConnections: intOption(1, 100_000).default(SERVER_DEFAULTS.maxConnections),
    maxInflightPerWorker: intOption(1, 10_000).default(SERVER_DEFAULTS.maxInflightPerWorker),
    maxQueue: intOption(1, 1_000_000).default(SERVER_DEFAULTS.maxQueue),
    /** How many worker deaths a task may cause before it is failed with WORKER_LOST. */
    maxAttempts: intOption(1, 100).default(SERVER_DEFAULTS.maxAttempts),
    /** The most `retries` a submit may ask for. */
    maxRetries: intOption(0, 100).default(SERVER_DEFAULTS.maxRetries),
    /** The delay before a task's first retry; doubled for each next one, with jitter. */
    retryBaseMs: intOption(1, 600_000).default(SERVER_DEFAULTS.retryBaseMs),
    /** Rows each worker file keeps (the newest); all when absent. */
    retainRows: intOption(1, 1_000_000_000).optional(),
    /** Days a row is kept; forever when absent. */
    retainDays: intOption(1, 36_500).optional(),
    /** A worker that has finished this many tasks is replaced gracefully; never when absent. */
    maxTasksPerWorker: intOption(1, 1_000_000_000).optional(),
    /** A worker whose resident memory passes this (MiB) is replaced gracefully; never when absent. */
    maxWorkerRssMb: intOption(32, 1_048_576).optional(),
    idleTimeoutMs: intOption(0, 86_400_000).default(SERVER_DEFAULTS.idleTimeoutMs),
    shutdownTimeoutMs: intOption(0, 600_000).default(SERVER_DEFAULTS.shutdownTimeoutMs),
    /**
     * A worker that has not said `ready` this long after it was started is killed and replaced. At
     * least 1 s: a cold fork takes up to about 0.6 s on a busy 2-core machine, and a limit below
     * that would kill every worker for good.
     */
    workerReadyTimeoutMs: intOption(1_000, 600_000).default(SERVER_DEFAULTS.workerReadyTimeoutMs),
    help: flagOption.default(false),
    version: flagOption.default(false),
  })
  .refine((config) => config.maxTaskTimeoutMs >= config.taskTimeoutMs, {
    path: ['maxTaskTimeoutMs'],
    message: 'must be at least --task-timeout-ms',
  })
  .refine((config) => config.taskTimeoutMs >= config.minTaskTimeoutMs, {
    path: ['minTaskTimeoutMs'],
    message: `must be at most --task-timeout-ms (${SERVER_DEFAULTS.taskTimeoutMs} when not given)`,
  })
  .refine((config) => config.token === undefined || config.tokenFile === undefined, {
    path: ['tokenFile'],
    message: 'cannot be given together with --token (RONDA_TOKEN): choose one',
  })
  .refine((config) => isLoopback(config.host) || config.token !== undefined || config.tokenFile !== undefined, {
    path: ['token'],
    message: 'is required to listen on a non-loopback address (or RONDA_TOKEN, or --token-file)',
  });

export type ServerConfig = z.infer<typeof ServerConfigSchema>;

/** Each option's flag, what it does and its default, for the usage text. */
const OPTION_HELP: readonly [flag: string, what: string][] = [
  ['--host <addr>', 'address to listen on'],
  ['--port <n>', 'TCP port; 0 picks a free one'],
  ['--http-port <n|off>', 'console, API and /metrics; 0: free'],
  ['--workers <n>', 'worker processes, 1-64'],
  ['--data-dir <dir>', 'where the workerN.db files live'],
  ['--handlers <module>', 'a module with more task kinds'],
  ['--token <secret>', 'needed beyond loopback; shown in ps'],
  ['--token-file <file>', 'the token, read from a file'],
  ['--dispatch <mode>', 'round-robin or least-loaded'],
  ['--task-timeout-ms <n>', 'default time limit of a task'],
  ['--min-task-timeout-ms <n>', 'smallest timeoutMs a client may ask'],
  ['--max-task-timeout-ms <n>', 'largest timeoutMs a client may ask'],
  ['--max-connections <n>', 'open client connections'],
  ['--max-inflight-per-worker <n>', 'tasks one worker holds at once'],
  ['--max-queue <n>', 'queued tasks before reading pauses'],
  ['--max-attempts <n>', 'worker deaths a task may cause'],
  ['--max-retries <n>', 'most retries a submit may ask'],
  ['--retry-base-ms <n>', 'delay before a first retry'],
  ['--retain-rows <n>', 'rows each worker file keeps; all'],
  ['--retain-days <n>', 'days a row is kept; forever'],
  ['--max-tasks-per-worker <n>', 'recycle a worker after n tasks'],
  ['--max-worker-rss-mb <n>', 'recycle a worker past n MiB RSS'],
  ['--idle-timeout-ms <n>', 'close idle connections; 0: never'],
  ['--ready-file <file>', 'write {pid, host, port, httpPort}'],
  ['--shutdown-timeout-ms <n>', 'drain deadline on Ctrl-C'],
  ['--worker-ready-timeout-ms <n>', 'kill a worker not ready by then'],
  ['--quiet', 'no per-task log lines'],
];

export const SERVER_USAGE = [
  'Usage: npm start -- [options]        (or: node dist/server/main.js [options])',
  '',
  'Options, each also read from the environment variable beside it (the default in brackets):',
  ...OPTION_HELP.map(([flag, what]) => {
    const name = camelCase(flag.slice(2).split(' ')[0] as string);
    const fallback: unknown = (SERVER_DEFAULTS as Record<string, unknown>)[name];
    return `  ${flag.padEnd(31)}${what.padEnd(36)}${envName(name)}${fallback === undefined ? '' : ` [${fallback}]`}`;
  }),
  `  ${'--help, -h'.padEnd(31)}this text`,
  `  ${'--version, -v'.padEnd(31)}the version of Ronda`,
].join('\n');

/** Printed under a bad option's reason, in place of the whole usage, which scrolled it away. */
export const SERVER_USAGE_HINT = 'run "npm start -- --help" for the options';

export type ConfigResult =
  | { ok: true; config: ServerConfig; warnings: string[] }
  | { ok: false; message: string };

/** Reads the primary's configuration; never throws. */
export function loadServerConfig(argv: readonly string[], env: NodeJS.ProcessEnv): ConfigResult {
  let merged: MergedOptions;
  try {
    const parsed = parseArgs(argv, optionSpec(ServerConfigSchema));
    if (parsed.positionals.length > 0) {
      return { ok: false, message: `unexpected argument "${parsed.positionals[0]}"` };
    }
    merged = withEnvironment(parsed.options, Object.keys(ServerConfigSchema.shape), env);
  } catch (error) {
    if (error instanceof ArgsError) return { ok: false, message: error.message };
    throw error;
  }
  const result = ServerConfigSchema.safeParse(merged.options);
  if (!result.success) return { ok: false, message: describeOptionIssues(result.error.issues, merged.fromEnvironment) };
  const config = { ...result.data, dataDir: path.resolve(result.data.dataDir) };
  const warnings: string[] = [];
  if (parsedToken(argv)) {
    warnings.push('--token on the command line shows in `ps` to every user of this machine; use RONDA_TOKEN or --token-file');
  }
  if (config.tokenFile !== undefined) {
    const token = readTokenFile(config.tokenFile);
    if (!token.ok) return token;
    config.token = token.token;
  }
  return { ok: true, config, warnings };
}

/** Whether the token was given as an argument (not through the environment or a file). */
function parsedToken(argv: readonly string[]): boolean {
  return argv.some((word) => word === '--token' || word.startsWith('--token='));
}

/** Bytes read of a --token-file: a token is at most 1,024 characters. */
const MAX_TOKEN_FILE_BYTES = 4096;

/** The token in the first line of `file`, checked like --token. */
function readTokenFile(file: string): { ok: true; token: string } | { ok: false; message: string } {
  let text: string;
  try {
    // Its first line is all that counts: a few KB at most are read (a named pipe or /dev/zero
    // could give without end).
    const descriptor = openSync(file, 'r');
    try {
      const buffer = Buffer.alloc(MAX_TOKEN_FILE_BYTES);
      text = buffer.toString('utf8', 0, readSync(descriptor, buffer, 0, buffer.length, null));
    } finally {
      closeSync(descriptor);
    }
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : String((error as Error).message);
    return { ok: false, message: `--token-file ${file}: cannot read it (${reason})` };
  }
  const token = (text.split(/\r?\n/)[0] ?? '').trim();
  if (token.length < 8 || token.length > 1024) {
    return { ok: false, message: `--token-file ${file}: its first line must be a token of 8 to 1024 characters` };
  }
  return { ok: true, token };
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
