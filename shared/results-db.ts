/**
 * The `results` table that every worker keeps in its own SQLite file, and the read side that the
 * primary and the client use. Only a worker writes its file; readers open it read-only, which WAL
 * mode allows while the worker is writing.
 */
import { statSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ErrorData } from './errors';
import type { ResultRow } from './protocol';
import { all, close, exec, get, openDatabase, runCounting, type Database } from './sqlite';
import { messageOf } from './errors';

export const SCHEMA_VERSION = 3;

/** Migrations by the version they lead to; run in order inside one transaction each. */
export const MIGRATIONS: Readonly<Record<number, string>> = {
  1: `CREATE TABLE IF NOT EXISTS results (
        id          INTEGER PRIMARY KEY,
        task_id     TEXT NOT NULL UNIQUE,
        client_id   TEXT,
        kind        TEXT NOT NULL,
        task        TEXT NOT NULL,
        result      TEXT,
        result_json INTEGER NOT NULL DEFAULT 0,
        status      TEXT NOT NULL CHECK (status IN ('done', 'failed')),
        worker      INTEGER NOT NULL,
        timestamp   TEXT NOT NULL
      );`,
  // For the console's history (readPage), which pages by id (the insertion order): the rows of a
  // kind, and the failed rows (a partial index: a done row, the common case, costs it nothing).
  // Each index costs every insert; see docs/performance.md. Built once, before the worker is ready.
  2: `CREATE INDEX IF NOT EXISTS results_by_kind ON results (kind);
      CREATE INDEX IF NOT EXISTS results_failed ON results (id) WHERE status = 'failed';`,
  // How many times the task ran: a retried task's row holds only its final outcome.
  3: `ALTER TABLE results ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;`,
};

/** Columns written for each result, in INSERT order. */
export const RESULT_COLUMNS = [
  'task_id',
  'client_id',
  'kind',
  'task',
  'result',
  'result_json',
  'status',
  'attempts',
  'worker',
  'timestamp',
] as const;

export function databaseFile(dataDir: string, slot: number): string {
  return path.join(dataDir, `worker${slot}.db`);
}

/** The file a worker opened, to tell later whether the path still names it. */
export interface FileIdentity {
  file: string;
  dev: number;
  ino: number;
}

/** Whether `identity.file` is still the file that was opened (not deleted, not replaced). */
export function sameFile(identity: FileIdentity): boolean {
  try {
    const now = statSync(identity.file);
    return now.ino === identity.ino && now.dev === identity.dev;
  } catch {
    return false;
  }
}

/**
 * Opens a worker's database for writing: WAL, schema migrated to SCHEMA_VERSION, and proven
 * writable. SQLite opens a file it may not write read-only without a word, and every commit would
 * then fail; a real write here (the header's user_version, set to what it is) fails at once
 * instead. Errors name the file and say what to check.
 */
export async function openWorkerDatabase(file: string): Promise<{ db: Database; identity: FileIdentity }> {
  let db: Database;
  try {
    db = await openDatabase(file, 'readwrite');
  } catch (error) {
    throw storageError(file, 'cannot open', error);
  }
  try {
    db.configure('busyTimeout', 5000);
    // NORMAL is durable against a process crash in WAL mode, not against power loss: see
    // docs/guarantees.md.
    await exec(db, 'PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
    const row = await get<{ user_version: number }>(db, 'PRAGMA user_version');
    const current = row?.user_version ?? 0;
    for (let version = current + 1; version <= SCHEMA_VERSION; version += 1) {
      await exec(db, `BEGIN; ${MIGRATIONS[version]} PRAGMA user_version = ${version}; COMMIT;`);
    }
    await exec(db, `PRAGMA user_version = ${Math.max(current, SCHEMA_VERSION)}`);
    const { dev, ino } = statSync(file);
    return { db, identity: { file, dev, ino } };
  } catch (error) {
    await close(db).catch(() => undefined);
    throw storageError(file, 'cannot write', error);
  }
}

/** `cannot write data/worker1.db: SQLITE_READONLY: ... (is the folder writable ...?)`. */
export function storageError(file: string, what: string, error: unknown): Error {
  const reason = messageOf(error);
  return new Error(`${what} ${file}: ${reason}${storageHint(reason)}`);
}

function storageHint(reason: string): string {
  if (/SQLITE_(READONLY|CANTOPEN|PERM|AUTH)/.test(reason)) {
    return ' (the folder and the file must exist or be creatable, and be writable by this user, on a writable disk)';
  }
  if (/SQLITE_FULL/.test(reason)) return ' (the disk is full)';
  if (/SQLITE_NOTADB|SQLITE_CORRUPT/.test(reason)) {
    return ' (it is not a Ronda result file, or it is damaged: move it away and a new one is made)';
  }
  if (/SQLITE_BUSY|SQLITE_LOCKED/.test(reason)) return ' (another process holds a lock on it)';
  return '';
}

/** Text stored for a payload or result: strings as they are (the seed's rows), the rest as JSON. */
export interface EncodedValue {
  text: string;
  json: 0 | 1;
}

/**
 * Throws if the value cannot be encoded as JSON (a cycle, a BigInt); returns undefined for a value
 * JSON has no text for (a function, a Symbol, undefined), which callers refuse. A lone surrogate
 * in a string (a client may send "\ud800" in JSON) becomes U+FFFD, which is what SQLite stores
 * for it; JSON text escapes it and is stored as it is.
 */
export function encodeValue(value: unknown): EncodedValue | undefined {
  if (typeof value === 'string') return { text: wellFormed(value), json: 0 };
  const text: string | undefined = JSON.stringify(value);
  return text === undefined ? undefined : { text, json: 1 };
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** The text with each lone surrogate replaced by U+FFFD (see encodeValue). */
export function wellFormed(text: string): string {
  // The regular expression is the slow part; most strings have no surrogate at all.
  return /[\uD800-\uDFFF]/.test(text) ? text.replace(LONE_SURROGATE, '\uFFFD') : text;
}

export function decodeValue(text: string | null, json: number): unknown {
  if (text === null) return null;
  return json === 1 ? JSON.parse(text) : text;
}

/** A stored outcome, as the worker returns it for a redelivered task. */
export type StoredOutcome = { status: 'done'; result: unknown } | { status: 'failed'; error: ErrorData };

/** A row of `results` as SQLite returns it (`id` is only read by tools and tests). */
export interface StoredRow {
  id: number;
  task_id: string;
  client_id: string | null;
  kind: string;
  task: string;
  result: string | null;
  result_json: number;
  status: 'done' | 'failed';
  worker: number;
  timestamp: string;
  attempts: number;
}

export function toStoredOutcome(row: Pick<StoredRow, 'result' | 'result_json' | 'status'>): StoredOutcome {
  const value = decodeValue(row.result, row.result_json);
  return row.status === 'done' ? { status: 'done', result: value } : { status: 'failed', error: value as ErrorData };
}

/**
 * Bytes of task and result text one `results` reply may carry; older rows beyond it are left out
 * (the newest row always comes, whatever its size). A reply is one string in memory and one line
 * on the wire, and a connection holds one at a time.
 */
export const MAX_RESULTS_REPLY_BYTES = 4 * 1024 * 1024;

export interface ResultsFilter {
  limit: number;
  worker?: number | undefined;
  /**
   * A task id or a client's id. A task id names one row, while any client may give its tasks any
   * id, so a row whose task id matches is the answer when there is one: a client cannot make a
   * lookup by task id find its own rows instead.
   */
  taskId?: string | undefined;
}

/** Which rows of a file a query reads. */
interface Where {
  sql: string;
  params: string[];
}

/**
 * The latest rows across the worker databases in `dataDir`, newest first, within
 * MAX_RESULTS_REPLY_BYTES. Two passes, so that memory never holds more text than the reply: the
 * sizes and times of each file's newest rows first (no text is read), then the text of just the
 * rows chosen. Files are opened read-only for the length of the call.
 */
export async function readResults(dataDir: string, filter: ResultsFilter): Promise<ResultRow[]> {
  const files = await workerDatabaseFiles(dataDir, filter.worker);
  const opened: ResultsFile[] = [];
  try {
    for (const file of files) opened.push(await ResultsFile.open(file));
    const newest = async (where: Where): Promise<Candidate[]> =>
      (await Promise.all(opened.map((each) => each.sizes(where, filter.limit))))
        .flat()
        .sort((a, b) => (a.timestamp === b.timestamp ? 0 : a.timestamp < b.timestamp ? 1 : -1));
    let where: Where = { sql: 'WHERE 1', params: [] };
    if (filter.taskId !== undefined) where = { sql: 'WHERE task_id = ?', params: [filter.taskId] };
    let candidates = await newest(where);
    if (filter.taskId !== undefined && candidates.length === 0) {
      where = { sql: 'WHERE client_id = ?', params: [filter.taskId] };
      candidates = await newest(where);
    }
    const chosen = new Map<ResultsFile, number>();
    let bytes = 0;
    for (const [index, candidate] of candidates.entries()) {
      if (index >= filter.limit || (index > 0 && bytes + candidate.bytes > MAX_RESULTS_REPLY_BYTES)) break;
      bytes += candidate.bytes;
      chosen.set(candidate.from, Math.min(chosen.get(candidate.from) ?? Infinity, candidate.id));
    }
    const rows = await Promise.all([...chosen].map(([file, oldestId]) => file.rowsFrom(where, oldestId)));
    return rows
      .flat()
      .sort((a, b) => (a.timestamp === b.timestamp ? 0 : a.timestamp < b.timestamp ? 1 : -1))
      .slice(0, filter.limit);
  } finally {
    await Promise.all(opened.map((each) => each.close()));
  }
}

/** The worker database files in `dataDir` (of one slot, when `worker` is given). */
export async function workerDatabaseFiles(dataDir: string, worker?: number): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dataDir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return names
    .filter((name) => (worker === undefined ? /^worker\d+\.db$/.test(name) : name === `worker${worker}.db`))
    .map((name) => path.join(dataDir, name));
}

interface Candidate {
  from: ResultsFile;
  id: number;
  timestamp: string;
  bytes: number;
}

/** A worker file opened read-only for a query, waiting up to 2 s for its writer's lock. */
async function openForReading(file: string): Promise<Database> {
  let db: Database;
  try {
    db = await openDatabase(file, 'readonly');
  } catch (error) {
    throw storageError(file, 'cannot read', error);
  }
  db.configure('busyTimeout', 2000);
  return db;
}

/** One worker file opened read-only for a `results` query. */
class ResultsFile {
  private constructor(
    private readonly db: Database,
    private readonly file: string,
  ) {}

  static async open(file: string): Promise<ResultsFile> {
    return new ResultsFile(await openForReading(file), file);
  }

  /** The newest `limit` rows' ids, times and text sizes: octet_length reads no text. */
  async sizes(where: Where, limit: number): Promise<Candidate[]> {
    const rows = await all<{ id: number; timestamp: string; bytes: number }>(
      this.db,
      `SELECT id, timestamp, octet_length(task) + ifnull(octet_length(result), 0) AS bytes
       FROM results ${where.sql} ORDER BY id DESC LIMIT ?`,
      [...where.params, limit],
    ).catch((error: unknown) => {
      // A file that is not a worker's: say which.
      throw storageError(this.file, 'cannot read', error);
    });
    return rows.map((row) => ({ from: this, ...row }));
  }

  async rowsFrom(where: Where, oldestId: number): Promise<ResultRow[]> {
    const rows = await all<Omit<StoredRow, 'id'>>(
      this.db,
      `SELECT ${RESULT_COLUMNS.join(', ')} FROM results ${where.sql} AND id >= ? ORDER BY id DESC`,
      [...where.params, oldestId],
    );
    return rows.map((row) => ({
      task_id: row.task_id,
      client_id: row.client_id,
      kind: row.kind,
      task: row.task,
      result: decodeValue(row.result, row.result_json),
      status: row.status,
      worker: row.worker,
      timestamp: row.timestamp,
      attempts: row.attempts,
    }));
  }

  close(): Promise<void> {
    return close(this.db);
  }
}

/**
 * Stored outcomes of those of `taskIds` that have a row in `file`, read by the primary for a slot
 * that has no worker to ask (see WorkerSlot). Read-only; the file's worker is gone.
 */
export async function findStoredIn(file: string, taskIds: readonly string[]): Promise<Map<string, StoredOutcome>> {
  const found = new Map<string, StoredOutcome>();
  if (taskIds.length === 0) return found;
  let db: Database;
  try {
    db = await openDatabase(file, 'readonly');
  } catch (error) {
    // No file: nothing was ever stored in it.
    if (/SQLITE_CANTOPEN/.test(String(error)) && !(await exists(file))) return found;
    throw error;
  }
  try {
    db.configure('busyTimeout', 2000);
    for (let start = 0; start < taskIds.length; start += 500) {
      const chunk = taskIds.slice(start, start + 500);
      const rows = await all<Pick<StoredRow, 'task_id' | 'result' | 'result_json' | 'status'>>(
        db,
        `SELECT task_id, result, result_json, status FROM results WHERE task_id IN (${chunk.map(() => '?').join(', ')})`,
        chunk,
      );
      for (const row of rows) found.set(row.task_id, toStoredOutcome(row));
    }
    return found;
  } finally {
    await close(db);
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

// ---- pages of history (the HTTP API) ---------------------------------------------------------

/**
 * Where a page ends, per worker file: the id below which its next rows are (its rows go by id,
 * the order they were written). A file not named has not been read into yet.
 */
export type PageCursor = Readonly<Record<number, number>>;

export interface PageQuery {
  limit: number;
  before?: PageCursor | undefined;
  worker?: number | undefined;
  kind?: string | undefined;
  status?: 'done' | 'failed' | undefined;
  /** A substring of the task's or the result's text, ASCII letters in any case. */
  q?: string | undefined;
}

/** Characters of a task's and of a result's text a page row carries; the whole is one task's read. */
export const PREVIEW_CHARS = 500;

/** A row of a page: the texts cut at PREVIEW_CHARS (their full lengths say whether they were). */
export interface PageRow {
  taskId: string;
  clientId: string | null;
  kind: string;
  status: 'done' | 'failed';
  worker: number;
  timestamp: string;
  task: string;
  taskChars: number;
  result: string | null;
  resultChars: number;
}

export interface Page {
  rows: PageRow[];
  /** The cursor of the next (older) page; null when this page is the oldest. */
  next: PageCursor | null;
}

interface FileRow extends PageRow {
  id: number;
}

/**
 * One page of history across the worker files in `dataDir`, newest first: each file reads its
 * newest `limit + 1` rows below its bound (by id: no index for the order), and the lists are
 * merged by time, each taken as a prefix, so the next page starts each file where this one left
 * it and no row is skipped or shown twice. Rows carry previews of their text, so a page is at
 * most about limit x 1,000 characters.
 */
export async function readPage(dataDir: string, query: PageQuery): Promise<Page> {
  const files = await workerDatabaseFiles(dataDir, query.worker);
  const slots = files.map((file) => Number(/worker(\d+)\.db$/.exec(file)?.[1]));
  const lists = await Promise.all(files.map((file, index) => pageOfFile(file, query, query.before?.[slots[index] as number])));
  const heads = lists.map(() => 0);
  const rows: PageRow[] = [];
  const next: Record<number, number> = { ...query.before };
  while (rows.length < query.limit) {
    let best = -1;
    for (let index = 0; index < lists.length; index += 1) {
      const candidate = lists[index]?.[heads[index] as number];
      if (candidate === undefined) continue;
      const current = best === -1 ? undefined : lists[best]?.[heads[best] as number];
      if (current === undefined || newer(candidate, current)) best = index;
    }
    if (best === -1) break;
    const { id, ...row } = (lists[best] as FileRow[])[heads[best] as number] as FileRow;
    heads[best] = (heads[best] as number) + 1;
    next[slots[best] as number] = id;
    rows.push(row);
  }
  const more = lists.some((list, index) => (heads[index] as number) < list.length);
  return { rows, next: more ? next : null };
}

function newer(a: FileRow, b: FileRow): boolean {
  if (a.timestamp !== b.timestamp) return a.timestamp > b.timestamp;
  return a.worker > b.worker;
}

async function pageOfFile(file: string, query: PageQuery, below: number | undefined): Promise<FileRow[]> {
  const conditions: string[] = [];
  const params: (string | number)[] = [];
  if (below !== undefined) {
    conditions.push('id < ?');
    params.push(below);
  }
  if (query.kind !== undefined) {
    conditions.push('kind = ?');
    params.push(query.kind);
  }
  // A literal, not a parameter: SQLite uses the partial index results_failed only for the literal.
  if (query.status === 'failed') conditions.push("status = 'failed'");
  if (query.status === 'done') conditions.push("status = 'done'");
  if (query.q !== undefined && query.q !== '') {
    const pattern = `%${query.q.replace(/[\\%_]/g, (char) => `\\${char}`)}%`;
    conditions.push("(task LIKE ? ESCAPE '\\' OR result LIKE ? ESCAPE '\\')");
    params.push(pattern, pattern);
  }
  const db = await openForReading(file);
  try {
    const rows = await all<{
      id: number;
      task_id: string;
      client_id: string | null;
      kind: string;
      status: 'done' | 'failed';
      worker: number;
      timestamp: string;
      task: string;
      task_chars: number;
      result: string | null;
      result_chars: number | null;
    }>(
      db,
      `SELECT id, task_id, client_id, kind, status, worker, timestamp,
              substr(task, 1, ${PREVIEW_CHARS}) AS task, length(task) AS task_chars,
              substr(result, 1, ${PREVIEW_CHARS}) AS result, length(result) AS result_chars
       FROM results ${conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`}
       ORDER BY id DESC LIMIT ?`,
      [...params, query.limit + 1],
    ).catch((error: unknown) => {
      throw storageError(file, 'cannot read', error);
    });
    return rows.map((row) => ({
      id: row.id,
      taskId: row.task_id,
      clientId: row.client_id,
      kind: row.kind,
      status: row.status,
      worker: row.worker,
      timestamp: row.timestamp,
      task: row.task,
      taskChars: row.task_chars,
      result: row.result,
      resultChars: row.result_chars ?? 0,
    }));
  } finally {
    await close(db);
  }
}

// ---- retention -------------------------------------------------------------------------------

/** How much history a worker file keeps: the newest `rows`, those younger than `days`, or both. */
export interface Retention {
  rows?: number | undefined;
  days?: number | undefined;
}

/** Rows one prune statement deletes at most: each batch is a short transaction of its own. */
export const PRUNE_BATCH = 500;
const DAY_MS = 86_400_000;

/**
 * Deletes at most `batch` of the oldest rows that `retention` no longer keeps; resolves with how
 * many it deleted (fewer than `batch`: nothing more is due now). Rows go by id, the order they
 * were written: the newest `rows` are those from the rows-th highest id up (gaps in the ids
 * count for nothing), and, while running, age is judged from the oldest rows up, so a statement
 * reads only the rows it deletes. A row stamped older than rows written before it (a clock that
 * stepped back by days) is deleted once those are; `exact` (ronda prune, offline) reads every row
 * instead. Timestamps compare as the ISO-8601 UTC text Ronda writes. Freed pages are reused by
 * later rows (SQLite's freelist), so a file at its bound stops growing; it is not shrunk
 * (`ronda prune` does that, with VACUUM).
 */
export async function pruneBatch(
  db: Database,
  retention: Retention,
  { now = Date.now(), batch = PRUNE_BATCH, exact = false }: { now?: number; batch?: number; exact?: boolean } = {},
): Promise<number> {
  let deleted = 0;
  if (retention.rows !== undefined) {
    deleted += await runCounting(
      db,
      `DELETE FROM results WHERE id IN (
         SELECT id FROM results
         WHERE id < (SELECT id FROM results ORDER BY id DESC LIMIT 1 OFFSET ?1 - 1)
         ORDER BY id LIMIT ?2)`,
      [retention.rows, batch],
    );
  }
  if (retention.days !== undefined && deleted < batch) {
    const cutoff = new Date(now - retention.days * DAY_MS).toISOString();
    deleted += await runCounting(
      db,
      exact
        ? `DELETE FROM results WHERE id IN (SELECT id FROM results WHERE timestamp < ?1 ORDER BY id LIMIT ?2)`
        : `DELETE FROM results WHERE id IN (SELECT id FROM results ORDER BY id LIMIT ?2) AND timestamp < ?1`,
      [cutoff, batch - deleted],
    );
  }
  return deleted;
}
