import type { JobMove, JobState, UnitState } from './states.js';
import { isoTime } from './iso-time.js';

/*
 * The rules of a job's life that are decisions, not storage: how many units it
 * may claim within its budget, what happens when it runs out of work, which
 * failures pause it, and when a paused job resumes by itself. Pure functions of
 * the job's row: the store applies them inside the transaction of the write that
 * raised the question (a claim, an outcome, a lease's reclaim), and the executor
 * asks them on its passes.
 */

/** What the rules read of a job's row (store/schema.ts JobRow has all of it). */
export interface JobFacts {
  id: number;
  status: JobState;
  total: number;
  pending: number;
  running: number;
  /** Units waiting in a provider batch. */
  submitted: number;
  succeeded: number;
  failed: number;
  max_cost_usd: number | null;
  cost_usd: number;
  reserved_usd: number;
  costed_units: number;
  post_processing_prompt: string | null;
  allow_partial: number | boolean;
  synthesis_unit_id: number | null;
  auto_resume: number | boolean;
  resume_at: number | null;
}

/**
 * How many units a job may claim within its budget. Each claim reserves the
 * expected cost of a unit: the running mean of the units that reported one (at
 * first, the test unit's). With no cost known yet, one unit at a time probes it.
 * `exhausted` is the pause reason when spent plus reserved leaves no room.
 */
export function budgetRoom(
  job: Pick<JobFacts, 'max_cost_usd' | 'cost_usd' | 'reserved_usd' | 'costed_units' | 'running'>,
  room: number,
  /** The expected cost of one unit when the running mean is not it (a provider batch's price). */
  meanCost?: number,
): { take: number; expected: number; exhausted: string | null } {
  if (job.max_cost_usd === null || room <= 0) return { take: Math.max(0, room), expected: 0, exhausted: null };
  const expected = meanCost ?? (job.costed_units > 0 ? job.cost_usd / job.costed_units : 0);
  const left = job.max_cost_usd - job.cost_usd - job.reserved_usd;
  const why = `budget_exhausted: spent $${job.cost_usd.toFixed(4)} + reserved $${job.reserved_usd.toFixed(4)} of max_cost_usd $${job.max_cost_usd}; raise the budget, then resume`;
  if (left <= 0) return { take: 0, expected, exhausted: why };
  if (expected === 0) return { take: job.running > 0 ? 0 : Math.min(room, 1), expected, exhausted: null };
  const fits = Math.floor(left / expected + 1e-9);
  if (fits <= 0) return { take: 0, expected, exhausted: why };
  return { take: Math.min(room, fits), expected, exhausted: null };
}

/** Whether a claim that found no budget room pauses the job: only a running job with units left to run. */
export function budgetPauses(job: Pick<JobFacts, 'status' | 'pending'>, exhausted: string | null): exhausted is string {
  return exhausted !== null && job.status === 'RUNNING' && job.pending > 0;
}

/** The synthesis unit's outcome, as far as the end of a job needs it. */
export interface SynthesisFacts {
  status: UnitState;
  output: string | null;
  error: string | null;
}

/** What a job does when asked whether it has run out of work. */
export type EndOfWork =
  | { kind: 'not_yet' }
  /** Every unit is done and the job gathers them: add its one synthesis unit. */
  | { kind: 'synthesis' }
  /** The job ends by this move, with this reason; `result` is the synthesis unit's output. */
  | { kind: 'end'; move: Extract<JobMove, 'complete' | 'fail'>; reason: string | null; result?: string | null };

/**
 * The error_kind of a unit that a provider batch gave back past its job's
 * deadline (batch_deadline_hours): it runs online, not in another batch.
 */
export const ONLINE_AFTER_BATCH = 'batch_deadline';

/** The failure kind (contracts/worker.ts) of a unit whose destination refused every item it carried. */
export const UNRESOLVED_FAILURE = 'unresolved';

/** What endOfWork reads: the job's row, and one fact the store counts only when the rule needs it. */
export type EndFacts = Pick<JobFacts, 'status' | 'pending' | 'running' | 'submitted' | 'succeeded' | 'failed' | 'total' | 'post_processing_prompt' | 'allow_partial' | 'synthesis_unit_id'> & {
  /**
   * Failed units whose failure kind is not `unresolved` (an error_kind of null counts too). The
   * store counts them when `countsHardFailures` says so; absent, every failed unit counts as hard.
   */
  failed_hard?: number;
};

/** Whether endOfWork will read `failed_hard`: a job without a synthesis that ran out of work with failed units. */
export function countsHardFailures(job: Pick<JobFacts, 'status' | 'pending' | 'running' | 'submitted' | 'failed' | 'post_processing_prompt'>): boolean {
  return job.status === 'RUNNING' && outOfWork(job) && job.failed > 0 && job.post_processing_prompt === null;
}

/** No unit is left to run or waiting for a result (pending, running, or in a provider batch). */
export function outOfWork(job: Pick<JobFacts, 'pending' | 'running' | 'submitted'>): boolean {
  return job.pending === 0 && job.running === 0 && job.submitted === 0;
}

/**
 * A RUNNING job with nothing pending or running ends COMPLETED, or FAILED if any
 * unit failed. Units that failed only because the destination refused every
 * item they carried (`unresolved`: the items are recorded for a later run) fail
 * the job only when no unit succeeded, since then the run could apply nothing;
 * otherwise the job completes with a reason naming them. Any other failed unit
 * fails the job. A job with a post_processing_prompt first gets one synthesis
 * unit (when every unit succeeded, or with allow_partial); that unit's outcome
 * decides the end. `synthesis` is the synthesis unit, when the job has one.
 */
export function endOfWork(job: EndFacts, synthesis?: SynthesisFacts): EndOfWork {
  if (job.status !== 'RUNNING' || !outOfWork(job)) return { kind: 'not_yet' };
  const unitsFailed: EndOfWork = { kind: 'end', move: 'fail', reason: `units_failed: ${job.failed} of ${job.total} units failed` };
  if (job.post_processing_prompt !== null) {
    if (job.synthesis_unit_id === null) {
      if (job.failed === 0 || job.allow_partial) return { kind: 'synthesis' };
      return unitsFailed;
    } else if (synthesis) {
      if (synthesis.status === 'SUCCEEDED') {
        const partial = job.failed > 0 ? `partial: ${job.failed} of ${job.total - 1} units failed` : null;
        return { kind: 'end', move: 'complete', reason: partial, result: synthesis.output };
      }
      return { kind: 'end', move: 'fail', reason: `synthesis_failed: ${synthesis.error ?? synthesis.status}` };
    }
  }
  if (job.failed === 0) return { kind: 'end', move: 'complete', reason: null };
  const hard = job.failed_hard ?? job.failed;
  if (hard === 0 && job.succeeded > 0) {
    return { kind: 'end', move: 'complete', reason: `unresolved: ${job.failed} of ${job.total} units had every item refused` };
  }
  return unitsFailed;
}

/**
 * Failures that are the worker's, not the item's: every unit would fail alike,
 * so the job pauses instead of burning its units' retries.
 */
export const PAUSING_FAILURES = ['auth_failed', 'quota_exhausted'] as const;
export type PausingFailure = (typeof PAUSING_FAILURES)[number];

export function pausesJob(kind: string): kind is PausingFailure {
  return (PAUSING_FAILURES as readonly string[]).includes(kind);
}

/**
 * What a pausing failure does, by the job's state when its outcome is written:
 * a running job pauses and the unit waits in PENDING with its retries unspent;
 * in a job already paused the unit just waits; a test unit (TESTING) fails at
 * once, since showing the failure is what it is for.
 */
export function onPausingFailure(status: JobState): 'pause' | 'wait' | 'fail_unit' {
  if (status === 'RUNNING') return 'pause';
  if (status === 'PAUSED') return 'wait';
  return 'fail_unit';
}

/** A quota pause that the user allowed to end by itself (auto_resume) and whose reset time has come. */
export function autoResumeDue(job: Pick<JobFacts, 'status' | 'auto_resume' | 'resume_at'>, now: number): boolean {
  return waitsForAutoResume(job) && Number(job.resume_at) <= now;
}

/** A paused job that will resume by itself: an executor stays alive for it. */
export function waitsForAutoResume(job: Pick<JobFacts, 'status' | 'auto_resume' | 'resume_at'>): boolean {
  return job.status === 'PAUSED' && Boolean(job.auto_resume) && job.resume_at !== null;
}

/** The reason an auto-resume records. */
export function autoResumeReason(job: Pick<JobFacts, 'resume_at'>): string {
  return `auto_resumed: quota reset at ${isoTime(Number(job.resume_at))}`;
}
