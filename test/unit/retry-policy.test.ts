import { describe, expect, it } from 'vitest';
import { backoffMs, decide, retryAllowance } from '../../src/executor/retry-policy.js';

const s = { maxRetries: 2, baseMs: 100, maxMs: 1000 };

describe('retry policy', () => {
  it('backs off exponentially, with jitter between half and all of the step, capped', () => {
    expect(backoffMs(1, s, () => 0)).toBe(50);
    expect(backoffMs(1, s, () => 1)).toBe(100);
    expect(backoffMs(3, s, () => 1)).toBe(400);
    expect(backoffMs(10, s, () => 1)).toBe(1000);
  });

  it('retries a retryable failure until the retries are spent, then fails it', () => {
    const fail = { status: 'failed', kind: 'retryable', error: 'exit code 1' } as const;
    expect(decide(fail, 0, s, 0).write).toMatchObject({ next: 'PENDING', spent: true });
    expect(decide(fail, 1, s, 0).write).toMatchObject({ next: 'PENDING', spent: true });
    expect(decide(fail, 2, s, 0).write).toMatchObject({ next: 'FAILED', spent: true, error: 'exit code 1 (after 3 attempts)' });
  });

  it('retries an unresolved failure (every item refused) like a retryable one, keeping its kind and its report', () => {
    const refused = { status: 'failed', kind: 'unresolved', error: '1 of 1 add writes to the target unresolved', output: '{"outcomes":[]}' } as const;
    expect(decide(refused, 0, s, 0).write).toMatchObject({ next: 'PENDING', spent: true, error_kind: 'unresolved' });
    expect(decide(refused, 2, s, 0).write).toMatchObject({ next: 'FAILED', spent: true, error_kind: 'unresolved', output: '{"outcomes":[]}' });
    expect(decide(refused, 0, s, 0).write.pause_job).toBeUndefined();
  });

  it('fails a permanent failure at once and never spends an attempt on a rate limit', () => {
    expect(decide({ status: 'failed', kind: 'permanent', error: 'bad' }, 0, s).write.next).toBe('FAILED');
    const limited = decide({ status: 'failed', kind: 'rate_limited', error: '429', retry_after_ms: 5000 }, 0, s, 1000);
    expect(limited.write).toMatchObject({ next: 'PENDING', spent: false, available_at: 6000 });
  });

  it('pauses the job on auth or quota failures instead of burning units', () => {
    const d = decide({ status: 'failed', kind: 'auth_failed', error: 'not logged in' }, 0, s);
    expect(d.write).toMatchObject({ next: 'PENDING', spent: false });
    expect(d.write.pause_job?.reason).toBe('auth_failed: not logged in');
  });

  it('gives a unit stopped by shutdown back unspent', () => {
    expect(decide({ status: 'cancelled', error: 'stopped (shutdown)' }, 1, s).write).toMatchObject({ next: 'PENDING', spent: false });
  });
});

describe('the test unit gets one attempt', () => {
  it('a unit of a TESTING job (the test unit) has no retries; any other state has the job’s own', () => {
    expect(retryAllowance({ status: 'TESTING', max_retries: 3 })).toBe(0);
    expect(retryAllowance({ status: 'RUNNING', max_retries: 3 })).toBe(3);
    expect(retryAllowance({ status: 'PAUSED', max_retries: 5 })).toBe(5);
  });

  it('so its failure is final at once, with its cost; a rate limit still spends nothing and waits', () => {
    const allowance = { ...s, maxRetries: retryAllowance({ status: 'TESTING', max_retries: 3 }) };
    const failed = decide({ status: 'failed', kind: 'retryable', error: 'exit code 1', cost_usd: 0.02 }, 0, allowance, 0);
    expect(failed.write).toMatchObject({ next: 'FAILED', spent: true, error: 'exit code 1', cost_usd: 0.02 });
    expect(decide({ status: 'timed_out', error: 'timed out' }, 0, allowance, 0).write.next).toBe('FAILED');
    expect(decide({ status: 'failed', kind: 'invalid_output', error: 'not JSON' }, 0, allowance, 0).write.next).toBe('FAILED');
    const limited = decide({ status: 'failed', kind: 'rate_limited', error: '429', retry_after_ms: 5000 }, 0, allowance, 1000);
    expect(limited.write).toMatchObject({ next: 'PENDING', spent: false, available_at: 6000 });
  });
});
