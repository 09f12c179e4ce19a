/**
 * What a line typed at the console means: a text task, another kind of task, or a `:command`.
 * Pure, so that every form a person may type is checked by unit tests.
 */
import { z } from 'zod';
import { ArgsError, parseArgs } from '../shared/args';
import { describeOptionIssues, intOption, optionSpec } from '../shared/options';
import { DEFAULT_RESULTS_LIMIT, KindSchema, MAX_RESULTS_LIMIT } from '../shared/protocol';
import { BUILTIN_PAYLOAD_SCHEMAS, readPayload, type PayloadSchemas } from './console-payload';
import { describeTask } from './format';

export type ConsoleAction =
  | { type: 'task'; kind: string; payload: unknown; label: string }
  | { type: 'results'; limit: number; worker: number | undefined }
  | { type: 'stats' }
  | { type: 'help' }
  | { type: 'quit' }
  | { type: 'empty' }
  | { type: 'invalid'; message: string };

export const CONSOLE_HELP = `Type a line to run it as a text task; results print as they arrive.
  :hash <text>                  sha-256 of the text
  :sleep <ms>                   a task that waits, e.g. :sleep 500
  :fib <n>                      naive Fibonacci (CPU work), e.g. :fib 30
  :submit <kind> <json>         any kind with its payload, e.g. :submit sleep {"ms":200}
  :<kind> <json>                the same, for a kind the server loaded with --handlers
                                (one that takes text or one number takes it bare: :upper hola)
  :results [n] [--worker k]     the latest n stored results (all workers, or worker k)
  :stats                        each worker: pid, state, done, in flight, restarts, uptime
  :help                         this text
  salir, exit, quit, Ctrl-D     leave (Ctrl-C on an empty line too)`;

const QUIT_WORDS = /^(salir|exit|quit|:q|:quit|:exit|:salir)$/i;

const ResultsCommandSchema = z.strictObject({
  limit: intOption(1, MAX_RESULTS_LIMIT).default(DEFAULT_RESULTS_LIMIT),
  worker: intOption(1, 64).optional(),
});

/**
 * The payload for `kind` written as `text`, leniently, for `ronda submit`: `500` means {ms: 500}
 * for sleep and {n: 500} for fib; `text` and `hash` take the text itself; other kinds take JSON,
 * or the text when it is not JSON. The server judges the result (the console checks more, in
 * console-payload.ts, because a person is there to retype).
 */
export function taskPayload(kind: string, text: string): unknown {
  const integer = /^\d+$/.test(text) ? Number(text) : undefined;
  if (kind === 'sleep' && integer !== undefined) return { ms: integer };
  if (kind === 'fib' && integer !== undefined) return { n: integer };
  if (kind === 'text' || kind === 'hash') return text;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * @param kinds the kinds the server said it knows, so that a mistyped command is caught here
 *   instead of being sent as a task of an unknown kind.
 * @param schemas the JSON Schemas of their payloads from the server's hello, so that a payload
 *   that cannot be right is explained here instead of being sent (undefined: an older server;
 *   the built-in kinds' are known).
 */
export function parseConsoleLine(line: string, kinds?: ReadonlySet<string>, schemas?: PayloadSchemas): ConsoleAction {
  const text = line.trim();
  if (text === '') return { type: 'empty' };
  if (QUIT_WORDS.test(text)) return { type: 'quit' };
  if (!text.startsWith(':')) return task('text', text);

  const match = /^:(\S*)\s*(.*)$/s.exec(text);
  const command = (match?.[1] ?? '').toLowerCase();
  const rest = (match?.[2] ?? '').trim();
  switch (command) {
    case 'help':
    case 'h':
    case '?':
      return { type: 'help' };
    case 'stats':
      return rest === '' ? { type: 'stats' } : invalid(':stats takes no arguments');
    case 'results':
      return parseResults(rest);
    case 'submit': {
      const submit = /^(\S+)\s+(.+)$/s.exec(rest);
      if (submit === null) return invalid('usage: :submit <kind> <json>, e.g. :submit fib {"n":25}');
      const kind = submit[1] ?? '';
      return checkedTask(kind, submit[2] ?? '', { kinds, schemas, typed: `:submit ${kind}` });
    }
    default: {
      const known = kinds?.has(command) ?? Object.hasOwn(BUILTIN_PAYLOAD_SCHEMAS, command);
      if (rest === '' && !known) return invalid(`unknown command ":${command}" without an argument; type :help`);
      return checkedTask(command, rest, { kinds, schemas, typed: `:${command}` });
    }
  }
}

interface TaskContext {
  kinds: ReadonlySet<string> | undefined;
  schemas: PayloadSchemas | undefined;
  typed: string;
}

function checkedTask(kind: string, payloadText: string, { kinds, schemas, typed }: TaskContext): ConsoleAction {
  if (!KindSchema.safeParse(kind).success || (kinds !== undefined && !kinds.has(kind))) {
    const known = kinds === undefined ? '' : ` (the server knows: ${[...kinds].join(', ')})`;
    return invalid(`unknown command or task kind ":${kind}"${known}; type :help`);
  }
  const reading = readPayload(kind, payloadText, schemas, typed);
  if (!reading.ok) return invalid(reading.message);
  return { type: 'task', kind, payload: reading.payload, label: describeTask(kind, reading.payload) };
}

function task(kind: string, payloadText: string): ConsoleAction {
  const payload = taskPayload(kind, payloadText);
  return { type: 'task', kind, payload, label: describeTask(kind, payload) };
}

function parseResults(rest: string): ConsoleAction {
  try {
    const { options, positionals } = parseArgs(rest === '' ? [] : rest.split(/\s+/), optionSpec(ResultsCommandSchema));
    if (positionals.length > 1) return invalid('usage: :results [n] [--worker k]');
    const parsed = ResultsCommandSchema.safeParse({
      ...options,
      ...(positionals[0] === undefined ? {} : { limit: positionals[0] }),
    });
    if (!parsed.success) {
      return invalid(`:results: ${describeOptionIssues(parsed.error.issues).replace('--limit', 'n')}`);
    }
    return { type: 'results', limit: parsed.data.limit, worker: parsed.data.worker };
  } catch (error) {
    if (error instanceof ArgsError) return invalid(`:results: ${error.message}`);
    throw error;
  }
}

function invalid(message: string): ConsoleAction {
  return { type: 'invalid', message };
}
