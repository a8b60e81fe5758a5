import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, ROOT, Sandbox, sleep } from '../helpers/cli.js';
import { TEST_BACKEND, testPostgresUrl } from '../helpers/postgres.js';

/*
 * Many executors on one PostgreSQL database, as on many hosts: each executor is
 * its own process in its own process group (detached), sharing nothing but the
 * database URL. Runs in the postgres project only.
 */
const FUNCTIONS = join(ROOT, 'test', 'fixtures', 'functions');

let sb: Sandbox | undefined;
const executors: ResultPromise[] = [];

afterEach(async () => {
  for (const e of executors.splice(0)) killGroup(e, 'SIGKILL');
  await sb?.cleanup();
  sb = undefined;
});

function killGroup(e: ResultPromise, signal: NodeJS.Signals): void {
  try {
    if (e.pid !== undefined) process.kill(-e.pid, signal);
  } catch {
    // gone already
  }
}

/** An `abp executor` in its own process group, as if on its own host. */
function startExecutor(s: Sandbox, env: Record<string, string> = {}): ResultPromise {
  const e = execa(process.execPath, [CLI, 'executor'], { env: { ...s.env, ...env }, cwd: ROOT, reject: false, detached: true, all: true });
  executors.push(e);
  return e;
}

async function createFunctionJob(s: Sandbox, units: number, maxWorkers: number, ms: number): Promise<number> {
  const items = s.path('items.csv');
  writeFileSync(items, ['id,ms', ...Array.from({ length: units }, (_, i) => `u${i + 1},${ms}`)].join('\n') + '\n');
  const spec = s.path('spec.json');
  writeFileSync(
    spec,
    JSON.stringify({
      name: 'cluster job',
      user_intent: 'Record a span per unit.',
      enumerator_type: 'csv',
      enumerator_config: { file_path: items, id_column: 'id' },
      worker_type: 'function',
      worker_config: { module: join(FUNCTIONS, 'record-span.mjs'), max_threads: 8 },
      max_workers: maxWorkers,
      max_retries: 5,
    }),
  );
  return (await s.ok(['create', '--spec', spec])).job_id as number;
}

/** The most spans (start..end) open at one instant. */
function peakOverlap(spans: { start: number; end: number }[]): number {
  const edges = spans.flatMap((s) => [
    { at: s.start, d: 1 },
    { at: s.end, d: -1 },
  ]);
  // An end at the same millisecond as a start closes first: touching is not overlapping.
  edges.sort((a, b) => a.at - b.at || a.d - b.d);
  let open = 0;
  let peak = 0;
  for (const e of edges) {
    open += e.d;
    peak = Math.max(peak, open);
  }
  return peak;
}

/** Samples a job's running counter and COUNT(*) of its RUNNING units until stopped; returns the peaks. */
function sampleRunning(url: string, jobId: number) {
  const client = new pg.Client({ connectionString: url });
  let stop = false;
  const peaks = { counter: 0, rows: 0, samples: 0 };
  const done = (async () => {
    await client.connect();
    try {
      while (!stop) {
        const { rows } = await client.query<{ counter: number; n: string }>(
          "select j.running counter, (select count(*) from work_units u where u.job_id = j.id and u.status = 'RUNNING') n from jobs j where j.id = $1",
          [jobId],
        );
        const row = rows[0];
        if (row) {
          peaks.counter = Math.max(peaks.counter, Number(row.counter));
          peaks.rows = Math.max(peaks.rows, Number(row.n));
          peaks.samples++;
        }
        await sleep(5);
      }
    } finally {
      await client.end();
    }
  })();
  return {
    peaks,
    async stop() {
      stop = true;
      await done;
      return peaks;
    },
  };
}

describe.runIf(TEST_BACKEND === 'postgres')('a cluster of executors on one PostgreSQL', () => {
  it('4 executors, 2 of them SIGKILLed mid-run: 5,000 units each succeed exactly once, and the per-job cap holds', { timeout: 600_000 }, async () => {
    const UNITS = 5000;
    const CAP = 24;
    const s = (sb = new Sandbox({ ABP_SKIP_TEST: '1', ABP_LEASE_SECONDS: '2', ABP_MAX_WORKERS: '10', ABP_EXECUTOR_IDLE_SECONDS: '5', ABP_POLL_MS: '100' }));
    const id = await createFunctionJob(s, UNITS, CAP, 20);
    // No idle exit: on a loaded host the first to register could idle out before the job starts
    // (ABP_EXECUTOR_IDLE_SECONDS is 5 here). The survivors are stopped with SIGTERM at the end.
    const fleet = [1, 2, 3, 4].map(() => startExecutor(s, { ABP_EXECUTOR_IDLE_SECONDS: '0' }));
    // Every executor has registered before the job starts, so all four compete for it.
    const deadline = Date.now() + 60_000;
    while ((await s.query('select id from executors')).length < 4) {
      if (Date.now() > deadline) throw new Error('executors did not register');
      await sleep(100);
    }
    const sampler = sampleRunning(s.env.ABP_DB as string, id);
    const started = Date.now();
    await s.ok(['start', String(id)]);

    // Kill two executors, whole process groups, once a quarter of the work is done.
    await s.waitFor(id, (st) => st.counts.succeeded >= UNITS / 4, 300_000);
    const victims = fleet.slice(0, 2);
    // The victims' units: RUNNING under a lease whose owner is `host:PID:…`.
    const heldBy = async (pids: number[]) =>
      s.query<{ id: number }>(
        `select id from work_units where job_id = ? and status = 'RUNNING' and (${pids.map(() => "lease_owner like '%:' || ? || ':%'").join(' or ')})`,
        id,
        ...pids.map(String),
      );
    // Kill while both hold units, so that some are caught in flight (a freed slot may be empty for a moment).
    const holdDeadline = Date.now() + 60_000;
    for (;;) {
      const held = await Promise.all(victims.map((v) => heldBy([v.pid as number])));
      if (held.every((h) => h.length > 0)) break;
      if (Date.now() > holdDeadline) throw new Error('the victims never both held units');
      await sleep(5);
    }
    const killedAt = Date.now();
    for (const v of victims) killGroup(v, 'SIGKILL');
    const killed = await Promise.all(victims);
    // What the dead executors held stays RUNNING under their leases until those expire (2 s).
    const orphaned = (await heldBy(victims.map((v) => v.pid as number))).map((r) => Number(r.id));
    // An executor that ended before the kill says why in its exit code and log.
    expect(killed.map((k) => k.signal), killed.map((k) => `exit ${k.exitCode}: ${String(k.stderr).slice(-1500)}`).join('\n')).toEqual(['SIGKILL', 'SIGKILL']);

    const done = await s.waitFor(id, (st) => st.status === 'COMPLETED' || st.status === 'FAILED', 400_000);
    const elapsed = Date.now() - started;
    const peaks = await sampler.stop();
    for (const e of fleet.slice(2)) e.kill('SIGTERM');
    const survivors = await Promise.all(fleet.slice(2));

    expect(done.status).toBe('COMPLETED');
    expect(done.counts).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: UNITS, failed: 0, cancelled: 0 });
    expect(await s.counts(id)).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: UNITS, failed: 0, cancelled: 0 });

    // Exactly once: one SUCCEEDED outcome was accepted per unit, whatever ran twice.
    const accepted = await s.query<{ unit_id: number; n: number }>(
      "select (data::json->>'unit_id')::int unit_id, count(*) n from events where job_id = ? and type = 'unit' and data::json->>'status' = 'SUCCEEDED' group by 1",
      id,
    );
    expect(accepted).toHaveLength(UNITS);
    expect(accepted.every((r) => r.n === 1)).toBe(true);
    const results = await s.results(id);
    expect(new Set(results.map((r) => r.item_id)).size).toBe(UNITS);
    // Units caught in flight by the kills were taken over after their leases expired.
    const retried = results.filter((r) => r.attempt > 1).length;
    expect(orphaned.length).toBeGreaterThan(0);
    const attempts = new Map(results.map((r) => [Number(r.unit_id), r.attempt]));
    for (const unit of orphaned) expect(attempts.get(unit), `unit ${unit}`).toBeGreaterThan(1);

    // The cap, three ways: the job's running counter, COUNT(*) of RUNNING rows, and
    // the spans the unit function itself recorded (across all four processes).
    const spans = readFileSync(s.path('work', `job-${id}`, 'spans.log'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [unit, attempt, pid, start, end] = l.split(' ').map(Number) as [number, number, number, number, number];
        return { unit, attempt, pid, start, end };
      });
    const spanPeak = peakOverlap(spans);
    const pids = new Set(spans.map((x) => x.pid));
    expect(pids.size).toBe(4);
    expect(peaks.samples).toBeGreaterThan(10);
    expect(peaks.counter).toBeLessThanOrEqual(CAP);
    expect(peaks.rows).toBeLessThanOrEqual(CAP);
    expect(spanPeak).toBeLessThanOrEqual(CAP);
    expect(peaks.counter).toBeGreaterThan(CAP / 2);
    expect(survivors.every((e) => e.exitCode === 0)).toBe(true);
    // The figures for the record (the issue asks for the peak).
    console.log(
      `cluster: ${UNITS} units, cap ${CAP}, 4 executors (2 SIGKILLed at ${killedAt - started} ms): ${elapsed} ms; ` +
        `peak running counter ${peaks.counter}, peak RUNNING rows ${peaks.rows} (${peaks.samples} samples), ` +
        `peak overlapping spans ${spanPeak}; ${spans.length} attempts ran, ${retried} units needed a second attempt`,
    );
  });

  it("an executor whose database connections are cut keeps its units' outcomes and writes them when it reconnects", { timeout: 300_000 }, async () => {
    const UNITS = 400;
    const s = (sb = new Sandbox({ ABP_SKIP_TEST: '1', ABP_LEASE_SECONDS: '10', ABP_MAX_WORKERS: '8', ABP_EXECUTOR_IDLE_SECONDS: '3', ABP_POLL_MS: '50' }));
    const id = await createFunctionJob(s, UNITS, 8, 30);
    // Registered before the job starts, so `start` launches no executor of its own; it does not idle
    // out however long `start` takes, and is stopped once the job is done.
    const executor = startExecutor(s, { ABP_EXECUTOR_IDLE_SECONDS: '0' });
    while ((await s.query('select id from executors where pid = ?', executor.pid)).length === 0) await sleep(50);
    await s.ok(['start', String(id)]);
    await s.waitFor(id, (st) => st.counts.succeeded >= 50, 120_000);
    // Cut every connection to the database, three times, while units run.
    const name = new URL(s.env.ABP_DB as string).pathname.slice(1);
    const admin = new pg.Client({ connectionString: testPostgresUrl() });
    await admin.connect();
    let cut = 0;
    try {
      for (let i = 0; i < 3; i++) {
        const { rowCount } = await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [name]);
        cut += rowCount ?? 0;
        await sleep(400);
      }
    } finally {
      await admin.end();
    }
    expect(cut).toBeGreaterThan(0);
    const done = await s.waitFor(id, (st) => st.status === 'COMPLETED' || st.status === 'FAILED', 200_000);
    expect(done.status).toBe('COMPLETED');
    expect(await s.counts(id)).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: UNITS, failed: 0, cancelled: 0 });
    // No unit was given up on and run again: every outcome waited out the cuts and landed.
    const results = await s.results(id);
    expect(results.filter((r) => r.attempt !== 1)).toEqual([]);
    executor.kill('SIGTERM');
    const run = await executor;
    expect(run.exitCode).toBe(0);
    expect(String(run.all)).toMatch(/connection|terminat/i);
  });
});
