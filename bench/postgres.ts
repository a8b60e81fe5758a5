/**
 * Dispatch throughput with many executors on one PostgreSQL database: 1, 2 and 4
 * `abp executor` processes against one PostgreSQL, and against the embedded
 * default (one executor on a SQLite file) as the anchor, all in the same run.
 * The worker is a near no-op function on piscina threads, so the figure is what
 * abp itself costs per unit: claim, lease, run, record the outcome (fenced).
 * Needs the PostgreSQL server binaries (`apt-get install postgresql`); the bench
 * starts its own throwaway server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createApp } from '../src/app.js';
import { resolveConfig } from '../src/config.js';
import { CLI_ENTRY } from '../src/executor/launcher.js';
import { PACKAGE_ROOT } from '../src/package-root.js';
import { startPostgres, type PostgresServer } from '../test/helpers/postgres.js';
import { median, spread, type BenchRow } from './table.js';

const RUNS = Number(process.env.ABP_BENCH_RUNS ?? 3);
const UNITS = Number(process.env.ABP_BENCH_DISPATCH_UNITS ?? 2000);
/** Slots per executor, and the job's cap: high enough that neither limits dispatch. */
const SLOTS = 16;
const MODULE = join(PACKAGE_ROOT, 'test', 'fixtures', 'functions', 'echo-thread.mjs');

async function freshPgDatabase(server: PostgresServer): Promise<string> {
  const name = `abp_bench_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(server.url);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Units per second from `start` to COMPLETED with `executors` executor processes. */
async function dispatch(db: string, home: string, executors: number): Promise<number> {
  const csv = join(home, `items-${executors}-${Date.now()}.csv`);
  writeFileSync(csv, ['id,text', ...Array.from({ length: UNITS }, (_, k) => `${k + 1},t`)].join('\n'));
  const env = { ABP_HOME: home, ABP_DB: db, ABP_MAX_WORKERS: String(SLOTS), ABP_EXECUTOR_IDLE_SECONDS: '0', ABP_POLL_MS: '20' };
  const app = await createApp(resolveConfig(env));
  const children: ChildProcess[] = [];
  try {
    const job = await app.orchestrator.createJob({
      name: 'dispatch',
      user_intent: 'nothing',
      enumerator_type: 'csv',
      enumerator_config: { file_path: csv, id_column: 'id' },
      worker_type: 'function',
      worker_config: { module: MODULE, max_threads: 2 },
      max_workers: SLOTS * executors,
    });
    for (let i = 0; i < executors; i++) {
      children.push(spawn(process.execPath, [CLI_ENTRY, 'executor'], { env: { ...process.env, ...env }, stdio: 'ignore', detached: true }));
    }
    // All executors are up (registered) before the clock starts.
    const deadline = Date.now() + 60_000;
    while ((await app.repo.liveExecutors(60_000)).length < executors) {
      if (Date.now() > deadline) throw new Error(`bench/postgres: ${executors} executors did not register`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const started = performance.now();
    await app.orchestrator.start(job.job_id, { skipTest: true });
    for (;;) {
      const row = await app.repo.getJob(job.job_id);
      if (row?.status === 'COMPLETED') break;
      if (row?.status === 'FAILED' || row?.status === 'CANCELLED') throw new Error(`bench/postgres: job ended ${row.status}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return UNITS / ((performance.now() - started) / 1000);
  } finally {
    for (const c of children) {
      try {
        process.kill(-(c.pid as number), 'SIGTERM');
      } catch {
        // gone already
      }
    }
    await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))));
    await app.close();
  }
}

export async function run(): Promise<BenchRow[]> {
  const server = await startPostgres();
  const home = mkdtempSync(join(tmpdir(), 'abp-bench-pg-'));
  try {
    const sqlite: number[] = [];
    const onPg: Record<1 | 2 | 4, number[]> = { 1: [], 2: [], 4: [] };
    for (let i = 0; i < RUNS; i++) {
      // Interleaved, so drift on a shared machine touches every configuration alike.
      sqlite.push(await dispatch(join(home, `sqlite-${i}.db`), home, 1));
      for (const n of [1, 2, 4] as const) onPg[n].push(await dispatch(await freshPgDatabase(server), home, n));
    }
    const anchor = `SQLite, 1 executor: ${spread(sqlite, 0, ' units/s')}`;
    return ([1, 2, 4] as const).map((n) => ({
      what: `dispatch throughput, PostgreSQL, ${n} executor${n > 1 ? 's' : ''}`,
      measure: `${UNITS} near no-op function units, ${SLOTS} slots per executor, job cap ${SLOTS * n}; start → COMPLETED`,
      figure: spread(onPg[n], 0, ' units/s'),
      anchor,
      ratio: median(onPg[n]) / median(sqlite),
      ratio_note: 'PostgreSQL with N executors ÷ SQLite with 1 (higher is better)',
      raw: { units: UNITS, executors: n, postgres_units_per_s: onPg[n], sqlite_units_per_s: sqlite },
    }));
  } finally {
    server.stop();
    rmSync(home, { recursive: true, force: true });
  }
}
