import type { UnitOutcome } from '../contracts/worker.js';
import { assertNever } from '../domain/errors.js';
import { pausesJob } from '../domain/job-rules.js';
import type { OutcomeWrite } from '../store/repository.js';
import type { JobRow } from '../store/schema.js';
import { isoTime } from '../domain/iso-time.js';

export interface RetrySettings {
  maxRetries: number;
  baseMs: number;
  maxMs: number;
}

/**
 * How many retries an attempt of this job's unit may spend. A unit claimed while
 * the job is TESTING is the test unit (nothing else is claimed then), and it gets
 * none: it is there to show a person the prompt and the worker at work, and a
 * failure is what they must see at once, not after every retry has been paid for.
 * Starting the job again re-runs it; an approval runs it among the others with
 * the job's own max_retries. Rate limits spend no attempt, so they still wait.
 */
export function retryAllowance(job: Pick<JobRow, 'status' | 'max_retries'>): number {
  return job.status === 'TESTING' ? 0 : job.max_retries;
}

/** Exponential backoff with equal jitter: half fixed, half random, capped. */
export function backoffMs(failures: number, s: Pick<RetrySettings, 'baseMs' | 'maxMs'>, random = Math.random): number {
  const exp = Math.min(s.maxMs, s.baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}

export interface Decision {
  /** The unit's next state; `write.pause_job` when the failure pauses the whole job (domain/job-rules.ts). */
  write: OutcomeWrite;
}

/**
 * Turns an attempt's outcome into the unit's next state. `failures` is the count
 * of spent retries before this attempt.
 */
export function decide(outcome: UnitOutcome, failures: number, s: RetrySettings, now = Date.now()): Decision {
  // A server's Retry-After (on a 5xx) is a floor under the backoff.
  const floorMs = outcome.status === 'failed' ? (outcome.retry_after_ms ?? 0) : 0;
  const retryOrFail = (error: string, kind: string, output?: string): Decision => {
    const spentNow = failures + 1;
    const exhausted = spentNow > s.maxRetries;
    return {
      write: outcomeWrite(outcome, {
        next: exhausted ? 'FAILED' : 'PENDING',
        spent: true,
        available_at: exhausted ? 0 : now + Math.max(floorMs, backoffMs(spentNow, s)),
        error: exhausted && s.maxRetries > 0 ? `${error} (after ${spentNow} attempts)` : error,
        error_kind: kind,
        output: output ?? null,
      }),
    };
  };

  switch (outcome.status) {
    case 'succeeded':
      return {
        write: outcomeWrite(outcome, {
          next: 'SUCCEEDED',
          spent: false,
          output: outcome.output,
          structured_output: outcome.structured_output === undefined ? null : JSON.stringify(outcome.structured_output),
          error: null,
          error_kind: null,
        }),
      };
    case 'timed_out':
      return retryOrFail(outcome.error, 'timeout', outcome.output);
    case 'cancelled':
      // Cancel marks the unit CANCELLED itself; a shutdown gives the unit back unspent.
      return { write: outcomeWrite(outcome, { next: 'PENDING', spent: false, error: outcome.error, error_kind: 'shutdown' }) };
    case 'failed': {
      if (pausesJob(outcome.kind)) {
        // The worker's failure, not the item's: the job pauses (or, while testing, the test unit fails).
        const resets = outcome.resets_at === undefined ? '' : ` (resets at ${isoTime(outcome.resets_at)})`;
        return {
          write: {
            ...outcomeWrite(outcome, {
              next: 'PENDING',
              spent: false,
              // Resuming before the reset would only hit the limit again.
              available_at: outcome.resets_at ?? 0,
              error: `${outcome.error}${resets}`,
              error_kind: outcome.kind,
            }),
            pause_job: { reason: `${outcome.kind}: ${outcome.error}${resets}`, ...(outcome.resets_at !== undefined ? { resume_at: outcome.resets_at } : {}) },
          },
        };
      }
      switch (outcome.kind) {
        case 'retryable':
          return retryOrFail(outcome.error, 'retryable', outcome.output);
        case 'unresolved':
          // Retried like retryable; a unit that stays FAILED this way fails its job only if none succeeded (endOfWork).
          return retryOrFail(outcome.error, 'unresolved', outcome.output);
        case 'invalid_output':
          // The next attempt sees this error (error_kind invalid_output) and feeds it back into the prompt.
          return retryOrFail(outcome.error, 'invalid_output', outcome.output);
        case 'permanent':
          return { write: outcomeWrite(outcome, { next: 'FAILED', spent: true, error: outcome.error, error_kind: 'permanent', output: outcome.output ?? null }) };
        case 'rate_limited':
          return {
            write: outcomeWrite(outcome, {
              next: 'PENDING',
              spent: false,
              available_at: now + (outcome.retry_after_ms ?? backoffMs(1, s)),
              error: outcome.error,
              error_kind: 'rate_limited',
            }),
          };
        default:
          return assertNever(outcome.kind, 'failure kind');
      }
    }
    default:
      return assertNever(outcome, 'outcome');
  }
}

/**
 * The write for an outcome: what every attempt records (exit code, cost, usage,
 * duration) beside the move `w`. One object literal: on the hot path, object spread
 * (`{ ...a, b }`) cost Node 20 microseconds per unit.
 */
function outcomeWrite(outcome: UnitOutcome, w: Pick<OutcomeWrite, 'next' | 'spent' | 'available_at' | 'output' | 'structured_output' | 'error' | 'error_kind'>): OutcomeWrite {
  const usage = outcome.usage;
  return {
    next: w.next,
    spent: w.spent,
    available_at: w.available_at,
    output: w.output,
    structured_output: w.structured_output,
    error: w.error,
    error_kind: w.error_kind,
    exit_code: outcome.exit_code ?? null,
    stderr_tail: outcome.stderr_tail ?? null,
    cost_usd: outcome.cost_usd ?? null,
    input_tokens: usage?.input_tokens ?? null,
    output_tokens: usage?.output_tokens ?? null,
    usage: usage ? JSON.stringify(usage) : null,
    session_id: outcome.session_id ?? null,
    duration_ms: outcome.duration_ms ?? null,
  };
}
