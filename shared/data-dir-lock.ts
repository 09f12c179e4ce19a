import { statSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sameFile, storageError, type FileIdentity } from './results-db';
import { close, exec, openDatabase, type Database } from './sqlite';

/** The lock file in a data directory, and the text file beside it that names its holder. */
export const LOCK_FILE = 'ronda.lock';
export const OWNER_FILE = 'ronda.pid';

/** Another cluster holds the data directory. */
export class DataDirLockedError extends Error {
  override readonly name = 'DataDirLockedError';

  constructor(
    readonly dataDir: string,
    readonly ownerPid: number | undefined,
  ) {
    super(
      `${dataDir} is in use by another Ronda cluster${ownerPid === undefined ? '' : ` (its primary is pid ${ownerPid})`}: ` +
        'stop that one first, or give this one another --data-dir',
    );
  }
}

/**
 * One cluster per data directory: an exclusive lock, taken before anything is forked, held for
 * the primary's whole life. It is SQLite's own file lock (a POSIX lock, through `locking_mode =
 * EXCLUSIVE` and a committed write), so the kernel releases it when the primary dies, however it
 * dies: a SIGKILLed primary leaves no lock behind to be judged stale, and a pid that the system
 * has since given to another process can never hold a directory. SQLite is there already; no
 * lock-file library's heuristics (stale after N seconds, pid checks) are needed.
 */
export class DataDirLock {
  private constructor(
    private readonly db: Database,
    private readonly identity: FileIdentity,
  ) {}

  /**
   * Whether the lock file is still the one this lock holds. A lock on a file that was deleted (or
   * replaced) keeps nobody out: a second cluster would make and lock a new one.
   */
  get intact(): boolean {
    return sameFile(this.identity);
  }

  static async acquire(dataDir: string): Promise<DataDirLock> {
    const file = path.join(dataDir, LOCK_FILE);
    let db: Database;
    try {
      db = await openDatabase(file, 'readwrite');
    } catch (error) {
      throw storageError(file, 'cannot open the lock file', error);
    }
    try {
      db.configure('busyTimeout', 0);
      await exec(
        db,
        `PRAGMA locking_mode = EXCLUSIVE;
         BEGIN EXCLUSIVE;
         CREATE TABLE IF NOT EXISTS owner (pid INTEGER NOT NULL, since TEXT NOT NULL);
         DELETE FROM owner;
         INSERT INTO owner VALUES (${process.pid}, '${new Date().toISOString()}');
         COMMIT;`,
      );
    } catch (error) {
      await close(db).catch(() => undefined);
      if (/SQLITE_BUSY|SQLITE_LOCKED/.test(String(error))) throw new DataDirLockedError(dataDir, await ownerOf(dataDir));
      throw storageError(file, 'cannot lock', error);
    }
    // Only for the message a second cluster prints: the lock itself cannot be read while held.
    await writeFile(path.join(dataDir, OWNER_FILE), `${process.pid}\n`).catch(() => undefined);
    const { dev, ino } = statSync(file);
    return new DataDirLock(db, { file, dev, ino });
  }

  /** Lets go of the directory (also done by the kernel when the process ends). */
  release(): Promise<void> {
    return close(this.db);
  }
}

async function ownerOf(dataDir: string): Promise<number | undefined> {
  try {
    const pid = Number((await readFile(path.join(dataDir, OWNER_FILE), 'utf8')).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
