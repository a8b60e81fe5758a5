import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { execa, type ResultPromise } from 'execa';
import { openStore } from '../../src/app.js';
import { openQuickReader, type JobReader } from '../../src/store/quick-read.js';
import { resolveConfig } from '../../src/config.js';
import { jobStatus } from '../../src/wire/views.js';
import { createTestDatabaseSync, dropTestDatabase, queryPostgres, TEST_BACKEND } from './postgres.js';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  json: any;
}

/**
 * A fresh ABP_HOME per test, with a fresh database: a SQLite file in it, or, when
 * the run is the PostgreSQL project (ABP_TEST_DB=postgres), a fresh database on the
 * run's PostgreSQL server. The CLI is spawned as a real process, and cleanup kills
 * every executor the test started.
 */
export class Sandbox {
  readonly home: string;
  readonly env: Record<string, string>;
  /** Which database this sandbox's ABP_DB is. */
  readonly backend = TEST_BACKEND;
  /** The PostgreSQL database this sandbox created, dropped by cleanup. */
  private readonly pgDatabase: string | undefined;
  /** The store statusHere reads through, opened on its first call and closed by cleanup. */
  private reader: Promise<JobReader> | undefined;

  constructor(env: Record<string, string> = {}) {
    this.home = mkdtempSync(join(tmpdir(), 'abp-test-'));
    this.pgDatabase = this.backend === 'postgres' ? createTestDatabaseSync() : undefined;
    this.env = {
      ABP_HOME: this.home,
      ABP_DB: this.pgDatabase ?? join(this.home, 'abp.db'),
      ABP_EXECUTOR_IDLE_SECONDS: '3',
      ABP_POLL_MS: '50',
      ABP_RETRY_BASE_MS: '50',
      ABP_RETRY_MAX_MS: '200',
      ABP_SKIP_TEST: '',
      ...env,
    };
  }

  path(...parts: string[]): string {
    return join(this.home, ...parts);
  }

  async cli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
    const r = await execa(process.execPath, [CLI, ...args], {
      env: { ...this.env, ...env },
      reject: false,
      cwd: ROOT,
      timeout: 60_000,
    });
    let json: unknown;
    if (args.includes('--json')) {
      try {
        json = JSON.parse(String(r.stdout));
      } catch {
        json = undefined;
      }
    }
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), json };
  }

  /** Runs a command that must succeed, and returns its --json output. */
  async ok(args: string[], env: Record<string, string> = {}): Promise<any> {
    const r = await this.cli([...args, '--json'], env);
    if (r.exitCode !== 0) throw new Error(`abp ${args.join(' ')} exited ${r.exitCode}: ${r.stderr}\n${r.stdout}`);
    return r.json;
  }

  /** A foreground executor process. */
  executor(env: Record<string, string> = {}): ResultPromise {
    return execa(process.execPath, [CLI, 'executor'], { env: { ...this.env, ...env }, reject: false, cwd: ROOT });
  }

  async status(job: number): Promise<any> {
    return this.ok(['status', String(job)]);
  }

  /**
   * The job as `abp status JOB --json` prints it (the same reader and view), read
   * in this process. Waiting polls ten times a second, and a CLI process per poll
   * cost the suite more CPU than the work it waited on; the reader stays open
   * between polls (opening the whole store on PostgreSQL each time cost as much).
   */
  async statusHere(job: number): Promise<any> {
    this.reader ??= (async () => {
      const config = resolveConfig(this.env);
      return openQuickReader(config.db, config.busyTimeoutMs) ?? (await openStore(config));
    })();
    const reader = this.reader;
    try {
      return JSON.parse(JSON.stringify(jobStatus(await (await reader).requireJob(job))));
    } catch (err) {
      // A reader that failed to open is not kept: the next poll opens again.
      if (this.reader === reader) this.reader = undefined;
      await (await reader.catch(() => undefined))?.close().catch(() => undefined);
      throw err;
    }
  }

  /** Polls the job until `predicate` holds; returns the status that satisfied it. */
  async waitFor(job: number, predicate: (s: any) => boolean, timeoutMs = 30_000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await this.statusHere(job);
      if (predicate(s)) return s;
      if (Date.now() > deadline) throw new Error(`timed out waiting on job ${job}; last status ${JSON.stringify(s)}`);
      await sleep(100);
    }
  }

  async results(job: number): Promise<any[]> {
    const r = await this.cli(['results', String(job)]);
    if (r.exitCode !== 0) throw new Error(r.stderr);
    return r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  }

  /**
   * Runs one read-only query straight against the test's database, bypassing abp,
   * to check ground truth. `?` placeholders work on both backends; counts and sums
   * come back as numbers on both.
   */
  async query<T = Record<string, any>>(text: string, ...params: unknown[]): Promise<T[]> {
    if (this.backend === 'postgres') return queryPostgres<T>(this.env.ABP_DB as string, text, params);
    const db = new Database(this.env.ABP_DB as string, { readonly: true, fileMustExist: true });
    try {
      return db.prepare(text).all(...params) as T[];
    } finally {
      db.close();
    }
  }

  /** The first row of `query`, or undefined. */
  async queryOne<T = Record<string, any>>(text: string, ...params: unknown[]): Promise<T | undefined> {
    return (await this.query<T>(text, ...params))[0];
  }

  /**
   * Whether an abp process is inside a transaction on this sandbox's database
   * now: on SQLite, whether the write lock is taken (BEGIN IMMEDIATE fails at
   * once); on PostgreSQL, whether an abp session has a transaction open, or with
   * `writesOnly`, one that has written (it holds a transaction id).
   */
  async inTransaction(writesOnly = false): Promise<boolean> {
    if (this.backend === 'postgres') {
      const open = writesOnly ? 'backend_xid is not null' : 'xact_start is not null';
      const rows = await this.query(`select pid from pg_stat_activity where datname = current_database() and application_name = 'abp' and ${open} and pid <> pg_backend_pid()`);
      return rows.length > 0;
    }
    const db = new Database(this.env.ABP_DB as string, { timeout: 0 });
    try {
      db.exec('BEGIN IMMEDIATE');
      db.exec('ROLLBACK');
      return false;
    } catch {
      return true; // SQLITE_BUSY: the write lock is taken
    } finally {
      db.close();
    }
  }

  /** COUNT(*) of units by state, straight from the table. */
  async counts(job: number): Promise<Record<string, number>> {
    const rows = await this.query<{ status: string; n: number }>('select status, count(*) n from work_units where job_id = ? group by status', job);
    const out: Record<string, number> = { pending: 0, running: 0, submitted: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const r of rows) out[r.status.toLowerCase()] = r.n;
    return out;
  }

  async cleanup(): Promise<void> {
    const reader = this.reader;
    this.reader = undefined;
    await (await reader?.catch(() => undefined))?.close().catch(() => undefined);
    try {
      const pids = (await this.query<{ pid: number }>('select pid from executors')).map((r) => r.pid);
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
    } catch {
      // no database was created
    }
    if (this.pgDatabase) await dropTestDatabase(this.pgDatabase).catch(() => undefined);
    // A process the test started may still be writing its last lines (a killed executor's unit, a
    // log) while the folder goes: rmSync tries again on ENOTEMPTY rather than fail the test.
    rmSync(this.home, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
