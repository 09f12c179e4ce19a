import type { TaskOutcome } from '../shared/protocol';
import {
  PRUNE_BATCH,
  pruneBatch,
  RESULT_COLUMNS,
  sameFile,
  toStoredOutcome,
  wellFormed,
  type EncodedValue,
  type FileIdentity,
  type Retention,
  type StoredOutcome,
} from '../shared/results-db';
import { all, exec, finalize, get, prepare, run, runStatement, type Changes, type Database, type Statement } from '../shared/sqlite';

/** Rows per INSERT statement: bounds the size of one JSON parameter. */
export const MAX_ROWS_PER_INSERT = 500;
/**
 * A row with more text than this (payload, result and client id) is inserted alone, its values
 * bound: in the JSON parameter it would be copied and escaped (up to six characters for one, as
 * `\u0001`) for SQLite to parse again, and a batch of results of 1 Mi characters each passed the
 * longest string V8 can make (about 2^29 characters). The rows that share a JSON parameter then
 * come to at most 500 x 16 Ki characters.
 */
export const MAX_JSON_ROW_CHARS = 16 * 1024;
/** How often an idle writer looks for rows past their age (or a backlog past the row bound). */
export const PRUNE_CHECK_MS = 1_000;

export interface ResultRecord {
  taskId: string;
  clientId: string | undefined;
  kind: string;
  /** The payload and the result (or error) as stored: see encodeValue. */
  task: EncodedValue;
  result: EncodedValue;
  status: 'done' | 'failed';
  /** How many times the task ran. */
  attempts: number;
  /** What the primary is told once the row is committed; made from `result`, so they agree. */
  outcome: TaskOutcome;
}

/** Called once per commit with the records it made durable, or with the error that lost them. */
export type CommitListener = (records: ResultRecord[], error: Error | undefined) => void;

/** The columns that differ per row, in the order of each row's JSON array. */
const ROW_COLUMNS = RESULT_COLUMNS.filter((column) => column !== 'worker' && column !== 'timestamp');
/** Each row's columns, then the two every row of a commit shares. */
const INSERT_COLUMNS = [...ROW_COLUMNS, 'worker', 'timestamp'];

/**
 * One statement for any number of rows: the rows travel as one JSON array parameter that SQLite
 * unpacks. Binding 9 parameters per row and preparing a statement with 9 placeholders per row cost
 * the worker more CPU than the rest of the task; this SQL is short and the binding is one string.
 * `->>` returns SQL text, integer or NULL for a JSON string, number or null.
 */
const INSERT_MANY_SQL = `INSERT OR IGNORE INTO results (${INSERT_COLUMNS.join(', ')})
  SELECT ${ROW_COLUMNS.map((_, index) => `value ->> ${index}`).join(', ')}, ?2, ?3 FROM json_each(?1)`;

/**
 * A lone row (a task one at a time, or at low load) binds its values: no JSON to build here and
 * none for SQLite to unpack, about 10 µs less of the round trip, measured.
 */
const INSERT_ONE_SQL = `INSERT OR IGNORE INTO results (${INSERT_COLUMNS.join(', ')})
  VALUES (${INSERT_COLUMNS.map(() => '?').join(', ')})`;

/**
 * A statement prepared on first use and kept: `Database#run` prepares, steps and finalizes, each
 * a trip to the thread pool, where a prepared statement takes one. Once prepared, run() hands the
 * statement to SQLite's thread before it returns. A failed prepare is not kept: the next run
 * tries again.
 */
class PreparedInsert {
  private statement: Statement | undefined;
  private preparing: Promise<Statement> | undefined;

  constructor(
    private readonly db: Database,
    private readonly sql: string,
  ) {}

  /** Resolves with how many rows it inserted, and the last one's rowid. */
  run(params: readonly unknown[]): Promise<Changes> {
    if (this.statement !== undefined) return runStatement(this.statement, params);
    return this.prepare().then((statement) => runStatement(statement, params));
  }

  /** Releases the statement; the database can then close. */
  async finalize(): Promise<void> {
    const preparing = this.preparing;
    this.preparing = undefined;
    this.statement = undefined;
    const statement = await preparing?.catch(() => undefined);
    if (statement !== undefined) await finalize(statement);
  }

  private prepare(): Promise<Statement> {
    this.preparing ??= prepare(this.db, this.sql).then(
      (statement) => (this.statement = statement),
      (error: unknown) => {
        this.preparing = undefined;
        throw error;
      },
    );
    return this.preparing;
  }
}

/**
 * Group commit: records added while a commit is running are written together by the next one, in
 * one multi-row INSERT per MAX_ROWS_PER_INSERT rows (a large row alone) and one transaction. A
 * record added to an idle writer is committed on the next turn of the event loop, so a lone task
 * never waits for a batch to fill; the task runner corks the writer while it runs a slice of tasks
 * and uncorks it at the slice's end, so that the slice's outcomes share one commit and a lone
 * task's commit starts at once, with no turn of the loop in between.
 *
 * After each commit the file is checked to still be the one that was opened: a worker file
 * deleted (or replaced) while the worker runs would otherwise take every later row with it,
 * unseen. Rows committed to a file that is no longer there are reported lost, like a failed commit.
 */
export class ResultWriter {
  private buffer: ResultRecord[] = [];
  private running: Promise<void> | undefined;
  /** The turn of the event loop on which add() will start a commit, if it is to. */
  private scheduled: NodeJS.Immediate | undefined;
  private corked = false;
  private onCommit: CommitListener = () => undefined;
  private readonly insertOne: PreparedInsert;
  private readonly insertBatch: PreparedInsert;
  /** Rows committed since the last prune that found nothing more to delete. */
  private insertedSincePrune: number;
  /**
   * A prune is due once this many rows went in: 5% of the bound (at most a batch), so that each
   * statement deletes many; a file may be that much over its bound until the next prune.
   */
  private readonly pruneEvery: number;
  private lastPruneAt = 0;
  private pruneTimer: NodeJS.Timeout | undefined;
  /** begin(), bound once for setImmediate. */
  private readonly beginNow = (): void => this.begin();

  /**
   * @param identity the file as it was opened (see openWorkerDatabase); no check when absent.
   * @param retention what the file keeps (see pruneBatch); everything when absent.
   */
  constructor(
    private readonly db: Database,
    private readonly slot: number,
    private readonly identity?: FileIdentity,
    private readonly retention?: Retention,
  ) {
    this.insertOne = new PreparedInsert(db, INSERT_ONE_SQL);
    this.insertBatch = new PreparedInsert(db, INSERT_MANY_SQL);
    this.pruneEvery = Math.max(1, Math.min(PRUNE_BATCH, Math.floor((retention?.rows ?? PRUNE_BATCH * 20) / 20)));
    // A file opened over its bound is pruned at once, idle or not.
    this.insertedSincePrune = this.pruneEvery;
    if (retention !== undefined && (retention.rows !== undefined || retention.days !== undefined)) {
      this.pruneTimer = setInterval(() => {
        if (this.running === undefined && this.pruneDue(Date.now())) this.begin();
      }, PRUNE_CHECK_MS).unref();
    }
  }

  /** Sets the one listener told about each commit. */
  listen(listener: CommitListener): void {
    this.onCommit = listener;
  }

  add(record: ResultRecord): void {
    this.buffer.push(record);
    if (this.running === undefined && this.scheduled === undefined && !this.corked) this.scheduled = setImmediate(this.beginNow);
  }

  /** Holds what is added from now on until uncork() (the task runner, for a slice of tasks). */
  cork(): void {
    this.corked = true;
  }

  /** Starts the commit of what was added while corked, now, unless one is running (it takes them next). */
  uncork(): void {
    this.corked = false;
    if (this.buffer.length > 0) this.begin();
  }

  /** Resolves once every record added so far is committed (or reported lost). */
  async idle(): Promise<void> {
    for (;;) {
      if (this.running !== undefined) await this.running;
      else if (this.buffer.length > 0) this.begin();
      else return;
    }
  }

  /** Commits what was added, then releases the prepared statements; the database can then close. */
  async close(): Promise<void> {
    if (this.pruneTimer !== undefined) clearInterval(this.pruneTimer);
    await this.idle();
    await this.insertOne.finalize();
    await this.insertBatch.finalize();
  }

  /** Stored outcomes for those of `taskIds` that have a row already. */
  async findStored(taskIds: readonly string[]): Promise<Map<string, StoredOutcome>> {
    const found = new Map<string, StoredOutcome>();
    if (taskIds.length === 0) return found;
    const rows = await all<{ task_id: string; result: string | null; result_json: number; status: 'done' | 'failed' }>(
      this.db,
      `SELECT task_id, result, result_json, status FROM results WHERE task_id IN (${taskIds.map(() => '?').join(', ')})`,
      taskIds,
    );
    for (const row of rows) found.set(row.task_id, toStoredOutcome(row));
    return found;
  }

  /** Starts a commit (and what retention has due) unless one is running. */
  private begin(): void {
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    if (this.running === undefined) this.running = this.drain();
  }

  private async drain(): Promise<void> {
    for (;;) {
      while (this.buffer.length > 0) {
        const batch = this.buffer;
        this.buffer = [];
        try {
          await this.insert(batch);
          this.checkIdentity();
          this.insertedSincePrune += batch.length;
          this.onCommit(batch, undefined);
        } catch (error) {
          this.onCommit(batch, error instanceof Error ? error : new Error(String(error)));
        }
      }
      // Retention runs between commits, one bounded batch at a time; records that arrive
      // meanwhile are committed before the next batch.
      const now = Date.now();
      if (!this.pruneDue(now)) break;
      const deleted = await pruneBatch(this.db, this.retention as Retention, { now }).catch(() => 0);
      if (deleted < PRUNE_BATCH) {
        // Nothing more is due (or the file could not be written: commits will say so).
        this.insertedSincePrune = 0;
        this.lastPruneAt = now;
        if (this.buffer.length === 0) break;
      }
    }
    this.running = undefined;
  }

  private pruneDue(now: number): boolean {
    const { retention } = this;
    if (retention === undefined) return false;
    if (retention.rows !== undefined && this.insertedSincePrune >= this.pruneEvery) return true;
    return (retention.days !== undefined || this.insertedSincePrune > 0) && now - this.lastPruneAt >= PRUNE_CHECK_MS;
  }

  private checkIdentity(): void {
    if (this.identity === undefined || sameFile(this.identity)) return;
    throw new Error(`${this.identity.file} was deleted or replaced while this worker was writing to it`);
  }

  private insert(batch: readonly ResultRecord[]): Promise<void> {
    const timestamp = new Date().toISOString();
    if (batch.length === 1) return this.insertChunk(batch, timestamp);
    return this.insertMany(batch, timestamp);
  }

  private async insertMany(batch: readonly ResultRecord[], timestamp: string): Promise<void> {
    const chunks = chunked(batch);
    const transaction = chunks.length > 1;
    if (transaction) await exec(this.db, 'BEGIN');
    try {
      for (const chunk of chunks) await this.insertChunk(chunk, timestamp);
      if (transaction) await exec(this.db, 'COMMIT');
    } catch (error) {
      if (transaction) await exec(this.db, 'ROLLBACK').catch(() => undefined);
      throw error;
    }
  }

  /** One INSERT: a lone row's values bound, more rows as one JSON parameter. */
  private insertChunk(chunk: readonly ResultRecord[], timestamp: string): Promise<void> {
    const inserted =
      chunk.length === 1
        ? this.insertOne.run([...rowValues(chunk[0] as ResultRecord), this.slot, timestamp])
        : this.insertBatch.run([JSON.stringify(chunk.map(rowValues)), this.slot, timestamp]);
    return inserted.then((changes) => (changes.changes === chunk.length ? undefined : this.checkStored(chunk, changes)));
  }

  /**
   * An INSERT that inserted fewer rows than it had records: INSERT OR IGNORE keeps the first row
   * of a task id already stored (a redelivered task's), and that is all it may skip. A record with
   * no row at all means the statement got other input than this writer built (handler code in
   * this process replaced `JSON.stringify` or `Array.prototype.map`): the commit fails, so that no
   * task is acknowledged that is not stored, and the rows the statement did insert (rowids follow
   * one another within one INSERT) are deleted, so that a task run again elsewhere is not stored
   * twice. The check itself uses neither JSON nor Array.prototype.map.
   */
  private async checkStored(chunk: readonly ResultRecord[], { changes, lastID }: Changes): Promise<void> {
    const ids = new Set<string>();
    for (let index = 0; index < chunk.length; index += 1) ids.add((chunk[index] as ResultRecord).taskId);
    let placeholders = '?';
    for (let index = 1; index < ids.size; index += 1) placeholders += ', ?';
    const row = await get<{ stored: number }>(this.db, `SELECT count(*) AS stored FROM results WHERE task_id IN (${placeholders})`, [...ids]);
    const stored = row?.stored ?? 0;
    if (stored === ids.size) return;
    if (changes > 0) await run(this.db, 'DELETE FROM results WHERE id > ? AND id <= ?', [lastID - changes, lastID]);
    throw new Error(`${ids.size - stored} of ${ids.size} rows were not stored (the INSERT inserted ${changes}: its input was not what the worker built)`);
  }
}

/** A batch in INSERTs, in order: at most MAX_ROWS_PER_INSERT rows each, a row over MAX_JSON_ROW_CHARS alone. */
function chunked(batch: readonly ResultRecord[]): ResultRecord[][] {
  const chunks: ResultRecord[][] = [];
  let chunk: ResultRecord[] = [];
  for (const record of batch) {
    const alone = record.task.text.length + record.result.text.length + (record.clientId?.length ?? 0) > MAX_JSON_ROW_CHARS;
    if (chunk.length > 0 && (alone || chunk.length >= MAX_ROWS_PER_INSERT)) {
      chunks.push(chunk);
      chunk = [];
    }
    if (alone) chunks.push([record]);
    else chunk.push(record);
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

/**
 * A record's values in ROW_COLUMNS order. A client's own id may hold a lone surrogate (JSON can
 * say "\ud800"): bound, it would become U+FFFD, but in the JSON parameter SQLite would store it
 * as bytes that are not UTF-8; made well-formed here, both statements store the same text.
 */
function rowValues(record: ResultRecord): (string | number | null)[] {
  return [
    record.taskId,
    record.clientId === undefined ? null : wellFormed(record.clientId),
    record.kind,
    record.task.text,
    record.result.text,
    record.result.json,
    record.status,
    record.attempts,
  ];
}
