import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';
import type { JobState, UnitState } from '../domain/states.js';

/** Epoch milliseconds. */
type Millis = number;
/** A column with a database default: optional on insert. */
type Defaulted<T> = ColumnType<T, T | undefined, T>;

export interface JobsTable {
  id: Generated<number>;
  type: Defaulted<string>;
  name: string;
  status: JobState;
  status_reason: string | null;
  user_intent: string;
  enumerator_type: string;
  enumerator_config: string;
  worker_type: string;
  worker_config: string;
  max_workers: number;
  max_retries: number;
  timeout_seconds: number;
  output_schema: string | null;
  max_cost_usd: number | null;
  post_processing_prompt: string | null;
  prompt_template: string;
  test_unit_id: number | null;
  /** Who approved the test unit (or skipping it): "person (dialog)", "assistant (on the user's word)", "person (cli)", … */
  approved_by: string | null;
  /** JSON {unit_id, attempt, answer}: the person was asked about this test unit once; never ask twice. */
  approval_asked: string | null;
  total: Defaulted<number>;
  pending: Defaulted<number>;
  running: Defaulted<number>;
  succeeded: Defaulted<number>;
  failed: Defaulted<number>;
  cancelled: Defaulted<number>;
  cost_usd: Defaulted<number>;
  input_tokens: Defaulted<number>;
  output_tokens: Defaulted<number>;
  created_at: Millis;
  updated_at: Millis;
  started_at: Millis | null;
  finished_at: Millis | null;
  /** Budget: the expected cost of the units running now. */
  reserved_usd: Defaulted<number>;
  /** How many finished units reported a cost: the running mean is cost_usd / costed_units. */
  costed_units: Defaulted<number>;
  unit_ms_total: Defaulted<number>;
  allow_partial: Defaulted<number>;
  synthesis_unit_id: number | null;
  /** The synthesis unit's output: the job's result. */
  result: string | null;
  auto_resume: Defaulted<number>;
  resume_at: Millis | null;
  /** What the job's agent may do, in words (the worker's own account); null for workers that are not agents. */
  agent_access: string | null;
  /** Raised by each stop of one running unit (migration 011). */
  unit_stops: Defaulted<number>;
  /** JSON list of environment variable names the job needs its executor to have (migration 012). */
  env_needs: string | null;
  /** Units whose request waits in a provider batch (migration 014). */
  submitted: Defaulted<number>;
  /** 1: units are answered from the response cache when an identical request succeeded before (migration 014). */
  cache: Defaulted<number>;
  /** A cap on one unit's spend, for agents that can stop themselves at one (claude: --max-budget-usd). */
  max_cost_per_unit_usd: number | null;
  /** A unit's price as a share of the online one: 0.5 when the worker sends provider batches (after the online test unit). */
  price_factor: Defaulted<number>;
}

export interface WorkUnitsTable {
  id: Generated<number>;
  job_id: number;
  seq: number;
  item_id: string;
  payload: string;
  prompt: string | null;
  status: UnitState;
  /** Claims so far; doubles as the fencing token for outcome writes. */
  attempt: Defaulted<number>;
  /** Failures that spent a retry; rate limits and shutdown releases do not. */
  failures: Defaulted<number>;
  available_at: Defaulted<Millis>;
  lease_owner: string | null;
  lease_expires_at: Millis | null;
  worker_pid: number | null;
  output: string | null;
  structured_output: string | null;
  error: string | null;
  error_kind: string | null;
  exit_code: number | null;
  stderr_tail: string | null;
  cost_usd: number | null;
  input_tokens: number | null;
  output_tokens: number | null;
  usage: string | null;
  session_id: string | null;
  duration_ms: number | null;
  started_at: Millis | null;
  finished_at: Millis | null;
  /** 'item', or 'synthesis' for the one unit that gathers every output. */
  kind: Defaulted<string>;
  reserved_usd: Defaulted<number>;
  /** The llm_batches row holding this unit while it is SUBMITTED (and after: the batch it came back from). */
  batch_id: number | null;
  /** The response cache's key of this unit's request (jobs with `cache` on). */
  cache_key: string | null;
  /** Answered from the cache: the unit whose output this is (its cost is 0). */
  cached_from: number | null;
}

export const BATCH_STATES = ['submitting', 'submitted', 'ended'] as const;
export type BatchState = (typeof BATCH_STATES)[number];

/** One provider batch (Anthropic Message Batches, OpenAI Batch): polled under a lease by any executor. */
export interface LlmBatchesTable {
  id: Generated<number>;
  job_id: number;
  api: string;
  ref: string;
  provider_id: string | null;
  /** submitting: the row is written and its units SUBMITTED, the post may or may not have reached the provider; submitted: the provider's id is known; ended: harvested. */
  state: BatchState;
  requests: number;
  /** The provider's request counts (JSON), as last polled. */
  counts: string | null;
  error: string | null;
  cancel_requested: Defaulted<number>;
  /** 1: cancelled at the job's deadline; the units it gives back run online. */
  run_online: Defaulted<number>;
  lease_owner: string | null;
  lease_expires_at: Millis | null;
  next_poll_at: Millis;
  created_at: Millis;
  submitted_at: Millis | null;
  ended_at: Millis | null;
}

export interface UnitEventsTable {
  id: Generated<number>;
  unit_id: number;
  job_id: number;
  attempt: number;
  kind: string;
  data: string;
  created_at: Millis;
}

export interface EventsTable {
  seq: Generated<number>;
  job_id: number | null;
  type: string;
  data: string;
  created_at: Millis;
}

export interface ExecutorsTable {
  id: string;
  hostname: string;
  pid: number;
  version: string;
  started_at: Millis;
  heartbeat_at: Millis;
  /** JSON list of the environment variable names jobs may need that this executor has (migration 012). */
  env_names: Defaulted<string | null>;
}

/** A person approved this exact code (by sha256) to run, e.g. for a dynamic enumerator. */
export interface CodeApprovalsTable {
  id: Generated<number>;
  code_sha256: string;
  job_id: number | null;
  /** Who or what approved it: cli, mcp-elicitation, api. */
  approved_by: string;
  created_at: Millis;
}

/** A one-time dashboard link, by the sha256 of its token; `used_at` is set when it is spent. */
export interface DashboardTokensTable {
  token_sha256: string;
  created_at: Millis;
  expires_at: Millis;
  used_at: Millis | null;
}

export interface Database {
  jobs: JobsTable;
  work_units: WorkUnitsTable;
  unit_events: UnitEventsTable;
  events: EventsTable;
  executors: ExecutorsTable;
  code_approvals: CodeApprovalsTable;
  dashboard_tokens: DashboardTokensTable;
  cool_downs: CoolDownsTable;
  llm_batches: LlmBatchesTable;
}

/** A worker type that hit a rate limit, and until when every executor holds it back. */
export interface CoolDownsTable {
  worker_type: string;
  until: Millis;
  updated_at: Millis;
}

export type JobRow = Selectable<JobsTable>;
export type NewJob = Insertable<JobsTable>;
export type UnitRow = Selectable<WorkUnitsTable>;
export type NewUnit = Insertable<WorkUnitsTable>;
export type EventRow = Selectable<EventsTable>;
export type UnitEventRow = Selectable<UnitEventsTable>;
export type ExecutorRow = Selectable<ExecutorsTable>;
export type BatchRow = Selectable<LlmBatchesTable>;
