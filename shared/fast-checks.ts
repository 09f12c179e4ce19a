/**
 * Hand-written checks of the messages on the task path, tried before their zod schemas. Each one
 * accepts only values its schema accepts, and gives the same value the schema would; anything it
 * is not sure of it leaves to zod (it returns undefined), which then gives the verdict and the
 * words of any error. So every message is still held to its schema, and the common ones cost a
 * few property reads instead of a schema walk (zod was a tenth of the primary's time at
 * saturation, and more per task when tasks come one at a time). test/unit/fast-checks.test.ts
 * holds each to its schema over thousands of valid and broken variants.
 *
 * They read values that JSON.parse made: plain objects and arrays, no getters, no prototypes
 * with enumerable keys.
 */
import { ERROR_CODES, type ErrorData } from './errors';
import { depthWithin, MAX_PAYLOAD_DEPTH, type DoneReply, type FailedReply, type Submit, type TaskOutcome, type TaskSpec } from './protocol';

const hasOwn = Object.prototype.hasOwnProperty;
const KIND = /^[a-z][a-z0-9_-]{0,31}$/;
const CODES: ReadonlySet<string> = new Set(ERROR_CODES);

type Fields = Record<string, unknown>;

function isObject(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Every own key of `value` is one of `allowed` (a strict object has no others). */
function onlyKeys(value: Fields, allowed: ReadonlySet<string>): boolean {
  for (const key in value) if (hasOwn.call(value, key) && !allowed.has(key)) return false;
  return true;
}

function isId(value: unknown): value is string {
  return typeof value === 'string' && value.length >= 1 && value.length <= 128;
}

function isInt(value: unknown): value is number {
  return Number.isSafeInteger(value);
}

function isNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value);
}

const ERROR_KEYS: ReadonlySet<string> = new Set(['code', 'message']);

function isErrorData(value: unknown): value is ErrorData {
  return isObject(value) && CODES.has(value.code as string) && typeof value.message === 'string' && onlyKeys(value, ERROR_KEYS);
}

const SUBMIT_KEYS: ReadonlySet<string> = new Set(['type', 'id', 'kind', 'payload', 'timeoutMs', 'retries']);

/** A `submit` request as SubmitSchema gives it (`kind` defaulted), or undefined: ask zod. */
export function fastSubmit(raw: unknown): Submit | undefined {
  if (!isObject(raw) || raw.type !== 'submit' || !onlyKeys(raw, SUBMIT_KEYS)) return undefined;
  const { id, kind, payload, timeoutMs, retries } = raw;
  if (id !== undefined && !isId(id)) return undefined;
  if (kind !== undefined && !(typeof kind === 'string' && KIND.test(kind))) return undefined;
  if (payload === undefined || !depthWithin(payload, MAX_PAYLOAD_DEPTH)) return undefined;
  if (timeoutMs !== undefined && !isNumber(timeoutMs)) return undefined;
  if (retries !== undefined && !isNumber(retries)) return undefined;
  const submit: Submit = { type: 'submit', kind: kind ?? 'text', payload };
  if (id !== undefined) submit.id = id;
  if (timeoutMs !== undefined) submit.timeoutMs = timeoutMs;
  if (retries !== undefined) submit.retries = retries;
  return submit;
}

const DONE_OUTCOME_KEYS: ReadonlySet<string> = new Set(['taskId', 'status', 'result', 'json']);
const ERROR_OUTCOME_KEYS: ReadonlySet<string> = new Set(['taskId', 'status', 'error']);
const FAILED_OUTCOME_KEYS: ReadonlySet<string> = new Set(['taskId', 'status', 'error', 'attempts']);

/** One outcome as TaskOutcomeSchema gives it, or undefined: ask zod. */
export function fastOutcome(raw: unknown): TaskOutcome | undefined {
  if (!isObject(raw) || !isId(raw.taskId)) return undefined;
  switch (raw.status) {
    case 'done':
      return typeof raw.result === 'string' && typeof raw.json === 'boolean' && onlyKeys(raw, DONE_OUTCOME_KEYS)
        ? (raw as TaskOutcome)
        : undefined;
    case 'failed':
      return isErrorData(raw.error) && (raw.attempts === undefined || (isInt(raw.attempts) && raw.attempts >= 1)) && onlyKeys(raw, FAILED_OUTCOME_KEYS)
        ? (raw as TaskOutcome)
        : undefined;
    case 'unstored':
    case 'retry':
      return isErrorData(raw.error) && onlyKeys(raw, ERROR_OUTCOME_KEYS) ? (raw as TaskOutcome) : undefined;
    default:
      return undefined;
  }
}

const OUTCOMES_KEYS: ReadonlySet<string> = new Set(['type', 'outcomes']);

/** A worker's `outcomes` message (its items unchecked, as FromWorkerSchema has them), or undefined. */
export function fastOutcomes(raw: unknown): { type: 'outcomes'; outcomes: unknown[] } | undefined {
  return isObject(raw) && raw.type === 'outcomes' && Array.isArray(raw.outcomes) && raw.outcomes.length >= 1 && onlyKeys(raw, OUTCOMES_KEYS)
    ? (raw as { type: 'outcomes'; outcomes: unknown[] })
    : undefined;
}

const SPEC_KEYS: ReadonlySet<string> = new Set(['taskId', 'clientId', 'kind', 'payload', 'payloadJson', 'redelivered', 'failWith', 'retry', 'attempt']);

function isSpec(value: unknown): value is TaskSpec {
  if (!isObject(value) || !isId(value.taskId) || typeof value.kind !== 'string' || !KIND.test(value.kind)) return false;
  const { clientId, payloadJson, redelivered, failWith, retry, attempt } = value;
  return (
    (clientId === undefined || isId(clientId)) &&
    (payloadJson === undefined || typeof payloadJson === 'string') &&
    (redelivered === undefined || redelivered === true) &&
    (failWith === undefined || isErrorData(failWith)) &&
    (retry === undefined || retry === true) &&
    (attempt === undefined || (isInt(attempt) && attempt >= 1)) &&
    onlyKeys(value, SPEC_KEYS)
  );
}

const TASKS_KEYS: ReadonlySet<string> = new Set(['type', 'first', 'tasks']);

/** The primary's `tasks` message as ToWorkerSchema gives it, or undefined: ask zod. */
export function fastTasks(raw: unknown): { type: 'tasks'; first: number; tasks: TaskSpec[] } | undefined {
  if (!isObject(raw) || raw.type !== 'tasks' || !isInt(raw.first) || raw.first < 0 || !onlyKeys(raw, TASKS_KEYS)) return undefined;
  const { tasks } = raw;
  if (!Array.isArray(tasks) || tasks.length === 0) return undefined;
  for (const spec of tasks) if (!isSpec(spec)) return undefined;
  return raw as { type: 'tasks'; first: number; tasks: TaskSpec[] };
}

const DONE_KEYS: ReadonlySet<string> = new Set(['type', 'id', 'taskId', 'kind', 'worker', 'result', 'ms', 'attempts']);
const FAILED_KEYS: ReadonlySet<string> = new Set(['type', 'id', 'taskId', 'kind', 'worker', 'error', 'ms', 'attempts']);

/** A `done` or `failed` reply as ServerMessageSchema gives it, or undefined: ask zod. */
export function fastTaskReply(raw: unknown): DoneReply | FailedReply | undefined {
  if (!isObject(raw) || typeof raw.id !== 'string' || typeof raw.kind !== 'string') return undefined;
  if (raw.attempts !== undefined && !isInt(raw.attempts)) return undefined;
  if (raw.type === 'done') {
    return typeof raw.taskId === 'string' && isInt(raw.worker) && isNumber(raw.ms) && hasOwn.call(raw, 'result') && onlyKeys(raw, DONE_KEYS)
      ? (raw as DoneReply)
      : undefined;
  }
  if (raw.type === 'failed') {
    return (raw.taskId === undefined || typeof raw.taskId === 'string') &&
      (raw.worker === undefined || isInt(raw.worker)) &&
      (raw.ms === undefined || isNumber(raw.ms)) &&
      isErrorData(raw.error) &&
      onlyKeys(raw, FAILED_KEYS)
      ? (raw as FailedReply)
      : undefined;
  }
  return undefined;
}
