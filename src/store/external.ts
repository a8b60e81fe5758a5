import type BetterSqlite3 from 'better-sqlite3';
import { openSqliteFile } from '../util/sqlite-file.js';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';

export interface ExternalDb {
  db: Kysely<any>;
  dialect: 'sqlite' | 'postgres';
  close(): Promise<void>;
}

/**
 * A user's own database, for writing results back (not abp's store): a SQLite
 * file path (or sqlite:PATH), or a postgres:// URL.
 */
export async function openExternal(connectionString: string): Promise<ExternalDb> {
  if (/^postgres(ql)?:\/\//.test(connectionString)) {
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({ connectionString, max: 2 });
    const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
    return { db, dialect: 'postgres', close: () => db.destroy() };
  }
  const sqlite = openSqliteFile(connectionString.replace(/^sqlite:(\/\/)?/, ''));
  sqlite.pragma('busy_timeout = 10000');
  const db = new Kysely<any>({ dialect: new SqliteDialect({ database: sqlite }) });
  return { db, dialect: 'sqlite', close: () => db.destroy() };
}
