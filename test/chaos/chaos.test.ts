import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { createTestDatabase, dropTestDatabase, TEST_BACKEND } from '../helpers/postgres.js';
import { runChaos, summary, type ChaosOptions, type ChaosReport } from './harness.js';

/*
 * The short chaos run, in the suite: a few hundred units with every fault kind
 * while executors are killed, stopped and restarted and the database is locked.
 * `npm run chaos` runs the long one (see docs/chaos.md).
 */
let home: string | undefined;
let pgDb: string | undefined;
afterEach(async () => {
  if (pgDb) await dropTestDatabase(pgDb).catch(() => undefined);
  if (home) rmSync(home, { recursive: true, force: true });
  home = pgDb = undefined;
});

type RunOptions = ChaosOptions;

/**
 * One short run on this backend's fresh database: 40 s of faults, two executors
 * killed, stopped and restarted every 1.5 s, leases of 3 s, at most 2 minutes to
 * settle, and a random seed (printed, so a failure can be replayed).
 */
async function shortRun(options: Omit<RunOptions, 'home' | 'db' | 'durationMs' | 'jobs' | 'maxExecutors' | 'actionEveryMs' | 'leaseSeconds' | 'settleMs' | 'seed' | 'log'>): Promise<{ report: ChaosReport; text: string }> {
  home = mkdtempSync(join(tmpdir(), 'abp-chaos-'));
  pgDb = TEST_BACKEND === 'postgres' ? await createTestDatabase() : undefined;
  const report = await runChaos({
    home,
    db: pgDb ?? join(home, 'abp.db'),
    durationMs: 40_000,
    jobs: 'once',
    maxExecutors: 2,
    actionEveryMs: 1500,
    leaseSeconds: 3,
    settleMs: 120_000,
    seed: Math.floor(Math.random() * 2 ** 31),
    log: () => undefined,
    ...options,
  });
  const text = summary(report);
  process.stderr.write(`${text}\n`);
  return { report, text };
}

it('chaos: faulty workers, killed executors and a locked database lose nothing and run nothing twice', { timeout: 300_000 }, async () => {
  const { report, text } = await shortRun({ shellUnits: 160, httpUnits: 80 });
  expect(report.units, text).toBe(240);
  expect(report.violations, text).toEqual([]);
  expect(report, text).toMatchObject({ duplicates: 0, lost: 0, wrong_outcomes: 0, counter_mismatches: 0, leftover_leases: 0, executor_rows: 0, orphans: 0, bad_exits: 0 });
  // The run really was chaotic: executors died mid-run, and faults of every kind fired.
  expect(report.executor_kills + report.executor_terms, text).toBeGreaterThan(0);
  expect(report.db_locks, text).toBeGreaterThan(0);
  for (const kind of ['shell fail', 'shell crash', 'shell garbage', 'http r429', 'http e500']) expect(report.faults[kind] ?? 0, `${kind}\n${text}`).toBeGreaterThan(0);
  expect(report.succeeded + report.failed).toBe(report.units);
  if (TEST_BACKEND === 'sqlite') expect(report.integrity).toBe('ok');
});

it('chaos, poisoned workers: garbage from the workers fails or is coerced, never crashes an executor, and loses or repeats nothing', { timeout: 300_000 }, async () => {
  const { report, text } = await shortRun({
    kinds: ['shell', 'agent', 'claude'],
    shellUnits: 80,
    httpUnits: 0,
    agentUnits: 100,
    claudeUnits: 60,
    // Small sizes, each still past its limit: 20,000 events (10,000 are kept), a 17 MB line (16 MiB
    // are kept), 40 MB without a newline against a 24 MiB max_output_bytes.
    poison: { floodEvents: 20_000, longLineBytes: 17_000_000, hugeLineBytes: 40_000_000, maxOutputBytes: 24 * 1024 * 1024, timeoutSeconds: 5, escapeSeconds: 7, everyPoisonFirst: true },
  });
  expect(report.units, text).toBe(240);
  expect(report.violations, text).toEqual([]);
  expect(report, text).toMatchObject({ duplicates: 0, lost: 0, stuck: 0, wrong_outcomes: 0, executor_crashes: 0, counter_mismatches: 0, leftover_leases: 0, executor_rows: 0, orphans: 0, bad_exits: 0 });
  expect(report.succeeded + report.failed).toBe(report.units);
  // Every poison fired, and its coerced values were checked.
  for (const kind of ['shell nul', 'shell badutf8', 'shell trickle', 'agent badnums', 'agent nul', 'agent badutf8', 'agent flood', 'agent longline', 'agent hugeline', 'agent deep', 'agent deepanswer', 'agent proto', 'agent trickle', 'agent escape', 'claude badcost', 'claude nul', 'claude flood', 'claude proto', 'claude deepanswer']) {
    expect(report.faults[kind] ?? 0, `${kind}\n${text}`).toBeGreaterThan(0);
  }
  expect(report.poisoned, text).toBeGreaterThan(30);
  expect(report.poison_checks, text).toBeGreaterThan(report.poisoned);
  expect(report.executor_kills + report.executor_terms, text).toBeGreaterThan(0);
  if (TEST_BACKEND === 'sqlite') expect(report.integrity).toBe('ok');
});
