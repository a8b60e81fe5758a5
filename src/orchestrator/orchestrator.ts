import { type Enumerator } from '../contracts/enumerator.js';
import { jobTypeOf, type JobType } from '../contracts/job-type.js';
import type { Registry } from '../contracts/registry.js';
import { type Worker } from '../contracts/worker.js';
import type { AbpConfig } from '../config.js';
import { AbpError } from '../domain/errors.js';
import { isTerminalJob, type JobState, type UnitState } from '../domain/states.js';
import { storedNeeds, type Launcher } from '../executor/launcher.js';
import type { Repository, UnitPage } from '../store/repository.js';
import type { JobRow, UnitRow } from '../store/schema.js';
import type { PromptSynthesizer } from '../executor/prompt-synthesizer.js';
import { BatchJobs } from './batch-jobs.js';
import { Monitor } from './monitor.js';
import { UnitControl } from './unit-control.js';
import { JobStart, type RunOptions, type StartResult } from './job-start.js';
import { checkWorker, doctor } from './worker-health.js';
import { SyncJobs } from '../sync/sync-jobs.js';
import { exportResults, type ExportFormat } from '../wire/exports.js';
import { parseSinkSpec, writeSink } from '../sinks/index.js';
import { jobDetail, jobLiveness, jobStatus, readJobStatus, resultLine, resultLineText, unitDetail, unitSummary } from '../wire/views.js';

export interface OrchestratorDeps {
  repo: Repository;
  config: AbpConfig;
  enumerators: Registry<Enumerator<any>>;
  workers: Registry<Worker<any>>;
  synthesizer: PromptSynthesizer;
  launcher: Launcher;
  /**
   * The job types besides batch (which the Orchestrator makes itself, and which
   * takes any spec the others do not accept): their creation, preview, and end,
   * called after a move here ends a job.
   */
  jobTypes: readonly JobType<Created, Previewed>[];
}

/** What creating a job answers, for every job type. */
type Created = Awaited<ReturnType<BatchJobs['create']>> | Awaited<ReturnType<SyncJobs['create']>>;
/** What previewing a spec answers, for every job type. */
type Previewed = Awaited<ReturnType<BatchJobs['preview']>> | Awaited<ReturnType<SyncJobs['preview']>>;

export { FRESH_TEST_UNIT, type RunOptions, type StartResult } from './job-start.js';

/**
 * Creates jobs, runs the test unit, starts, pauses, resumes, cancels, retries and
 * reports. Every front end (CLI, MCP, HTTP) goes through here.
 */
export class Orchestrator {
  constructor(private readonly deps: OrchestratorDeps) {}

  // Made on first use: a front end that only reads pays for none of them.
  #monitor: Monitor | undefined;
  #sync: SyncJobs | undefined;
  #batch: BatchJobs | undefined;
  #units: UnitControl | undefined;
  #starts: JobStart | undefined;

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
    const jobType = jobTypeOf(this.types, job.type);
    await jobType?.onEnded?.(id).catch(() => undefined);
  }

  /** Events, checkpoints, readiness, metric inputs and dashboard links (the HTTP front end's reads). */
  get monitor(): Monitor {
    return (this.#monitor ??= new Monitor(this.deps.repo, this.deps.config));
  }

  /** Starting a job: the test unit, its approval or rejection, skipping it. */
  private get starts(): JobStart {
    return (this.#starts ??= new JobStart(this.deps, (id) => this.unit(id)));
  }

  /** One unit at a time: a person's retry or stop. */
  private get units(): UnitControl {
    return (this.#units ??= new UnitControl(this.deps, (id) => this.jobEnded(id)));
  }

  /** The batch job type: specs checked against the registries, enumerations streamed into jobs, dynamic code approved. */
  private get batch(): BatchJobs {
    return (this.#batch ??= new BatchJobs(this.deps));
  }

  /** Every job type, batch last: it takes any spec the others do not accept. */
  private get types(): readonly JobType<Created, Previewed>[] {
    return [...this.deps.jobTypes.filter((t) => t.type !== this.batch.type), this.batch];
  }

  /** The job type a raw spec belongs to. */
  private typeOf(input: unknown): JobType<Created, Previewed> {
    return this.types.find((t) => t.accepts(input)) ?? this.batch;
  }

  /** Validates a batch spec against the registries and returns it parsed, with every default filled in. */
  validate(input: unknown) {
    return this.batch.validate(input);
  }

  /** Makes a job of the spec's type, whole or not at all (a batch job may wait for its code's approval). */
  createJob(input: unknown, signal: AbortSignal = new AbortController().signal): Promise<Created> {
    return this.typeOf(input).create(this.batch.parseSpec(input), signal);
  }

  /** The code a pending job waits on, and how to approve it. */
  pendingApproval(id: number) {
    return this.batch.pendingApproval(id);
  }

  /** A person approves a pending job's code by its exact sha256; the units are then created. */
  approveCode(id: number, codeSha256: string, approvedBy?: string, signal?: AbortSignal) {
    return this.batch.approveCode(id, codeSha256, approvedBy, signal);
  }

  /** A person refused a pending job's code: the job is cancelled, and no approval of it is accepted afterwards. */
  refuseCode(id: number, refusedBy: string) {
    return this.batch.refuseCode(id, refusedBy);
  }

  /** What creating this spec would produce, creating nothing. */
  preview(input: unknown, options: { sample?: number; signal?: AbortSignal } = {}): Promise<Previewed> {
    return this.typeOf(input).preview(this.batch.parseSpec(input), { ...options, signal: options.signal ?? new AbortController().signal });
  }

  /** Every enumerator type, and every worker type with its health: what a spec may name (see BatchJobs). */
  listEnumerators() {
    return this.batch.listEnumerators();
  }

  listWorkers() {
    return this.batch.listWorkers();
  }

  /** Edits a job: the prompt, intent and name while CREATED; the budget and auto-resume while it has not ended. */
  updateJob(id: number, fields: Parameters<BatchJobs['updateJob']>[1]) {
    return this.batch.updateJob(id, fields);
  }

  /*
   * Starting a job: one method per move (job-start.ts), which each front end
   * maps its flags (--approve, reject: true, skip_test, …) onto.
   */

  /** Runs the test unit (CREATED → TESTING); on a TESTING or RUNNING job, re-runs a failed test unit and makes sure of an executor. */
  startTest(id: number, options: RunOptions = {}): Promise<StartResult> {
    return this.starts.startTest(id, options);
  }

  /** Runs every unit without a test unit first: CREATED → RUNNING. */
  skipTest(id: number, options: RunOptions = {}): Promise<StartResult> {
    return this.starts.skipTest(id, options);
  }

  /** A person approves the finished test unit: TESTING → RUNNING. */
  approve(id: number, options: RunOptions = {}): Promise<StartResult> {
    return this.starts.approve(id, options);
  }

  /** A person rejects the test unit: TESTING → CREATED, for an edit and another test. */
  reject(id: number): Promise<StartResult> {
    return this.starts.reject(id);
  }

  /** Where a job stands and what to do next, with its test unit while TESTING. Changes nothing. */
  startState(id: number): Promise<StartResult> {
    return this.starts.startState(id);
  }

  /** Waits until the job needs a person or stops moving, or the time is up, keeping it served by an executor. */
  waitUntilSettled(id: number, timeoutMs: number, onTick?: (job: JobRow) => void): Promise<JobRow> {
    return this.starts.waitUntilSettled(id, timeoutMs, onTick);
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

  /**
   * Cancels the job and its pending and running units; executors kill the running
   * ones' processes. Units in a provider batch stay in it: the next executor to poll
   * the batch (due at once) cancels it at the provider and still records the
   * results that come back, which are billed.
   */
  async cancel(id: number) {
    const { repo } = this.deps;
    const job = await repo.moveJob(id, 'cancel', {
      reason: 'user',
      effects: async (t) => {
        await repo.moveUnitsIn(t, id, 'cancel', { lease_owner: null, lease_expires_at: null, finished_at: Date.now(), error: 'cancelled by user' });
        await repo.batches.pollSoon(t, id);
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

  /** A job's status, and for one that needs an executor, whether one is alive. */
  status(id: number) {
    return readJobStatus(this.deps.repo, id, this.deps.config.executorStaleMs);
  }

  async getJob(id: number) {
    const job = await this.deps.repo.requireJob(id);
    return { ...jobDetail(job), ...(await jobLiveness(this.deps.repo, job, this.deps.config.executorStaleMs)) };
  }

  async listJobs(filter: { status?: JobState[] } = {}, page = { limit: 50, offset: 0 }) {
    return (await this.deps.repo.listJobs(filter, page)).map(jobStatus);
  }

  /**
   * A page of a job's units in id order: `after` a unit id (keyset: as cheap at
   * the millionth unit as at the first; the next page is after the last unit_id
   * of this one), or past `offset` units (walks them: small offsets only).
   */
  async listUnits(id: number, filter: { status?: UnitState[] } = {}, page: UnitPage = { limit: 100, offset: 0 }) {
    await this.deps.repo.requireJob(id);
    return (await this.deps.repo.listUnits(id, filter, checkedPage(page))).map(unitSummary);
  }

  async unit(unitId: number) {
    const unit = await this.units.requireUnit(unitId);
    return unitDetail(unit, await this.deps.repo.unitEvents(unitId));
  }

  /** Every item unit's outcome, streamed in id order (the synthesis unit is the job's result instead). */
  async *results(id: number, filter: { status?: UnitState[] } = {}) {
    await this.deps.repo.requireJob(id);
    yield* this.itemUnits(id, filter, resultLine);
  }

  /** The job's item units in id order, each as `view` makes it. */
  private async *itemUnits<T>(id: number, filter: { status?: UnitState[] }, view: (unit: UnitRow) => T): AsyncGenerator<T> {
    for await (const unit of this.deps.repo.iterateUnits(id, { ...filter, kind: 'item' })) yield view(unit);
  }

  /** One page of results, for front ends that page instead of streaming. */
  async resultsPage(id: number, filter: { status?: UnitState[] } = {}, page: UnitPage = { limit: 50, offset: 0 }) {
    await this.deps.repo.requireJob(id);
    return (await this.deps.repo.listUnits(id, { ...filter, kind: 'item' }, checkedPage(page))).map(resultLine);
  }

  /** The results in an export format (jsonl, json, csv with structured outputs as columns, markdown), streamed as text chunks. */
  async *exportResults(id: number, format: ExportFormat, filter: { status?: UnitState[] } = {}): AsyncGenerator<string> {
    const job = await this.getJob(id);
    yield* exportResults(job, { lines: () => this.itemUnits(id, filter, resultLine), texts: () => this.itemUnits(id, filter, resultLineText) }, format);
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

/** A unit page as the store takes it: `after` a unit id or an `offset`, not both. */
function checkedPage(page: UnitPage): UnitPage {
  const { after, offset } = page;
  if (after !== undefined && !(Number.isSafeInteger(after) && after >= 0)) {
    throw new AbpError('invalid_input', `after: expected a unit id (an integer ≥ 0) to list the units after, got ${JSON.stringify(after)}`);
  }
  if (after !== undefined && offset) throw new AbpError('invalid_input', 'after: give either after (a unit id) or offset, not both');
  return page;
}
