/**
 * Every message that crosses a socket or an IPC channel, as zod schemas. One discriminated union
 * per direction; the TypeScript types are inferred from them. docs/protocol.md describes the same
 * messages for people.
 */
import { z } from 'zod';
import { ERROR_CODES } from './errors';

/** Longest line the server reads, newline excluded. */
export const MAX_LINE_BYTES = 1024 * 1024;
/** Deepest nesting of arrays and objects accepted in a payload. */
export const MAX_PAYLOAD_DEPTH = 32;
/** Most rows one `results` request returns. */
export const MAX_RESULTS_LIMIT = 1000;
export const DEFAULT_RESULTS_LIMIT = 20;
/**
 * Version 2: every request may carry an `id`, echoed by its reply (or its error); the `results`
 * filter is `taskId`. A connection speaks version 1 until its hello says `protocol: 2`; in
 * version 1 a `results` query's `id` is its filter (deprecated spelling, kept for one version).
 */
export const PROTOCOL_VERSION = 2;

export const TaskIdSchema = z.string().min(1).max(128);
export const KindSchema = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,31}$/, 'must be lowercase letters, digits, "-" or "_", up to 32');
export const SlotSchema = z.number().int().min(1).max(64);

export const ErrorDataSchema = z.strictObject({
  code: z.enum(ERROR_CODES),
  message: z.string(),
});

/** A JSON value no deeper than MAX_PAYLOAD_DEPTH, so that re-encoding it can never overflow. */
export const PayloadSchema = z.unknown().refine((value) => value !== undefined, 'is required').refine(
  (value) => depthWithin(value, MAX_PAYLOAD_DEPTH),
  `must not nest deeper than ${MAX_PAYLOAD_DEPTH} levels`,
);

/** A JSON value no deeper than `limit` levels of arrays and objects. */
export function depthWithin(value: unknown, limit: number): boolean {
  if (typeof value !== 'object' || value === null) return true;
  if (limit === 0) return false;
  for (const child of Object.values(value)) {
    if (!depthWithin(child, limit - 1)) return false;
  }
  return true;
}

// ---- client -> server -------------------------------------------------------------------------

/** A request's own id, echoed by its reply; for a submit it is also the task's client id. */
export const RequestIdSchema = z.string().min(1).max(128);

export const HelloSchema = z.strictObject({
  type: z.literal('hello'),
  id: RequestIdSchema.optional(),
  token: z.string().max(1024).optional(),
  client: z.string().max(128).optional(),
  /** The protocol version the client speaks (1 when absent); the connection then speaks it too. */
  protocol: z.number().int().min(1).optional(),
});

export const SubmitSchema = z.strictObject({
  type: z.literal('submit'),
  id: TaskIdSchema.optional(),
  kind: KindSchema.default('text'),
  payload: PayloadSchema,
  /** Checked against the server's own bounds where it arrives, which then names them. */
  timeoutMs: z.number().optional(),
  /**
   * Runs again after a HANDLER_FAILED or TIMEOUT, up to this many times (at most the server's
   * --max-retries), after a growing delay; the reply then carries `attempts`.
   */
  retries: z.number().optional(),
});

export const ResultsQuerySchema = z.strictObject({
  type: z.literal('results'),
  limit: z.number().int().min(1).max(MAX_RESULTS_LIMIT).default(DEFAULT_RESULTS_LIMIT),
  worker: SlotSchema.optional(),
  /** The task with this task id, or else the tasks a client gave this id. */
  taskId: TaskIdSchema.optional(),
  /** The request's id (protocol 2, or whenever `taskId` is given); in protocol 1 alone, the filter. */
  id: TaskIdSchema.optional(),
});

export const StatsQuerySchema = z.strictObject({ type: z.literal('stats'), id: RequestIdSchema.optional() });

/**
 * Takes back a task in flight: a queued one fails `CANCELLED` at once (stored as such); a running
 * one's handler sees its AbortSignal abort. Only the connection that submitted the task, or a
 * client that gave the cluster's token, may cancel it.
 */
export const CancelSchema = z.strictObject({ type: z.literal('cancel'), id: RequestIdSchema.optional(), taskId: TaskIdSchema });

/**
 * Replaces every worker, one slot at a time, with one that loads the handlers module afresh (as
 * SIGHUP to the primary does). Answered once every new worker serves, or RELOAD_FAILED.
 */
export const ReloadSchema = z.strictObject({ type: z.literal('reload'), id: RequestIdSchema.optional() });

export const ClientMessageSchema = z.discriminatedUnion('type', [
  HelloSchema,
  SubmitSchema,
  ResultsQuerySchema,
  StatsQuerySchema,
  CancelSchema,
  ReloadSchema,
]);
export type ClientMessage = z.infer<typeof ClientMessageSchema>;
export type Submit = z.infer<typeof SubmitSchema>;
export type Hello = z.infer<typeof HelloSchema>;
export type ResultsQuery = z.infer<typeof ResultsQuerySchema>;
export type Cancel = z.infer<typeof CancelSchema>;

// ---- server -> client -------------------------------------------------------------------------

export const ResultRowSchema = z.strictObject({
  task_id: z.string(),
  client_id: z.string().nullable(),
  kind: z.string(),
  task: z.string(),
  result: z.unknown(),
  status: z.enum(['done', 'failed']),
  worker: z.number().int(),
  timestamp: z.string(),
  /** How many times the task ran (1 unless it was retried). */
  attempts: z.number().int().optional(),
});
export type ResultRow = z.infer<typeof ResultRowSchema>;

export const WorkerStateSchema = z.enum(['starting', 'ready', 'backoff', 'stopping', 'stopped']);
export type WorkerState = z.infer<typeof WorkerStateSchema>;

export const WorkerStatsSchema = z.strictObject({
  slot: z.number().int(),
  pid: z.number().int().nullable(),
  state: WorkerStateSchema,
  done: z.number().int(),
  failed: z.number().int(),
  inflight: z.number().int(),
  /** Workers that died (or could not start) and were replaced. */
  restarts: z.number().int(),
  /** Workers replaced gracefully for --max-tasks-per-worker or --max-worker-rss-mb (a reload is neither). */
  recycles: z.number().int().optional(),
  uptimeMs: z.number(),
  /** When the current worker said it was ready (ms since the epoch, the primary's clock). */
  readyAt: z.number().optional(),
  /** When the primary saw the last worker of this slot exit (ms since the epoch), if one has. */
  lastDeathAt: z.number().optional(),
  /** Why the slot is not serving, or why its last worker could not go on; gone once one is ready. */
  problem: z.string().optional(),
});
export type WorkerStats = z.infer<typeof WorkerStatsSchema>;

export const ServerMessageSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('hello'),
    id: z.string().optional(),
    server: z.literal('ronda'),
    protocol: z.number().int(),
    kinds: z.array(z.string()),
    /** Each kind's payload as a JSON Schema, where the workers could express it (see load-kinds). */
    schemas: z.record(z.string(), z.unknown()).optional(),
  }),
  z.strictObject({
    type: z.literal('done'),
    id: z.string(),
    taskId: z.string(),
    kind: z.string(),
    worker: z.number().int(),
    result: z.unknown(),
    ms: z.number(),
    /** Runs it took, when the submit asked for retries. */
    attempts: z.number().int().optional(),
  }),
  z.strictObject({
    type: z.literal('failed'),
    id: z.string(),
    taskId: z.string().optional(),
    kind: z.string(),
    worker: z.number().int().optional(),
    error: ErrorDataSchema,
    ms: z.number().optional(),
    attempts: z.number().int().optional(),
  }),
  z.strictObject({
    type: z.literal('error'),
    code: z.enum(ERROR_CODES),
    message: z.string(),
    id: z.string().optional(),
  }),
  z.strictObject({ type: z.literal('results'), id: z.string().optional(), rows: z.array(ResultRowSchema) }),
  /** A cancel was taken: the task's own reply (`failed` CANCELLED, or `done`) follows to its submitter. */
  z.strictObject({ type: z.literal('cancel'), id: z.string().optional(), taskId: z.string(), state: z.enum(['queued', 'running']) }),
  /** A reload is done: the workers that serve now (the old ones finish what they held, then exit). */
  z.strictObject({
    type: z.literal('reload'),
    id: z.string().optional(),
    workers: z.array(z.strictObject({ slot: z.number().int(), pid: z.number().int().nullable() })),
    ms: z.number(),
  }),
  z.strictObject({
    type: z.literal('stats'),
    id: z.string().optional(),
    workers: z.array(WorkerStatsSchema),
    queued: z.number().int(),
    /** Tasks waiting out the delay before a retry (they hold no worker). */
    retrying: z.number().int().optional(),
    connections: z.number().int(),
    accepted: z.number().int(),
    uptimeMs: z.number(),
  }),
]);
export type ServerMessage = z.infer<typeof ServerMessageSchema>;
export type DoneReply = Extract<ServerMessage, { type: 'done' }>;
export type FailedReply = Extract<ServerMessage, { type: 'failed' }>;
export type StatsReply = Extract<ServerMessage, { type: 'stats' }>;
export type ReloadReply = Extract<ServerMessage, { type: 'reload' }>;

// ---- primary <-> worker (IPC) -----------------------------------------------------------------

export const TaskSpecSchema = z.strictObject({
  taskId: TaskIdSchema,
  clientId: TaskIdSchema.optional(),
  kind: KindSchema,
  /**
   * The payload as a value, or (`payloadJson`) as its JSON text: the primary keeps a large object
   * payload as text, which takes a fraction of the memory its parsed objects do.
   */
  payload: z.unknown().optional(),
  payloadJson: z.string().optional(),
  /** Set when an earlier worker in this slot may have stored a result for the task already. */
  redelivered: z.literal(true).optional(),
  /** Store this failure instead of running the task (unless a result is stored already). */
  failWith: ErrorDataSchema.optional(),
  /**
   * The task will be run again if this attempt fails HANDLER_FAILED or TIMEOUT: such a failure is
   * reported as `retry`, not stored (the row holds only the final outcome).
   */
  retry: z.literal(true).optional(),
  /** Which run of the task this is, from 1 (absent: 1); stored as the row's `attempts`. */
  attempt: z.number().int().min(1).optional(),
});
export type TaskSpec = z.infer<typeof TaskSpecSchema>;

/**
 * Every task a worker is handed gets an ordinal, counted from 0 by both sides in the order the
 * primary sent them: `first` is the ordinal of `tasks[0]`. Reports of running tasks name tasks by
 * ordinal, which the watchdog thread can write without knowing any task id.
 */
export const OrdinalSchema = z.number().int().min(0);

export const ToWorkerSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('tasks'), first: OrdinalSchema, tasks: z.array(TaskSpecSchema).min(1) }),
  z.strictObject({ type: z.literal('shutdown') }),
  /** Abort these tasks if they are running, fail them CANCELLED if they have not started. */
  z.strictObject({ type: z.literal('cancel'), taskIds: z.array(TaskIdSchema).min(1) }),
]);
export type ToWorker = z.infer<typeof ToWorkerSchema>;

/**
 * How a task ended, as its worker reports it once the outcome is committed. A `done` result
 * travels as the very text stored in its row (`json`: whether that text is JSON, or a string
 * stored as it is), so the reply is made from what was stored and can never differ from it.
 * `unstored`: the outcome could not be committed (the file is read-only, full, gone); nothing of
 * the task is in the file, so it may run again anywhere. `retry`: this attempt failed and the task
 * is to run again (see TaskSpec.retry); nothing of it was stored.
 */
export const TaskOutcomeSchema = z.discriminatedUnion('status', [
  z.strictObject({ taskId: TaskIdSchema, status: z.literal('done'), result: z.string(), json: z.boolean() }),
  /**
   * `attempts`: what the row says when it is not the task's attempt as sent (a retry cancelled
   * before it started is not an attempt).
   */
  z.strictObject({ taskId: TaskIdSchema, status: z.literal('failed'), error: ErrorDataSchema, attempts: z.number().int().min(1).optional() }),
  z.strictObject({ taskId: TaskIdSchema, status: z.literal('unstored'), error: ErrorDataSchema }),
  z.strictObject({ taskId: TaskIdSchema, status: z.literal('retry'), error: ErrorDataSchema }),
]);
export type TaskOutcome = z.infer<typeof TaskOutcomeSchema>;

/** A task that has been running for a while: the primary starts its clock `runningMs` ago. */
export const RunningTaskSchema = z.strictObject({ ordinal: OrdinalSchema, runningMs: z.number().min(0) });
export type RunningTask = z.infer<typeof RunningTaskSchema>;

export const FromWorkerSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('ready'),
    pid: z.number().int(),
    kinds: z.array(KindSchema).min(1),
    /** Each kind's payload as a JSON Schema (zod's toJSONSchema), for clients to check input. */
    schemas: z.record(z.string(), z.unknown()).optional(),
  }),
  /**
   * Outcomes of one group commit. Each item is checked on its own (TaskOutcomeSchema) where it
   * arrives, so that one malformed outcome costs only its own task, never the batch.
   */
  z.strictObject({ type: z.literal('outcomes'), outcomes: z.array(z.unknown()).min(1) }),
  /** Asynchronous tasks that have been running a while (synchronous ones: see WatchdogReport). */
  z.strictObject({ type: z.literal('running'), tasks: z.array(RunningTaskSchema).min(1) }),
  /** Why this worker cannot go on (its database, its handlers module); it exits right after. */
  z.strictObject({ type: z.literal('fatal'), message: z.string().max(4096) }),
]);
export type FromWorker = z.infer<typeof FromWorkerSchema>;

/**
 * What a worker's watchdog thread writes, one JSON line each, on the worker's side channel
 * (stdio fd 4). It runs beside the worker's event loop, so it can speak while a handler blocks it:
 * a synchronous task that has been running a while, which the primary must time.
 */
export const WatchdogReportSchema = z.strictObject({
  type: z.literal('running'),
  ordinal: OrdinalSchema,
  runningMs: z.number().min(0),
});
export type WatchdogReport = z.infer<typeof WatchdogReportSchema>;

/** A worker's stdio descriptors: its message channel (JSON lines both ways), the watchdog's. */
export const CHANNEL_FD = 3;
export const WATCHDOG_FD = 4;
/**
 * Longest line on a worker's channel. The primary hands a worker at most 8 Mi characters of
 * payloads a message, and a worker reports at most 8 Mi characters of results a message; JSON
 * escaping can make them longer. A worker whose line is longer is corrupt and is replaced.
 */
export const MAX_TO_WORKER_LINE_CHARS = 128 * 1024 * 1024;
export const MAX_FROM_WORKER_LINE_CHARS = 128 * 1024 * 1024;
/** Characters of payloads (primary to worker) or results (worker to primary) in one message. */
export const MAX_MESSAGE_CHARS = 8 * 1024 * 1024;

// ---- primary <-> standby worker (its channel) -----------------------------------------------------

/** A standby worker (forked ahead of need) has loaded its modules and listens for `activate`. */
export const StandbyReadySchema = z.strictObject({ type: z.literal('standby'), pid: z.number().int() });
export type StandbyReady = z.infer<typeof StandbyReadySchema>;

/** Tells a standby worker the arguments it would have been forked with. */
export const ActivateSchema = z.strictObject({ type: z.literal('activate'), args: z.array(z.string().max(4096)).max(16) });
export type Activate = z.infer<typeof ActivateSchema>;
