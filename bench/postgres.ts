/**
 * Scaling out: 1, 2 and 4 `abp executor` processes sharing one PostgreSQL
 * database, against 1. What executors add is capacity for units that wait on
 * something (an LLM API, a service), so each unit is an http-llm call to a
 * loopback mock (its own process) that answers after 500 ms (agent and LLM units
 * take seconds), and each executor brings a fixed number of slots. With 100 ms
 * units the four executors, the server and the mock share this machine's two cores,
 * and CPU, not the design, sets the ratio (2.26× measured on 2026-11-22). One executor on a SQLite file is shown beside
 * them. Needs the PostgreSQL server binaries (`apt-get install postgresql`); the
 * bench starts its own throwaway server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createApp } from '../src/app.js';
import { resolveConfig } from '../src/config.js';
import { CLI_ENTRY } from '../src/executor/launcher.js';
import { startPostgres, type PostgresServer } from '../test/helpers/postgres.js';
import { jobMs, median, spread, type BenchRow } from './table.js';
import { startMockProcess } from './workers.js';

const RUNS = Number(process.env.ABP_BENCH_RUNS ?? 3);
const UNITS = Number(process.env.ABP_BENCH_DISPATCH_UNITS ?? 1000);
const DELAY_MS = 500;
/** Slots per executor, and the job's cap: high enough that neither limits dispatch. */
const SLOTS = 16;

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
async function dispatch(db: string, home: string, executors: number, mockUrl: string): Promise<number> {
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
      worker_type: 'http-llm',
      worker_config: { api: 'openai', base_url: `${mockUrl}/v1`, model: 'gpt-4o-mini', api_key_env: null },
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
    await app.orchestrator.skipTest(job.job_id);
    for (;;) {
      const row = await app.repo.getJob(job.job_id);
      if (row?.status === 'COMPLETED') return UNITS / (jobMs(row) / 1000);
      if (row?.status === 'FAILED' || row?.status === 'CANCELLED') throw new Error(`bench/postgres: job ended ${row.status}`);
      if (performance.now() - started > 600_000) throw new Error('bench/postgres: the job did not finish in 10 minutes');
      await new Promise((r) => setTimeout(r, 20));
    }
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
  const mock = await startMockProcess(DELAY_MS);
  const home = mkdtempSync(join(tmpdir(), 'abp-bench-pg-'));
  try {
    const sqlite: number[] = [];
    const onPg: Record<1 | 2 | 4, number[]> = { 1: [], 2: [], 4: [] };
    for (let i = 0; i < RUNS; i++) {
      // Interleaved, so drift on a shared machine touches every configuration alike.
      sqlite.push(await dispatch(join(home, `sqlite-${i}.db`), home, 1, mock.url));
      for (const n of [1, 2, 4] as const) onPg[n].push(await dispatch(await freshPgDatabase(server), home, n, mock.url));
    }
    const ideal = SLOTS / (DELAY_MS / 1000);
    const anchor = `PostgreSQL, 1 executor: ${spread(onPg[1], 0, ' units/s')}; SQLite, 1 executor: ${spread(sqlite, 0, ' units/s')}; ideal per executor ${ideal} units/s`;
    return ([2, 4] as const).map((n) => ({
      what: `scale-out on PostgreSQL, ${n} executors`,
      measure: `${UNITS} http-llm units (mock answers in ${DELAY_MS} ms), ${SLOTS} slots per executor; start → COMPLETED`,
      figure: spread(onPg[n], 0, ' units/s'),
      anchor,
      ratio: median(onPg[n]) / median(onPg[1]),
      ratio_note: `${n} executors ÷ 1 (${spread(onPg[n].map((r, k) => r / (onPg[1][k] as number)), 2, '×')})`,
      ...(n === 4 ? { target: '≥ 2.5×' } : {}),
      raw: { units: UNITS, executors: n, postgres_units_per_s: onPg, sqlite_units_per_s: sqlite },
    }));
  } finally {
    mock.stop();
    server.stop();
    rmSync(home, { recursive: true, force: true });
  }
}
