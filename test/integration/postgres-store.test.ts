import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CoolDowns } from '../../src/executor/cool-downs.js';
import { openRepository } from '../../src/store/database.js';
import { LATEST_MIGRATION } from '../../src/store/migration-names.js';
import type { Repository } from '../../src/store/repository.js';
import { CLI, ROOT, sleep } from '../helpers/cli.js';
import { createTestDatabase, dropTestDatabase, TEST_BACKEND } from '../helpers/postgres.js';
import { createTestStore, queryDb, runningJob, type TestStore } from '../helpers/store.js';

/*
 * The scale-out store on this run's backend (both projects run this file): many
 * Repository instances on one database stand in for many executors, each with its
 * own connection pool on PostgreSQL.
 */
let store: TestStore;

/**
 * `n` executors' handles on the store. On PostgreSQL each is its own Repository
 * and pool. A SQLite file is shared by separate processes (crash and lifecycle
 * tests do that); inside one process a second better-sqlite3 connection would
 * block the event loop on the first one's write lock, so they share one handle,
 * whose transactions Kysely serialises.
 */
async function executorHandles(n: number): Promise<Repository[]> {
  if (TEST_BACKEND !== 'postgres') return Array.from({ length: n }, () => store.repo);
  return [store.repo, ...(await Promise.all(Array.from({ length: n - 1 }, () => store.open())))];
}

beforeEach(async () => {
  store = await createTestStore();
});

afterEach(async () => {
  await store.cleanup();
});

describe(`the store on ${TEST_BACKEND}`, () => {
  it('runs every numbered migration exactly once when several processes open a fresh database at once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'abp-migrate-'));
    const url = TEST_BACKEND === 'postgres' ? await createTestDatabase() : join(dir, 'fresh.db');
    try {
      const repos = await Promise.all([1, 2, 3, 4].map(() => openRepository({ db: url, busyTimeoutMs: 30_000, log: () => undefined })));
      await Promise.all(repos.map((r) => r.close()));
      const rows = await queryDb<{ name: string }>(url, 'select name from kysely_migration order by name');
      const names = rows.map((r) => r.name);
      expect(new Set(names).size).toBe(names.length);
      expect(names.at(-1)).toBe(LATEST_MIGRATION);
    } finally {
      if (TEST_BACKEND === 'postgres') await dropTestDatabase(url);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads counters, timestamps and costs back as JS numbers', async () => {
    const job = await runningJob(store.repo, 3, 2);
    expect(typeof job.created_at).toBe('number');
    expect(typeof job.cost_usd).toBe('number');
    expect(typeof job.input_tokens).toBe('number');
    expect(job).toMatchObject({ total: 3, pending: 3, running: 0, status: 'RUNNING' });
    expect(await store.repo.countJobsByStatus()).toEqual({ RUNNING: 1 });
    const { units } = await store.repo.claimUnits(job.id, 'a', 1, 30_000);
    await store.repo.recordOutcome(units[0]!, 'a', { next: 'SUCCEEDED', spent: false, cost_usd: 0.123456789, input_tokens: 2 ** 40, output_tokens: 7 });
    const after = await store.repo.requireJob(job.id);
    // Eight-byte floats on both: a real (4-byte) column would round this.
    expect(after.cost_usd).toBe(0.123456789);
    expect(after.input_tokens).toBe(2 ** 40);
    expect(await store.repo.countUnits(job.id)).toEqual({ pending: 2, running: 0, submitted: 0, succeeded: 1, failed: 0, cancelled: 0 });
  });

  it('refuses the late outcome of a stalled attempt whose lease another executor took', async () => {
    const other = await store.open();
    const job = await runningJob(store.repo, 1, 1);
    const stalled = (await store.repo.claimUnits(job.id, 'exec-a', 1, 50)).units[0]!;
    expect(stalled.attempt).toBe(1);
    // exec-a stalls past its lease; exec-b reclaims the unit and runs it again.
    await sleep(120);
    const reclaimed = await other.reclaimExpired();
    expect(reclaimed.map((u) => u.id)).toEqual([stalled.id]);
    const retry = (await other.claimUnits(job.id, 'exec-b', 1, 30_000)).units[0]!;
    expect(retry).toMatchObject({ id: stalled.id, attempt: 2 });
    expect(await other.getUnit(retry.id)).toMatchObject({ status: 'RUNNING', attempt: 2, lease_owner: 'exec-b' });

    // exec-a wakes up and tries to write its outcome: fenced out.
    expect(await store.repo.recordOutcome(stalled, 'exec-a', { next: 'SUCCEEDED', spent: false, output: 'late' })).toBe(false);
    expect(await store.repo.extendLeases('exec-a', 30_000, [stalled.id])).toBe(0);
    expect(await other.recordOutcome(retry, 'exec-b', { next: 'SUCCEEDED', spent: false, output: 'on time' })).toBe(true);
    // A second write of the same attempt is refused too: an outcome lands once.
    expect(await other.recordOutcome(retry, 'exec-b', { next: 'FAILED', spent: true, output: 'twice' })).toBe(false);

    const unit = await store.repo.getUnit(stalled.id);
    expect(unit).toMatchObject({ status: 'SUCCEEDED', output: 'on time', attempt: 2, failures: 1, lease_owner: null });
    const done = await store.repo.requireJob(job.id);
    expect(done).toMatchObject({ status: 'COMPLETED', succeeded: 1, running: 0, pending: 0 });
  });

  it("holds a job's max_workers across executors claiming at the same time", async () => {
    const CAP = 7;
    const UNITS = 300;
    const executors = await executorHandles(6);
    const job = await runningJob(store.repo, UNITS, CAP);
    let peak = 0;
    let running = 0;
    const runs = new Map<number, number>();
    let sampling = true;
    let sampledPeak = 0;
    // An outside observer: COUNT(*) of RUNNING units, straight from the table.
    const sampler = (async () => {
      while (sampling) {
        const [row] = await queryDb<{ n: number }>(store.url, "select count(*) n from work_units where status = 'RUNNING'");
        sampledPeak = Math.max(sampledPeak, Number(row?.n ?? 0));
        await sleep(2);
      }
    })();
    const work = Promise.all(
      executors.map(async (repo, i) => {
        const owner = `exec-${i}`;
        for (;;) {
          const { job: seen, units } = await repo.claimUnits(job.id, owner, 3, 30_000);
          if (seen.status !== 'RUNNING') return;
          if (units.length === 0) {
            await sleep(1);
            continue;
          }
          running += units.length;
          peak = Math.max(peak, running);
          await Promise.all(
            units.map(async (u) => {
              await sleep(Math.random() * 4);
              runs.set(u.id, (runs.get(u.id) ?? 0) + 1);
              running--;
              expect(await repo.recordOutcome(u, owner, { next: 'SUCCEEDED', spent: false, output: String(u.id) })).toBe(true);
            }),
          );
        }
      }),
    );
    try {
      await work;
    } finally {
      sampling = false;
      await sampler;
    }
    expect(peak).toBeLessThanOrEqual(CAP);
    expect(sampledPeak).toBeLessThanOrEqual(CAP);
    expect(peak).toBeGreaterThan(1);
    expect(runs.size).toBe(UNITS);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    const done = await store.repo.requireJob(job.id);
    expect(done).toMatchObject({ status: 'COMPLETED', succeeded: UNITS, running: 0, pending: 0 });
    expect(await store.repo.countUnits(job.id)).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: UNITS, failed: 0, cancelled: 0 });
  });

  it('gives expired leases back exactly once when several executors reclaim at once', async () => {
    const executors = await executorHandles(4);
    const job = await runningJob(store.repo, 40, 40);
    await store.repo.claimUnits(job.id, 'dead', 40, 20);
    await sleep(60);
    const reclaimed = (await Promise.all(executors.map((r) => r.reclaimExpired()))).flat();
    expect(reclaimed).toHaveLength(40);
    expect(new Set(reclaimed.map((u) => u.id)).size).toBe(40);
    const after = await store.repo.requireJob(job.id);
    expect(after).toMatchObject({ pending: 40, running: 0 });
    expect(await store.repo.countUnits(job.id)).toMatchObject({ pending: 40, running: 0 });
  });

  it("shares a rate limit's cool-down with every executor, and a shorter one never cuts a longer one short", async () => {
    const [a, b] = await executorHandles(2);
    const now = Date.now();
    await a!.shareCoolDown('http-llm', now + 60_000);
    await b!.shareCoolDown('http-llm', now + 1_000);
    await b!.shareCoolDown('claude', now - 1);
    const seen = await b!.activeCoolDowns(now);
    expect([...seen]).toEqual([['http-llm', now + 60_000]]);
    // The other executor adopts it: no claims of that worker type until it ends.
    const coolDowns = new CoolDowns(() => 1000, () => now);
    for (const [type, until] of seen) coolDowns.adopt(type, until);
    expect(coolDowns.remainingMs('http-llm')).toBe(60_000);
    expect(coolDowns.remainingMs('claude')).toBe(0);
  });

  it('abp migrate applies pending migrations once and then reports the database up to date', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'abp-migrate-cli-'));
    const url = TEST_BACKEND === 'postgres' ? await createTestDatabase() : join(dir, 'fresh.db');
    try {
      const migrate = () => execa(process.execPath, [CLI, 'migrate', '--db', url, '--json'], { cwd: ROOT, reject: false, env: { ABP_HOME: dir } });
      const first = await migrate();
      expect(first.exitCode).toBe(0);
      const applied = JSON.parse(String(first.stdout));
      expect(applied.applied.at(-1)).toBe(LATEST_MIGRATION);
      expect(applied.migrations.every((m: { executed_at: string | null }) => m.executed_at !== null)).toBe(true);
      if (TEST_BACKEND === 'postgres') expect(applied.database).not.toContain('password');
      const second = await migrate();
      expect(JSON.parse(String(second.stdout)).applied).toEqual([]);
      // With automatic migrations off, a database that needs them is refused with the fix.
      const freshDir = mkdtempSync(join(tmpdir(), 'abp-migrate-off-'));
      const fresh = TEST_BACKEND === 'postgres' ? await createTestDatabase() : join(freshDir, 'fresh.db');
      try {
        const refused = await execa(process.execPath, [CLI, 'list', '--db', fresh], { cwd: ROOT, reject: false, env: { ABP_HOME: freshDir, ABP_AUTO_MIGRATE: '0' } });
        expect(refused.exitCode).toBe(1);
        expect(String(refused.stderr)).toContain('run abp migrate');
      } finally {
        if (TEST_BACKEND === 'postgres') await dropTestDatabase(fresh);
        rmSync(freshDir, { recursive: true, force: true });
      }
    } finally {
      if (TEST_BACKEND === 'postgres') await dropTestDatabase(url);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.runIf(TEST_BACKEND === 'postgres')('PostgreSQL specifics', () => {
  it('creates 8-byte floats and serial ids, dialect-neutrally', async () => {
    const cols = await queryDb<{ table_name: string; column_name: string; data_type: string; column_default: string | null }>(
      store.url,
      "select table_name, column_name, data_type, column_default from information_schema.columns where table_schema = 'public' and (data_type in ('real', 'double precision') or column_name in ('id', 'seq'))",
    );
    expect(cols.filter((c) => c.data_type === 'real')).toEqual([]);
    expect(cols.find((c) => c.table_name === 'jobs' && c.column_name === 'cost_usd')?.data_type).toBe('double precision');
    expect(cols.find((c) => c.table_name === 'jobs' && c.column_name === 'id')?.column_default).toMatch(/^nextval/);
    expect(cols.find((c) => c.table_name === 'events' && c.column_name === 'seq')?.column_default).toMatch(/^nextval/);
  });

  it('wakes listening executors (LISTEN/NOTIFY) when a job starts and when units come back', async () => {
    const listener = await store.open();
    const heard: number[] = [];
    const unlisten = await listener.onWork((jobId) => heard.push(jobId));
    try {
      const job = await runningJob(store.repo, 2, 2);
      await waitUntil(() => heard.includes(job.id));
      heard.length = 0;
      const { units } = await store.repo.claimUnits(job.id, 'a', 1, 30_000);
      expect(heard).toEqual([]);
      // Handed back unspent (e.g. a shutdown): another executor may run it now.
      await store.repo.recordOutcome(units[0]!, 'a', { next: 'PENDING', spent: false });
      await waitUntil(() => heard.includes(job.id));
    } finally {
      await unlisten();
    }
  });

  it('survives its connections being cut: the pool reconnects on the next query', async () => {
    const job = await runningJob(store.repo, 2, 2);
    const name = new URL(store.url).pathname.slice(1);
    await queryDb(store.url.replace(`/${name}`, '/postgres'), 'select pg_terminate_backend(pid) from pg_stat_activity where datname = ? and pid <> pg_backend_pid()', name);
    let read: unknown;
    for (let i = 0; i < 5 && read === undefined; i++) read = await store.repo.getJob(job.id).catch(() => undefined);
    expect(read).toMatchObject({ id: job.id, status: 'RUNNING' });
  });
});

async function waitUntil(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(10);
  }
}
