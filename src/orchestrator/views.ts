import type { JobRow, UnitEventRow, UnitRow } from '../store/schema.js';

const iso = (ms: number | null) => (ms === null ? null : new Date(Number(ms)).toISOString());

function parseJson(text: string | null): unknown {
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
  const remaining = job.pending + job.running;
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
      succeeded: job.succeeded,
      failed: job.failed,
      cancelled: job.cancelled,
    },
    progress: job.total > 0 ? done / job.total : 0,
    rate_per_second: rate === null ? null : Math.round(rate * 100) / 100,
    eta_seconds: rate && job.status === 'RUNNING' ? Math.round(remaining / rate) : null,
    cost_usd: job.cost_usd,
    tokens: { input: Number(job.input_tokens), output: Number(job.output_tokens) },
    test_unit_id: job.test_unit_id,
    enumerator_type: job.enumerator_type,
    worker_type: job.worker_type,
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

/** The job with its full spec, for get_job. */
export function jobDetail(job: JobRow) {
  return {
    ...jobStatus(job),
    user_intent: job.user_intent,
    enumerator_config: parseJson(job.enumerator_config),
    worker_config: parseJson(job.worker_config),
    output_schema: parseJson(job.output_schema),
    max_cost_usd: job.max_cost_usd,
    post_processing_prompt: job.post_processing_prompt,
    prompt_template: job.prompt_template,
  };
}

export function unitSummary(unit: UnitRow) {
  return {
    unit_id: unit.id,
    job_id: unit.job_id,
    item_id: unit.item_id,
    status: unit.status,
    attempt: unit.attempt,
    failures: unit.failures,
    error: unit.error,
    error_kind: unit.error_kind,
    cost_usd: unit.cost_usd,
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
