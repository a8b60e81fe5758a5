import { z } from 'zod';
import type { BatchApi } from './batch.js';
import type { Item } from './enumerator.js';

/** What a worker gets for one attempt of one unit. */
export interface UnitInput {
  unit_id: number;
  job_id: number;
  job_name: string;
  attempt: number;
  item: Item;
  prompt: string;
  /** A directory the unit may use for scratch files; it exists. */
  work_dir: string;
  /** The job's output_schema, for workers whose API can enforce it (the pool validates either way). */
  output_schema?: Record<string, unknown> | null;
  /**
   * How many characters at the start of `prompt` are the same for every unit of
   * the job (the template up to the item): what a provider may cache.
   */
  shared_prefix_chars?: number;
  /** The job's cap on one unit's spend (max_cost_per_unit_usd), for workers that can stop at it. */
  max_cost_usd?: number;
  /**
   * The unit's previous attempt: how it ended and the agent session it ran in,
   * so a worker may resume that session (claude: resume_on_retry).
   */
  previous?: { error_kind: string | null; session_id: string | null };
}

export interface TokenUsage {
  input_tokens?: number;
  output_tokens?: number;
  cache_read_tokens?: number;
  cache_write_tokens?: number;
}

/** One step of an agent's conversation, recorded as it happens so live activity can be shown. */
export interface ConversationEvent {
  kind: string;
  data: unknown;
}

export interface RunContext {
  /** Aborted on timeout (reason 'timeout'), cancel (reason 'cancelled') or shutdown (reason 'shutdown'). */
  signal: AbortSignal;
  /** Report a spawned process group so that a dead executor's successor can reap it. */
  onProcess(pid: number): void;
  onEvent(event: ConversationEvent): void;
  /** The executor-wide request and token limiter, shared by every unit of every job. */
  throttle: Throttle;
}

export interface ThrottleLimits {
  /** Requests per minute; absent = unlimited. */
  rpm?: number | undefined;
  /** Tokens per minute; absent = unlimited. */
  tpm?: number | undefined;
}

/** A granted request: `settle` replaces the estimated token count with the real one once known. */
export interface ThrottleTicket {
  settle(actualTokens: number): void;
}

export interface Throttle {
  /**
   * Waits until one request of `tokens` estimated tokens fits the limits of
   * `key` (a worker type), then books it. Rejects if `signal` aborts first.
   */
  acquire(key: string, limits: ThrottleLimits, tokens: number, signal: AbortSignal): Promise<ThrottleTicket>;
}

/**
 * How a failure should be handled: data, never parsed back out of a message.
 * `unresolved`: the destination answered and refused every item the unit
 * carried; the items are recorded for a later run. It is retried like
 * `retryable`, and a job whose only failed units are `unresolved` still ends
 * COMPLETED when some unit succeeded (domain/job-rules.ts endOfWork).
 */
export const FAILURE_KINDS = ['retryable', 'permanent', 'rate_limited', 'auth_failed', 'quota_exhausted', 'invalid_output', 'unresolved'] as const;
export type FailureKind = (typeof FAILURE_KINDS)[number];

interface OutcomeCommon {
  cost_usd?: number;
  usage?: TokenUsage;
  session_id?: string;
  exit_code?: number | null;
  stderr_tail?: string;
  duration_ms?: number;
}

/** A unit's outcome is a value; only bugs and infrastructure faults throw. */
export type UnitOutcome =
  | (OutcomeCommon & { status: 'succeeded'; output: string; structured_output?: unknown })
  | (OutcomeCommon & {
      status: 'failed';
      kind: FailureKind;
      error: string;
      output?: string;
      /** rate_limited: no request before this many ms (Retry-After, or the agent CLI's own delay). */
      retry_after_ms?: number;
      /** quota_exhausted: when the quota resets (epoch ms), when the provider says. */
      resets_at?: number;
    })
  | (OutcomeCommon & { status: 'timed_out'; error: string; output?: string })
  | (OutcomeCommon & { status: 'cancelled'; error: string });

export const HEALTH_STATUSES = ['ok', 'degraded', 'down', 'auth_failed'] as const;
export type HealthStatus = (typeof HEALTH_STATUSES)[number];

export interface WorkerHealth {
  status: HealthStatus;
  features?: string[];
  /** For people: what was checked, and for auth_failed how to log in or which env var to set. */
  details: string;
  /** Things a person should know before the job runs, e.g. permission checks are off. */
  warnings?: string[];
}

export interface Worker<C = unknown> {
  readonly type: string;
  readonly description: string;
  readonly configSchema: z.ZodType<C>;
  run(unit: UnitInput, config: C, ctx: RunContext): Promise<UnitOutcome>;
  health(config: C): Promise<WorkerHealth>;
  /** For agents: what the agent may do under this config, in words; the job's status shows it. */
  access?(config: C): string;
  /**
   * The environment variables the worker reads by itself under this config (its
   * key, its endpoint, how it logs in), beside the {{env.NAME}} references in the
   * config. Those set where a job is started must be set in the executor that
   * runs it: an executor without one of them leaves the job to another.
   */
  envNames?(config: C): string[];
  /**
   * The part of the config that shapes the answer; the response cache keys on it
   * (src/executor/response-cache.ts). Default: the whole parsed config. Leave out
   * what only changes how or when the request is made (rate limits, prices).
   */
  answerShape?(config: C): unknown;
  /**
   * Raw worker_config values that `abp doctor` checks when no job names one
   * (parsed through configSchema). Default: one probe of `{}`.
   */
  readonly healthProbes?: readonly { label: string; config: unknown }[];
  /**
   * The worker stops a unit that passes the job's `max_cost_per_unit_usd`
   * (UnitInput.max_cost_usd) by itself (claude: --max-budget-usd). A job that
   * sets the cap for a worker without it is refused: a cap nobody enforces
   * would only look like one.
   */
  readonly capsUnitCost?: boolean;
  /** The provider's batch API, for workers that have one (http-llm with batch: true). */
  readonly batch?: BatchApi<C>;
  /** Releases what the worker keeps between units (thread pools). Idempotent. */
  close?(): Promise<void>;
}

/** What the MCP `list_workers` tool shows for one type: its config as JSON Schema. */
export function workerInfo(w: Worker<any>): { type: string; description: string; config_schema: Record<string, unknown> } {
  const { $schema: _ignored, ...schema } = z.toJSONSchema(w.configSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return { type: w.type, description: w.description, config_schema: schema };
}
