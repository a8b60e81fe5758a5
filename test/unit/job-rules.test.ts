import { describe, expect, it } from 'vitest';
import { autoResumeDue, budgetPauses, countsHardFailures, endOfWork, onPausingFailure, pausesJob, waitsForAutoResume, type JobFacts } from '../../src/domain/job-rules.js';

/** A job's facts; `failed_hard` is what the store counts for endOfWork (absent: not counted). */
const job = (over: Partial<JobFacts> & { failed_hard?: number }): JobFacts & { failed_hard?: number } => ({
  id: 1,
  status: 'RUNNING',
  total: 4,
  pending: 0,
  running: 0,
  submitted: 0,
  // Every unit that did not fail succeeded, unless said.
  succeeded: (over.total ?? 4) - (over.failed ?? 0),
  failed: 0,
  max_cost_usd: null,
  cost_usd: 0,
  reserved_usd: 0,
  costed_units: 0,
  post_processing_prompt: null,
  allow_partial: 0,
  synthesis_unit_id: null,
  auto_resume: 0,
  resume_at: null,
  ...over,
});

describe('endOfWork', () => {
  it('waits while anything is pending or running, or the job is not RUNNING', () => {
    expect(endOfWork(job({ pending: 1 }))).toEqual({ kind: 'not_yet' });
    expect(endOfWork(job({ running: 1 }))).toEqual({ kind: 'not_yet' });
    for (const status of ['CREATED', 'TESTING', 'PAUSED', 'COMPLETED', 'FAILED', 'CANCELLED'] as const) {
      expect(endOfWork(job({ status }))).toEqual({ kind: 'not_yet' });
    }
  });

  it('completes a job whose units all succeeded, and fails one with failures, naming how many', () => {
    expect(endOfWork(job({}))).toEqual({ kind: 'end', move: 'complete', reason: null });
    expect(endOfWork(job({ failed: 2 }))).toEqual({ kind: 'end', move: 'fail', reason: 'units_failed: 2 of 4 units failed' });
  });

  it('units that failed only with every item refused (unresolved) fail the job only when no unit succeeded', () => {
    const refused = 'unresolved: 1 of 4 units had every item refused';
    // Only unresolved failures, and successes beside them: the run applied something, so it completes.
    expect(endOfWork(job({ failed: 1, failed_hard: 0 }))).toEqual({ kind: 'end', move: 'complete', reason: refused });
    expect(endOfWork(job({ failed: 3, failed_hard: 0 }))).toEqual({ kind: 'end', move: 'complete', reason: 'unresolved: 3 of 4 units had every item refused' });
    // Only unresolved failures and no success: the run could apply nothing.
    expect(endOfWork(job({ failed: 4, failed_hard: 0 }))).toEqual({ kind: 'end', move: 'fail', reason: 'units_failed: 4 of 4 units failed' });
    expect(endOfWork(job({ failed: 2, succeeded: 0, failed_hard: 0 }))).toEqual({ kind: 'end', move: 'fail', reason: 'units_failed: 2 of 4 units failed' });
    // A hard failure fails the job, with or without unresolved ones beside it.
    expect(endOfWork(job({ failed: 1, failed_hard: 1 }))).toEqual({ kind: 'end', move: 'fail', reason: 'units_failed: 1 of 4 units failed' });
    expect(endOfWork(job({ failed: 2, failed_hard: 1 }))).toEqual({ kind: 'end', move: 'fail', reason: 'units_failed: 2 of 4 units failed' });
    // Not counted (the store counts it only when the rule reads it): every failure is hard.
    expect(endOfWork(job({ failed: 1 }))).toMatchObject({ kind: 'end', move: 'fail' });
    // The count is not read while work remains, nor for a job that gathers its units in a synthesis.
    expect(endOfWork(job({ failed: 1, failed_hard: 0, pending: 1 }))).toEqual({ kind: 'not_yet' });
    expect(endOfWork(job({ failed: 1, failed_hard: 0, post_processing_prompt: 'combine' }))).toMatchObject({ kind: 'end', move: 'fail', reason: 'units_failed: 1 of 4 units failed' });
    expect(endOfWork(job({ failed: 1, failed_hard: 0, post_processing_prompt: 'combine', allow_partial: 1 }))).toEqual({ kind: 'synthesis' });
  });

  it('asks the store to count hard failures only when the job ran out of work with failed units and no synthesis', () => {
    expect(countsHardFailures(job({ failed: 1 }))).toBe(true);
    expect(countsHardFailures(job({}))).toBe(false);
    expect(countsHardFailures(job({ failed: 1, pending: 1 }))).toBe(false);
    expect(countsHardFailures(job({ failed: 1, running: 1 }))).toBe(false);
    expect(countsHardFailures(job({ failed: 1, status: 'PAUSED' }))).toBe(false);
    expect(countsHardFailures(job({ failed: 1, post_processing_prompt: 'combine' }))).toBe(false);
  });

  it('adds a synthesis unit when every unit succeeded, or with allow_partial; otherwise fails', () => {
    const gathering = { post_processing_prompt: 'combine' };
    expect(endOfWork(job(gathering))).toEqual({ kind: 'synthesis' });
    expect(endOfWork(job({ ...gathering, failed: 1, allow_partial: 1 }))).toEqual({ kind: 'synthesis' });
    expect(endOfWork(job({ ...gathering, failed: 1 }))).toMatchObject({ kind: 'end', move: 'fail' });
  });

  it('lets the synthesis unit decide the end, carrying its output as the result', () => {
    const after = job({ post_processing_prompt: 'combine', synthesis_unit_id: 9, total: 5, failed: 1, allow_partial: 1 });
    expect(endOfWork(after, { status: 'SUCCEEDED', output: 'all of it', error: null })).toEqual({
      kind: 'end',
      move: 'complete',
      reason: 'partial: 1 of 4 units failed',
      result: 'all of it',
    });
    expect(endOfWork(after, { status: 'FAILED', output: null, error: 'model said no' })).toEqual({ kind: 'end', move: 'fail', reason: 'synthesis_failed: model said no' });
  });
});

describe('pausing failures', () => {
  it('auth and quota failures pause a job; the others are the unit’s own', () => {
    expect(pausesJob('auth_failed')).toBe(true);
    expect(pausesJob('quota_exhausted')).toBe(true);
    for (const kind of ['retryable', 'permanent', 'rate_limited', 'invalid_output', 'unresolved']) expect(pausesJob(kind)).toBe(false);
  });

  it('pause a running job, wait in a paused one, and fail a test unit at once', () => {
    expect(onPausingFailure('RUNNING')).toBe('pause');
    expect(onPausingFailure('PAUSED')).toBe('wait');
    expect(onPausingFailure('TESTING')).toBe('fail_unit');
  });

  it('a budget with no room pauses only a running job with units left', () => {
    expect(budgetPauses(job({ pending: 3 }), 'budget_exhausted: …')).toBe(true);
    expect(budgetPauses(job({ pending: 0 }), 'budget_exhausted: …')).toBe(false);
    expect(budgetPauses(job({ status: 'TESTING', pending: 3 }), 'budget_exhausted: …')).toBe(false);
    expect(budgetPauses(job({ pending: 3 }), null)).toBe(false);
  });
});

describe('auto-resume', () => {
  it('is due for a paused job that allows it once its reset time has come', () => {
    const paused = job({ status: 'PAUSED', auto_resume: 1, resume_at: 1_000 });
    expect(waitsForAutoResume(paused)).toBe(true);
    expect(autoResumeDue(paused, 999)).toBe(false);
    expect(autoResumeDue(paused, 1_000)).toBe(true);
    expect(waitsForAutoResume({ ...paused, auto_resume: 0 })).toBe(false);
    expect(waitsForAutoResume({ ...paused, resume_at: null })).toBe(false);
    expect(autoResumeDue({ ...paused, status: 'RUNNING' }, 5_000)).toBe(false);
  });
});
