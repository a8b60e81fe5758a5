import { describe, expect, it } from 'vitest';
import { autoResumeDue, budgetPauses, endOfWork, onPausingFailure, pausesJob, waitsForAutoResume, type JobFacts } from '../../src/domain/job-rules.js';

const job = (over: Partial<JobFacts>): JobFacts => ({
  id: 1,
  status: 'RUNNING',
  total: 4,
  pending: 0,
  running: 0,
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
    for (const kind of ['retryable', 'permanent', 'rate_limited', 'invalid_output']) expect(pausesJob(kind)).toBe(false);
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
