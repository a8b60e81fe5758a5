import { PostgresAdapter, sql, type Kysely } from 'kysely';
import { jobNotFound } from '../domain/errors.js';
import { WORK_CHANNEL } from './postgres.js';
import type { Database, JobRow } from './schema.js';

/** A database handle, possibly inside a transaction. Opaque outside store/. */
export type Db = Kysely<Database>;

/** What differs between the two databases, below the repository. */
export interface StoreBackend {
  readonly kind: 'sqlite' | 'postgres';
  /** Calls `onWork` when another process signals runnable units; resolves to an unsubscribe. */
  listen(onWork: (jobId: number) => void): Promise<() => Promise<void>>;
  /** Runs `fn` while holding a database-wide lock (migrations). */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
}

/** Whether a handle (or a transaction's) speaks to PostgreSQL: for the few statements written as text, with the dialect's placeholders. */
export function isPostgres(t: Kysely<any>): boolean {
  return t.getExecutor().adapter instanceof PostgresAdapter;
}

export const SQLITE: StoreBackend = { kind: 'sqlite', listen: async () => async () => undefined, exclusive: (fn) => fn() };

/** An arbitrary constant key for pg_advisory_xact_lock: "abp" fleet changes (executor launches). Migrations use 0x61627001. */
const FLEET_LOCK = 0x61627002;

/** PostgreSQL's deadlock_detected and serialization_failure: the transaction may simply run again. */
const RETRYABLE_TX = new Set(['40P01', '40001']);

/**
 * Whether a write failed for what a row holds (a value the driver cannot bind, data
 * or a constraint the database refuses) rather than for the database itself (down,
 * locked, busy): written again alone, the other rows of its batch commit.
 */
export function refusesRow(err: unknown): boolean {
  if (err instanceof TypeError || err instanceof RangeError) return true; // better-sqlite3 binding; pg's value conversion
  const code = String((err as { code?: unknown }).code ?? '');
  // SQLite: constraint, too big, datatype mismatch, bind range. PostgreSQL: data exceptions, integrity constraints, limits.
  return /^SQLITE_(CONSTRAINT|TOOBIG|MISMATCH|RANGE)/.test(code) || /^(22|23)[0-9A-Z]{3}$/.test(code) || code === '54000';
}

/**
 * The primitive every store module shares: the database handle, write
 * transactions, the job row lock and the work notification.
 *
 * On PostgreSQL, claims and job moves lock the job row first (lockJob): that makes
 * the running counter, and so max_workers, exact across executors. Outcome writes,
 * the hot path, update their unit first and the job's counters last, so the job
 * row stays locked only briefly. The rare deadlock of an outcome write with a job
 * move that touches the same units (pause, cancel) is detected by the server, and
 * tx() runs the losing transaction again.
 */
export class Transactions {
  /** Whether the database is PostgreSQL: the only branch on the backend, and only inside store/. */
  readonly pg: boolean;
  private closed = false;

  constructor(
    readonly db: Db,
    readonly backend: StoreBackend = SQLITE,
  ) {
    this.pg = backend.kind === 'postgres';
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.db.destroy();
  }

  /** Tells listening executors that `jobId` has runnable units, once the transaction commits. */
  async notifyWork(t: Db, jobId: number): Promise<void> {
    if (this.pg) await sql`select pg_notify(${WORK_CHANNEL}, ${String(jobId)})`.execute(t);
  }

  /**
   * Serialises, across every process on the database, the transactions that take
   * it: a transaction-scoped advisory lock on PostgreSQL, released at commit or
   * rollback. SQLite's write transactions (BEGIN IMMEDIATE) are serial already.
   */
  async lockFleet(t: Db): Promise<void> {
    if (this.pg) await sql`select pg_advisory_xact_lock(${FLEET_LOCK})`.execute(t);
  }

  /** Reads a job inside a transaction, locking its row on PostgreSQL (see the class comment). */
  async lockJob(t: Db, id: number): Promise<JobRow> {
    let q = t.selectFrom('jobs').selectAll().where('id', '=', id);
    if (this.pg) q = q.forUpdate();
    const job = await q.executeTakeFirst();
    if (!job) throw jobNotFound(id);
    return job;
  }

  /**
   * A write transaction. SQLite takes the write lock up front (BEGIN IMMEDIATE), so
   * concurrent executors wait on busy_timeout instead of failing on lock upgrade.
   * PostgreSQL runs a READ COMMITTED transaction with row locks (lockJob), and runs
   * it again if the server picked it as a deadlock victim.
   */
  async tx<T>(fn: (t: Db) => Promise<T>): Promise<T> {
    if (this.pg) {
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.db.transaction().execute(fn);
        } catch (err) {
          if (attempt >= 5 || !RETRYABLE_TX.has((err as { code?: string }).code ?? '')) throw err;
          await new Promise((r) => setTimeout(r, 10 * attempt + Math.random() * 20));
        }
      }
    }
    return this.db.connection().execute(async (conn) => {
      await sql`begin immediate`.execute(conn);
      try {
        const result = await fn(conn);
        await sql`commit`.execute(conn);
        return result;
      } catch (err) {
        await sql`rollback`.execute(conn).catch(() => undefined);
        throw err;
      }
    });
  }
}
