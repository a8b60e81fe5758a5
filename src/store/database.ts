import { mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, type MigrationResultSet, type SqliteDatabase } from 'kysely';
import { AbpError, errorMessage } from '../domain/errors.js';
import { PACKAGE_ROOT } from '../package-root.js';
import { LATEST_MIGRATION, MIGRATION_NAMES, migrationsMatch } from './migration-names.js';
import { migrationProvider } from './migrations.js';
import { createPool, isPostgresUrl, redactUrl, WorkListener } from './postgres.js';
import { Repository, type StoreBackend } from './repository.js';
import type { Database } from './schema.js';
import { openSqliteFile } from '../util/sqlite-file.js';
import { isoTime } from '../domain/iso-time.js';

export interface StoreOptions {
  /** A SQLite file path, or a postgres:// URL. */
  db: string;
  busyTimeoutMs: number;
  /** PostgreSQL: connections in the pool. */
  pgPoolSize?: number;
  /** Apply pending migrations on open (the default); off refuses to open a database that needs them. */
  autoMigrate?: boolean;
  log?: (message: string) => void;
}

const stderrLog = (m: string) => process.stderr.write(`${isoTime()} abp store: ${m}\n`);

/** Opens the database (SQLite file or PostgreSQL URL) and runs pending migrations. */
export async function openRepository(options: StoreOptions): Promise<Repository> {
  const { db, backend, where } = await openKysely(options);
  try {
    if (options.autoMigrate === false) await requireMigrated(db, where);
    else await migrate(db, where, backend);
  } catch (err) {
    await db.destroy().catch(() => undefined);
    throw err;
  }
  return new Repository(db, backend);
}

/** What `abp migrate` reports: every migration, and whether this run applied it. */
export interface MigrationStatus {
  database: string;
  applied: string[];
  migrations: { name: string; executed_at: string | null }[];
}

/** Applies pending migrations (for operators: `abp migrate`), then lists them all. */
export async function migrateDatabase(options: StoreOptions): Promise<MigrationStatus> {
  const { db, backend, where } = await openKysely(options);
  try {
    const results = await migrate(db, where, backend);
    const all = await new Migrator({ db, provider: migrationProvider }).getMigrations();
    return {
      database: where,
      applied: (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName),
      migrations: all.map((m) => ({ name: m.name, executed_at: m.executedAt ? isoTime(m.executedAt.getTime()) : null })),
    };
  } finally {
    await db.destroy().catch(() => undefined);
  }
}

async function openKysely(options: StoreOptions): Promise<{ db: Kysely<Database>; backend: StoreBackend; where: string }> {
  const log = options.log ?? stderrLog;
  if (isPostgresUrl(options.db)) {
    const url = options.db;
    const pool = await createPool(url, options.pgPoolSize ?? 10, log);
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    const backend: StoreBackend = {
      kind: 'postgres',
      async listen(onWork) {
        const listener = new WorkListener(url, onWork, log);
        await listener.start();
        return () => listener.close();
      },
      // Migrations of several processes at once queue on this session lock instead of racing.
      async exclusive(fn) {
        const client = await pool.connect();
        try {
          await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
          try {
            return await fn();
          } finally {
            await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
          }
        } finally {
          client.release();
        }
      },
    };
    return { db, backend, where: redactUrl(url) };
  }
  const path = options.db.replace(/^sqlite:(\/\/)?/, '');
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  let sqlite: BetterSqlite3.Database;
  try {
    sqlite = openSqliteFile(path);
    sqlite.pragma(`busy_timeout = ${Math.floor(options.busyTimeoutMs)}`);
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = NORMAL');
    sqlite.pragma('foreign_keys = ON');
  } catch (err) {
    throw new AbpError('store_error', `cannot open the database ${path}: ${errorMessage(err)}`, { cause: err });
  }
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: reusingStatements(sqlite) }) });
  const backend: StoreBackend = {
    kind: 'sqlite',
    // One file has no notification channel: executors poll.
    listen: async () => async () => undefined,
    exclusive: (fn) => fn(),
  };
  return { db, backend, where: path };
}

/**
 * Kysely prepares every query afresh; compiling the SQL cost more than running it on
 * the executor's hot path. Queries of one shape have one SQL text (values are
 * parameters), so statements are kept by their text, the least recently used
 * dropped past `size`. A statement still iterating a result (a streamed read) is
 * busy, and the caller gets a fresh one.
 */
function reusingStatements(sqlite: BetterSqlite3.Database, size = 200): SqliteDatabase {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    close: () => sqlite.close(),
    prepare(text) {
      const cached = cache.get(text);
      if (cached && !cached.busy) {
        cache.delete(text);
        cache.set(text, cached);
        return cached;
      }
      const stmt = sqlite.prepare(text);
      if (!cached) {
        cache.set(text, stmt);
        if (cache.size > size) cache.delete(cache.keys().next().value as string);
      }
      return stmt;
    },
  };
}

/** An arbitrary constant key for pg_advisory_lock: "abp" migrations. */
const MIGRATION_LOCK = 0x61627001;

/** A network fault worth retrying, as opposed to a bad URL, bad credentials or a missing database. */
function transient(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT' || code === 'EAI_AGAIN' || code === '57P03' || /timeout|terminated|Connection terminated/i.test(errorMessage(err));
}

/** The migrations a database has run (null for a fresh one, with no migration table) and those this build knows. */
interface MigrationNames {
  done: string[] | null;
  known: string[];
}

async function migrationNames(db: Kysely<Database>): Promise<MigrationNames> {
  const known: string[] = [...MIGRATION_NAMES];
  try {
    const rows = await (db as unknown as Kysely<{ kysely_migration: { name: string } }>).selectFrom('kysely_migration').select('name').execute();
    return { done: rows.map((r) => r.name), known };
  } catch {
    return { done: null, known };
  }
}

/**
 * Whether every migration this build knows has run. Every CLI call and executor
 * opens the store; on PostgreSQL the full Migrator (lock table, advisory lock,
 * several round trips) would cost each of them for nothing. Extra names (a newer
 * abp wrote them) go the slow way, which explains the problem.
 */
function upToDate({ done }: MigrationNames): boolean {
  return done !== null && migrationsMatch(done);
}

/** A migration's number, its schema version: 6 for 006-shared-cool-downs. */
function schemaVersion(name: string): number {
  return Number(/^\d+/.exec(name)?.[0] ?? NaN);
}

/**
 * Refuses a database that a newer abp migrated: it ran migrations this build does
 * not know, so this build cannot tell what its tables mean, and writing to them
 * could corrupt the newer abp's data. The message names both schema versions and
 * what to do. A fresh database passes.
 */
function refuseNewer({ done, known }: MigrationNames, where: string): void {
  const unknown = (done ?? []).filter((n) => !known.includes(n)).sort();
  if (unknown.length === 0) return;
  const newest = unknown.at(-1) as string;
  const version = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')).version as string;
  throw new AbpError(
    'store_error',
    `the database ${where} is at schema version ${schemaVersion(newest)} (${newest}), but this abp ${version} knows schema versions up to ${schemaVersion(LATEST_MIGRATION)} (${LATEST_MIGRATION}): ` +
      `a newer abp migrated it (unknown migrations: ${unknown.join(', ')}). Upgrade abp to the version that wrote it, or point ABP_DB (or --db) at another database; abp never downgrades a schema.`,
  );
}

async function migrate(db: Kysely<Database>, where: string, backend: StoreBackend): Promise<MigrationResultSet['results']> {
  const names = await migrationNames(db);
  if (upToDate(names)) return [];
  refuseNewer(names, where);
  const migrator = new Migrator({ db, provider: migrationProvider });
  // Two processes may open a fresh file at once; the loser of the race sees the
  // winner's tables on the next try. A database server that is still starting
  // (or briefly unreachable) gets a few more tries.
  for (let attempt = 1; ; attempt++) {
    let error: unknown;
    let results: MigrationResultSet['results'];
    try {
      ({ error, results } = await backend.exclusive(() => migrator.migrateToLatest()));
    } catch (err) {
      error = err;
    }
    if (!error) return results;
    const message = errorMessage(error);
    if (/previously executed migration .* is missing/i.test(message)) {
      throw new AbpError(
        'store_error',
        `the database ${where} was written by a newer version of abp (${message}); upgrade abp or point ABP_DB elsewhere`,
        { cause: error },
      );
    }
    const limit = transient(error) ? 8 : 5;
    if (attempt >= limit) {
      const failed = results?.find((r) => r.status === 'Error')?.migrationName;
      const what = failed ? `migration ${failed} failed on ${where}` : `cannot open the database ${where}`;
      throw new AbpError('store_error', `${what}: ${message}`, { cause: error });
    }
    await new Promise((r) => setTimeout(r, Math.min(50 * 2 ** attempt, 3000)));
  }
}

async function requireMigrated(db: Kysely<Database>, where: string): Promise<void> {
  refuseNewer(await migrationNames(db), where);
  let pending: string[];
  try {
    const all = await new Migrator({ db, provider: migrationProvider }).getMigrations();
    pending = all.filter((m) => m.executedAt === undefined).map((m) => m.name);
  } catch (err) {
    throw new AbpError('store_error', `cannot open the database ${where}: ${errorMessage(err)}`, { cause: err });
  }
  if (pending.length > 0) {
    throw new AbpError('store_error', `the database ${where} needs migrations ${pending.join(', ')}; run abp migrate (ABP_AUTO_MIGRATE is off)`);
  }
}
