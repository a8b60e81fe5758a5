import { isTerminalJob } from '../domain/states.js';
import type { JobReader } from '../store/quick-read.js';
import type { BatchRow, ExecutorRow, JobRow, UnitEventRow, UnitRow } from '../store/schema.js';
import { isoTimeOrNull as iso } from '../domain/iso-time.js';

/** A JSON column as its value; text that is not JSON stays text; null stays null. The one decoder of JSON columns. */
export function parseJson(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** The status of a job as every front end shows it. */
export function jobStatus(job: JobRow) {
  const done = job.succeeded + job.failed + job.cancelled;
  const elapsedMs = job.started_at === null ? 0 : (job.finished_at ?? Date.now()) - Number(job.started_at);
  const rate = elapsedMs > 0 && done > 0 ? done / (elapsedMs / 1000) : null;
  const remaining = job.pending + job.running + job.submitted;
  return {
    job_id: job.id,
    name: job.name,
    type: job.type,
    status: job.status,
    status_reason: job.status_reason,
    total: job.total,
    counts: {
      pending: job.pending,
      running: job.running,
      submitted: job.submitted,
      succeeded: job.succeeded,
      failed: job.failed,
      cancelled: job.cancelled,
    },
    progress: job.total > 0 ? done / job.total : 0,
    rate_per_second: rate === null ? null : Math.round(rate * 100) / 100,
    eta_seconds: rate && job.status === 'RUNNING' ? Math.round(remaining / rate) : null,
    cost_usd: job.cost_usd,
    tokens: { input: Number(job.input_tokens), output: Number(job.output_tokens) },
    budget: job.max_cost_usd === null ? null : { max_cost_usd: job.max_cost_usd, spent_usd: job.cost_usd, reserved_usd: job.reserved_usd },
    estimate: estimate(job, rate),
    estimate_note: noEstimate(job),
    synthesis_unit_id: job.synthesis_unit_id,
    test_unit_id: job.test_unit_id,
    approved_by: job.approved_by,
    enumerator_type: job.enumerator_type,
    worker_type: job.worker_type,
    agent_access: job.agent_access,
    max_workers: job.max_workers,
    max_retries: job.max_retries,
    timeout_seconds: job.timeout_seconds,
    created_at: iso(job.created_at),
    started_at: iso(job.started_at),
    finished_at: iso(job.finished_at),
    updated_at: iso(job.updated_at),
  };
}
export type JobStatus = ReturnType<typeof jobStatus>;

/**
 * Projected total cost and remaining time. Right after the test unit they come
 * from it and the job's concurrency; once more units have finished, from the
 * running mean cost and the observed rate.
 */
function estimate(job: JobRow, rate: number | null) {
  const finished = job.succeeded + job.failed;
  if (finished === 0 || noEstimate(job) !== null) return null;
  const remaining = job.pending + job.running + job.submitted;
  const basis = finished === 1 && job.test_unit_id !== null ? 'test_unit' : 'observed';
  // A job whose units go in provider batches pays a share of what its test unit paid online.
  const meanCost = job.costed_units > 0 ? (job.cost_usd / job.costed_units) * (basis === 'test_unit' ? job.price_factor : 1) : null;
  const meanSeconds = Number(job.unit_ms_total) / finished / 1000;
  const seconds = basis === 'observed' && rate ? remaining / rate : meanSeconds * Math.ceil(remaining / Math.max(1, job.max_workers));
  return {
    basis,
    projected_cost_usd: meanCost === null ? null : round(job.cost_usd + meanCost * remaining),
    projected_seconds: Math.round(seconds * 10) / 10,
  };
}

const round = (n: number) => Math.round(n * 1e6) / 1e6;

/**
 * A projection needs a unit that succeeded: failed ones' cost and time say nothing
 * of a working unit's (a prompt that fails at once would project $0 for the whole
 * job). While TESTING, the one unit that can have finished is the test unit.
 */
function noEstimate(job: JobRow): string | null {
  if (job.succeeded > 0 || job.failed === 0 || isTerminalJob(job.status)) return null;
  return job.status === 'TESTING' ? 'no estimate: the test unit failed' : 'no estimate: no unit has succeeded yet';
}

/** Whether the job has work an executor should be doing now. */
export function waitsForExecutor(job: JobRow): boolean {
  // While TESTING, only the test unit runs: once it has finished, the job waits for a person, not an executor.
  if (job.status === 'TESTING') return job.succeeded + job.failed + job.cancelled === 0;
  return (job.status === 'RUNNING' || job.status === 'CANCELLED') && job.pending + job.running + job.submitted > 0;
}

/**
 * Whether a job can have provider batches: its worker sends them (price_factor
 * below 1, set when the job was made) or units wait in one. A status of any
 * other job reads no batch rows.
 */
export function mayHaveBatches(job: Pick<JobRow, 'price_factor' | 'submitted'>): boolean {
  return job.price_factor < 1 || job.submitted > 0;
}

/**
 * A job's provider batches, as status shows them: each open one (its provider's
 * id, state, requests and the provider's counts as last polled) and how many
 * ended. Null for a job that never had one.
 */
export function batchesView(batches: { open: readonly BatchRow[]; ended: number }) {
  if (batches.open.length === 0 && batches.ended === 0) return null;
  return {
    open: batches.open.map((b) => ({
      batch_id: b.id,
      provider: b.api,
      provider_id: b.provider_id,
      state: b.state,
      requests: b.requests,
      counts: parseJson(b.counts),
      cancel_requested: b.cancel_requested === 1,
      submitted_at: iso(b.submitted_at),
      next_poll_at: iso(b.next_poll_at),
      error: b.error,
    })),
    ended: batches.ended,
  };
}

/**
 * Whether anything is running a job that needs an executor: for a RUNNING job
 * with units left, or a TESTING job whose test unit has not finished, how many executors have a fresh heartbeat, and a
 * warning when none has (the executor died, was killed, or could not be started),
 * so a stalled job says why instead of looking slow. Null for any other job.
 */
export function executorsView(job: JobRow, executors: readonly ExecutorRow[], staleMs: number, now = Date.now()) {
  if (!waitsForExecutor(job)) return null;
  const live = executors.filter((e) => Number(e.heartbeat_at) >= now - staleMs).length;
  const newest = executors.reduce<number | null>((best, e) => Math.max(best ?? 0, Number(e.heartbeat_at)), null);
  const ageSeconds = newest === null ? null : Math.max(0, Math.round((now - newest) / 1000));
  const warning =
    live > 0
      ? null
      : `no executor is alive to run this job (${ageSeconds === null ? 'none has registered' : `the last heartbeat was ${ageSeconds}s ago`}); \`abp start ${job.id}\` launches one, and \`abp executor\` runs one in the foreground with its log`;
  return { live, last_heartbeat_age_seconds: ageSeconds, warning };
}

/**
 * What a status adds to a job's row: whether an executor is running it, and its
 * provider batches. It reads those rows only for a job that can have them, from
 * the Repository or the quick reader alike.
 */
export async function jobLiveness(reader: JobReader, job: JobRow, staleMs: number) {
  return {
    executors: executorsView(job, waitsForExecutor(job) ? await reader.executors() : [], staleMs),
    batches: mayHaveBatches(job) ? batchesView(await reader.jobBatches(job.id)) : null,
  };
}

/** A job's status as get_job_status, `abp status` and GET /jobs/:id/status show it. */
export async function readJobStatus(reader: JobReader, id: number, staleMs: number) {
  const job = await reader.requireJob(id);
  return { ...jobStatus(job), ...(await jobLiveness(reader, job, staleMs)) };
}

/** The job with its full spec, for get_job. */
export function jobDetail(job: JobRow) {
  return {
    ...jobStatus(job),
    user_intent: job.user_intent,
    enumerator_config: parseJson(job.enumerator_config),
    worker_config: parseJson(job.worker_config),
    output_schema: parseJson(job.output_schema),
    max_cost_usd: job.max_cost_usd,
    max_cost_per_unit_usd: job.max_cost_per_unit_usd,
    price_factor: job.price_factor,
    cache: job.cache === 1,
    post_processing_prompt: job.post_processing_prompt,
    allow_partial: job.allow_partial === 1,
    auto_resume: job.auto_resume === 1,
    resume_at: iso(job.resume_at),
    result: job.result,
    prompt_template: job.prompt_template,
  };
}

export function unitSummary(unit: UnitRow) {
  return {
    unit_id: unit.id,
    job_id: unit.job_id,
    kind: unit.kind,
    item_id: unit.item_id,
    status: unit.status,
    attempt: unit.attempt,
    failures: unit.failures,
    error: unit.error,
    error_kind: unit.error_kind,
    cost_usd: unit.cost_usd,
    /** Answered from the response cache: `cached_from` is the unit whose answer it is. */
    cached: unit.cached_from !== null,
    cached_from: unit.cached_from,
    duration_ms: unit.duration_ms === null ? null : Number(unit.duration_ms),
    started_at: iso(unit.started_at),
    finished_at: iso(unit.finished_at),
  };
}

export function unitDetail(unit: UnitRow, conversation: UnitEventRow[]) {
  return {
    ...unitSummary(unit),
    payload: parseJson(unit.payload),
    prompt: unit.prompt,
    output: unit.output,
    structured_output: parseJson(unit.structured_output),
    exit_code: unit.exit_code,
    stderr_tail: unit.stderr_tail,
    usage: parseJson(unit.usage),
    session_id: unit.session_id,
    conversation: conversation.map((e) => ({ attempt: e.attempt, kind: e.kind, data: parseJson(e.data), at: iso(e.created_at) })),
  };
}

/** One line of `abp results`. */
export function resultLine(unit: UnitRow) {
  return {
    unit_id: unit.id,
    item_id: unit.item_id,
    status: unit.status,
    attempt: unit.attempt,
    payload: parseJson(unit.payload),
    output: unit.output,
    structured_output: parseJson(unit.structured_output),
    error: unit.error,
    cost_usd: unit.cost_usd,
    duration_ms: unit.duration_ms === null ? null : Number(unit.duration_ms),
  };
}
export type ResultLine = ReturnType<typeof resultLine>;

/**
 * `JSON.stringify(resultLine(unit))`, the same text, without decoding the unit's
 * JSON columns: payload and structured_output are spliced in as stored (abp
 * writes both with JSON.stringify, so they are compact JSON already). A full
 * export is millions of lines; decoding each payload only to encode it again
 * cost time, and JSON.parse puts every short string value (an id, a category)
 * into V8's string table, which grew by the million until the next full
 * collection: 10M units peaked at 219 MB, most of it that table.
 */
export function resultLineText(unit: UnitRow): string {
  const duration = unit.duration_ms === null ? null : Number(unit.duration_ms);
  return (
    `{"unit_id":${JSON.stringify(unit.id)},"item_id":${JSON.stringify(unit.item_id)},"status":${JSON.stringify(unit.status)},"attempt":${JSON.stringify(unit.attempt)}` +
    `,"payload":${unit.payload === null ? 'null' : unit.payload},"output":${JSON.stringify(unit.output)}` +
    `,"structured_output":${unit.structured_output === null ? 'null' : unit.structured_output},"error":${JSON.stringify(unit.error)}` +
    `,"cost_usd":${JSON.stringify(unit.cost_usd)},"duration_ms":${JSON.stringify(duration)}}`
  );
}
