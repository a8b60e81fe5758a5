import { writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { execa } from 'execa';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, type Migration } from 'kysely';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LATEST_MIGRATION } from '../../src/store/migration-names.js';
import { migrationProvider } from '../../src/store/migrations.js';
import { CLI, ROOT, Sandbox, sleep } from '../helpers/cli.js';
import { pgExec } from '../helpers/postgres.js';

/*
 * The database survives a SIGKILL at any moment (SQLite in WAL mode, or
 * PostgreSQL), and abp refuses a database from a newer version and migrates one
 * from an older version.
 */
let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox({ ABP_LEASE_SECONDS: '1', ABP_MAX_WORKERS: '8' });
});
afterEach(async () => {
  await sb.cleanup();
});

/**
 * The backend's own consistency check: SQLite's integrity_check; on PostgreSQL,
 * amcheck over every table (verify_heapam) and every B-tree index (bt_index_check).
 * Returns 'ok' or the problems it found.
 */
async function integrity(): Promise<string> {
  if (sb.backend === 'sqlite') {
    const db = new Database(sb.env.ABP_DB as string);
    try {
      return (db.pragma('integrity_check') as { integrity_check: string }[]).map((r) => r.integrity_check).join('; ');
    } finally {
      db.close();
    }
  }
  await pgExec(sb.env.ABP_DB as string, 'CREATE EXTENSION IF NOT EXISTS amcheck');
  const heap = await sb.query<{ relname: string; msg: string }>(
    "select c.relname, v.msg from pg_class c cross join lateral verify_heapam(c.oid) v where c.relkind = 'r' and c.relnamespace = 'public'::regnamespace",
  );
  const indexes = await sb.query<{ relname: string }>(
    "select c.relname from pg_index i join pg_class c on c.oid = i.indexrelid join pg_am am on am.oid = c.relam where am.amname = 'btree' and c.relnamespace = 'public'::regnamespace",
  );
  for (const { relname } of indexes) await sb.query(`select bt_index_check('${relname}'::regclass, true)`);
  return heap.length === 0 ? 'ok' : heap.map((h) => `${h.relname}: ${h.msg}`).join('; ');
}

const STATES = ['pending', 'running', 'succeeded', 'failed', 'cancelled'];

/**
 * Every job's counters equal a COUNT(*) of its units, and its total their number.
 * One statement, so that both sides come from one snapshot.
 */
async function countersHold(): Promise<void> {
  const counted = STATES.map((s) => `(select count(*) from work_units u where u.job_id = j.id and u.status = '${s.toUpperCase()}') counted_${s}`).join(', ');
  const rows = await sb.query<Record<string, number>>(`select j.id, j.total, ${STATES.join(', ')}, ${counted} from jobs j`);
  for (const row of rows) {
    for (const s of STATES) expect(row[s], `job ${row.id} ${s}`).toBe(row[`counted_${s}`]);
    expect(STATES.reduce((sum, s) => sum + (row[s] as number), 0), `job ${row.id}`).toBe(row.total);
  }
}


function csv(name: string, n: number): string {
  const path = sb.path(name);
  const rows = ['id,text'];
  for (let i = 1; i <= n; i++) rows.push(`r${i},some text for row ${i}`);
  writeFileSync(path, `${rows.join('\n')}\n`);
  return path;
}

describe('SIGKILL at any moment', () => {
  it('an executor killed repeatedly mid-write leaves an intact database with exact counters, and a restart finishes the job', { timeout: 180_000 }, async () => {
    // Enough units that the kills, each after fresh progress, land while the job is still running.
    const n = 300;
    const file = csv('items.csv', n);
    const job = await sb.ok([
      'create', '--name', 'durable', '--intent', 'survive kill -9', '--enumerator', 'csv', '-e', `file_path=${file}`, '-e', 'id_column=id',
      '--worker', 'shell', '-w', 'command=printf', '-w', 'args:=["out-%s", "{{item.id}}"]', '--max-workers', '8', '--max-retries', '10',
    ]);
    const id = job.job_id as number;
    // Our own executor is alive (registered) first, so `start` launches none of its own.
    let executor = sb.executor({ ABP_EXECUTOR_IDLE_SECONDS: '0' });
    while ((await sb.query('select id from executors where pid = ?', executor.pid)).length === 0) await sleep(50);
    await sb.ok(['start', String(id), '--skip-test']);
    let midJob = 0;
    for (let kill = 0; kill < 6; kill++) {
      // Kill it while it is busy writing outcomes: once it has made progress, at a random moment.
      const before = (await sb.counts(id)).succeeded;
      const deadline = Date.now() + 20_000;
      while ((await sb.counts(id)).succeeded === before && before < n && Date.now() < deadline) await sleep(50);
      await sleep(Math.floor(Math.random() * 400));
      executor.kill('SIGKILL');
      await executor;
      expect(await integrity(), `after kill ${kill + 1}`).toBe('ok');
      await countersHold();
      const s = await sb.status(id);
      if (s.counts.succeeded > 0 && s.counts.succeeded < n) midJob++;
      executor = sb.executor({ ABP_EXECUTOR_IDLE_SECONDS: '0' });
    }
    expect(midJob).toBeGreaterThan(0);
    const done = await sb.waitFor(id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
    // A signal before Node has even loaded abp kills it the default way; wait until it runs.
    while ((await sb.query('select id from executors where pid = ?', executor.pid)).length === 0) await sleep(50);
    executor.kill('SIGTERM');
    expect((await executor).exitCode).toBe(0);
    expect(done.counts).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: n, failed: 0, cancelled: 0 });
    const results = await sb.results(id);
    expect(results.filter((r) => r.output === `out-${r.item_id}`)).toHaveLength(n);
    expect(await integrity()).toBe('ok');
    await countersHold();
  });

  it('abp create killed mid-enumeration of a large CSV leaves no partial job, and the database stays usable', { timeout: 180_000 }, async () => {
    const rows = 25_000;
    const big = csv('big.csv', rows);
    const create = () =>
      execa(process.execPath, [CLI, 'create', '--name', 'big', '--intent', 'many rows', '--enumerator', 'csv', '-e', `file_path=${big}`, '-e', 'id_column=id', '--worker', 'shell', '-w', 'command=true', '--json'], {
        env: sb.env,
        reject: false,
        cwd: ROOT,
      });
    // One create that runs to the end measures how long enumeration takes here.
    const t0 = Date.now();
    const whole = await create();
    const took = Date.now() - t0;
    expect(whole.exitCode, String(whole.stderr)).toBe(0);

    let jobsBefore = 1;
    let killedMidway = 0;
    for (let i = 0; i < 4; i++) {
      const proc = create();
      // Once its transaction is writing rows, kill it at a random moment.
      while (proc.exitCode === null && !(await sb.inTransaction(true))) await sleep(20);
      await sleep(Math.floor(Math.random() * took * 0.3));
      proc.kill('SIGKILL');
      const r = await proc;
      expect(await integrity(), `after kill ${i + 1}`).toBe('ok');
      // No partial job: whatever job exists has every one of its rows.
      const jobs = await sb.query<{ id: number; total: number; units: number }>('select j.id, j.total, (select count(*) from work_units u where u.job_id = j.id) units from jobs j');
      expect(jobs.map((j) => [j.total, j.units])).toEqual(jobs.map(() => [rows, rows]));
      // A create that finished (or was killed just after its commit) added one whole job; any other added none.
      expect(jobs.length - jobsBefore).toBeGreaterThanOrEqual(r.exitCode === 0 ? 1 : 0);
      expect(jobs.length - jobsBefore).toBeLessThanOrEqual(1);
      if (r.signal === 'SIGKILL' && jobs.length === jobsBefore) killedMidway++;
      jobsBefore = jobs.length;
    }
    expect(killedMidway).toBeGreaterThan(0);
    await countersHold();
    expect(await sb.queryOne<{ n: number }>('select count(*) n from work_units where job_id not in (select id from jobs)')).toEqual({ n: 0 });

    // The database takes new work: a small job runs to the end.
    const small = csv('small.csv', 5);
    const job = await sb.ok(['create', '--name', 'after', '--intent', 'still fine', '--enumerator', 'csv', '-e', `file_path=${small}`, '-e', 'id_column=id', '--worker', 'shell', '-w', 'command=printf', '-w', 'args:=["ok-%s", "{{item.id}}"]']);
    await sb.ok(['start', String(job.job_id), '--skip-test']);
    const done = await sb.waitFor(job.job_id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 30_000);
    expect(done.counts).toMatchObject({ succeeded: 5, failed: 0 });
  });
});

/** Kysely on the sandbox's database, for building an old schema the way an older abp did. */
function kyselyFor(url: string): Kysely<any> {
  if (url.startsWith('postgres')) return new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }) });
  return new Kysely({ dialect: new SqliteDialect({ database: new Database(url) }) });
}

describe('schema versions', () => {
  it('refuses a database a newer abp migrated, naming both schema versions and what to do, and leaves it untouched', async () => {
    await sb.ok(['list']);
    const future = '999-from-a-future-abp';
    const db = kyselyFor(sb.env.ABP_DB as string);
    try {
      await db.insertInto('kysely_migration').values({ name: future, timestamp: new Date().toISOString() }).execute();
    } finally {
      await db.destroy();
    }
    const latest = Number(/^\d+/.exec(LATEST_MIGRATION)?.[0]);
    for (const [args, env] of [
      [['list'], {}],
      [['status', '1'], { ABP_AUTO_MIGRATE: '0' }],
      [['migrate'], {}],
      [['executor', '--idle-seconds', '1'], {}],
    ] as [string[], Record<string, string>][]) {
      const r = await sb.cli(args, env);
      const what = `abp ${args.join(' ')} ${JSON.stringify(env)}: ${r.stderr}`;
      expect(r.exitCode, what).toBe(1);
      expect(r.stderr, what).toContain(`is at schema version 999 (${future})`);
      expect(r.stderr, what).toContain(`knows schema versions up to ${latest} (${LATEST_MIGRATION})`);
      expect(r.stderr, what).toMatch(/Upgrade abp to the version that wrote it, or point ABP_DB \(or --db\) at another database/);
    }
    const names = (await sb.query<{ name: string }>('select name from kysely_migration order by name')).map((r) => r.name);
    expect(names.at(-1)).toBe(future);
    expect(names).toHaveLength(Object.keys(await migrationProvider.getMigrations()).length + 1);
  });

  it('migrates a database an older abp left at migration 003; its job survives and runs to the end', async () => {
    const all = await migrationProvider.getMigrations();
    const old = Object.fromEntries(Object.entries(all).sort(([a], [b]) => a.localeCompare(b)).slice(0, 3)) as Record<string, Migration>;
    expect(Object.keys(old)).toEqual(['001-initial', '002-code-approvals', '003-sync']);
    const db = kyselyFor(sb.env.ABP_DB as string);
    const now = Date.now();
    try {
      const { error } = await new Migrator({ db, provider: { getMigrations: async () => old } }).migrateToLatest();
      expect(error).toBeUndefined();
      // A job as abp at migration 003 wrote it: no kind, reserved_usd, synthesis or budget columns yet.
      const { id } = await db
        .insertInto('jobs')
        .values({
          name: 'from an older abp', status: 'CREATED', user_intent: 'carry on', enumerator_type: 'csv', enumerator_config: '{}',
          worker_type: 'shell', worker_config: JSON.stringify({ command: 'printf', args: ['old-%s', '{{item.id}}'] }),
          max_workers: 2, max_retries: 1, timeout_seconds: 30, prompt_template: 'Do {{item.id}}', total: 3, pending: 3, created_at: now, updated_at: now,
        })
        .returning('id')
        .executeTakeFirstOrThrow();
      await db
        .insertInto('work_units')
        .values(['a', 'b', 'c'].map((item, seq) => ({ job_id: id, seq, item_id: item, payload: JSON.stringify({ id: item }), status: 'PENDING' })))
        .execute();
    } finally {
      await db.destroy();
    }

    const status = await sb.status(1);
    expect(status).toMatchObject({ job_id: 1, name: 'from an older abp', status: 'CREATED', total: 3, counts: { pending: 3 } });
    const names = (await sb.query<{ name: string }>('select name from kysely_migration order by name')).map((r) => r.name);
    expect(names).toEqual(Object.keys(all).sort());
    // The columns the newer migrations added took their defaults.
    expect(await sb.query('select kind, reserved_usd from work_units order by id')).toEqual(Array.from({ length: 3 }, () => ({ kind: 'item', reserved_usd: 0 })));

    await sb.ok(['start', '1', '--skip-test']);
    const done = await sb.waitFor(1, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 30_000);
    expect(done.counts).toMatchObject({ succeeded: 3, failed: 0 });
    expect((await sb.results(1)).map((r) => r.output)).toEqual(['old-a', 'old-b', 'old-c']);
    expect(await integrity()).toBe('ok');
  });
});
