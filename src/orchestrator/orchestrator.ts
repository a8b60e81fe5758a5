import { Buffer } from 'node:buffer';
import { enumeratorInfo, type CodeApprovalRequest, type Enumerator, type Item } from '../contracts/enumerator.js';
import { jobTypeOf, type JobType } from '../contracts/job-type.js';
import type { Registry } from '../contracts/registry.js';
import { workerInfo, type Worker, type WorkerHealth } from '../contracts/worker.js';
import type { AbpConfig } from '../config.js';
import { AbpError, errorMessage } from '../domain/errors.js';
import { nextStepFor, type NextStep } from '../domain/next-step.js';
import { parseJobSpec, parseWith, type JobSpec } from '../domain/job-spec.js';
import { redactUrlPasswords } from '../domain/redact.js';
import { isTerminalJob, isTerminalUnit, type JobState, type UnitState } from '../domain/states.js';
import { placeholdersOf } from '../domain/template.js';
import { envNeeds, type Launcher, type LaunchResult } from '../executor/launcher.js';
import { compileOutputSchema } from '../executor/output-schema.js';
import { PENDING_APPROVAL, type Repository, type UnitDraft } from '../store/repository.js';
import type { JobRow, UnitRow } from '../store/schema.js';
import type { PromptSynthesizer } from './prompt-synthesizer.js';
import { Monitor } from './monitor.js';
import { SkipLog } from './skip-log.js';
import { isSyncSpec, SyncJobs } from '../sync/sync-jobs.js';
import { exportResults, type ExportFormat } from './exports.js';
import { parseSinkSpec, writeSink } from '../sinks/index.js';
import { jobDetail, jobStatus, resultLine, unitDetail, unitSummary, type JobStatus } from './views.js';

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
const FRESH_TEST_UNIT = { failures: 0, available_at: 0, output: null, structured_output: null, error: null, error_kind: null, prompt: null, finished_at: null };

/** Items larger than this are refused at creation: one item must fit one prompt. */
export const MAX_ITEM_BYTES = 1024 * 1024;


/**
 * Creates jobs, runs the test unit, starts, pauses, resumes, cancels, retries and
 * reports. Every front end (CLI, MCP, HTTP) goes through here.
 */
export class Orchestrator {
  constructor(private readonly deps: OrchestratorDeps) {}

  #monitor: Monitor | undefined;

  #sync: SyncJobs | undefined;

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

  /**
   * The one place a spec gets its defaults, for every front end (CLI, MCP, HTTP):
   * the installation's (ABP_MAX_RETRIES) where the spec says nothing, then the schema's.
   */
  private parseSpec(input: unknown): JobSpec {
    return parseJobSpec(input, { max_retries: this.deps.config.defaultMaxRetries });
  }

  /** Validates a spec against the registries and returns it parsed, with every default filled in. */
  validate(input: unknown): { spec: JobSpec; enumerator: Enumerator<any>; enumeratorConfig: unknown; worker: Worker<any>; workerConfig: unknown; template: string } {
    const spec = this.parseSpec(input);
    const enumerator = this.deps.enumerators.get(spec.enumerator_type);
    const enumeratorConfig = parseWith(enumerator.configSchema, spec.enumerator_config, 'enumerator_config');
    const worker = this.deps.workers.get(spec.worker_type);
    const workerConfig = parseWith(worker.configSchema, spec.worker_config, 'worker_config');
    const template = spec.prompt_template ?? this.deps.synthesizer.template(enumerator.promptTemplate);
    this.deps.synthesizer.validate(template);
    if (spec.output_schema) compileOutputSchema(spec.output_schema);
    return { spec, enumerator, enumeratorConfig, worker, workerConfig, template };
  }

  /**
   * Streams the enumeration into a new job; an error partway leaves no job behind.
   * Code that needs a person's approval (the dynamic enumerator) and has none yet
   * makes a job pending approval instead: CREATED, no units, and `approval` says
   * which hash to approve (see approveCode).
   */
  async createJob(input: unknown, signal: AbortSignal = new AbortController().signal) {
    // A sync job's enumeration is its plan (health, snapshots, baselines, guardrails).
    if (isSyncSpec(input)) return this.sync.createJob(this.parseSpec(input), signal);
    const { spec, enumerator, enumeratorConfig, worker, workerConfig, template } = this.validate(input);
    const row = { ...jobRow(spec, enumeratorConfig, workerConfig, template), agent_access: worker.access?.(workerConfig) ?? null };
    const request = enumerator.approvalFor?.(enumeratorConfig);
    if (request && !(await this.deps.repo.isCodeApproved(request.code_sha256))) {
      const job = await this.deps.repo.createPendingJob(row);
      return { ...jobDetail(job), approval: approvalView(job.id, request) };
    }
    const skipped = new SkipLog();
    const items = enumerator.enumerate(enumeratorConfig, {
      signal,
      onSkip: skipped.add,
      ...(request ? { approvedCodeSha256: request.code_sha256 } : {}),
    });
    const checks = draftChecks(spec.enumerator_type, enumeratorConfig, template, workerConfig, spec.post_processing_prompt, 'no job was created');
    const job = await this.deps.repo.createJob(row, drafts(items, spec.enumerator_type, checks), () => skipped.events());
    return { ...jobDetail(job), ...(skipped.count ? { skipped: skipped.summary() } : {}) };
  }

  /** The code a pending job waits on, and how to approve it. */
  async pendingApproval(id: number) {
    const { job, request } = await this.approvalRequest(id);
    return { ...jobStatus(job), approval: approvalView(id, request) };
  }

  /**
   * A person approves a pending job's code by naming its exact sha256; the code
   * then runs and the units are inserted, in one transaction with the approval.
   * A hash that differs from the job's code (the code changed, or a typo) is refused.
   */
  async approveCode(id: number, codeSha256: string, approvedBy = 'cli', signal: AbortSignal = new AbortController().signal) {
    const hash = codeSha256.trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hash)) {
      throw new AbpError('invalid_input', `code_sha256: expected 64 hex digits, got ${JSON.stringify(codeSha256)}`);
    }
    const { job, enumerator, config, request } = await this.approvalRequest(id);
    if (hash !== request.code_sha256) {
      throw new AbpError(
        'conflict',
        `code_sha256: ${hash} does not match job ${id}'s code (sha256 ${request.code_sha256}); the code is not the one that was approved. Review the code again and approve its own hash`,
        { details: { job_id: id, code_sha256: request.code_sha256, next: { action: 'approve_code', job_id: id, code_sha256: null } satisfies NextStep } },
      );
    }
    const skipped = new SkipLog();
    const items = enumerator.enumerate(config, { signal, onSkip: skipped.add, approvedCodeSha256: hash });
    const checks = draftChecks(job.enumerator_type, config, job.prompt_template, JSON.parse(job.worker_config), job.post_processing_prompt, 'the job stays pending approval');
    const filled = await this.deps.repo.fillPendingJob(id, { code_sha256: hash, approved_by: approvedBy }, drafts(items, job.enumerator_type, checks), () =>
      skipped.events(),
    );
    return { ...jobDetail(filled), ...(skipped.count ? { skipped: skipped.summary() } : {}) };
  }

  private async approvalRequest(id: number) {
    const job = await this.deps.repo.requireJob(id);
    if (job.status !== 'CREATED' || job.status_reason !== PENDING_APPROVAL) {
      throw new AbpError('conflict', `job ${id} is ${job.status}${job.status_reason ? ` (${job.status_reason})` : ''}; it is not waiting for code approval`);
    }
    const enumerator = this.deps.enumerators.get(job.enumerator_type);
    const config = parseWith(enumerator.configSchema, JSON.parse(job.enumerator_config), 'enumerator_config');
    const request = enumerator.approvalFor?.(config);
    if (!request) throw new AbpError('conflict', `job ${id}: the ${job.enumerator_type} enumerator runs no code that needs approval`);
    return { job, enumerator, config, request };
  }

  /**
   * What creating this spec would produce, creating nothing: the item count, the
   * first items and the first unit's rendered prompt. Unapproved code is not run;
   * the answer carries the hash to approve instead.
   */
  async preview(input: unknown, options: { sample?: number; signal?: AbortSignal } = {}) {
    if (isSyncSpec(input)) return this.sync.preview(this.parseSpec(input), options.signal);
    const { spec, enumerator, enumeratorConfig, workerConfig, template } = this.validate(input);
    const sample = Math.max(0, options.sample ?? 5);
    const base = { name: spec.name, enumerator_type: spec.enumerator_type, worker_type: spec.worker_type };
    const request = enumerator.approvalFor?.(enumeratorConfig);
    if (request && !(await this.deps.repo.isCodeApproved(request.code_sha256))) {
      return {
        ...base,
        count: null,
        items: [],
        first_prompt: null,
        skipped: null,
        approval: { status: PENDING_APPROVAL, ...request, next_step: null },
      };
    }
    const skipped = new SkipLog();
    const stream = enumerator.enumerate(enumeratorConfig, {
      signal: options.signal ?? new AbortController().signal,
      onSkip: skipped.add,
      ...(request ? { approvedCodeSha256: request.code_sha256 } : {}),
    });
    let count = 0;
    const items: Item[] = [];
    const checks = draftChecks(spec.enumerator_type, enumeratorConfig, template, workerConfig, spec.post_processing_prompt, 'no job would be created');
    for await (const draft of drafts(stream, spec.enumerator_type, checks)) {
      count++;
      if (items.length < Math.max(1, sample)) items.push(JSON.parse(draft.payload) as Item);
    }
    const first = items[0];
    if (first === undefined) throw new AbpError('enumeration_failed', 'the enumeration produced no items; no job would be created');
    const first_prompt = this.deps.synthesizer.render(
      template,
      { intent: spec.user_intent, job: { id: 0, name: spec.name }, output_schema: spec.output_schema ?? null },
      first,
    );
    return { ...base, count, items: items.slice(0, sample), first_prompt, skipped: skipped.count ? skipped.summary() : null, approval: null };
  }

  /** Every enumerator type with its description and config JSON Schema. */
  listEnumerators() {
    return this.deps.enumerators.list().map(enumeratorInfo);
  }

  /** Every worker type with its description, config JSON Schema and health checks. */
  async listWorkers() {
    const health = await this.doctor();
    return this.deps.workers.list().map((w) => ({
      ...workerInfo(w),
      health: health.filter((h) => h.worker_type === w.type).map(({ label, health }) => ({ label, ...health })),
    }));
  }

  /** Edits the prompt or intent of a CREATED job (e.g. after rejecting its test unit). */
  /**
   * Edits a job. The prompt, intent and name only while CREATED; the budget and
   * auto-resume on any job that has not ended (raise the budget, then resume).
   */
  async updateJob(
    id: number,
    fields: { prompt_template?: string; user_intent?: string; name?: string; max_cost_usd?: number | null; auto_resume?: boolean },
  ) {
    const { prompt_template, user_intent, name, max_cost_usd, auto_resume } = fields;
    if (prompt_template !== undefined) this.deps.synthesizer.validate(prompt_template);
    if (max_cost_usd !== undefined && max_cost_usd !== null && !(max_cost_usd > 0)) {
      throw new AbpError('invalid_input', `max_cost_usd: expected a positive number, got ${max_cost_usd}`);
    }
    const text = Object.fromEntries(Object.entries({ prompt_template, user_intent, name }).filter(([, v]) => v !== undefined));
    let job = await this.deps.repo.requireJob(id);
    if (Object.keys(text).length > 0) job = await this.deps.repo.updateJobFields(id, ['CREATED'], text);
    const spending = {
      ...(max_cost_usd !== undefined ? { max_cost_usd } : {}),
      ...(auto_resume !== undefined ? { auto_resume: auto_resume ? 1 : 0 } : {}),
    };
    if (Object.keys(spending).length > 0) {
      job = await this.deps.repo.updateJobFields(id, ['CREATED', 'TESTING', 'RUNNING', 'PAUSED'], spending);
    }
    return jobDetail(job);
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
    const needs = this.envNeedsOf(job);
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

  /**
   * The variables the job reads (its {{env.NAME}} references and its worker's own)
   * that this process has: an executor without one of them would fail its units.
   */
  private envNeedsOf(job: JobRow): string[] {
    const worker = this.deps.workers.get(job.worker_type);
    const raw = JSON.parse(job.worker_config) as unknown;
    let parsed: unknown;
    try {
      parsed = parseWith(worker.configSchema, raw, 'worker_config');
    } catch {
      parsed = undefined;
    }
    return envNeeds(worker, raw, parsed);
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

  private async requireUnit(unitId: number): Promise<UnitRow> {
    const unit = await this.deps.repo.getUnit(unitId);
    if (!unit) throw new AbpError('not_found', `unit ${unitId} does not exist`);
    return unit;
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
    const unit = await this.requireUnit(unitId);
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

  /** The state of the whole installation: live executors and jobs by status. */
  async overview() {
    const { repo, config } = this.deps;
    const executors = await repo.liveExecutors(config.heartbeatMs * 3);
    return {
      executors: executors.map((e) => ({ id: e.id, hostname: e.hostname, pid: e.pid, version: e.version, heartbeat_age_ms: Date.now() - Number(e.heartbeat_at) })),
      jobs_by_status: await repo.countJobsByStatus(),
    };
  }

  /**
   * Checks the job's worker before it runs: auth_failed and down refuse with the
   * worker's own advice (how to log in, which env var to set). The result is an
   * event on the job; a warning (e.g. permission checks turned off) is returned
   * so that it becomes the job's status_reason.
   */
  private async checkWorker(job: JobRow): Promise<string | null> {
    const worker = this.deps.workers.get(job.worker_type);
    const config = parseWith(worker.configSchema, JSON.parse(job.worker_config), 'worker_config');
    const health = await worker.health(config);
    await this.deps.repo.appendEvent(job.id, 'health', { worker_type: job.worker_type, ...health });
    if (health.status === 'auth_failed' || health.status === 'down') {
      const what = health.status === 'auth_failed' ? 'is not authenticated' : 'is unavailable';
      throw new AbpError('conflict', `job ${job.id} not started: the ${job.worker_type} worker ${what} (${health.status}): ${health.details}`, {
        details: { job_id: job.id, worker_type: job.worker_type, health },
      });
    }
    return health.warnings?.length ? `warning: ${health.warnings.join('; ')}` : null;
  }

  /** Every worker type's health, for `abp doctor` and the MCP server. */
  async doctor(): Promise<{ worker_type: string; label: string; health: WorkerHealth }[]> {
    type Check = { worker_type: string; label: string; health: WorkerHealth };
    const checks = this.deps.workers.list().flatMap((worker): Promise<Check>[] => {
      const probes = worker.healthProbes ?? [{ label: worker.type, config: {} }];
      if (probes.length === 0) {
        return [Promise.resolve({ worker_type: worker.type, label: worker.type, health: { status: 'ok' as const, details: "nothing to check without a job: each job's worker_config is checked when it starts" } })];
      }
      return probes.map(async (probe) => {
        try {
          const config = parseWith(worker.configSchema, probe.config, 'worker_config');
          return { worker_type: worker.type, label: probe.label, health: await worker.health(config) };
        } catch (err) {
          return { worker_type: worker.type, label: probe.label, health: { status: 'down' as const, details: `health check failed: ${errorMessage(err)}` } };
        }
      });
    });
    return Promise.all(checks);
  }
}

/** The variables a job was started needing (jobs.env_needs), for keeping it served later. */
export function storedNeeds(job: Pick<JobRow, 'env_needs'>): string[] {
  if (!job.env_needs) return [];
  try {
    const names = JSON.parse(job.env_needs) as unknown;
    return Array.isArray(names) ? names.map(String) : [];
  } catch {
    return [];
  }
}

function jobRow(spec: JobSpec, enumeratorConfig: unknown, workerConfig: unknown, template: string) {
  return {
    type: 'batch',
    name: spec.name,
    user_intent: spec.user_intent,
    enumerator_type: spec.enumerator_type,
    enumerator_config: JSON.stringify(enumeratorConfig, redactUrlPasswords),
    worker_type: spec.worker_type,
    worker_config: JSON.stringify(workerConfig),
    max_workers: spec.max_workers,
    max_retries: spec.max_retries,
    timeout_seconds: spec.timeout_seconds,
    output_schema: spec.output_schema ? JSON.stringify(spec.output_schema) : null,
    max_cost_usd: spec.max_cost_usd ?? null,
    post_processing_prompt: spec.post_processing_prompt ?? null,
    allow_partial: spec.allow_partial ? 1 : 0,
    auto_resume: spec.auto_resume ? 1 : 0,
    prompt_template: template,
  };
}

/** What a person needs to approve a job's code: the code, the context it is given, its hash, and the command. */
function approvalView(jobId: number, request: CodeApprovalRequest) {
  return {
    status: PENDING_APPROVAL,
    code: request.code,
    ...(request.context === undefined ? {} : { context: request.context }),
    code_sha256: request.code_sha256,
    next_step: { action: 'approve_code', job_id: jobId, code_sha256: request.code_sha256 } satisfies NextStep,
  };
}

/** A `{{item.FIELD}}` reference, and the spec field that holds it. */
interface ItemRef {
  field: string;
  where: 'prompt_template' | 'worker_config';
}

/** The synthesis unit's own item fields (see executor/synthesis.ts): a worker config may name them. */
const SYNTHESIS_FIELDS = ['manifest_path', 'summary', 'units'];

/** The item fields a prompt template and a worker config refer to. */
function itemRefs(template: string, workerConfig: unknown, postProcessing: string | null | undefined): ItemRef[] {
  const refs = (text: string, where: ItemRef['where']) =>
    placeholdersOf(text)
      .filter((p) => p.startsWith('item.'))
      .map((p) => ({ field: p.split('.')[1] as string, where }))
      .filter((r) => !(postProcessing && SYNTHESIS_FIELDS.includes(r.field)));
  return [...refs(template, 'prompt_template'), ...refs(JSON.stringify(workerConfig ?? {}), 'worker_config')];
}

/** The input an enumeration reads, as errors name it: "csv data/rows.csv". */
function inputOf(type: string, config: unknown): string {
  const c = (config ?? {}) as Record<string, unknown>;
  const path = c.file_path ?? c.base_directory;
  if (typeof path === 'string') return `${type} ${path}`;
  if (typeof c.query === 'string') return `${type} query ${JSON.stringify(c.query.length > 80 ? `${c.query.slice(0, 80)}…` : c.query)}`;
  return `the ${type} enumerator`;
}

/**
 * Checked while the items stream: an enumeration that yields nothing, and a
 * `{{item.FIELD}}` that no item has (it would render empty in every unit), are
 * errors that name the input or the field. `outcome` says what the error means here.
 */
interface DraftChecks {
  input: string;
  outcome: string;
  refs: ItemRef[];
}

function draftChecks(type: string, enumeratorConfig: unknown, template: string, workerConfig: unknown, postProcessing: string | null | undefined, outcome: string): DraftChecks {
  return { input: inputOf(type, enumeratorConfig), outcome, refs: itemRefs(template, workerConfig, postProcessing) };
}

async function* drafts(items: AsyncIterable<Item>, type: string, checks: DraftChecks): AsyncGenerator<UnitDraft> {
  let index = 0;
  const unseen = new Map(checks.refs.map((r) => [r.field, r]));
  let firstKeys: string[] = [];
  try {
    for await (const item of items) {
      index++;
      if (index === 1) firstKeys = Object.keys(item);
      for (const field of unseen.keys()) if (Object.hasOwn(item, field)) unseen.delete(field);
      const payload = JSON.stringify(item);
      const bytes = Buffer.byteLength(payload);
      const id = item._id ?? index;
      if (bytes > MAX_ITEM_BYTES) {
        throw new AbpError(
          'invalid_input',
          `item ${index} (_id ${JSON.stringify(id)}) is ${bytes} bytes; one item may be at most ${MAX_ITEM_BYTES} bytes`,
        );
      }
      yield { item_id: String(id), payload };
    }
  } catch (err) {
    if (err instanceof AbpError) throw err;
    throw new AbpError('enumeration_failed', `${type} enumerator failed after ${index} items: ${errorMessage(err)}`, { cause: err });
  }
  if (index === 0) throw new AbpError('enumeration_failed', `${checks.input}: the enumeration produced no items; ${checks.outcome}`);
  const [missing] = unseen.values();
  if (missing) {
    throw new AbpError(
      'invalid_input',
      `${missing.where}: {{item.${missing.field}}} names a field that no item has (item 1 has ${firstKeys.join(', ')}); ${checks.outcome}`,
    );
  }
}
