import { AbpError } from '../domain/errors.js';
import { nextStepFor, type NextStep } from '../domain/next-step.js';
import { isTerminalUnit } from '../domain/states.js';
import type { JobRow, UnitRow } from '../store/schema.js';
import { unitSummary, jobStatus } from '../wire/views.js';
import { storedNeeds } from '../executor/launcher.js';
import { FRESH_TEST_UNIT } from './job-start.js';
import type { OrchestratorDeps } from './orchestrator.js';

/**
 * One unit at a time, as a person asks: run a finished unit again (a retry, or a
 * re-do of a success), or stop a running one. A stop is the running attempt's
 * outcome written for it through the executor's own fenced write; the executor
 * that held the unit sees the job's `unit_stops` change and kills its processes.
 */
export class UnitControl {
  constructor(
    private readonly deps: Pick<OrchestratorDeps, 'repo' | 'launcher'>,
    /** The job type's end, for a stop that ended the job. */
    private readonly jobEnded: (jobId: number) => Promise<void>,
  ) {}

  /**
   * Runs one finished unit again with fresh retries: a FAILED or CANCELLED one, or
   * a SUCCEEDED one to re-do it. A finished job runs again for it (and a job with a
   * synthesis gets a fresh one once its units are done). A TESTING job's test unit
   * runs again as its test.
   */
  async retryUnit(unitId: number) {
    const { repo } = this.deps;
    const unit = await this.requireUnit(unitId);
    const job = await repo.requireJob(unit.job_id);
    const refuse = (why: string, next?: NextStep) =>
      new AbpError('illegal_transition', `unit ${unitId} of job ${job.id}: ${why}`, {
        details: { job_id: job.id, unit_id: unitId, status: unit.status, job_status: job.status, move: 'retry_unit', ...(next ? { next } : {}) },
      });
    if (unit.status === 'PENDING') throw refuse('it is already waiting to run');
    if (unit.status === 'RUNNING') throw refuse('it is RUNNING; stop it first (stop_unit), then retry it');
    if (unit.status === 'SUBMITTED') throw refuse('it is in a provider batch; retry it once its result is in (cancel_job cancels the batch)');
    if (job.status === 'CANCELLED') throw refuse('the job is CANCELLED; a cancelled job does not run again');
    if (job.status === 'CREATED') throw refuse('the job is CREATED; start it to run its units', nextStepFor(job));
    if (job.status === 'TESTING' && job.test_unit_id !== unit.id) throw refuse('the job is TESTING; only its test unit runs before approval', nextStepFor(job));
    if (job.synthesis_unit_id !== null && unit.kind !== 'synthesis') {
      // The synthesis gathers every unit's output: one in flight would gather the old one.
      const synthesis = await repo.getUnit(job.synthesis_unit_id);
      if (synthesis && !isTerminalUnit(synthesis.status)) throw refuse(`the job's synthesis (unit ${synthesis.id}) is ${synthesis.status}; retry this unit once it has ended`);
    }
    const reset = { ...FRESH_TEST_UNIT, cost_usd: null, input_tokens: null, output_tokens: null, usage: null, duration_ms: null };
    const effects = async (t: Parameters<typeof repo.moveUnitsIn>[0], current: JobRow) => {
      if (unit.kind !== 'synthesis') await repo.dropSynthesisIn(t, current);
      await repo.moveUnitsIn(t, job.id, 'redo', reset, unit.id);
    };
    if (job.status === 'COMPLETED' || job.status === 'FAILED') {
      await repo.moveJob(job.id, 'redo', { reason: `unit ${unitId} runs again`, effects });
    } else {
      // RUNNING, PAUSED or TESTING: the job is still live; the unit joins its queue.
      await repo.tx(async (t) => effects(t, await repo.requireJob(job.id, t)));
    }
    await repo.appendEvent(job.id, 'unit_retry', { unit_id: unitId, from: unit.status });
    const after = await repo.requireJob(job.id);
    const executor = after.status === 'PAUSED' ? null : await this.deps.launcher.ensureExecutor(storedNeeds(after));
    return { job: jobStatus(after), unit: unitSummary(await this.requireUnit(unitId)), executor };
  }

  /**
   * Stops one running unit: its outcome is written now (FAILED, or back to PENDING
   * without spending a retry, as the person chooses), and the executor running it
   * kills its process group on its next pass. A unit that finished first is left
   * as it ended, and the error says so.
   */
  async stopUnit(unitId: number, then: 'failed' | 'pending' = 'failed') {
    const { repo } = this.deps;
    const unit = await this.requireUnit(unitId);
    if (unit.status !== 'RUNNING') {
      throw new AbpError('illegal_transition', `unit ${unitId} of job ${unit.job_id} is ${unit.status}; only a RUNNING unit can be stopped`, {
        details: { job_id: unit.job_id, unit_id: unitId, status: unit.status, move: 'stop_unit' },
      });
    }
    const write =
      then === 'failed'
        ? { next: 'FAILED' as const, spent: false, error: 'stopped by a person', error_kind: 'stopped' }
        : { next: 'PENDING' as const, spent: false, available_at: 0 };
    if (!(await repo.stopUnit(unit, write))) {
      const now = await this.requireUnit(unitId);
      throw new AbpError('conflict', `unit ${unitId} of job ${unit.job_id} ended before it could be stopped: it is ${now.status}`, {
        details: { job_id: unit.job_id, unit_id: unitId, status: now.status, move: 'stop_unit' },
      });
    }
    await repo.appendEvent(unit.job_id, 'unit_stop', { unit_id: unitId, attempt: unit.attempt, then });
    // Stopping the last unit may have ended the job.
    await this.jobEnded(unit.job_id);
    return { job: jobStatus(await repo.requireJob(unit.job_id)), unit: unitSummary(await this.requireUnit(unitId)) };
  }

  async requireUnit(unitId: number): Promise<UnitRow> {
    const unit = await this.deps.repo.getUnit(unitId);
    if (!unit) throw new AbpError('not_found', `unit ${unitId} does not exist`);
    return unit;
  }
}
