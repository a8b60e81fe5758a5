import { createHash } from 'node:crypto';
import type { Worker } from '../contracts/worker.js';
import type { CachedResponse, OutcomeWrite, Repository } from '../store/repository.js';
import type { JobRow } from '../store/schema.js';

export type { CachedResponse } from '../store/repository.js';

/*
 * The response cache, across jobs, for jobs with `cache` on. A unit's request is
 * known before it is sent: the worker type, the prompt the worker gets, the
 * output schema and the part of the worker's config that shapes the answer
 * (Worker.answerShape). Its sha256 is the unit's `cache_key`; a unit whose key a
 * SUCCEEDED unit of any job already has takes that unit's answer at cost 0
 * (`cached_from`) and no request is made. Both the pool (online units) and the
 * batch runner (units sent through a provider's batch API) ask here.
 *
 * Secrets are never part of a key: worker_config holds only {{env.NAME}}
 * references (a literal credential is refused when the job is made), and the key
 * is computed from the parsed config without resolving them, so a rotated key or
 * another executor's environment keeps every answer.
 */

/** Raised when what a key is made of changes, so that old keys stop matching. */
export const CACHE_KEY_VERSION = 1;

/** What a request's answer depends on. */
export interface CacheKeyParts {
  worker_type: string;
  /** The rendered prompt, exactly as the worker gets it. */
  prompt: string;
  output_schema: Record<string, unknown> | null;
  /** The worker's answer-shaping config (Worker.answerShape of the parsed config). */
  config: unknown;
}

/** JSON with object keys sorted at every level, so equal values give equal text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v === undefined ? null : v)).join(',')}]`;
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record)
    .filter((k) => record[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k])}`).join(',')}}`;
}

/** The key of one request: sha256 (hex) of the canonical JSON of what its answer depends on. */
export function cacheKey(parts: CacheKeyParts): string {
  const canonical = canonicalJson({ v: CACHE_KEY_VERSION, worker_type: parts.worker_type, prompt: parts.prompt, output_schema: parts.output_schema, config: parts.config });
  return createHash('sha256').update(canonical).digest('hex');
}

/**
 * The outcome write of a cache hit: the source's answer (its structured output
 * already passed the same output_schema, which is part of the key), no cost, no
 * usage, and the unit it came from. It never goes through `decide`.
 */
export function cachedWrite(hit: CachedResponse, key: string, prompt: string | null, duration_ms: number | null): OutcomeWrite {
  return {
    next: 'SUCCEEDED',
    spent: false,
    prompt,
    output: hit.output,
    structured_output: hit.structured_output,
    error: null,
    error_kind: null,
    exit_code: null,
    stderr_tail: null,
    cost_usd: 0,
    input_tokens: null,
    output_tokens: null,
    usage: null,
    session_id: null,
    duration_ms,
    cache_key: key,
    cached_from: hit.unit_id,
  };
}

/** The conversation event of a cache hit, so that a person reading the unit sees where its answer came from. */
export function cachedEvent(hit: CachedResponse, key: string): { kind: string; data: string } {
  return { kind: 'cached', data: JSON.stringify({ from_unit_id: hit.unit_id, cache_key: key }) };
}

/** What `acquire` gives: the cached answer, or the turn to ask the worker (released once its outcome is written). */
export type CacheTurn = { hit: CachedResponse; release?: undefined } | { hit?: undefined; release: () => void };

/**
 * The cache as one executor uses it: keys, lookups, and the dedupe of identical
 * requests running at once in this executor (across executors, a request may be
 * made twice; the answers are equal by construction, and both are kept).
 */
export class ResponseCache {
  /** Keys whose request a unit of this executor is making, with a promise of its written outcome. */
  private readonly inFlight = new Map<string, Promise<void>>();

  constructor(private readonly repo: Pick<Repository, 'cachedResponse'>) {}

  /**
   * The unit's cache key, or null when its job has the cache off or it is the
   * synthesis unit (its prompt is the job's own outputs). `parsedConfig` is the
   * worker_config parsed through the worker's configSchema; `prompt` is the
   * rendered prompt the worker gets.
   */
  keyFor(
    job: Pick<JobRow, 'cache' | 'worker_type'>,
    worker: Pick<Worker<any>, 'answerShape'>,
    parsedConfig: unknown,
    prompt: string,
    outputSchema: Record<string, unknown> | null,
    unitKind: string = 'item',
  ): string | null {
    if (job.cache !== 1 || unitKind === 'synthesis') return null;
    const config = worker.answerShape ? worker.answerShape(parsedConfig) : parsedConfig;
    return cacheKey({ worker_type: job.worker_type, prompt, output_schema: outputSchema, config });
  }

  /** The answer of a SUCCEEDED unit of any job with this key (one that was asked for preferred). */
  async lookup(key: string): Promise<CachedResponse | undefined> {
    return this.repo.cachedResponse(key);
  }

  /**
   * A cached answer for `key`, or the turn to make the request. While another
   * unit of this executor looks the key up or makes the request, this one waits
   * for that unit's outcome to be written and then looks; it waits once: if that
   * request failed, it makes its own. The caller calls `release()` once its
   * outcome is written (whatever it was). Rejects when `signal` aborts while waiting.
   */
  async acquire(key: string, signal?: AbortSignal): Promise<CacheTurn> {
    const running = this.inFlight.get(key);
    if (running) await untilDone(running, signal);
    // The lead is taken before the lookup, with no wait between the check and the
    // taking: a unit whose lookup ran while another's answer was being written
    // could otherwise miss it and ask again.
    const release = this.inFlight.has(key) ? () => undefined : this.lead(key);
    try {
      const hit = await this.lookup(key);
      if (hit) {
        release();
        return { hit };
      }
    } catch (err) {
      release();
      throw err;
    }
    return { release };
  }

  /** Marks `key` as being asked by one unit; the returned function ends that, once. */
  private lead(key: string): () => void {
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    this.inFlight.set(key, done);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (this.inFlight.get(key) === done) this.inFlight.delete(key);
      resolve();
    };
  }

  /** How many requests this executor is making that other units wait on (for tests and logs). */
  get inFlightCount(): number {
    return this.inFlight.size;
  }
}

/** Resolves when `p` does; rejects with the signal's reason when it aborts first. */
function untilDone(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
