import type { z } from 'zod';
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
}

/** How a failure should be handled: data, never parsed back out of a message. */
export const FAILURE_KINDS = ['retryable', 'permanent', 'rate_limited', 'auth_failed', 'quota_exhausted'] as const;
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
  | (OutcomeCommon & { status: 'failed'; kind: FailureKind; error: string; output?: string; retry_after_ms?: number })
  | (OutcomeCommon & { status: 'timed_out'; error: string; output?: string })
  | (OutcomeCommon & { status: 'cancelled'; error: string });

export interface WorkerHealth {
  status: 'ok' | 'degraded' | 'down' | 'auth_failed';
  features?: string[];
  details: string;
}

export interface Worker<C = unknown> {
  readonly type: string;
  readonly description: string;
  readonly configSchema: z.ZodType<C>;
  run(unit: UnitInput, config: C, ctx: RunContext): Promise<UnitOutcome>;
  health(config: C): Promise<WorkerHealth>;
}
