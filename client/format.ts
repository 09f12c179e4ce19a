/**
 * How the client shows tasks, replies, results and stats to a person. Pure functions over a chalk
 * instance, so that colors follow the Output they are printed through and tests can read them.
 */
import type { ChalkInstance } from 'chalk';
import { paintSlot } from '../shared/logger';
import { ErrorDataSchema, type ResultRow, type StatsReply, type WorkerStats } from '../shared/protocol';
import type { TaskReply } from './ronda-connection';
import type { Column } from './output';

/** Longest task or result text shown in a table cell before it is cut with an ellipsis. */
export const MAX_CELL_CHARS = 48;

/** Longest task shown in a reply line; a task of a megabyte would otherwise be printed back whole. */
export const MAX_LABEL_CHARS = 120;

/** A task as a person would type it: the text itself, or `kind payload`, cut to MAX_LABEL_CHARS. */
export function describeTask(kind: string, payload: unknown): string {
  if (kind === 'text' && typeof payload === 'string') return truncate(payload, MAX_LABEL_CHARS);
  return truncate(`${kind} ${typeof payload === 'string' ? payload : JSON.stringify(payload)}`, MAX_LABEL_CHARS);
}

/** A result as text: strings as they are (the seed's results), anything else as JSON. */
export function formatValue(value: unknown): string {
  return typeof value === 'string' ? value : (JSON.stringify(value) ?? 'undefined');
}

/** `0.84 ms`, `12 ms`, `1.25 s`. */
export function formatMs(ms: number): string {
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** An uptime: `45s`, `3m 12s`, `2h 05m`, `3d 04h`. */
export function formatDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  const pad = (value: number) => String(value).padStart(2, '0');
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${pad(seconds % 60)}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h ${pad(minutes % 60)}m`;
  return `${Math.floor(hours / 24)}d ${pad(hours % 24)}h`;
}

/** `[worker 2]` in slot 2's color, as the server's log prints it. */
export function workerLabel(chalk: ChalkInstance, worker: number | undefined): string {
  return worker === undefined ? chalk.dim('[   --   ]') : paintSlot(chalk, worker, `[worker ${worker}]`);
}

/** One line for a task's reply: who ran it, the task, the result or error, the time taken. */
export function formatReply(chalk: ChalkInstance, task: string, reply: TaskReply): string {
  const time = reply.ms === undefined ? '' : ` ${chalk.dim(`(${formatMs(reply.ms)})`)}`;
  if (reply.type === 'done') {
    return `${workerLabel(chalk, reply.worker)} ${task} -> ${formatValue(reply.result)}${time}`;
  }
  const failure = chalk.red(`failed ${reply.error.code}: ${reply.error.message}`);
  return `${workerLabel(chalk, reply.worker)} ${task} -> ${failure}${time}`;
}

/** A task that got no reply: the server refused the message, or the connection went away. */
export function formatNoReply(chalk: ChalkInstance, task: string, reason: string): string {
  return `${workerLabel(chalk, undefined)} ${task} -> ${chalk.red(reason)}`;
}

export function truncate(text: string, maxChars = MAX_CELL_CHARS): string {
  const oneLine = text.replace(/\s*\n\s*/g, ' ');
  return oneLine.length <= maxChars ? oneLine : `${oneLine.slice(0, maxChars - 1)}…`;
}

/** A stored result: the value, or `CODE: message` for a failed task. */
export function formatStoredResult(row: ResultRow): string {
  if (row.status === 'done') return formatValue(row.result);
  const error = ErrorDataSchema.safeParse(row.result);
  return error.success ? `${error.data.code}: ${error.data.message}` : formatValue(row.result);
}

/** `HH:MM:SS.mmm` of an ISO timestamp (UTC, as stored), or the text as it is. */
export function formatTime(timestamp: string): string {
  const match = /T(\d\d:\d\d:\d\d(?:\.\d+)?)/.exec(timestamp);
  return match?.[1] ?? timestamp;
}

export function resultColumns(chalk: ChalkInstance): Column<ResultRow>[] {
  return [
    { header: 'worker', value: (row) => paintSlot(chalk, row.worker, String(row.worker)), align: 'right' },
    { header: 'task id', value: (row) => truncate(row.task_id, 24) },
    { header: 'kind', value: (row) => row.kind },
    { header: 'task', value: (row) => truncate(row.task) },
    // In words as well as in red: with NO_COLOR, or piped, the red is gone.
    { header: 'status', value: (row) => (row.status === 'done' ? row.status : chalk.red(row.status)) },
    {
      header: 'result',
      value: (row) => {
        const text = truncate(formatStoredResult(row));
        return row.status === 'done' ? text : chalk.red(text);
      },
    },
    { header: 'time (UTC)', value: (row) => formatTime(row.timestamp) },
  ];
}

/** The worker files of these slots, runs as a range: `worker1.db to worker3.db, worker5.db`. */
export function describeWorkerFiles(slots: readonly number[]): string {
  const sorted = [...new Set(slots)].sort((a, b) => a - b);
  const runs: [number, number][] = [];
  for (const slot of sorted) {
    const last = runs[runs.length - 1];
    if (last !== undefined && slot === last[1] + 1) last[1] = slot;
    else runs.push([slot, slot]);
  }
  return runs
    .flatMap(([first, end]) => {
      if (end - first >= 2) return [`worker${first}.db to worker${end}.db`];
      return first === end ? [`worker${first}.db`] : [`worker${first}.db`, `worker${end}.db`];
    })
    .join(', ');
}

export function statsColumns(chalk: ChalkInstance): Column<WorkerStats>[] {
  const right = 'right' as const;
  return [
    { header: 'worker', value: (w) => paintSlot(chalk, w.slot, String(w.slot)), align: right },
    { header: 'pid', value: (w) => (w.pid === null ? '-' : String(w.pid)), align: right },
    { header: 'state', value: (w) => (w.state === 'ready' ? w.state : chalk.yellow(w.state)) },
    { header: 'done', value: (w) => String(w.done), align: right },
    { header: 'failed', value: (w) => String(w.failed), align: right },
    { header: 'in flight', value: (w) => String(w.inflight), align: right },
    { header: 'restarts', value: (w) => String(w.restarts), align: right },
    { header: 'uptime', value: (w) => (w.state === 'ready' ? formatDuration(w.uptimeMs) : '-'), align: right },
  ];
}

/** The line under the stats table: the server as a whole. */
export function statsSummary(stats: StatsReply): string {
  return (
    `queued ${stats.queued}, accepted ${stats.accepted}, ` +
    `${stats.connections} client${stats.connections === 1 ? '' : 's'} connected, ` +
    `server up ${formatDuration(stats.uptimeMs)}`
  );
}
