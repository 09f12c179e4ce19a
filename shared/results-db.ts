/**
 * The `results` table that every worker keeps in its own SQLite file, and the read side that the
 * primary and the client use. Only a worker writes its file; readers open it read-only, which WAL
 * mode allows while the worker is writing.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { ErrorData } from './errors';
import type { ResultRow } from './protocol';
import { all, close, exec, get, openDatabase, type Database } from './sqlite';

export const SCHEMA_VERSION = 1;

/** Migrations by the version they lead to; run in order inside one transaction each. */
const MIGRATIONS: Record<number, string> = {
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
  'worker',
  'timestamp',
] as const;

export function databaseFile(dataDir: string, slot: number): string {
  return path.join(dataDir, `worker${slot}.db`);
}

/** Opens a worker's database for writing: WAL, schema migrated to SCHEMA_VERSION. */
export async function openWorkerDatabase(file: string): Promise<Database> {
  const db = await openDatabase(file, 'readwrite');
  try {
    db.configure('busyTimeout', 5000);
    // NORMAL is durable against a process crash in WAL mode, not against power loss: see
    // docs/guarantees.md.
    await exec(db, 'PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
    const row = await get<{ user_version: number }>(db, 'PRAGMA user_version');
    for (let version = (row?.user_version ?? 0) + 1; version <= SCHEMA_VERSION; version += 1) {
      await exec(db, `BEGIN; ${MIGRATIONS[version]} PRAGMA user_version = ${version}; COMMIT;`);
    }
    return db;
  } catch (error) {
    await close(db).catch(() => undefined);
    throw error;
  }
}

/** Text stored for a payload or result: strings as they are (the seed's rows), the rest as JSON. */
export interface EncodedValue {
  text: string;
  json: 0 | 1;
}

/** Throws if the value cannot be encoded as JSON (a cycle, a BigInt). */
export function encodeValue(value: unknown): EncodedValue {
  return typeof value === 'string' ? { text: value, json: 0 } : { text: JSON.stringify(value) ?? 'null', json: 1 };
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
}

export function toStoredOutcome(row: Pick<StoredRow, 'result' | 'result_json' | 'status'>): StoredOutcome {
  const value = decodeValue(row.result, row.result_json);
  return row.status === 'done' ? { status: 'done', result: value } : { status: 'failed', error: value as ErrorData };
}

/** Bytes of task and result text one worker file may add to a `results` reply; the rest is left out. */
export const MAX_RESULTS_BYTES_PER_FILE = 16 * 1024 * 1024;

export interface ResultsFilter {
  limit: number;
  worker?: number | undefined;
  /** A task id or a client's id. */
  id?: string | undefined;
}

/**
 * The latest rows across the worker databases in `dataDir`, newest first. Files are opened
 * read-only for the length of the call.
 */
export async function readResults(dataDir: string, filter: ResultsFilter): Promise<ResultRow[]> {
  const files = await workerDatabaseFiles(dataDir, filter.worker);
  const perFile = await Promise.all(files.map((file) => readFile(file, filter)));
  return perFile
    .flat()
    .sort((a, b) => (a.timestamp === b.timestamp ? 0 : a.timestamp < b.timestamp ? 1 : -1))
    .slice(0, filter.limit);
}

async function workerDatabaseFiles(dataDir: string, worker: number | undefined): Promise<string[]> {
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

async function readFile(file: string, filter: ResultsFilter): Promise<ResultRow[]> {
  const db = await openDatabase(file, 'readonly');
  try {
    db.configure('busyTimeout', 2000);
    const where = filter.id === undefined ? 'WHERE 1' : 'WHERE (task_id = ? OR client_id = ?)';
    const params = filter.id === undefined ? [] : [filter.id, filter.id];
    // First the sizes (octet_length reads no text), so that a reply never grows past the budget:
    // 1,000 rows of 1 MiB would be too long for one string, and too much memory.
    const sizes = await all<{ id: number; bytes: number }>(
      db,
      `SELECT id, octet_length(task) + ifnull(octet_length(result), 0) AS bytes FROM results ${where}
       ORDER BY id DESC LIMIT ?`,
      [...params, filter.limit],
    );
    let count = 0;
    for (let bytes = 0; count < sizes.length; count += 1) {
      bytes += (sizes[count] as { bytes: number }).bytes;
      if (bytes > MAX_RESULTS_BYTES_PER_FILE && count > 0) break;
    }
    if (count === 0) return [];
    const rows = await all<Omit<StoredRow, 'id'>>(
      db,
      `SELECT ${RESULT_COLUMNS.join(', ')} FROM results ${where} AND id >= ? ORDER BY id DESC LIMIT ?`,
      [...params, (sizes[count - 1] as { id: number }).id, count],
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
    }));
  } finally {
    await close(db);
  }
}
