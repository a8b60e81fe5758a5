import { Buffer } from 'node:buffer';
import { dirname, resolve } from 'node:path';
import type { JobType } from '../contracts/job-type.js';
import { enumeratorInfo, type CodeApprovalRequest, type Enumerator, type Item } from '../contracts/enumerator.js';
import { workerInfo, type Worker } from '../contracts/worker.js';
import { AbpError, errorMessage } from '../domain/errors.js';
import type { NextStep } from '../domain/next-step.js';
import { parseJobSpec, parseWith, type JobSpec } from '../domain/job-spec.js';
import { redactUrlPasswords } from '../domain/redact.js';
import { placeholdersOf } from '../domain/template.js';
import { compileOutputSchema } from '../executor/output-schema.js';
import { CODE_REFUSED, PENDING_APPROVAL, type UnitDraft } from '../store/repository.js';
import { jobDetail, jobStatus } from '../wire/views.js';
import type { OrchestratorDeps } from './orchestrator.js';
import { SkipLog } from './skip-log.js';
import { doctor } from './worker-health.js';

/** Items larger than this are refused at creation: one item must fit one prompt. */
export const MAX_ITEM_BYTES = 1024 * 1024;

/**
 * The batch job type: a spec checked against the registries, its enumeration
 * streamed into one transaction (whole or not at all), dynamic code held until
 * a person approves its exact hash, the dry run of all of it, and the edits a
 * job allows. It takes every spec no other job type accepts; its jobs need
 * nothing when they end (their units' outcomes are their result).
 */
export class BatchJobs implements JobType {
  readonly type = 'batch';

  constructor(private readonly deps: Pick<OrchestratorDeps, 'repo' | 'config' | 'enumerators' | 'workers' | 'synthesizer'>) {}

  /** The default job type: any spec another type does not accept. */
  accepts(): boolean {
    return true;
  }

  /**
   * The one place a spec gets its defaults, for every front end (CLI, MCP, HTTP)
   * and every job type: the installation's (ABP_MAX_RETRIES) where the spec says
   * nothing, then the schema's.
   */
  parseSpec(input: unknown): JobSpec {
    return parseJobSpec(input, { max_retries: this.deps.config.defaultMaxRetries });
  }

  /** Validates a spec against the registries and returns it parsed, with every default filled in. */
  validate(input: unknown) {
    return this.check(this.parseSpec(input));
  }

  /** A parsed spec against the registries: its enumerator, worker, their configs and the prompt template. */
  private check(spec: JobSpec): { spec: JobSpec; enumerator: Enumerator<any>; enumeratorConfig: unknown; worker: Worker<any>; workerConfig: unknown; template: string } {
    const enumerator = this.deps.enumerators.get(spec.enumerator_type);
    const enumeratorConfig = parseWith(enumerator.configSchema, spec.enumerator_config, 'enumerator_config');
    const worker = this.deps.workers.get(spec.worker_type);
    const workerConfig = parseWith(worker.configSchema, spec.worker_config, 'worker_config');
    const template = spec.prompt_template ?? this.deps.synthesizer.template(enumerator.promptTemplate);
    this.deps.synthesizer.validate(template);
    if (spec.output_schema) compileOutputSchema(spec.output_schema);
    if (spec.max_cost_per_unit_usd !== undefined && !worker.capsUnitCost) {
      const can = this.deps.workers.list().filter((w) => w.capsUnitCost).map((w) => w.type);
      throw new AbpError(
        'invalid_input',
        `max_cost_per_unit_usd: the ${worker.type} worker cannot stop a unit at a cost (${can.length ? `only ${can.join(', ')} can` : 'no worker can'}); use max_cost_usd for the job's budget`,
      );
    }
    return { spec, enumerator, enumeratorConfig, worker, workerConfig, template };
  }

  /**
   * Streams the enumeration into a new job; an error partway leaves no job behind.
   * Code that needs a person's approval (the dynamic enumerator) and has none yet
   * makes a job pending approval instead: CREATED, no units, and `approval` says
   * which hash to approve (see approveCode).
   */
  async create(parsed: JobSpec, signal: AbortSignal) {
    const { spec, enumerator, enumeratorConfig, worker, workerConfig, template } = this.check(parsed);
    const row = {
      ...jobRow(spec, enumeratorConfig, workerConfig, template),
      agent_access: worker.access?.(workerConfig) ?? null,
      price_factor: worker.batch?.enabled(workerConfig) ? worker.batch.priceFactor : 1,
    };
    const request = enumerator.approvalFor?.(enumeratorConfig);
    if (request && !(await this.deps.repo.isCodeApproved(request.code_sha256))) {
      const job = await this.deps.repo.createPendingJob(row);
      return { ...jobDetail(job), approval: approvalView(job.id, request) };
    }
    const skipped = new SkipLog();
    const items = enumerator.enumerate(enumeratorConfig, {
      signal,
      onSkip: skipped.add,
      privatePaths: this.privatePaths(),
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
   * A person approves a pending job's code by naming its exact sha256 (of the
   * code with its context and limits); the code then runs and the units are
   * inserted, in one transaction with the approval. A hash that differs (another
   * job's, a typo) is refused, and so is any approval of a job whose code a person
   * refused (refuseCode): a refusal is final.
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
        `code_sha256: ${hash} does not match job ${id}'s code (sha256 ${request.code_sha256}, of the code with its context and limits); the code is not the one that was approved. Review the code again and approve its own hash`,
        { details: { job_id: id, code_sha256: request.code_sha256, next: { action: 'approve_code', job_id: id, code_sha256: null } satisfies NextStep } },
      );
    }
    const skipped = new SkipLog();
    const items = enumerator.enumerate(config, { signal, onSkip: skipped.add, approvedCodeSha256: hash, privatePaths: this.privatePaths() });
    const checks = draftChecks(job.enumerator_type, config, job.prompt_template, JSON.parse(job.worker_config), job.post_processing_prompt, 'the job stays pending approval');
    const filled = await this.deps.repo.fillPendingJob(id, { code_sha256: hash, approved_by: approvedBy }, drafts(items, job.enumerator_type, checks), () =>
      skipped.events(),
    );
    return { ...jobDetail(filled), ...(skipped.count ? { skipped: skipped.summary() } : {}) };
  }

  /**
   * A person refused a pending job's code (they said no in the approval dialog).
   * The job is cancelled and the refusal recorded: no approval of it, by any front
   * end or hash, is accepted afterwards. To ask again, create a new job.
   */
  async refuseCode(id: number, refusedBy: string) {
    const { request } = await this.approvalRequest(id);
    const job = await this.deps.repo.refusePendingJob(id, { code_sha256: request.code_sha256, refused_by: refusedBy });
    return { ...jobStatus(job), approval: { status: CODE_REFUSED, code_sha256: request.code_sha256, refused_by: refusedBy } };
  }

  /** abp's own folders, which code an enumerator runs must not see: its home, and its SQLite database's folder. */
  private privatePaths(): string[] {
    const { home, db } = this.deps.config;
    const file = db && db !== ':memory:' && !/^[a-z][a-z0-9+.-]*:/i.test(db);
    return [home, ...(file ? [dirname(resolve(db))] : [])];
  }

  private async approvalRequest(id: number) {
    const job = await this.deps.repo.requireJob(id);
    if (job.status === 'CANCELLED' && job.status_reason === CODE_REFUSED) {
      throw new AbpError(
        'conflict',
        `job ${id}: a person refused its code, and a refusal is final: it cannot be approved or run. Create a new job if the person wants to be asked again`,
        { details: { job_id: id, status: job.status, status_reason: job.status_reason, next: { action: 'create_job' } satisfies NextStep } },
      );
    }
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
  async preview(parsed: JobSpec, options: { sample?: number; signal: AbortSignal }) {
    const { spec, enumerator, enumeratorConfig, workerConfig, template } = this.check(parsed);
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
      signal: options.signal,
      onSkip: skipped.add,
      privatePaths: this.privatePaths(),
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

  /** Every enumerator type with its description and config JSON Schema. */
  listEnumerators() {
    return this.deps.enumerators.list().map(enumeratorInfo);
  }

  /** Every worker type with its description, config JSON Schema and health checks. */
  async listWorkers() {
    const health = await doctor(this.deps.workers);
    return this.deps.workers.list().map((w) => ({
      ...workerInfo(w),
      health: health.filter((h) => h.worker_type === w.type).map(({ label, health }) => ({ label, ...health })),
    }));
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
    max_cost_per_unit_usd: spec.max_cost_per_unit_usd ?? null,
    cache: spec.cache ? 1 : 0,
    post_processing_prompt: spec.post_processing_prompt ?? null,
    allow_partial: spec.allow_partial ? 1 : 0,
    auto_resume: spec.auto_resume ? 1 : 0,
    prompt_template: template,
  };
}

/** What a person needs to approve a job's code: the code, the context it is given, its limits, the hash of all three, and the command. */
function approvalView(jobId: number, request: CodeApprovalRequest) {
  return {
    status: PENDING_APPROVAL,
    code: request.code,
    ...(request.context === undefined ? {} : { context: request.context }),
    ...(request.limits === undefined ? {} : { limits: request.limits }),
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
