import type { z } from 'zod';

/**
 * Stable error codes. Clients may switch on these; the messages beside them are for people and may
 * change. Documented in docs/protocol.md.
 */
export const ErrorCode = {
  /** A line that starts with `{` is not valid JSON. */
  BAD_JSON: 'BAD_JSON',
  /** Valid JSON that is not a valid client message (unknown type, missing or unknown field). */
  BAD_MESSAGE: 'BAD_MESSAGE',
  /** A line is not valid UTF-8. */
  BAD_UTF8: 'BAD_UTF8',
  /** A line is longer than the limit; the connection is closed after this error. */
  LINE_TOO_LONG: 'LINE_TOO_LONG',
  /** No worker knows this task kind. */
  UNKNOWN_KIND: 'UNKNOWN_KIND',
  /** The payload does not fit the kind's schema. */
  BAD_PAYLOAD: 'BAD_PAYLOAD',
  /** The kind's handler threw or rejected. */
  HANDLER_FAILED: 'HANDLER_FAILED',
  /** The task killed its worker too many times and will not be tried again. */
  WORKER_LOST: 'WORKER_LOST',
  /** The task ran past its time limit; its worker was replaced. */
  TIMEOUT: 'TIMEOUT',
  /** The id is already in flight on this connection. */
  DUPLICATE_ID: 'DUPLICATE_ID',
  /** The server is at its connection limit. */
  TOO_MANY_CONNECTIONS: 'TOO_MANY_CONNECTIONS',
  /** A token is required and the first message was not a `hello` carrying it. */
  UNAUTHORIZED: 'UNAUTHORIZED',
  /** The connection sat idle past the limit. */
  IDLE_TIMEOUT: 'IDLE_TIMEOUT',
  /** The server is shutting down and takes no new tasks. */
  SHUTTING_DOWN: 'SHUTTING_DOWN',
  /** The task was cancelled (`cancel`) before it ended. */
  CANCELLED: 'CANCELLED',
  /** HTTP: no such route, or no task with this id (queued, running or stored). */
  NOT_FOUND: 'NOT_FOUND',
  /** HTTP: a request body over the limit. */
  TOO_LARGE: 'TOO_LARGE',
  /** HTTP: the primary's queue is full; try again shortly (TCP clients are paused instead). */
  QUEUE_FULL: 'QUEUE_FULL',
  /** A rolling reload stopped: a new worker could not start (its handlers module does not load). */
  RELOAD_FAILED: 'RELOAD_FAILED',
  /** Something failed inside Ronda itself; a bug or an I/O failure. */
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export const ERROR_CODES = Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]];

/** An error as it travels over a socket or IPC: data, never a thrown object. */
export interface ErrorData {
  code: ErrorCode;
  message: string;
}

/** An error that carries a stable code. */
export class RondaError extends Error {
  override readonly name = 'RondaError';

  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }

  toData(): ErrorData {
    return { code: this.code, message: this.message };
  }
}

/**
 * Turns zod issues into one sentence that names the field and the rule, e.g.
 * `payload.n must be an integer from 0 to 40`. `root` names the value that was parsed.
 */
/** What went wrong, in words, whatever was thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function describeIssues(issues: readonly z.core.$ZodIssue[], root = ''): string {
  // One issue per field: zod reports 1e308 for `int().max(40)` against both the safe-integer
  // range and the schema's bound, and the later, schema's own one is the one to name.
  const byPath = new Map<string, z.core.$ZodIssue>();
  for (const issue of issues) byPath.set(issue.path.map(String).join('.'), issue);
  return [...byPath.values()]
    .slice(0, 3)
    .map((issue) => describeIssue(issue, root))
    .join('; ');
}

/** One zod issue as text; `root` names the value the issue's path starts from. */
export function describeIssue(issue: z.core.$ZodIssue, root: string): string {
  const path = [root, ...issue.path.map(String)].filter((part) => part !== '').join('.');
  const subject = path === '' ? 'value' : path;
  switch (issue.code) {
    case 'invalid_type': {
      // zod 4 leaves the input out of issues by default; its message names the received type.
      const received = /received (\w+)/.exec(issue.message)?.[1];
      if (received === 'undefined') return `${subject} is required`;
      return `${subject} must be ${article(issue.expected)}${received === undefined ? '' : `, not ${typeName(received)}`}`;
    }
    case 'too_small':
    case 'too_big':
      return `${subject} ${describeBound(issue)}`;
    case 'unrecognized_keys':
      return `${subject === 'value' ? 'message' : subject} has unknown field${
        issue.keys.length > 1 ? 's' : ''
      } ${namedFew(issue.keys.map((key) => `"${key.slice(0, 64)}"`))}`;
    case 'invalid_union':
      return `${subject} is not any of the accepted forms`;
    case 'invalid_value':
      return `${subject} must be one of ${namedFew(issue.values.map(literal))}`;
    default:
      // Ronda's own messages are written to follow the subject ("must be ..."); zod's are not.
      return /^[a-z]/.test(issue.message) ? `${subject} ${issue.message}` : `${subject}: ${issue.message}`;
  }
}

/** A literal as a schema would write it: JSON, and `5n` for a BigInt (which JSON cannot hold). */
function literal(value: unknown): string {
  return typeof value === 'bigint' ? `${value}n` : (JSON.stringify(value) ?? String(value));
}

/** The first few of `names` and how many more: an error about 100,000 fields is not that long. */
function namedFew(names: readonly string[], few = 5): string {
  const shown = names.slice(0, few).join(', ');
  return names.length > few ? `${shown} and ${names.length - few} more` : shown;
}

function describeBound(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig): string {
  const limit = Number(issue.code === 'too_small' ? issue.minimum : issue.maximum);
  const inclusive = issue.inclusive !== false;
  const atLeast = issue.code === 'too_small';
  if (issue.origin === 'string') {
    return `must be ${atLeast ? 'at least' : 'at most'} ${limit} character${limit === 1 ? '' : 's'} long`;
  }
  if (issue.origin === 'array') {
    return `must have ${atLeast ? 'at least' : 'at most'} ${limit} item${limit === 1 ? '' : 's'}`;
  }
  const relation = atLeast
    ? inclusive
      ? 'at least'
      : 'greater than'
    : inclusive
      ? 'at most'
      : 'less than';
  return `must be ${relation} ${limit}`;
}

function article(expected: string): string {
  return /^[aeiou]/.test(expected) ? `an ${expected}` : `a ${expected}`;
}

function typeName(received: string): string {
  return received === 'null' || received === 'NaN' ? received : article(received);
}
