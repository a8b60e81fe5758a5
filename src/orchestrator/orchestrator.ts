import { type Enumerator } from '../contracts/enumerator.js';
import { jobTypeOf, type JobType } from '../contracts/job-type.js';
import type { Registry } from '../contracts/registry.js';
import { type Worker } from '../contracts/worker.js';
import type { AbpConfig } from '../config.js';
import { AbpError } from '../domain/errors.js';
import { nextStepFor, type NextStep } from '../domain/next-step.js';
import { isTerminalJob, isTerminalUnit, type JobState, type UnitState } from '../domain/states.js';
import { jobEnvNeeds, storedNeeds, type Launcher, type LaunchResult } from '../executor/launcher.js';
import { PENDING_APPROVAL, type Repository } from '../store/repository.js';
import type { JobRow, UnitRow } from '../store/schema.js';
import type { PromptSynthesizer } from '../executor/prompt-synthesizer.js';
import { JobCreation } from './job-creation.js';
import { Monitor } from './monitor.js';
import { UnitControl } from './unit-control.js';
import { checkWorker, doctor } from './worker-health.js';
import { SyncJobs } from '../sync/sync-jobs.js';
import { exportResults, type ExportFormat } from '../wire/exports.js';
import { parseSinkSpec, writeSink } from '../sinks/index.js';
import { jobDetail, jobStatus, resultLine, unitDetail, unitSummary, type JobStatus } from '../wire/views.js';

export interface OrchestratorDeps {
  repo: Repository;
  config: AbpConfig;
  enumerators: Registry<Enumerator<any>>;
  workers: Registry<Worker<any>>;
  synthesizer: PromptSynthesizer;
  launcher: Launcher;
  /** Each job type's end (jobs.type → JobType), called after a move here ends a job. */
  jobTypes: readonly JobType[];
}

export interface StartOptions {
  approve?: boolean;
  reject?: boolean;
  skipTest?: boolean;
  /** Wait up to this long for the test unit (or, once running, the job) to finish. */
  waitSeconds?: number;
  /** Who approves (with approve or skipTest), recorded on the job: "person (cli)", "person (dialog)", … */
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
 * Creates jobs, runs the test unit, starts, pauses, resumes, cancels, retries and
 * reports. Every front end (CLI, MCP, HTTP) goes through here.
 */
export class Orchestrator {
  constructor(private readonly deps: OrchestratorDeps) {}

  // Made on first use: a front end that only reads pays for none of them.
  #monitor: Monitor | undefined;
  #sync: SyncJobs | undefined;
  #creation: JobCreation | undefined;
  #units: UnitControl | undefined;

  /** The sync job type: plans at creation, the pair's state when a run ends (src/sync/); the wired one when jobTypes has it. */
  get sync(): SyncJobs {
    return (this.#sync ??= this.deps.jobTypes.find((t): t is SyncJobs => t instanceof SyncJobs) ?? new SyncJobs(this.deps.repo));
  }

  /**
   * Runs the job type's end (JobType.onEnded) for a job that has ended, and
   * does nothing for one that has not. Idempotent: the executors' passes settle
   * the same end, so a failure here is left to them.
   */
  async jobEnded(id: number): Promise<void> {
    const job = await this.deps.repo.getJob(id);
    if (!job || !isTerminalJob(job.status)) return;
    const jobType = jobTypeOf(this.deps.jobTypes, job.type);
    await jobType?.onEnded?.(id).catch(() => undefined);
  }

  /** Events, checkpoints, readiness, metric inputs and dashboard links (the HTTP front end's reads). */
  get monitor(): Monitor {
    return (this.#monitor ??= new Monitor(this.deps.repo, this.deps.config));
  }

  /** One unit at a time: a person's retry or stop. */
  private get units(): UnitControl {
    return (this.#units ??= new UnitControl(this.deps, (id) => this.jobEnded(id)));
  }

  /** Creation: specs checked against the registries, enumerations streamed into jobs, dynamic code approved. */
  private get creation(): JobCreation {
    return (this.#creation ??= new JobCreation(this.deps, () => this.sync));
  }

  /** Validates a spec against the registries and returns it parsed, with every default filled in. */
  validate(input: unknown) {
    return this.creation.validate(input);
  }

  /** Streams the enumeration into a new job, or a job pending code approval (see JobCreation). */
  createJob(input: unknown, signal?: AbortSignal) {
    return this.creation.createJob(input, signal);
  }

  /** The code a pending job waits on, and how to approve it. */
  pendingApproval(id: number) {
    return this.creation.pendingApproval(id);
  }

  /** A person approves a pending job's code by its exact sha256; the units are then created. */
  approveCode(id: number, codeSha256: string, approvedBy?: string, signal?: AbortSignal) {
    return this.creation.approveCode(id, codeSha256, approvedBy, signal);
  }

  /** What creating this spec would produce, creating nothing. */
  preview(input: unknown, options: { sample?: number; signal?: AbortSignal } = {}) {
    return this.creation.preview(input, options);
  }

  /** Every enumerator type, and every worker type with its health: what a spec may name (see JobCreation). */
  listEnumerators() {
    return this.creation.listEnumerators();
  }

  listWorkers() {
    return this.creation.listWorkers();
  }

  /** Edits a job: the prompt, intent and name while CREATED; the budget and auto-resume while it has not ended. */
  updateJob(id: number, fields: Parameters<JobCreation['updateJob']>[1]) {
    return this.creation.updateJob(id, fields);
  }

  async start(id: number, options: StartOptions = {}): Promise<StartResult> {
    const { repo, config, launcher } = this.deps;
    let job = await repo.requireJob(id);
    if (job.status === 'CREATED' && job.status_reason === PENDING_APPROVAL) {
      throw new AbpError('conflict', `job ${id} has no units yet: its code waits for a person's approval`, {
        details: { job_id: id, status: job.status, status_reason: job.status_reason, next: { action: 'approve_code', job_id: id, code_sha256: null } satisfies NextStep },
      });
    }
    let executor: LaunchResult | null = null;
    if (options.approve && options.reject) throw new AbpError('invalid_input', 'approve and reject: choose one');

    if (options.reject) {
      const test = await this.finishedTestUnit(job, 'reject');
      job = await repo.moveJob(id, 'reject', {
        effects: async (t) => {
          await repo.moveUnitsIn(t, id, 'reset', FRESH_TEST_UNIT, test.id);
        },
      });
      return { job: jobStatus(job), test_unit: null, executor: null, next_step: { action: 'edit_and_retest', job_id: id } };
    }

    // The worker's health is checked before any unit can run: a refusal here burns no units.
    const warning = options.approve || job.status === 'CREATED' ? await this.checkWorker(job) : null;
    // What this start's environment has of the variables the job reads: only an executor that has them all
    // claims its units (recorded in the move's own transaction, before any executor can see the job).
    const needs = jobEnvNeeds(this.deps.workers.get(job.worker_type), job.worker_config);
    const env_needs = JSON.stringify(needs);
    if (options.approve) {
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
      executor = await launcher.ensureExecutor(needs);
    } else if (job.status === 'CREATED') {
      if (options.skipTest || config.skipTest) {
        const approvedBy = options.skipTest ? (options.approvedBy ?? null) : 'script (ABP_SKIP_TEST)';
        job = await repo.moveJob(id, 'skip_test', { reason: warning, patch: { approved_by: approvedBy, env_needs } });
      } else {
        const first = await repo.firstUnit(id);
        job = await repo.moveJob(id, 'start_test', { patch: { test_unit_id: first?.id ?? null, env_needs }, reason: warning });
      }
      executor = await launcher.ensureExecutor(needs);
    } else if (job.status === 'TESTING' || job.status === 'RUNNING') {
      // Starting again re-runs a test unit that failed (it had one attempt; another is the
      // person's call, and this is how they make it). Otherwise it is harmless: it makes
      // sure an executor that has what the job needs is alive (the needs are this start's).
      await repo.setEnvNeeds(id, env_needs);
      if (job.status === 'TESTING') await this.retestIfFailed(job);
      executor = await launcher.ensureExecutor(needs);
    } else {
      throw new AbpError('illegal_transition', `job ${id} is ${job.status}; cannot start`, {
        details: { job_id: id, status: job.status, move: 'start', next: nextStepFor(job) },
      });
    }

    if (options.waitSeconds && options.waitSeconds > 0) {
      job = await this.waitUntilSettled(id, options.waitSeconds * 1000);
    }
    return { ...(await this.describe(job)), executor };
  }

  /** Where a job stands and what to do next, with its test unit while TESTING. Changes nothing. */
  async startState(id: number): Promise<StartResult> {
    return { ...(await this.describe(await this.deps.repo.requireJob(id))), executor: null };
  }

  private async describe(job: JobRow): Promise<Omit<StartResult, 'executor'>> {
    const test = job.status === 'TESTING' && job.test_unit_id !== null ? await this.unit(job.test_unit_id) : null;
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
      if (await this.settled(job)) return job;
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
    await this.checkWorker(job);
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

  async pause(id: number) {
    return jobStatus(await this.deps.repo.moveJob(id, 'pause', { reason: 'user' }));
  }

  async resume(id: number) {
    const warning = await this.checkWorker(await this.deps.repo.requireJob(id));
    const job = await this.deps.repo.moveJob(id, 'resume', { reason: warning });
    await this.deps.launcher.ensureExecutor(storedNeeds(job));
    return jobStatus(job);
  }

  /** Cancels the job and its pending and running units; executors kill the running ones' processes. */
  async cancel(id: number) {
    const { repo } = this.deps;
    const job = await repo.moveJob(id, 'cancel', {
      reason: 'user',
      effects: async (t) => {
        await repo.moveUnitsIn(t, id, 'cancel', { lease_owner: null, lease_expires_at: null, finished_at: Date.now(), error: 'cancelled by user' });
      },
    });
    await this.jobEnded(id);
    return jobStatus(job);
  }

  /** Gives every FAILED unit a fresh set of retries; a FAILED job runs again. */
  async retryFailed(id: number) {
    const { repo } = this.deps;
    const job = await repo.requireJob(id);
    const reset = { failures: 0, available_at: 0, error: null, error_kind: null, finished_at: null };
    let moved = 0;
    if (job.status === 'FAILED') {
      await repo.moveJob(id, 'retry', {
        effects: async (t) => {
          moved = await repo.moveUnitsIn(t, id, 'retry', reset);
        },
      });
    } else if (job.status === 'RUNNING' || job.status === 'PAUSED') {
      moved = await repo.tx((t) => repo.moveUnitsIn(t, id, 'retry', reset));
    } else {
      throw new AbpError('illegal_transition', `job ${id} is ${job.status}; only a FAILED, RUNNING or PAUSED job has failed units to retry`, {
        details: { job_id: id, status: job.status, move: 'retry' },
      });
    }
    if (moved > 0) await this.deps.launcher.ensureExecutor(storedNeeds(job));
    return { ...jobStatus(await repo.requireJob(id)), retried: moved };
  }

  /** Runs one finished unit again with fresh retries (see UnitControl). */
  retryUnit(unitId: number) {
    return this.units.retryUnit(unitId);
  }

  /** Stops one running unit: FAILED, or back to PENDING unspent (see UnitControl). */
  stopUnit(unitId: number, then: 'failed' | 'pending' = 'failed') {
    return this.units.stopUnit(unitId, then);
  }

  async status(id: number) {
    return jobStatus(await this.deps.repo.requireJob(id));
  }

  async getJob(id: number) {
    return jobDetail(await this.deps.repo.requireJob(id));
  }

  async listJobs(filter: { status?: JobState[] } = {}, page = { limit: 50, offset: 0 }) {
    return (await this.deps.repo.listJobs(filter, page)).map(jobStatus);
  }

  async listUnits(id: number, filter: { status?: UnitState[] } = {}, page = { limit: 100, offset: 0 }) {
    await this.deps.repo.requireJob(id);
    return (await this.deps.repo.listUnits(id, filter, page)).map(unitSummary);
  }

  async unit(unitId: number) {
    const unit = await this.units.requireUnit(unitId);
    return unitDetail(unit, await this.deps.repo.unitEvents(unitId));
  }

  /** Every item unit's outcome, streamed in id order (the synthesis unit is the job's result instead). */
  async *results(id: number, filter: { status?: UnitState[] } = {}) {
    await this.deps.repo.requireJob(id);
    for await (const unit of this.deps.repo.iterateUnits(id, { ...filter, kind: 'item' })) yield resultLine(unit);
  }

  /** One page of results, for front ends that page instead of streaming. */
  async resultsPage(id: number, filter: { status?: UnitState[] } = {}, page = { limit: 50, offset: 0 }) {
    await this.deps.repo.requireJob(id);
    return (await this.deps.repo.listUnits(id, { ...filter, kind: 'item' }, page)).map(resultLine);
  }

  /** The results in an export format (jsonl, json, csv with structured outputs as columns, markdown), streamed as text chunks. */
  async *exportResults(id: number, format: ExportFormat, filter: { status?: UnitState[] } = {}): AsyncGenerator<string> {
    const job = await this.getJob(id);
    yield* exportResults(job, () => this.results(id, filter), format);
  }

  /** Writes the results to a sink (a folder, a table, a JSONL file). Idempotent: a re-run rewrites, never duplicates. */
  async writeSink(id: number, spec: unknown) {
    const job = await this.getJob(id);
    return writeSink(parseSinkSpec(spec), job, () => this.results(id));
  }

  /** Checks the job's worker before it runs; a warning becomes the job's status_reason (see worker-health.ts). */
  private checkWorker(job: JobRow): Promise<string | null> {
    return checkWorker(this.deps, job);
  }

  /** Every worker type's health, for `abp doctor` and the MCP server. */
  doctor() {
    return doctor(this.deps.workers);
  }
}
