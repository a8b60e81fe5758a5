import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { enumerators } from '../../enumerators/index.js';
import { resolveConfig } from '../../src/config.js';
import { AbpError } from '../../src/domain/errors.js';
import { assertJobMove, canMoveJob, JOB_MOVES, JOB_STATES, UNIT_MOVES, type JobMove, type JobState, type UnitMove, type UnitState } from '../../src/domain/states.js';
import type { Launcher } from '../../src/executor/launcher.js';
import { Orchestrator } from '../../src/orchestrator/orchestrator.js';
import { PromptSynthesizer } from '../../src/executor/prompt-synthesizer.js';
import type { ClaimedUnit, Repository } from '../../src/store/repository.js';
import { workers } from '../../workers/index.js';
import { TEST_BACKEND } from '../helpers/postgres.js';
import { createTestStore, type TestStore } from '../helpers/store.js';
import { fuzz } from './support.js';

/**
 * Random sequences of commands, legal and not, against a model of the job: first
 * against the move table alone, then against the real Orchestrator and Repository
 * on a real database, with a hand-driven "executor" claiming units and writing
 * outcomes. After every command the job's state, counters and units must be what
 * the model says, and every refusal must be an AbpError naming the job, its state
 * and the move.
 */

/** The lifecycle as README.md draws it, written out independently of JOB_MOVES. */
const DIAGRAM: Record<JobState, Partial<Record<JobMove, JobState>>> = {
  CREATED: { start_test: 'TESTING', skip_test: 'RUNNING', cancel: 'CANCELLED' },
  TESTING: { approve: 'RUNNING', reject: 'CREATED', cancel: 'CANCELLED' },
  RUNNING: { pause: 'PAUSED', complete: 'COMPLETED', fail: 'FAILED', cancel: 'CANCELLED' },
  PAUSED: { resume: 'RUNNING', cancel: 'CANCELLED' },
  FAILED: { retry: 'RUNNING', redo: 'RUNNING' },
  COMPLETED: { redo: 'RUNNING' },
  CANCELLED: {},
};

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}

describe('the move table under random command sequences', () => {
  const moves = Object.keys(JOB_MOVES) as JobMove[];

  it('a job only ever moves along the drawn lifecycle, and every refusal names the job, state and move', () => {
    fc.assert(
      fc.property(fc.nat(10_000), fc.array(fc.constantFrom(...moves), { maxLength: 60 }), (jobId, sequence) => {
        let state: JobState = 'CREATED';
        for (const move of sequence) {
          const drawn = DIAGRAM[state][move];
          expect(canMoveJob(state, move)).toBe(drawn !== undefined);
          const err = thrown(() => (state = assertJobMove(jobId, state, move)));
          if (drawn === undefined) {
            expect(err).toBeInstanceOf(AbpError);
            expect((err as AbpError).code).toBe('illegal_transition');
            expect((err as AbpError).message).toContain(`job ${jobId} is ${state};`);
            expect((err as AbpError).message).toContain(`cannot ${move.replace('_', ' ')}`);
            expect((err as AbpError).details).toEqual({ job_id: jobId, status: state, move });
          } else {
            expect(err).toBeUndefined();
            expect(state).toBe(drawn);
          }
          expect(JOB_STATES).toContain(state);
        }
      }),
      fuzz(300),
    );
  });

  it('a unit only ever moves along its designed life', () => {
    // Claimed, then an outcome or given back; failures retried; a rejected test unit reset;
    // cancelled for good unless a person runs that one unit again (redo, as from any end).
    const life: Record<UnitState, Partial<Record<UnitMove, UnitState>>> = {
      PENDING: { claim: 'RUNNING', cancel: 'CANCELLED' },
      RUNNING: { succeed: 'SUCCEEDED', fail: 'FAILED', release: 'PENDING', cancel: 'CANCELLED', submit: 'SUBMITTED' },
      // In a provider batch: its result is harvested, or it runs again (expired, never posted), or its cancelled job takes it.
      SUBMITTED: { harvest_succeed: 'SUCCEEDED', harvest_fail: 'FAILED', harvest_release: 'PENDING', harvest_cancel: 'CANCELLED' },
      SUCCEEDED: { reset: 'PENDING', redo: 'PENDING' },
      FAILED: { retry: 'PENDING', reset: 'PENDING', redo: 'PENDING' },
      CANCELLED: { redo: 'PENDING' },
    };
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...(Object.keys(UNIT_MOVES) as UnitMove[])), { maxLength: 60 }), (sequence) => {
        let state: UnitState = 'PENDING';
        for (const move of sequence) {
          const rule = UNIT_MOVES[move];
          const allowed = (rule.from as readonly UnitState[]).includes(state);
          expect(allowed ? rule.to : undefined).toBe(life[state][move]);
          if (allowed) state = rule.to;
        }
      }),
      fuzz(300),
    );
  });
});

// ---- the real thing ------------------------------------------------------------

const OWNER = 'fuzz-executor';
const LEASE_MS = 60_000;
const DONE: readonly UnitState[] = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

interface Model {
  status: JobState;
  /** `unresolved`: the unit's last failure was of that kind (every item refused), which alone fails no job that had a success. */
  units: { status: UnitState; failures: number; attempt: number; unresolved?: boolean }[];
  /** Index into units of the test unit, once one was picked. */
  test: number | null;
  maxWorkers: number;
  maxRetries: number;
  /** How many claims the fake executor holds (Real.held has them). */
  held: number;
  /** How many provider batches are open (Real.batches has them). */
  batches: number;
  /** A post_processing_prompt: one synthesis unit joins once the items are done. */
  synthesis: boolean;
  allowPartial: boolean;
  /** Index into units of the synthesis unit, once it was added. */
  synthesisUnit: number | null;
}

interface Real {
  orchestrator: Orchestrator;
  repo: Repository;
  jobId: number;
  /** Unit ids in the order the model lists them (by id; a synthesis unit comes last). */
  unitIds: number[];
  /** Claims this fake executor holds, as the claim returned them. */
  held: ClaimedUnit[];
  /** Provider batches this fake executor opened and has not closed, with the attempts each holds. */
  batches: { id: number; units: ClaimedUnit[] }[];
}

const count = (m: Model, s: UnitState) => m.units.filter((u) => u.status === s).length;

/**
 * What the executor's tick and the outcome path do when a RUNNING job has nothing
 * left: end it, or first add the synthesis unit (every item succeeded, or
 * allow_partial), whose own outcome then decides.
 */
function finishIfDone(m: Model): void {
  if (m.status !== 'RUNNING' || count(m, 'PENDING') > 0 || count(m, 'RUNNING') > 0 || count(m, 'SUBMITTED') > 0) return;
  if (m.synthesis && m.synthesisUnit === null && (count(m, 'FAILED') === 0 || m.allowPartial)) {
    m.units.push({ status: 'PENDING', failures: 0, attempt: 0 });
    m.synthesisUnit = m.units.length - 1;
  } else if (m.synthesisUnit !== null) {
    m.status = m.units[m.synthesisUnit]!.status === 'SUCCEEDED' ? 'COMPLETED' : 'FAILED';
  } else {
    const hard = m.units.filter((u) => u.status === 'FAILED' && !u.unresolved).length;
    const onlyUnresolved = !m.synthesis && hard === 0 && count(m, 'SUCCEEDED') > 0;
    m.status = count(m, 'FAILED') > 0 && !onlyUnresolved ? 'FAILED' : 'COMPLETED';
  }
}

/** Compares the database with the model: the job's state, its counters (against the model and a real COUNT), every unit. */
async function expectAgrees(m: Model, r: Real, after: string): Promise<void> {
  const job = await r.repo.requireJob(r.jobId);
  const counters = { pending: job.pending, running: job.running, submitted: job.submitted, succeeded: job.succeeded, failed: job.failed, cancelled: job.cancelled };
  const modelled = {
    pending: count(m, 'PENDING'),
    running: count(m, 'RUNNING'),
    submitted: count(m, 'SUBMITTED'),
    succeeded: count(m, 'SUCCEEDED'),
    failed: count(m, 'FAILED'),
    cancelled: count(m, 'CANCELLED'),
  };
  expect({ status: job.status, ...counters }, after).toEqual({ status: m.status, ...modelled });
  expect(await r.repo.countUnits(r.jobId), after).toEqual(counters);
  expect(Object.values(counters).reduce((a, b) => a + b, 0), after).toBe(job.total);
  const units = await r.repo.listUnits(r.jobId, {}, { limit: 100, offset: 0 });
  // The synthesis unit is the one the job names, and the only unit added after creation.
  if (units.length > r.unitIds.length && units.length === m.units.length) r.unitIds = units.map((u) => u.id);
  expect(job.synthesis_unit_id, after).toBe(m.synthesisUnit === null ? null : r.unitIds[m.synthesisUnit]);
  expect(
    units.map((u) => ({ id: u.id, status: u.status, failures: u.failures, attempt: u.attempt, unresolved: u.status === 'FAILED' && u.error_kind === 'unresolved' })),
    after,
  ).toEqual(m.units.map((u, k) => ({ id: r.unitIds[k], status: u.status, failures: u.failures, attempt: u.attempt, unresolved: u.status === 'FAILED' && Boolean(u.unresolved) })));
  if (m.status === 'TESTING') expect(job.test_unit_id, after).toBe(r.unitIds[m.test ?? -1]);
}

/** Runs one orchestrator command; a refusal must be the expected AbpError, naming the job, its state and the move. */
async function attempt(r: Real, m: Model, run: () => Promise<unknown>, refusal: { code: string; move: RegExp } | null): Promise<void> {
  let err: unknown;
  try {
    await run();
  } catch (e) {
    err = e;
  }
  const where = `in state ${m.status}`;
  if (refusal === null) {
    if (err !== undefined) throw new Error(`expected the command to pass ${where}, it threw: ${String(err)}`, { cause: err });
    return;
  }
  expect(err, where).toBeInstanceOf(AbpError);
  expect((err as AbpError).code, `${where}: ${(err as AbpError).message}`).toBe(refusal.code);
  expect((err as AbpError).message).toContain(`job ${r.jobId}`);
  if (refusal.code === 'illegal_transition') {
    expect((err as AbpError).message).toContain(` is ${m.status}`);
    expect((err as AbpError).message).toMatch(refusal.move);
  }
}

type Cmd = fc.AsyncCommand<Model, Real>;
const cmd = (name: string, run: (m: Model, r: Real) => Promise<void>, check: (m: Readonly<Model>) => boolean = () => true): Cmd => ({
  check,
  run: async (m, r) => {
    await run(m, r);
    await expectAgrees(m, r, `after ${name}`);
  },
  toString: () => name,
});
const illegal = (move: string) => ({ code: 'illegal_transition', move: new RegExp(`\\b${move}\\b`) });

// ---- the front ends' commands, through the Orchestrator ----------------------------

const start = fc.constant(
  cmd('start', async (m, r) => {
    const ok = ['CREATED', 'TESTING', 'RUNNING'].includes(m.status);
    await attempt(r, m, () => r.orchestrator.startTest(r.jobId), ok ? null : illegal('start'));
    if (m.status === 'CREATED') {
      m.status = 'TESTING';
      m.test = 0;
    } else retestIfFailed(m);
  }),
);

/** Starting a TESTING job again (with or without --skip-test) re-runs a failed test unit, with a fresh attempt. */
function retestIfFailed(m: Model): void {
  if (m.status !== 'TESTING' || m.units[m.test!]!.status !== 'FAILED') return;
  m.units[m.test!]!.status = 'PENDING';
  m.units[m.test!]!.failures = 0;
}

const skipTest = fc.constant(
  cmd('start --skip-test', async (m, r) => {
    const ok = ['CREATED', 'TESTING', 'RUNNING'].includes(m.status);
    await attempt(r, m, () => r.orchestrator.skipTest(r.jobId), ok ? null : illegal('start'));
    if (m.status === 'CREATED') m.status = 'RUNNING';
    else retestIfFailed(m);
  }),
);

/** Approve or reject the test unit: only while TESTING, and only once it has finished. */
const verdict = (move: 'approve' | 'reject') =>
  fc.constant(
    cmd(`start --${move}`, async (m, r) => {
      const test = m.test === null ? undefined : m.units[m.test];
      const refusal = m.status !== 'TESTING' ? illegal(move) : !DONE.includes(test!.status) ? { code: 'conflict', move: /./ } : null;
      await attempt(r, m, () => r.orchestrator[move](r.jobId), refusal);
      if (refusal !== null) return;
      if (move === 'approve') {
        m.status = 'RUNNING';
        // Approved although it failed: the test unit runs again among the others.
        if (test!.status === 'FAILED') {
          test!.status = 'PENDING';
          test!.failures = 0;
        }
      } else {
        m.status = 'CREATED';
        test!.status = 'PENDING';
        test!.failures = 0;
      }
    }),
  );

const pause = fc.constant(
  cmd('pause', async (m, r) => {
    await attempt(r, m, () => r.orchestrator.pause(r.jobId), m.status === 'RUNNING' ? null : illegal('pause'));
    if (m.status === 'RUNNING') m.status = 'PAUSED';
  }),
);

const resume = fc.constant(
  cmd('resume', async (m, r) => {
    await attempt(r, m, () => r.orchestrator.resume(r.jobId), m.status === 'PAUSED' ? null : illegal('resume'));
    if (m.status === 'PAUSED') m.status = 'RUNNING';
  }),
);

const cancel = fc.constant(
  cmd('cancel', async (m, r) => {
    const ok = ['CREATED', 'TESTING', 'RUNNING', 'PAUSED'].includes(m.status);
    await attempt(r, m, () => r.orchestrator.cancel(r.jobId), ok ? null : illegal('cancel'));
    if (!ok) return;
    m.status = 'CANCELLED';
    for (const u of m.units) if (u.status === 'PENDING' || u.status === 'RUNNING') u.status = 'CANCELLED';
  }),
);

const retry = fc.constant(
  cmd('retry', async (m, r) => {
    const ok = ['FAILED', 'RUNNING', 'PAUSED'].includes(m.status);
    await attempt(r, m, () => r.orchestrator.retryFailed(r.jobId), ok ? null : illegal('retry'));
    if (!ok) return;
    if (m.status === 'FAILED') m.status = 'RUNNING';
    for (const u of m.units) {
      if (u.status === 'FAILED') {
        u.status = 'PENDING';
        u.failures = 0;
      }
    }
  }),
);

// ---- the executor's side, straight on the Repository ------------------------------

const claim = fc.integer({ min: 1, max: 4 }).map((want) =>
  cmd(`executor claims ${want}`, async (m, r) => {
    const { units } = await r.repo.claimUnits(r.jobId, OWNER, want, LEASE_MS);
    let room = ['RUNNING', 'TESTING'].includes(m.status) ? Math.min(want, m.maxWorkers - count(m, 'RUNNING')) : 0;
    const expected: number[] = [];
    m.units.forEach((u, k) => {
      if (room > 0 && u.status === 'PENDING' && (m.status === 'RUNNING' || k === m.test)) {
        u.status = 'RUNNING';
        u.attempt++;
        expected.push(r.unitIds[k]!);
        room--;
      }
    });
    // The lowest ids first; RETURNING gives them in no particular order on PostgreSQL.
    expect(units.map((u) => u.id).sort((a, b) => a - b)).toEqual(expected);
    r.held.push(...units);
    m.held = r.held.length;
  }),
);

const report = fc
  .record({ pick: fc.nat(), next: fc.constantFrom('SUCCEEDED', 'FAILED', 'PENDING') as fc.Arbitrary<'SUCCEEDED' | 'FAILED' | 'PENDING'>, spent: fc.boolean(), unresolved: fc.boolean() })
  .map(({ pick, next, spent, unresolved }) =>
    cmd(
      `executor reports ${next}${spent ? ' (spent)' : ''}${next === 'FAILED' && unresolved ? ' (unresolved)' : ''} for claim #${pick}`,
      async (m, r) => {
        const [held] = r.held.splice(pick % r.held.length, 1) as [ClaimedUnit];
        m.held = r.held.length;
        const spends = next === 'FAILED' || (next === 'PENDING' && spent);
        const failure = next === 'FAILED' ? { error: 'fuzz', error_kind: unresolved ? 'unresolved' : 'retryable' } : {};
        const written = await r.repo.recordOutcome(held, OWNER, { next, spent: spends, ...failure });
        const u = m.units[r.unitIds.indexOf(held.id)]!;
        // Fencing: only the attempt that still holds its unit may write.
        const current = u.status === 'RUNNING' && u.attempt === held.attempt;
        expect(written).toBe(current);
        if (!current) return;
        u.status = next;
        u.unresolved = next === 'FAILED' && unresolved;
        if (spends) u.failures++;
        finishIfDone(m);
      },
      (m) => m.held > 0,
    ),
  );

/** An auth or quota failure: the job pauses in the outcome's transaction (domain/job-rules.ts onPausingFailure). */
const reportPausing = fc.nat().map((pick) =>
  cmd(
    `executor reports auth_failed for claim #${pick}`,
    async (m, r) => {
      const [held] = r.held.splice(pick % r.held.length, 1) as [ClaimedUnit];
      m.held = r.held.length;
      const written = await r.repo.recordOutcome(held, OWNER, {
        next: 'PENDING',
        spent: false,
        error: 'not logged in',
        error_kind: 'auth_failed',
        pause_job: { reason: 'auth_failed: not logged in' },
      });
      const u = m.units[r.unitIds.indexOf(held.id)]!;
      const current = u.status === 'RUNNING' && u.attempt === held.attempt;
      expect(written).toBe(current);
      if (!current) return;
      if (m.status === 'TESTING') {
        u.status = 'FAILED';
        u.unresolved = false;
        u.failures++;
      } else {
        u.status = 'PENDING';
        if (m.status === 'RUNNING') m.status = 'PAUSED';
      }
    },
    (m) => m.held > 0,
  ),
);

/** A person stops one unit (then failed, or back to pending): only a RUNNING one. */
const stopUnit = fc.record({ pick: fc.nat(), then: fc.constantFrom('failed', 'pending') as fc.Arbitrary<'failed' | 'pending'> }).map(({ pick, then }) =>
  cmd(`stop unit #${pick} then ${then}`, async (m, r) => {
    const k = pick % m.units.length;
    const u = m.units[k]!;
    let err: unknown;
    await r.orchestrator.stopUnit(r.unitIds[k]!, then).catch((e: unknown) => (err = e));
    if (u.status !== 'RUNNING') {
      expect(err).toBeInstanceOf(AbpError);
      expect((err as AbpError).code).toBe('illegal_transition');
      expect((err as AbpError).message).toContain(`unit ${r.unitIds[k]} of job ${r.jobId} is ${u.status}`);
      return;
    }
    expect(err).toBeUndefined();
    u.status = then === 'failed' ? 'FAILED' : 'PENDING';
    u.unresolved = false;
    finishIfDone(m);
  }),
);

/** A person runs one finished unit again (retry_unit): the refusals, the synthesis dropped, a finished job running again. */
const retryUnit = fc.nat().map((pick) =>
  cmd(`retry unit #${pick}`, async (m, r) => {
    const k = pick % m.units.length;
    const u = m.units[k]!;
    const isSynthesis = k === m.synthesisUnit;
    const synthesisLive = m.synthesisUnit !== null && !isSynthesis && !DONE.includes(m.units[m.synthesisUnit]!.status);
    const refused =
      u.status === 'PENDING' ||
      u.status === 'RUNNING' ||
      u.status === 'SUBMITTED' ||
      m.status === 'CANCELLED' ||
      m.status === 'CREATED' ||
      (m.status === 'TESTING' && k !== m.test) ||
      synthesisLive;
    let err: unknown;
    await r.orchestrator.retryUnit(r.unitIds[k]!).catch((e: unknown) => (err = e));
    if (refused) {
      expect(err).toBeInstanceOf(AbpError);
      expect((err as AbpError).code).toBe('illegal_transition');
      expect((err as AbpError).message).toContain(`unit ${r.unitIds[k]} of job ${r.jobId}`);
      return;
    }
    expect(err).toBeUndefined();
    if (m.synthesisUnit !== null && !isSynthesis) {
      // The old synthesis would gather the old output: it goes, and a fresh one comes when the units are done.
      m.units.splice(m.synthesisUnit, 1);
      r.unitIds.splice(m.synthesisUnit, 1);
      m.synthesisUnit = null;
    }
    u.status = 'PENDING';
    u.failures = 0;
    if (m.status === 'COMPLETED' || m.status === 'FAILED') m.status = 'RUNNING';
  }),
);

/** The batch runner: every claim held goes into one provider batch (only the attempts still holding their unit move). */
const submit = fc.constant(
  cmd(
    'executor submits its claims to a provider batch',
    async (m, r) => {
      const held = r.held.splice(0, r.held.length);
      m.held = 0;
      const { batchId, moved } = await r.repo.batches.open(r.jobId, 'fuzz', `fuzz-${Date.now()}`, OWNER, LEASE_MS, held.map((h) => ({ id: h.id, attempt: h.attempt, prompt: 'p', cache_key: null })));
      const expected: number[] = [];
      for (const h of held) {
        const u = m.units[r.unitIds.indexOf(h.id)]!;
        if (u.status !== 'RUNNING' || u.attempt !== h.attempt) continue;
        u.status = 'SUBMITTED';
        expected.push(h.id);
      }
      expect([...moved].sort((a, b) => a - b)).toEqual(expected.sort((a, b) => a - b));
      const kept = held.filter((h) => moved.includes(h.id));
      if (kept.length > 0) r.batches.push({ id: batchId, units: kept });
      else await r.repo.batches.close(batchId, { error: 'empty' });
      m.batches = r.batches.length;
    },
    (m) => m.held > 0,
  ),
);

/** A batch ends: each request's result (succeeded, errored, or never run) is harvested, then what is left goes back. */
const harvest = fc.record({ pick: fc.nat(), results: fc.array(fc.constantFrom('SUCCEEDED', 'FAILED', 'unfinished', 'missing') as fc.Arbitrary<'SUCCEEDED' | 'FAILED' | 'unfinished' | 'missing'>, { minLength: 4, maxLength: 4 }) }).map(({ pick, results }) =>
  cmd(
    `a provider batch ends with ${results.join(', ')}`,
    async (m, r) => {
      const [batch] = r.batches.splice(pick % r.batches.length, 1) as [{ id: number; units: ClaimedUnit[] }];
      m.batches = r.batches.length;
      const entries = batch.units.flatMap((unit, k) => {
        const fate = results[k % results.length]!;
        if (fate === 'missing') return [];
        const write =
          fate === 'unfinished'
            ? ({ next: m.status === 'CANCELLED' ? 'CANCELLED' : 'PENDING', spent: false } as const)
            : ({ next: fate, spent: fate === 'FAILED', ...(fate === 'FAILED' ? { error: 'fuzz', error_kind: 'permanent' } : {}) } as const);
        return [{ unit, owner: { batch: batch.id }, write }];
      });
      const written = await r.repo.recordOutcomes(entries);
      entries.forEach((e, k) => {
        const u = m.units[r.unitIds.indexOf(e.unit.id)]!;
        // Only a unit the batch still holds at that attempt takes its result.
        expect(written[k]).toBe(u.status === 'SUBMITTED' && u.attempt === e.unit.attempt);
        if (!written[k]) return;
        u.status = e.write.next;
        u.unresolved = false;
        if (e.write.spent) u.failures++;
      });
      finishIfDone(m);
      await r.repo.batches.close(batch.id, {});
      for (const unit of batch.units) {
        const u = m.units[r.unitIds.indexOf(unit.id)]!;
        if (u.status === 'SUBMITTED') u.status = m.status === 'CANCELLED' ? 'CANCELLED' : 'PENDING';
      }
      finishIfDone(m);
    },
    (m) => m.batches > 0,
  ),
);

const expire = fc.constant(
  cmd('leases expire', async (m, r) => {
    const reclaimed = await r.repo.reclaimExpired(Date.now() + 10 * LEASE_MS);
    const mine = reclaimed.filter((u) => u.job_id === r.jobId).map((u) => u.id);
    const expected: number[] = [];
    m.units.forEach((u, k) => {
      if (u.status !== 'RUNNING') return;
      expected.push(r.unitIds[k]!);
      u.failures++;
      u.status = u.failures > m.maxRetries ? 'FAILED' : 'PENDING';
      u.unresolved = false;
    });
    expect(mine.sort((a, b) => a - b)).toEqual(expected);
    if (expected.length > 0) finishIfDone(m);
  }),
);

const tick = fc.constant(
  cmd('executor tick', async (m, r) => {
    await r.repo.finishJobIfDone(r.jobId);
    finishIfDone(m);
  }),
);

/**
 * How often each command comes up. The ones that move a job forward (approve,
 * claims, outcomes) come up most and cancel, which ends a run, least: runs then
 * reach RUNNING, PAUSED, FAILED and COMPLETED, not only CREATED and CANCELLED.
 */
const command = fc.oneof(
  { weight: 2, arbitrary: start },
  { weight: 2, arbitrary: skipTest },
  { weight: 3, arbitrary: verdict('approve') },
  { weight: 2, arbitrary: verdict('reject') },
  { weight: 2, arbitrary: pause },
  { weight: 2, arbitrary: resume },
  { weight: 1, arbitrary: cancel },
  { weight: 2, arbitrary: retry },
  { weight: 5, arbitrary: claim },
  { weight: 6, arbitrary: report },
  { weight: 1, arbitrary: reportPausing },
  { weight: 1, arbitrary: stopUnit },
  { weight: 2, arbitrary: retryUnit },
  { weight: 1, arbitrary: expire },
  { weight: 2, arbitrary: tick },
  { weight: 2, arbitrary: submit },
  { weight: 2, arbitrary: harvest },
);

describe(`Orchestrator and Repository (${TEST_BACKEND}) under random command sequences`, () => {
  let dir: string;
  /** PostgreSQL: one database, a fresh job per run; SQLite: a fresh file per run. */
  let shared: TestStore | undefined;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'abp-fuzz-states-'));
    for (let n = 1; n <= 4; n++) writeFileSync(join(dir, `items-${n}.jsonl`), Array.from({ length: n }, (_, k) => JSON.stringify({ n: k })).join('\n'));
    if (TEST_BACKEND === 'postgres') shared = await createTestStore();
  });
  afterAll(async () => {
    await shared?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const shape = fc.record({
    units: fc.integer({ min: 1, max: 4 }),
    maxWorkers: fc.integer({ min: 1, max: 3 }),
    maxRetries: fc.integer({ min: 0, max: 2 }),
    synthesis: fc.boolean(),
    allowPartial: fc.boolean(),
  });

  it('state, counters and units follow the model; illegal moves are refused by name', async () => {
    await fc.assert(
      fc.asyncProperty(shape, fc.commands([command], { maxCommands: 40, size: 'max' }), async (s, cmds) => {
        const store = shared ?? (await createTestStore());
        try {
          const orchestrator = new Orchestrator({
            repo: store.repo,
            config: resolveConfig({ ABP_HOME: dir, ABP_DB: store.url }),
            enumerators,
            workers,
            synthesizer: new PromptSynthesizer(),
            // No executor is launched: the commands above play its part.
            launcher: { ensureExecutor: async () => ({ started: false }) } as unknown as Launcher,
            jobTypes: [],
          });
          const created = await orchestrator.createJob({
            name: 'fuzz',
            user_intent: 'count',
            enumerator_type: 'json',
            enumerator_config: { file_path: join(dir, `items-${s.units}.jsonl`) },
            worker_type: 'shell',
            worker_config: { command: 'true' },
            max_workers: s.maxWorkers,
            max_retries: s.maxRetries,
            ...(s.synthesis ? { post_processing_prompt: 'combine them', allow_partial: s.allowPartial } : {}),
          });
          const jobId = created.job_id;
          const unitIds = (await store.repo.listUnits(jobId, {}, { limit: 100, offset: 0 })).map((u) => u.id);
          const model: Model = {
            status: 'CREATED',
            units: unitIds.map(() => ({ status: 'PENDING', failures: 0, attempt: 0 })),
            test: null,
            maxWorkers: s.maxWorkers,
            maxRetries: s.maxRetries,
            held: 0,
            batches: 0,
            synthesis: s.synthesis,
            allowPartial: s.allowPartial,
            synthesisUnit: null,
          };
          const real: Real = { orchestrator, repo: store.repo, jobId, unitIds, held: [], batches: [] };
          await expectAgrees(model, real, 'after create');
          await fc.asyncModelRun(() => ({ model, real }), cmds);
        } finally {
          if (!shared) await store.cleanup();
        }
      }),
      fuzz(TEST_BACKEND === 'postgres' ? 15 : 20),
    );
  });
});
