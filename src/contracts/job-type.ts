/**
 * A kind of job, named by `jobs.type` ('batch', 'sync'): what differs between
 * kinds once a job has ended. Creation and preview still branch on the spec in
 * the Orchestrator; this is the seam for a job's end, whichever front end
 * (CLI, MCP, HTTP) started it and whichever process ended it.
 */
export interface JobType {
  /** The value of `jobs.type` this implementation handles. */
  readonly type: string;
  /**
   * The job reached a final state (COMPLETED, FAILED or CANCELLED). Must be
   * idempotent and safe to race: the executors' passes and the move that ended
   * the job may all call it, from several processes, and it acts once in effect.
   * A job that has not ended is left alone.
   */
  onEnded?(jobId: number): Promise<void>;
  /**
   * Calls onEnded for every job of this type that has ended and is not settled
   * yet; returns their ids. Every executor calls it about once a second, so a
   * job's end is settled promptly even when no front end is waiting for it.
   */
  settleEnded?(): Promise<number[]>;
}

/** A batch job needs nothing when it ends: its units' outcomes are its result. */
export const BATCH_JOB_TYPE: JobType = { type: 'batch' };

/** The job type for a `jobs.type` value, if one was wired. */
export function jobTypeOf(types: readonly JobType[], type: string): JobType | undefined {
  return types.find((t) => t.type === type);
}
