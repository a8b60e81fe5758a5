import { AbpError } from './errors.js';

export const JOB_STATES = ['CREATED', 'TESTING', 'RUNNING', 'PAUSED', 'COMPLETED', 'FAILED', 'CANCELLED'] as const;
export type JobState = (typeof JOB_STATES)[number];

/**
 * SUBMITTED: the unit's request is in a provider's batch (the Anthropic Message
 * Batches or OpenAI Batch API). It is held by its batch row (work_units.batch_id),
 * not by a lease: the batch is polled, and its result recorded, by any executor.
 */
export const UNIT_STATES = ['PENDING', 'RUNNING', 'SUBMITTED', 'SUCCEEDED', 'FAILED', 'CANCELLED'] as const;
export type UnitState = (typeof UNIT_STATES)[number];

export const TERMINAL_JOB_STATES: readonly JobState[] = ['COMPLETED', 'FAILED', 'CANCELLED'];
export const TERMINAL_UNIT_STATES: readonly UnitState[] = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

/**
 * Every legal job move, by name. Nothing else may change a job's status:
 * the repository asks this table before it writes.
 */
export const JOB_MOVES = {
  start_test: { from: ['CREATED'], to: 'TESTING' },
  skip_test: { from: ['CREATED'], to: 'RUNNING' },
  approve: { from: ['TESTING'], to: 'RUNNING' },
  reject: { from: ['TESTING'], to: 'CREATED' },
  pause: { from: ['RUNNING'], to: 'PAUSED' },
  resume: { from: ['PAUSED'], to: 'RUNNING' },
  complete: { from: ['RUNNING'], to: 'COMPLETED' },
  fail: { from: ['RUNNING'], to: 'FAILED' },
  retry: { from: ['FAILED'], to: 'RUNNING' },
  /** A person re-runs one unit of a finished job: the job runs again for it. */
  redo: { from: ['COMPLETED', 'FAILED'], to: 'RUNNING' },
  cancel: { from: ['CREATED', 'TESTING', 'RUNNING', 'PAUSED'], to: 'CANCELLED' },
} as const satisfies Record<string, { from: readonly JobState[]; to: JobState }>;
export type JobMove = keyof typeof JOB_MOVES;

/** Every legal unit move. `release` gives a claimed unit back (retry after backoff, lost lease, shutdown). */
export const UNIT_MOVES = {
  claim: { from: ['PENDING'], to: 'RUNNING' },
  succeed: { from: ['RUNNING'], to: 'SUCCEEDED' },
  fail: { from: ['RUNNING'], to: 'FAILED' },
  release: { from: ['RUNNING'], to: 'PENDING' },
  cancel: { from: ['PENDING', 'RUNNING'], to: 'CANCELLED' },
  retry: { from: ['FAILED'], to: 'PENDING' },
  /** A rejected test unit goes back to the start, whatever its outcome was. */
  reset: { from: ['SUCCEEDED', 'FAILED'], to: 'PENDING' },
  /** A person re-runs one finished unit, with fresh retries (a retry, or a re-do of a success). */
  redo: { from: ['SUCCEEDED', 'FAILED', 'CANCELLED'], to: 'PENDING' },
  /** A claimed unit's request went into a provider batch: the batch row holds it now, not the lease. */
  submit: { from: ['RUNNING'], to: 'SUBMITTED' },
  /** A batch result came back: the unit's outcome, fenced by its attempt and its batch. */
  harvest_succeed: { from: ['SUBMITTED'], to: 'SUCCEEDED' },
  harvest_fail: { from: ['SUBMITTED'], to: 'FAILED' },
  /** Expired, cancelled by the provider, never posted, or errored with retries left: runs again. */
  harvest_release: { from: ['SUBMITTED'], to: 'PENDING' },
  /** The job was cancelled and the provider cancelled the request too. */
  harvest_cancel: { from: ['SUBMITTED'], to: 'CANCELLED' },
} as const satisfies Record<string, { from: readonly UnitState[]; to: UnitState }>;
export type UnitMove = keyof typeof UNIT_MOVES;

export function canMoveJob(from: JobState, move: JobMove): boolean {
  return (JOB_MOVES[move].from as readonly JobState[]).includes(from);
}

/** Throws an error that names the job, its state and the move when the table forbids it. */
export function assertJobMove(jobId: number, from: JobState, move: JobMove): JobState {
  const rule = JOB_MOVES[move];
  if (!(rule.from as readonly JobState[]).includes(from)) {
    throw new AbpError(
      'illegal_transition',
      `job ${jobId} is ${from}; cannot ${move.replace('_', ' ')} (allowed from ${rule.from.join(', ')})`,
      { details: { job_id: jobId, status: from, move } },
    );
  }
  return rule.to;
}

export function isTerminalJob(status: JobState): boolean {
  return TERMINAL_JOB_STATES.includes(status);
}

/** A unit that has finished: succeeded, failed or cancelled. */
export function isTerminalUnit(status: UnitState): boolean {
  return TERMINAL_UNIT_STATES.includes(status);
}

/** Why a job is paused, failed or cancelled. Free text is allowed after a colon. */
export const STATUS_REASONS = [
  'user',
  'units_failed',
  'budget_exhausted',
  'auth_failed',
  'quota_exhausted',
  'worker_down',
] as const;
export type StatusReason = (typeof STATUS_REASONS)[number];

export function counterColumn(state: UnitState): 'pending' | 'running' | 'submitted' | 'succeeded' | 'failed' | 'cancelled' {
  return state.toLowerCase() as 'pending' | 'running' | 'submitted' | 'succeeded' | 'failed' | 'cancelled';
}
