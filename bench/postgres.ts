/**
 * Scaling out: 1, 2, 4 and 8 `abp executor` processes sharing one PostgreSQL
 * database. What executors add is capacity for units that wait on something (an
 * LLM API, a service), so each unit is an http-llm call to a loopback mock (its
 * own process) that answers after 500 ms (agent and LLM units take seconds), and
 * each executor brings a fixed number of slots. With 100 ms units the executors,
 * the server and the mock share this machine's two cores, and CPU, not the design,
 * sets the ratio (2.26× at 4 executors, measured on 2026-11-22). One executor on a
 * SQLite file is shown beside them. Needs the PostgreSQL server binaries; the
 * bench starts its own throwaway server.
 *
 * Steady state, not start-up: the job has UNITS_PER_EXECUTOR units per executor
 * (the same job per slot: ~47 rounds of 500 ms per slot, ~23 s at the ideal rate
 * whatever the count), executors are registered before the clock starts, and the
 * figure is start → COMPLETED by the job's own clock. A fixed job for every count
 * would be either too short at 8 (1,000 units last 4 s, start-up and the ramp are
 * most of it) or too long at 1 (6,000 units, 190 s a run). The first-to-last
 * outcome rate is kept in `raw` beside it. The CPU of the mock, the server and the
 * executors is read from /proc over each run, so that the mock is seen not to be
 * the limit. Executors poll at abp's default (ABP_POLL_MS 200 ms): a freed slot
 * and NOTIFY wake them anyway, and the 20 ms this bench used to set cost two
 * queries per 20 ms per executor, a load that grew with the executor count.
 *
 * ABP_BENCH_PG_EXECUTORS (default 1,2,4,8), ABP_BENCH_PG_UNITS_PER_EXECUTOR
 * (750); ABP_BENCH_PG_BASE=<checkout> also runs that checkout's built executor,
 * interleaved with this one (an A/B of a change), into `raw` and stderr.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createApp } from '../src/app.js';
import { resolveConfig } from '../src/config.js';
import { CLI_ENTRY } from '../src/executor/launcher.js';
import { startPostgres, type PostgresServer } from '../test/helpers/postgres.js';
import { jobMs, median, spread, type BenchRow } from './table.js';

const RUNS = Number(process.env.ABP_BENCH_RUNS ?? 3);
const COUNTS = (process.env.ABP_BENCH_PG_EXECUTORS ?? '1,2,4,8').split(',').map(Number);
const UNITS_PER_EXECUTOR = Number(process.env.ABP_BENCH_PG_UNITS_PER_EXECUTOR ?? 750);
const BASE = process.env.ABP_BENCH_PG_BASE;
/** The executors' ABP_POLL_MS (default: abp's own), and the base's (ABP_BENCH_PG_BASE_POLL_MS). */
const POLL_MS = process.env.ABP_BENCH_PG_POLL_MS;
const BASE_POLL_MS = process.env.ABP_BENCH_PG_BASE_POLL_MS ?? POLL_MS;
/** ABP_BENCH_PG_SQLITE=0 leaves out the SQLite anchor (while profiling). */
const SQLITE = process.env.ABP_BENCH_PG_SQLITE !== '0';
const DELAY_MS = 500;
/** Slots per executor, and the job's cap: high enough that neither limits dispatch. */
const SLOTS = 16;
/** The mock LLM in its own process (bench/workers.ts --mock-llm), with its pid for its CPU. */
async function startMock(delayMs: number): Promise<{ url: string; pid: number; stop: () => void }> {
  const child = fork(join(dirname(fileURLToPath(import.meta.url)), 'workers.js'), ['--mock-llm', String(delayMs)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (m) => resolve(String(m)));
    child.once('exit', (code) => reject(new Error(`mock server exited with ${code}`)));
  });
  return { url, pid: child.pid as number, stop: () => child.kill('SIGKILL') };
}

const TARGETS: Record<number, string> = { 4: '≥ 2.5×', 8: '≥ 6×' };

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

/** CPU seconds (user + system) a process has used, from /proc; 0 once it is gone. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

/** The server's processes: the postmaster (its pid file's first line) and its children. */
function serverPids(server: PostgresServer): number[] {
  const file = join(server.dataDir, 'data', 'postmaster.pid');
  if (!existsSync(file)) return [];
  const master = Number(readFileSync(file, 'utf8').split('\n')[0]);
  const pids = [master];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === master) pids.push(Number(d));
    } catch {
      // gone
    }
  }
  return pids;
}

/**
 * Profiling (ABP_BENCH_PG_PROFILE=1): samples pg_stat_activity every 20 ms over
 * the run and counts what the abp backends do (state, wait event), the
 * connections open, and the lock waits by the relation waited on.
 */
function sampleActivity(server: PostgresServer): { stop: () => Promise<string> } {
  const counts = new Map<string, number>();
  let samples = 0;
  let maxConnections = 0;
  let stopped = false;
  const client = new pg.Client({ connectionString: server.url });
  const loop = (async () => {
    await client.connect();
    while (!stopped) {
      const { rows } = await client.query(
        `select a.application_name as app, a.state, coalesce(a.wait_event_type || ':' || a.wait_event, 'cpu') as wait,
                (select string_agg(distinct coalesce(l.relation::regclass::text, l.locktype), ',') from pg_locks l where l.pid = a.pid and not l.granted) as waiting_on,
                left(regexp_replace(a.query, '\\s+', ' ', 'g'), 60) as query
           from pg_stat_activity a where a.application_name like 'abp%' and a.pid <> pg_backend_pid()`,
      );
      samples++;
      maxConnections = Math.max(maxConnections, rows.length);
      for (const r of rows) {
        if (r.state === 'idle in transaction') counts.set('idle in transaction (a client between statements)', (counts.get('idle in transaction (a client between statements)') ?? 0) + 1);
        if (r.state !== 'active') continue;
        const key = `${r.wait}${r.waiting_on ? ` on ${r.waiting_on}` : ''} | ${r.query}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    await client.end();
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      const top = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 15);
      return `${samples} samples, up to ${maxConnections} connections; backends per sample, by what they do:\n  ${top.map(([k, n]) => `${(n / samples).toFixed(2)} ${k}`).join('\n  ')}`;
    },
  };
}

interface Run {
  /** Units per second, start → COMPLETED. */
  rate: number;
  /** Units per second from the first outcome to the last. */
  outcomes: number;
  /** CPU use over the run, in cores (1 = one core busy). */
  cpu: { mock: number; server: number; executors: number };
}

/** One job of UNITS_PER_EXECUTOR × `executors` units run by `executors` executor processes of `cli`. */
async function dispatch(server: PostgresServer, db: string, home: string, executors: number, mock: { url: string; pid: number }, cli = CLI_ENTRY, pollMs = POLL_MS): Promise<Run> {
  const units = UNITS_PER_EXECUTOR * executors;
  const csv = join(home, `items-${executors}-${Date.now()}.csv`);
  writeFileSync(csv, ['id,text', ...Array.from({ length: units }, (_, k) => `${k + 1},t`)].join('\n'));
  const env = { ABP_HOME: home, ABP_DB: db, ABP_MAX_WORKERS: String(SLOTS), ABP_EXECUTOR_IDLE_SECONDS: '0', ...(pollMs ? { ABP_POLL_MS: pollMs } : {}) };
  const app = await createApp(resolveConfig(env));
  const children: ChildProcess[] = [];
  try {
    const job = await app.orchestrator.createJob({
      name: 'dispatch',
      user_intent: 'nothing',
      enumerator_type: 'csv',
      enumerator_config: { file_path: csv, id_column: 'id' },
      worker_type: 'http-llm',
      worker_config: { api: 'openai', base_url: `${mock.url}/v1`, model: 'gpt-4o-mini', api_key_env: null },
      max_workers: SLOTS * executors,
    });
    for (let i = 0; i < executors; i++) {
      // Profiling: ABP_BENCH_PG_CPU_PROF=<dir> profiles the first executor (node --cpu-prof).
      const prof = i === 0 && process.env.ABP_BENCH_PG_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.ABP_BENCH_PG_CPU_PROF}`] : [];
      children.push(spawn(process.execPath, [...prof, cli, 'executor'], { env: { ...process.env, ...env }, stdio: 'ignore', detached: true }));
    }
    // All executors are up (registered) before the clock starts.
    const deadline = Date.now() + 60_000;
    while ((await app.repo.liveExecutors(60_000)).length < executors) {
      if (Date.now() > deadline) throw new Error(`bench/postgres: ${executors} executors did not register`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const pgPids = db.startsWith('postgres') ? serverPids(server) : [];
    const cpu0 = { mock: cpuSeconds(mock.pid), server: pgPids.reduce((s, p) => s + cpuSeconds(p), 0), executors: children.reduce((s, c) => s + cpuSeconds(c.pid as number), 0) };
    const started = performance.now();
    const sampler = process.env.ABP_BENCH_PG_PROFILE && db.startsWith('postgres') ? sampleActivity(server) : undefined;
    await app.orchestrator.skipTest(job.job_id);
    for (;;) {
      const row = await app.repo.getJob(job.job_id);
      if (row?.status === 'COMPLETED') {
        const wall = jobMs(row) / 1000;
        const cpu = {
          mock: (cpuSeconds(mock.pid) - cpu0.mock) / wall,
          // Backends that ended during the run are not counted: the pools keep theirs.
          server: (serverPids(server).reduce((s, p) => s + cpuSeconds(p), 0) - cpu0.server) / wall,
          executors: (children.reduce((s, c) => s + cpuSeconds(c.pid as number), 0) - cpu0.executors) / wall,
        };
        const ends = (await app.repo.listUnits(job.job_id, { kind: 'item' }, { limit: units + 1, offset: 0 })).map((u) => Number(u.finished_at)).sort((a, b) => a - b);
        const outcomes = (ends.length - 1) / (((ends.at(-1) as number) - (ends[0] as number)) / 1000);
        if (sampler) process.stderr.write(`bench/postgres: ${executors} executors, server activity: ${await sampler.stop()}\n`);
        return { rate: units / wall, outcomes, cpu };
      }
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

const fmt = (r: Run) => `${r.rate.toFixed(1)}/s (outcomes ${r.outcomes.toFixed(1)}/s; cpu mock ${r.cpu.mock.toFixed(2)} server ${r.cpu.server.toFixed(2)} executors ${r.cpu.executors.toFixed(2)})`;

export async function run(): Promise<BenchRow[]> {
  const server = await startPostgres();
  const mock = await startMock(DELAY_MS);
  const home = mkdtempSync(join(tmpdir(), 'abp-bench-pg-'));
  const baseCli = BASE ? join(BASE, 'dist', 'cli', 'main.js') : undefined;
  try {
    const sqlite: Run[] = [];
    const onPg = new Map<number, Run[]>(COUNTS.map((n) => [n, []]));
    const onBase = new Map<number, Run[]>(COUNTS.map((n) => [n, []]));
    for (let i = 0; i < RUNS; i++) {
      // Interleaved, so drift on a shared machine touches every configuration alike.
      if (SQLITE) {
        sqlite.push(await dispatch(server, join(home, `sqlite-${i}.db`), home, 1, mock));
        process.stderr.write(`bench/postgres: run ${i + 1}: sqlite 1 executor ${fmt(sqlite.at(-1) as Run)}\n`);
      }
      for (const n of COUNTS) {
        const r = await dispatch(server, await freshPgDatabase(server), home, n, mock);
        onPg.get(n)?.push(r);
        process.stderr.write(`bench/postgres: run ${i + 1}: ${n} executors ${fmt(r)}\n`);
        if (baseCli) {
          const b = await dispatch(server, await freshPgDatabase(server), home, n, mock, baseCli, BASE_POLL_MS);
          onBase.get(n)?.push(b);
          process.stderr.write(`bench/postgres: run ${i + 1}: ${n} executors, base ${fmt(b)}\n`);
        }
      }
    }
    const rates = (runs: Run[]) => runs.map((r) => r.rate);
    const one = rates(onPg.get(1) ?? []);
    const ideal = SLOTS / (DELAY_MS / 1000);
    const anchor = `PostgreSQL, 1 executor: ${spread(one, 0, ' units/s')}; SQLite, 1 executor: ${spread(rates(sqlite), 0, ' units/s')}; ideal per executor ${ideal} units/s`;
    // Each row keeps its own runs and the anchor's (1 executor), not every row's.
    const raw = (runs: Map<number, Run[]>, n: number) => ({ 1: runs.get(1), [n]: runs.get(n) });
    return COUNTS.filter((n) => n > 1).map((n) => {
      const mine = rates(onPg.get(n) ?? []);
      const cpuMock = Math.max(...(onPg.get(n) ?? []).map((r) => r.cpu.mock));
      return {
        what: `scale-out on PostgreSQL, ${n} executors`,
        measure: `${(UNITS_PER_EXECUTOR * n).toLocaleString('en')} http-llm units (${UNITS_PER_EXECUTOR} per executor; mock answers in ${DELAY_MS} ms, its own process, ≤ ${(cpuMock * 100).toFixed(0)}% of a core), ${SLOTS} slots per executor; start → COMPLETED`,
        figure: spread(mine, 0, ' units/s'),
        anchor,
        ratio: median(mine) / median(one),
        ratio_note: `${n} executors ÷ 1 (${spread(mine.map((r, k) => r / (one[k] as number)), 2, '×')})`,
        ...(TARGETS[n] ? { target: TARGETS[n] } : {}),
        raw: { units_per_executor: UNITS_PER_EXECUTOR, executors: n, postgres: raw(onPg, n), sqlite, ...(baseCli ? { base: raw(onBase, n) } : {}) },
      };
    });
  } finally {
    mock.stop();
    server.stop();
    rmSync(home, { recursive: true, force: true });
  }
}
