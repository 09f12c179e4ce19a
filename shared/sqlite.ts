/** Promise wrappers over the callback API of the `sqlite3` package. */
import sqlite3 from 'sqlite3';

export type Database = sqlite3.Database;
export type Statement = sqlite3.Statement;

export function openDatabase(file: string, mode: 'readwrite' | 'readonly'): Promise<Database> {
  const flags =
    mode === 'readonly' ? sqlite3.OPEN_READONLY : sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE;
  return new Promise((resolve, reject) => {
    const db: Database = new sqlite3.Database(file, flags, (error) =>
      error === null ? resolve(db) : reject(error),
    );
  });
}

export function exec(db: Database, sql: string): Promise<void> {
  return new Promise((resolve, reject) => db.exec(sql, (error) => (error === null ? resolve() : reject(error))));
}

export function run(db: Database, sql: string, params: readonly unknown[] = []): Promise<void> {
  return new Promise((resolve, reject) =>
    db.run(sql, params, (error: Error | null) => (error === null ? resolve() : reject(error))),
  );
}

/** Runs one statement; resolves with how many rows it changed. */
export function runCounting(db: Database, sql: string, params: readonly unknown[] = []): Promise<number> {
  return new Promise((resolve, reject) =>
    db.run(sql, params, function (this: sqlite3.RunResult, error: Error | null) {
      if (error === null) resolve(this.changes);
      else reject(error);
    }),
  );
}

export function all<Row>(db: Database, sql: string, params: readonly unknown[] = []): Promise<Row[]> {
  return new Promise((resolve, reject) =>
    db.all(sql, params, (error: Error | null, rows: Row[]) => (error === null ? resolve(rows) : reject(error))),
  );
}

export function get<Row>(db: Database, sql: string, params: readonly unknown[] = []): Promise<Row | undefined> {
  return new Promise((resolve, reject) =>
    db.get(sql, params, (error: Error | null, row: Row | undefined) =>
      error === null ? resolve(row) : reject(error),
    ),
  );
}

export function close(db: Database): Promise<void> {
  return new Promise((resolve, reject) => db.close((error) => (error === null ? resolve() : reject(error))));
}

/** Prepares a statement to run many times; finalize it before closing its database. */
export function prepare(db: Database, sql: string): Promise<Statement> {
  return new Promise((resolve, reject) => {
    const statement: Statement = db.prepare(sql, (error: Error | null) =>
      error === null ? resolve(statement) : reject(error),
    );
  });
}

/** What a statement changed: how many rows, and the rowid of the last one it inserted. */
export interface Changes {
  changes: number;
  lastID: number;
}

/** Runs a prepared statement; resolves with what it changed. */
export function runStatement(statement: Statement, params: readonly unknown[]): Promise<Changes> {
  return new Promise((resolve, reject) =>
    statement.run(params, function (this: sqlite3.RunResult, error: Error | null) {
      if (error === null) resolve({ changes: this.changes, lastID: this.lastID });
      else reject(error);
    }),
  );
}

export function finalize(statement: Statement): Promise<void> {
  return new Promise((resolve) => statement.finalize(() => resolve()));
}
