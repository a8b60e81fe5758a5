import { isTerminalUnit, type JobState, type UnitState } from './states.js';

/**
 * What a person or an assistant should do next, as data. The orchestrator and
 * errors return one; each front end words it in its own terms: the CLI names
 * commands (src/cli/hints.ts), MCP names tools and their arguments
 * (src/mcp/hints.ts), HTTP names routes (src/http/hints.ts).
 */
export type NextStep =
  /** A CREATED job: run its test unit. */
  | { action: 'start'; job_id: number }
  /** The test unit has not finished: wait for it. */
  | { action: 'wait_for_test'; job_id: number }
  /** The test unit finished: show it to the person, then approve or reject on their word. */
  | { action: 'review_test'; job_id: number }
  /**
   * The test unit failed (it gets one attempt): show its error to the person. On
   * their word, start again to re-run it, or approve anyway to run every unit.
   */
  | { action: 'test_failed'; job_id: number }
  /** The test unit was rejected: edit the prompt, then test again. */
  | { action: 'edit_and_retest'; job_id: number }
  /** The job runs: follow its status, read results as they come. */
  | { action: 'follow'; job_id: number }
  /** The job completed: read or write its results. */
  | { action: 'read_results'; job_id: number }
  /** Some units failed: look at them, then retry them. */
  | { action: 'retry_failed'; job_id: number }
  /** A paused job: resume it. */
  | { action: 'resume'; job_id: number; reason: string | null }
  /** The budget ran out: raise it, then resume. */
  | { action: 'raise_budget'; job_id: number }
  /** Dynamic code waits for a person to approve its exact hash. */
  | { action: 'approve_code'; job_id: number; code_sha256: string | null }
  /** A job that has not ended blocks this: wait for it, or cancel it. */
  | { action: 'cancel'; job_id: number }
  /** The job id is unknown: list the jobs that exist. */
  | { action: 'list_jobs' }
  /** The job has ended: create a new one. */
  | { action: 'create_job' };

/** The next step for a job in this state (with its test unit's state while TESTING). */
export function nextStepFor(job: { id: number; status: JobState; status_reason: string | null }, testStatus?: UnitState): NextStep {
  const job_id = job.id;
  switch (job.status) {
    case 'CREATED':
      return job.status_reason === 'pending_approval' ? { action: 'approve_code', job_id, code_sha256: null } : { action: 'start', job_id };
    case 'TESTING':
      if (testStatus === 'FAILED') return { action: 'test_failed', job_id };
      return testStatus !== undefined && !isTerminalUnit(testStatus) ? { action: 'wait_for_test', job_id } : { action: 'review_test', job_id };
    case 'RUNNING':
      return { action: 'follow', job_id };
    case 'PAUSED':
      return job.status_reason?.startsWith('budget_exhausted') ? { action: 'raise_budget', job_id } : { action: 'resume', job_id, reason: job.status_reason };
    case 'COMPLETED':
      return { action: 'read_results', job_id };
    case 'FAILED':
      return { action: 'retry_failed', job_id };
    case 'CANCELLED':
      return { action: 'create_job' };
  }
}
