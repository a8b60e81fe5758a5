import type BetterSqlite3 from 'better-sqlite3';
import { openSqliteFile } from '../util/sqlite-file.js';
import { jobNotFound } from '../domain/errors.js';
import type { JobState } from '../domain/states.js';
import { migrationsMatch } from './migration-names.js';
import { isPostgresUrl } from './postgres.js';
import type { Page } from './repository.js';
import type { BatchRow, ExecutorRow, JobRow } from './schema.js';

/** The reads `abp status` and `abp list` make; the Repository has them too. */
export interface JobReader {
  requireJob(id: number): Promise<JobRow>;
  listJobs(filter: { status?: JobState[] }, page: Page): Promise<JobRow[]>;
  /** Every registered executor, fresh or stale. */
  executors(): Promise<ExecutorRow[]>;
  /** A job's open provider batches, newest first, and how many ended. */
  jobBatches(jobId: number): Promise<{ open: BatchRow[]; ended: number }>;
  close(): Promise<void>;
}

/**
 * A read-only view of a SQLite store in plain SQL, without Kysely or the
 * migrator: the quick path for `abp status` and `abp list`. It serves only a
 * database that has run exactly the migrations this build knows; anything else
 * (a PostgreSQL URL, a missing file, a database behind or ahead, any error on
 * open) gives undefined, and the caller opens the full store, which migrates or
 * refuses with its own explanation. The rows are the same objects the
 * Repository's `selectAll` returns, so what the caller prints is too.
 */
export function openQuickReader(db: string, busyTimeoutMs: number): JobReader | undefined {
  if (isPostgresUrl(db)) return undefined;
  const path = db.replace(/^sqlite:(\/\/)?/, '');
  if (path === ':memory:') return undefined;
  let sqlite: BetterSqlite3.Database | undefined;
  try {
    sqlite = openSqliteFile(path, { readonly: true, fileMustExist: true });
    sqlite.pragma(`busy_timeout = ${Math.floor(busyTimeoutMs)}`);
    const done = sqlite.prepare('select name from kysely_migration').pluck().all() as string[];
    if (!migrationsMatch(done)) throw new Error('not up to date');
  } catch {
    sqlite?.close();
    return undefined;
  }
  const open = sqlite;
  return {
    async requireJob(id) {
      const job = open.prepare('select * from jobs where id = ?').get(id) as JobRow | undefined;
      if (!job) throw jobNotFound(id);
      return job;
    },
    async listJobs(filter, page) {
      const states = filter.status ?? [];
      const where = states.length ? `where status in (${states.map(() => '?').join(', ')})` : '';
      return open.prepare(`select * from jobs ${where} order by id desc limit ? offset ?`).all(...states, page.limit, page.offset) as JobRow[];
    },
    async executors() {
      return open.prepare('select * from executors').all() as ExecutorRow[];
    },
    async jobBatches(jobId) {
      const batches = open.prepare("select * from llm_batches where job_id = ? and state <> 'ended' order by id desc limit 50").all(jobId) as BatchRow[];
      const ended = open.prepare("select count(*) from llm_batches where job_id = ? and state = 'ended'").pluck().get(jobId) as number;
      return { open: batches, ended };
    },
    async close() {
      open.close();
    },
  };
}
