import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect } from 'kysely';
import { AbpError, errorMessage } from '../domain/errors.js';
import { migrationProvider } from './migrations.js';
import { Repository } from './repository.js';
import type { Database } from './schema.js';

export interface StoreOptions {
  /** A SQLite file path. */
  db: string;
  busyTimeoutMs: number;
}

/** Opens the database, applies the pragmas that make it safe to share, and runs pending migrations. */
export async function openRepository(options: StoreOptions): Promise<Repository> {
  if (/^postgres(ql)?:\/\//.test(options.db)) {
    throw new AbpError('invalid_input', 'ABP_DB: PostgreSQL is not supported by this build yet; use a SQLite file path');
  }
  const path = options.db.replace(/^sqlite:(\/\/)?/, '');
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  let sqlite: BetterSqlite3.Database;
  try {
    sqlite = new BetterSqlite3(path);
    sqlite.pragma(`busy_timeout = ${Math.floor(options.busyTimeoutMs)}`);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
  } catch (err) {
    throw new AbpError('store_error', `cannot open the database ${path}: ${errorMessage(err)}`, { cause: err });
  }
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: sqlite }) });
  await migrate(db, path);
  return new Repository(db);
}

async function migrate(db: Kysely<Database>, path: string): Promise<void> {
  const migrator = new Migrator({ db, provider: migrationProvider });
  // Two processes may open a fresh file at once; the loser of the race sees the
  // winner's tables on the next try.
  for (let attempt = 1; ; attempt++) {
    const { error, results } = await migrator.migrateToLatest();
    if (!error) return;
    const message = errorMessage(error);
    if (/previously executed migration .* is missing/i.test(message)) {
      throw new AbpError(
        'store_error',
        `the database ${path} was written by a newer version of abp (${message}); upgrade abp or point ABP_DB elsewhere`,
        { cause: error },
      );
    }
    if (attempt >= 5) {
      const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
      throw new AbpError('store_error', `migration ${failed} failed on ${path}: ${message}`, { cause: error });
    }
    await new Promise((r) => setTimeout(r, 50 * attempt));
  }
}
