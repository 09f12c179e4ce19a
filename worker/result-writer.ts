import type { TaskOutcome } from '../shared/protocol';
import {
  PRUNE_BATCH,
  pruneBatch,
  RESULT_COLUMNS,
  sameFile,
  toStoredOutcome,
  type EncodedValue,
  type FileIdentity,
  type Retention,
  type StoredOutcome,
} from '../shared/results-db';
import { all, exec, finalize, prepare, runStatement, type Database, type Statement } from '../shared/sqlite';

/** Rows per INSERT statement: bounds the size of one JSON parameter. */
export const MAX_ROWS_PER_INSERT = 500;
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

/**
 * One statement for any number of rows: the rows travel as one JSON array parameter that SQLite
 * unpacks. Binding 9 parameters per row and preparing a statement with 9 placeholders per row cost
 * the worker more CPU than the rest of the task; this SQL is short and the binding is one string.
 * `->>` returns SQL text, integer or NULL for a JSON string, number or null.
 */
const INSERT_SQL = `INSERT OR IGNORE INTO results (${[...ROW_COLUMNS, 'worker', 'timestamp'].join(', ')})
  SELECT ${ROW_COLUMNS.map((_, index) => `value ->> ${index}`).join(', ')}, ?2, ?3 FROM json_each(?1)`;

/**
 * Group commit: records added while a commit is running are written together by the next one, in
 * one multi-row INSERT per MAX_ROWS_PER_INSERT rows and one transaction. A record added to an idle
 * writer is committed on the next turn of the event loop, so a lone task never waits for a batch to
 * fill, and the tasks of one IPC message land in one transaction.
 *
 * After each commit the file is checked to still be the one that was opened: a worker file
 * deleted (or replaced) while the worker runs would otherwise take every later row with it,
 * unseen. Rows committed to a file that is no longer there are reported lost, like a failed commit.
 */
export class ResultWriter {
  private buffer: ResultRecord[] = [];
  private running: Promise<void> | undefined;
  private onCommit: CommitListener = () => undefined;
  /**
   * Prepared once: `Database#run` prepares, steps and finalizes, each a trip to the thread pool,
   * which a lone task waits for; a prepared statement takes one trip per batch.
   */
  private statement: Promise<Statement> | undefined;
  /** Rows committed since the last prune that found nothing more to delete. */
  private insertedSincePrune: number;
  /**
   * A prune is due once this many rows went in: 5% of the bound (at most a batch), so that each
   * statement deletes many; a file may be that much over its bound until the next prune.
   */
  private readonly pruneEvery: number;
  private lastPruneAt = 0;
  private pruneTimer: NodeJS.Timeout | undefined;
  /** Starts the commit that add() scheduled, if it has not started yet (see commitNow). */
  private startNow: (() => void) | undefined;

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
    this.pruneEvery = Math.max(1, Math.min(PRUNE_BATCH, Math.floor((retention?.rows ?? PRUNE_BATCH * 20) / 20)));
    // A file opened over its bound is pruned at once, idle or not.
    this.insertedSincePrune = this.pruneEvery;
    if (retention !== undefined && (retention.rows !== undefined || retention.days !== undefined)) {
      this.pruneTimer = setInterval(() => {
        if (this.running === undefined && this.pruneDue(Date.now())) this.running = this.drain();
      }, PRUNE_CHECK_MS).unref();
    }
  }

  /** Sets the one listener told about each commit. */
  listen(listener: CommitListener): void {
    this.onCommit = listener;
  }

  add(record: ResultRecord): void {
    this.buffer.push(record);
    if (this.running !== undefined) return;
    this.running = new Promise<void>((resolve) => {
      this.startNow = resolve;
      setImmediate(resolve);
    }).then(() => {
      this.startNow = undefined;
      return this.drain();
    });
  }

  /**
   * Starts the commit of what was added now, instead of on the next turn of the event loop: the
   * task runner calls it once a slice has run, when every outcome of the slice is in (a lone task
   * then waits for no turn of the loop; a burst still shares one commit per slice).
   */
  commitNow(): void {
    this.startNow?.();
  }

  /** Resolves once every record added so far is committed (or reported lost). */
  async idle(): Promise<void> {
    while (this.running !== undefined) await this.running;
  }

  /** Commits what was added, then releases the prepared statement; the database can then close. */
  async close(): Promise<void> {
    if (this.pruneTimer !== undefined) clearInterval(this.pruneTimer);
    await this.idle();
    const statement = this.statement;
    this.statement = undefined;
    if (statement !== undefined) await finalize(await statement);
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

  private async insert(batch: readonly ResultRecord[]): Promise<void> {
    const timestamp = new Date().toISOString();
    const single = batch.length <= MAX_ROWS_PER_INSERT;
    if (!single) await exec(this.db, 'BEGIN');
    try {
      for (let start = 0; start < batch.length; start += MAX_ROWS_PER_INSERT) {
        const chunk = batch.slice(start, start + MAX_ROWS_PER_INSERT);
        // A failed prepare is not kept: the next batch tries again.
        this.statement ??= prepare(this.db, INSERT_SQL).catch((error: unknown) => {
          this.statement = undefined;
          throw error;
        });
        await runStatement(await this.statement, [rowsJson(chunk), this.slot, timestamp]);
      }
      if (!single) await exec(this.db, 'COMMIT');
    } catch (error) {
      if (!single) await exec(this.db, 'ROLLBACK').catch(() => undefined);
      throw error;
    }
  }
}

function rowsJson(chunk: readonly ResultRecord[]): string {
  return JSON.stringify(
    chunk.map((record) => [
      record.taskId,
      record.clientId ?? null,
      record.kind,
      record.task.text,
      record.result.text,
      record.result.json,
      record.status,
      record.attempts,
    ]),
  );
}
