import type { JobSpec } from '../domain/job-spec.js';

/**
 * A kind of job, named by `jobs.type` ('batch', 'sync'): how a spec of this
 * kind becomes a job and what it would produce (create, preview), and what
 * happens once such a job has ended (onEnded). Everything between is the same
 * for every kind: units claimed, run by a worker and fenced, moves through the
 * state tables. The Orchestrator picks the type whose `accepts` takes a spec
 * (batch, last, takes any); the executors and the moves that end a job call
 * its end, whichever front end (CLI, MCP, HTTP) started it.
 *
 * `Created` and `Preview` are what create and preview answer; the front ends
 * render them.
 */
export interface JobType<Created = unknown, Preview = unknown> {
  /** The value of `jobs.type` this implementation handles. */
  readonly type: string;
  /** Whether a raw spec (as a front end received it) is a job of this type. */
  accepts(input: unknown): boolean;
  /** Makes the job, whole or not at all: CREATED, with its units (or waiting for a person's approval). */
  create(spec: JobSpec, signal: AbortSignal): Promise<Created>;
  /** What creating the spec would produce, creating and writing nothing. */
  preview(spec: JobSpec, options: { sample?: number; signal: AbortSignal }): Promise<Preview>;
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

/** The job type for a `jobs.type` value, if one was wired. */
export function jobTypeOf<T extends Pick<JobType, 'type'>>(types: readonly T[], type: string): T | undefined {
  return types.find((t) => t.type === type);
}
