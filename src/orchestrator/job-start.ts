import { AbpError } from '../domain/errors.js';
import { nextStepFor, type NextStep } from '../domain/next-step.js';
import { isTerminalUnit } from '../domain/states.js';
import { jobEnvNeeds, storedNeeds, type LaunchResult } from '../executor/launcher.js';
import { PENDING_APPROVAL } from '../store/repository.js';
import type { JobRow, UnitRow } from '../store/schema.js';
import { jobStatus, type unitDetail, type JobStatus } from '../wire/views.js';
import type { OrchestratorDeps } from './orchestrator.js';
import { checkWorker } from './worker-health.js';

export interface RunOptions {
  /** Wait up to this long for the test unit (or, once running, the job) to finish. */
  waitSeconds?: number;
  /** Who approves (approve, skip the test), recorded on the job: "person (cli)", "person (dialog)", … */
  approvedBy?: string;
}

export interface StartResult {
  job: JobStatus;
  test_unit: ReturnType<typeof unitDetail> | null;
  executor: LaunchResult | null;
  /** What to do next, as data; each front end words it (see domain/next-step.ts). */
  next_step: NextStep;
}

/** A test unit sent back to run again (rejected, re-tested, approved after it failed): nothing of its last attempt stays. */
export const FRESH_TEST_UNIT = { failures: 0, available_at: 0, output: null, structured_output: null, error: null, error_kind: null, prompt: null, finished_at: null };

/**
 * Starting a job, one method per move: run the test unit, skip it, approve it,
 * reject it. Each checks the worker first (a refusal burns no units), records
 * the variables this start's environment gives the job, makes sure an executor
 * that has them runs, and optionally waits until the job needs a person again.
 */
export class JobStart {
  constructor(
    private readonly deps: Pick<OrchestratorDeps, 'repo' | 'config' | 'workers' | 'launcher'>,
    private readonly readUnit: (unitId: number) => Promise<ReturnType<typeof unitDetail>>,
  ) {}

  /**
   * Runs the test unit: CREATED → TESTING (or straight to RUNNING for a script,
   * ABP_SKIP_TEST). On a job already TESTING or RUNNING it is harmless: a failed
   * test unit runs again (it had one attempt; another is the person's call), and
   * an executor is made sure of.
   */
  startTest(id: number, options: RunOptions = {}): Promise<StartResult> {
    return this.run(id, this.deps.config.skipTest ? 'skip_test' : 'start_test', { ...options, approvedBy: this.deps.config.skipTest ? 'script (ABP_SKIP_TEST)' : options.approvedBy });
  }

  /** Runs every unit without a test unit first: CREATED → RUNNING, recording who chose to. */
  skipTest(id: number, options: RunOptions = {}): Promise<StartResult> {
    return this.run(id, 'skip_test', options);
  }

  /** A person approves the finished test unit: TESTING → RUNNING (a failed test unit runs again among the others). */
  approve(id: number, options: RunOptions = {}): Promise<StartResult> {
    return this.run(id, 'approve', options);
  }

  /** A person rejects the test unit: TESTING → CREATED, the test unit back to PENDING, for an edit and another test. */
  async reject(id: number): Promise<StartResult> {
    const { repo } = this.deps;
    const test = await this.finishedTestUnit(await this.startable(id), 'reject');
    const job = await repo.moveJob(id, 'reject', {
      effects: async (t) => {
        await repo.moveUnitsIn(t, id, 'reset', FRESH_TEST_UNIT, test.id);
      },
    });
    return { job: jobStatus(job), test_unit: null, executor: null, next_step: { action: 'edit_and_retest', job_id: id } };
  }

  private async run(id: number, move: 'start_test' | 'skip_test' | 'approve', options: RunOptions): Promise<StartResult> {
    const { repo, launcher } = this.deps;
    let job = await this.startable(id);
    // The worker's health is checked before any unit can run: a refusal here burns no units.
    const warning = move === 'approve' || job.status === 'CREATED' ? await checkWorker(this.deps, job) : null;
    // What this start's environment has of the variables the job reads: only an executor that has them all
    // claims its units (recorded in the move's own transaction, before any executor can see the job).
    const needs = jobEnvNeeds(this.deps.workers.get(job.worker_type), job.worker_config);
    const env_needs = JSON.stringify(needs);
    if (move === 'approve') {
      const test = await this.finishedTestUnit(job, 'approve');
      job = await repo.moveJob(id, 'approve', {
        reason: warning,
        patch: { approved_by: options.approvedBy ?? null, env_needs },
        // Approved although its test unit failed: that unit runs again among the others, with the job's retries.
        effects:
          test.status === 'FAILED'
            ? async (t) => {
                await repo.moveUnitsIn(t, id, 'retry', FRESH_TEST_UNIT, test.id);
              }
            : undefined,
      });
    } else if (job.status === 'CREATED' && move === 'skip_test') {
      job = await repo.moveJob(id, 'skip_test', { reason: warning, patch: { approved_by: options.approvedBy ?? null, env_needs } });
    } else if (job.status === 'CREATED') {
      const first = await repo.firstUnit(id);
      job = await repo.moveJob(id, 'start_test', { patch: { test_unit_id: first?.id ?? null, env_needs }, reason: warning });
    } else if (job.status === 'TESTING' || job.status === 'RUNNING') {
      // Starting again re-runs a test unit that failed. Otherwise it is harmless: it makes
      // sure an executor that has what the job needs is alive (the needs are this start's).
      await repo.setEnvNeeds(id, env_needs);
      if (job.status === 'TESTING') await this.retestIfFailed(job);
    } else {
      throw new AbpError('illegal_transition', `job ${id} is ${job.status}; cannot start`, {
        details: { job_id: id, status: job.status, move: 'start', next: nextStepFor(job) },
      });
    }
    const executor = await launcher.ensureExecutor(needs);
    if (options.waitSeconds && options.waitSeconds > 0) job = await this.waitUntilSettled(id, options.waitSeconds * 1000);
    return { ...(await this.describe(job)), executor };
  }

  /** The job, unless its units do not exist yet (its code waits for a person's approval). */
  private async startable(id: number): Promise<JobRow> {
    const job = await this.deps.repo.requireJob(id);
    if (job.status === 'CREATED' && job.status_reason === PENDING_APPROVAL) {
      throw new AbpError('conflict', `job ${id} has no units yet: its code waits for a person's approval`, {
        details: { job_id: id, status: job.status, status_reason: job.status_reason, next: { action: 'approve_code', job_id: id, code_sha256: null } satisfies NextStep },
      });
    }
    return job;
  }

  /** Where a job stands and what to do next, with its test unit while TESTING. Changes nothing. */
  async startState(id: number): Promise<StartResult> {
    return { ...(await this.describe(await this.deps.repo.requireJob(id))), executor: null };
  }

  private async describe(job: JobRow): Promise<Omit<StartResult, 'executor'>> {
    const test = job.status === 'TESTING' && job.test_unit_id !== null ? await this.readUnit(job.test_unit_id) : null;
    return { job: jobStatus(job), test_unit: test, next_step: nextStepFor(job, test?.status) };
  }

  /**
   * Waits until the job needs a person (its test unit finished) or stops moving
   * (terminal, paused, created), or the time is up. While it waits, the job is
   * kept served: if every executor died (no heartbeat for three beats), a new one
   * is launched, so a wait never outlasts the process that was meant to end it.
   */
  async waitUntilSettled(id: number, timeoutMs: number, onTick?: (job: JobRow) => void): Promise<JobRow> {
    const deadline = Date.now() + timeoutMs;
    let lastLook = Date.now();
    for (;;) {
      const job = await this.deps.repo.requireJob(id);
      onTick?.(job);
      // A finished test unit's outcome and the job's counters are written in one transaction; the
      // job read before the unit may predate it, so read it again (its estimate needs the counters).
      if (await this.settled(job)) return job.status === 'TESTING' ? this.deps.repo.requireJob(id) : job;
      if (Date.now() >= deadline) return job;
      if (Date.now() - lastLook >= this.deps.config.heartbeatMs) {
        lastLook = Date.now();
        await this.deps.launcher.ensureExecutor(storedNeeds(job));
      }
      await new Promise((r) => setTimeout(r, Math.min(250, Math.max(10, deadline - Date.now()))));
    }
  }

  private async settled(job: JobRow): Promise<boolean> {
    if (job.status === 'TESTING') {
      const test = job.test_unit_id === null ? undefined : await this.deps.repo.getUnit(job.test_unit_id);
      return test === undefined || isTerminalUnit(test.status);
    }
    return job.status !== 'RUNNING';
  }

  /** A TESTING job whose test unit FAILED gets it back PENDING, with a fresh attempt, once its worker checks out. */
  private async retestIfFailed(job: JobRow): Promise<void> {
    const { repo } = this.deps;
    if (job.test_unit_id === null) return;
    const test = await repo.getUnit(job.test_unit_id);
    if (test?.status !== 'FAILED') return;
    await checkWorker(this.deps, job);
    const moved = await repo.tx(async (t) => {
      // Read again inside the transaction: a cancel or an approval since then decides instead.
      if ((await repo.requireJob(job.id, t)).status !== 'TESTING') return 0;
      return repo.moveUnitsIn(t, job.id, 'reset', FRESH_TEST_UNIT, test.id);
    });
    if (moved > 0) await repo.appendEvent(job.id, 'retest', { unit_id: test.id, error: test.error?.slice(0, 500) ?? null });
  }

  private async finishedTestUnit(job: JobRow, move: 'approve' | 'reject'): Promise<UnitRow> {
    if (job.status !== 'TESTING' || job.test_unit_id === null) {
      throw new AbpError('illegal_transition', `job ${job.id} is ${job.status}; cannot ${move} (allowed from TESTING)`, {
        details: { job_id: job.id, status: job.status, move, next: nextStepFor(job) },
      });
    }
    const test = await this.deps.repo.getUnit(job.test_unit_id);
    if (!test) throw new AbpError('not_found', `job ${job.id}: its test unit ${job.test_unit_id} does not exist`);
    if (!isTerminalUnit(test.status)) {
      throw new AbpError('conflict', `job ${job.id}: the test unit ${test.id} is still ${test.status}; wait for it before you ${move}`, {
        details: { job_id: job.id, next: { action: 'wait_for_test', job_id: job.id } satisfies NextStep },
      });
    }
    return test;
  }
}
