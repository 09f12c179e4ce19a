/** Reads a worker's SQLite file directly, read-only, as the seed's users did. */
import { all, close, openDatabase } from '../../shared/sqlite';

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
