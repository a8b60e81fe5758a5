import type { FailureKind, UnitInput, UnitOutcome } from './worker.js';

/*
 * A worker's provider batch API (the Anthropic Message Batches API, the OpenAI
 * Batch API): many units' requests in one posted batch, at a lower price, with
 * results within the provider's window. The executor's BatchRunner
 * (src/executor/batch-runner.ts) owns the ledger (which units a batch holds, its
 * lease, its harvest); the worker speaks the provider's wire format.
 */

/** One request of a batch: the unit it answers, named by a custom_id that carries its attempt. */
export interface BatchRequest {
  custom_id: string;
  unit: UnitInput;
}

/** The provider's limits on one batch. */
export interface BatchLimits {
  max_requests: number;
  max_bytes: number;
}

/** A batch as the provider sees it when polled. */
export interface BatchProgress {
  /** processing: results are still coming; ended: every request has its result, which `results` reads. */
  state: 'processing' | 'ended';
  /** The provider's own status word (in_progress, finalizing, canceling, ended, completed, expired…). */
  provider_status: string;
  /** The provider's request counts, by its own names. */
  counts: Record<string, number>;
}

/**
 * One request's result. An `outcome` is priced at the batch price already; an
 * `unfinished` request (the batch expired or was cancelled before it ran) was
 * not billed and runs again without spending a retry.
 */
export type BatchItemResult = { custom_id: string; outcome: UnitOutcome } | { custom_id: string; unfinished: 'expired' | 'canceled' };

/** A call to the batch API that failed, classified like a unit's failure. */
export class BatchApiError extends Error {
  constructor(
    message: string,
    readonly kind: FailureKind,
    readonly retry_after_ms?: number,
  ) {
    super(message);
    this.name = 'BatchApiError';
  }
}

export interface BatchApi<C> {
  /** Whether this config sends the job's units (after its test unit) through the batch API. */
  enabled(config: C): boolean;
  /** The provider's name as status shows it ("anthropic", "openai"). */
  provider(config: C): string;
  /**
   * How long a batch may stay processing before it is cancelled and what it has
   * not answered runs online (the job's deadline); undefined waits for the provider.
   */
  onlineAfterMs?(config: C): number | undefined;
  limits(config: C): BatchLimits;
  /** What a batch request costs, as a share of the online price (0.5 for both APIs). */
  readonly priceFactor: number;
  /** One request as it goes into the batch body; its UTF-8 length counts against `max_bytes`. */
  encode(config: C, request: BatchRequest): string;
  /**
   * Posts one batch of encoded requests. `ref` is abp's own name for the batch,
   * kept by the provider where it keeps metadata, so `find` can recover a batch
   * whose poster died before it recorded the provider's id. Throws BatchApiError.
   */
  post(config: C, encoded: string[], ref: string, signal: AbortSignal): Promise<{ provider_id: string }>;
  /**
   * The provider id of the batch posted under `ref` since `since` (epoch ms):
   * null when the provider has none, undefined when the API cannot tell
   * (batches without metadata).
   */
  find(config: C, ref: string, since: number, signal: AbortSignal): Promise<string | null | undefined>;
  poll(config: C, providerId: string, signal: AbortSignal): Promise<BatchProgress>;
  /** The results of an ended batch, in the provider's order (not the requests'). */
  results(config: C, providerId: string, signal: AbortSignal): AsyncIterable<BatchItemResult>;
  /** Asks the provider to cancel; requests already done still return their (billed) results. */
  cancel(config: C, providerId: string, signal: AbortSignal): Promise<void>;
}

/** custom_id of one unit's attempt: `u<unit>-a<attempt>`, within both APIs' `^[a-zA-Z0-9_-]{1,64}$`. */
export function customIdOf(unitId: number, attempt: number): string {
  return `u${unitId}-a${attempt}`;
}

/** The unit and attempt a custom_id names, or null when it is not one of abp's. */
export function parseCustomId(id: string): { unit_id: number; attempt: number } | null {
  const m = /^u(\d{1,15})-a(\d{1,9})$/.exec(id);
  return m ? { unit_id: Number(m[1]), attempt: Number(m[2]) } : null;
}
