/** Reads a worker's SQLite file directly, read-only, as the seed's users did. */
import type { StoredRow } from '../../shared/results-db';
import { all, close, openDatabase } from '../../shared/sqlite';

export type { StoredRow };

export async function readRows(file: string): Promise<StoredRow[]> {
  const db = await openDatabase(file, 'readonly');
  try {
    return await all<StoredRow>(db, 'SELECT * FROM results ORDER BY id');
  } finally {
    await close(db);
  }
}

export async function integrityCheck(file: string): Promise<string> {
  const db = await openDatabase(file, 'readonly');
  try {
    const rows = await all<{ integrity_check: string }>(db, 'PRAGMA integrity_check');
    return rows.map((row) => row.integrity_check).join('\n');
  } finally {
    await close(db);
  }
}
