import { BatchApiError, parseCustomId, type BatchApi, type BatchItemResult, type BatchLimits, type BatchProgress, type BatchRequest } from '../src/contracts/batch.js';
import type { UnitOutcome } from '../src/contracts/worker.js';
import { answerOf, authHeaders, baseOf, failureOf, keyEnvOf, request, type HttpLlmConfig } from './http-llm.js';
import { referencedValues, resolveEnvRecord } from './secret-refs.js';

/*
 * http-llm's batch API: the Anthropic Message Batches API (requests posted inline,
 * results read from the batch's results_url) and the OpenAI Batch API (requests
 * uploaded as a JSONL file, results in an output file and an error file). Both
 * bill at half the online price and answer within 24 hours.
 */

/** Half the online price, on both APIs. */
const PRICE_FACTOR = 0.5;

/**
 * The providers' caps on one batch. The byte caps are the published 256 MB and
 * 200 MB read as decimal megabytes: a little under either reading, which leaves
 * room for the separators `post` adds between encoded requests.
 */
const LIMITS: Record<HttpLlmConfig['api'], BatchLimits> = {
  anthropic: { max_requests: 100_000, max_bytes: 256_000_000 },
  openai: { max_requests: 50_000, max_bytes: 200_000_000 },
};

/** The endpoint every OpenAI batch request goes to (http-llm speaks Chat Completions). */
const OPENAI_ENDPOINT = '/v1/chat/completions';

const OPENAI_ENDED = new Set(['completed', 'failed', 'expired', 'cancelled']);

/** Anthropic error types that a request would meet again if it ran again. */
const ANTHROPIC_PERMANENT = new Set(['invalid_request_error', 'authentication_error', 'permission_error']);

/** What the generator returned by `results` returns when it is done. */
export interface ResultsSummary {
  /** Lines that were not JSON, or named a custom_id that is not one of abp's: not results of ours. */
  skipped: number;
}

/** The API plus the summary `results` returns, for callers that drive the generator themselves. */
export type HttpLlmBatchApi = Omit<BatchApi<HttpLlmConfig>, 'results'> & {
  results(cfg: HttpLlmConfig, providerId: string, signal: AbortSignal): AsyncGenerator<BatchItemResult, ResultsSummary>;
};

/** Where and how to call the API under one config; built per call, so a key set later is seen. */
interface Conn {
  base: string;
  headers: Record<string, string>;
  secrets: string[];
}

function connOf(cfg: HttpLlmConfig): Conn {
  const keyEnv = keyEnvOf(cfg);
  const key = keyEnv ? process.env[keyEnv] : undefined;
  if (keyEnv && !key) {
    throw new BatchApiError(`${keyEnv} is not set: export ${keyEnv}=… where abp runs (worker_config.api_key_env names the variable)`, 'auth_failed');
  }
  return {
    base: baseOf(cfg),
    headers: { ...authHeaders(cfg, key), ...resolveEnvRecord(cfg.headers) },
    secrets: [key, ...referencedValues(cfg.headers)].filter((s): s is string => !!s),
  };
}

const noHeaders = { get: (): string | null => null };

/**
 * One call. A non-2xx answer becomes a BatchApiError classified like an online
 * call's failure (failureOf: auth, quota, rate limit with its Retry-After,
 * server fault, the request's own fault); an unreachable API is retryable. An
 * abort is passed on as the signal's reason: the caller asked for it.
 */
async function send(cfg: HttpLlmConfig, conn: Conn, method: 'GET' | 'POST', url: string, signal: AbortSignal, body?: string | FormData): Promise<Response> {
  const headers: Record<string, string> = { ...conn.headers };
  if (typeof body === 'string') headers['content-type'] = 'application/json';
  else if (body) for (const name of Object.keys(headers)) if (name.toLowerCase() === 'content-type') delete headers[name]; // fetch writes the multipart boundary
  let res: Response;
  try {
    res = await fetch(url, { method, headers, signal, ...(body !== undefined ? { body } : {}) });
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new BatchApiError(`${method} ${url} failed: ${cause?.code ?? cause?.message ?? (err as Error).message}`, 'retryable');
  }
  if (res.ok) return res;
  const text = await res.text().catch(() => '');
  const failed = failureOf(cfg, { status: res.status, text, headers: res.headers }, url, conn.secrets);
  if (failed.status !== 'failed') throw new BatchApiError(`HTTP ${res.status} from ${url}`, 'retryable');
  const wait = failed.retry_after_ms ?? (failed.resets_at !== undefined ? Math.max(0, failed.resets_at - Date.now()) : undefined);
  throw new BatchApiError(failed.error, failed.kind, wait);
}

async function json(cfg: HttpLlmConfig, conn: Conn, method: 'GET' | 'POST', url: string, signal: AbortSignal, body?: string | FormData): Promise<any> {
  const res = await send(cfg, conn, method, url, signal, body);
  let text: string;
  try {
    text = await res.text();
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw new BatchApiError(`reading the answer of ${method} ${url} failed: ${(err as Error).message}`, 'retryable');
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new BatchApiError(`malformed JSON from ${method} ${url} (HTTP ${res.status})`, 'retryable');
  }
}

/**
 * The lines of a response body as they arrive: a results file may be hundreds
 * of megabytes, so it is never held whole. Stopping early cancels the body.
 */
async function* linesOf(res: Response, signal: AbortSignal, url: string): AsyncGenerator<string> {
  if (!res.body) return;
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let rest = '';
  try {
    for (;;) {
      let chunk: Awaited<ReturnType<typeof reader.read>>;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        throw new BatchApiError(`reading ${url} failed: ${(err as Error).message}`, 'retryable');
      }
      if (chunk.done) break;
      const parts = (rest + decoder.decode(chunk.value, { stream: true })).split('\n');
      rest = parts.pop() ?? '';
      for (const line of parts) yield line;
    }
    rest += decoder.decode();
    if (rest) yield rest;
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/** A parsed results line with one of abp's custom_ids, or null for a line that is not ours. */
function lineOf(line: string): { custom_id: string; [k: string]: any } | null {
  let parsed: any;
  try {
    parsed = JSON.parse(line);
  } catch {
    return null;
  }
  if (!parsed || typeof parsed !== 'object' || typeof parsed.custom_id !== 'string' || !parseCustomId(parsed.custom_id)) return null;
  return parsed;
}

const counts = (raw: unknown): Record<string, number> =>
  Object.fromEntries(Object.entries(raw && typeof raw === 'object' ? raw : {}).filter((e): e is [string, number] => typeof e[1] === 'number'));

const batchPath = (id: string) => encodeURIComponent(id);

// ---- Anthropic Message Batches ----------------------------------------------------------------

function anthropicErrored(error: any, url: string): UnitOutcome {
  // The result's error is an error response's body: {type: 'error', error: {type, message}}.
  const inner = error?.error && typeof error.error === 'object' ? error.error : error;
  const type = typeof inner?.type === 'string' ? inner.type : 'api_error';
  const message = typeof inner?.message === 'string' ? inner.message : 'no message';
  const kind = ANTHROPIC_PERMANENT.has(type) ? 'permanent' : 'retryable';
  return { status: 'failed', kind, error: `batch request failed at ${url}: ${type}: ${message}`.slice(0, 600) };
}

function anthropicResult(cfg: HttpLlmConfig, line: { custom_id: string; [k: string]: any }, url: string): BatchItemResult | null {
  const result = line.result;
  const custom_id = line.custom_id;
  switch (result?.type) {
    case 'succeeded': {
      const { stop: _stop, ...outcome } = answerOf(cfg, result.message, url, undefined, PRICE_FACTOR);
      return { custom_id, outcome };
    }
    case 'errored':
      return { custom_id, outcome: anthropicErrored(result.error, url) };
    case 'canceled':
      return { custom_id, unfinished: 'canceled' };
    case 'expired':
      return { custom_id, unfinished: 'expired' };
    default:
      return null;
  }
}

async function* anthropicResults(cfg: HttpLlmConfig, id: string, signal: AbortSignal): AsyncGenerator<BatchItemResult, ResultsSummary> {
  const conn = connOf(cfg);
  const batchUrl = `${conn.base}/v1/messages/batches/${batchPath(id)}`;
  const batch = await json(cfg, conn, 'GET', batchUrl, signal);
  if (batch?.processing_status !== 'ended') throw new BatchApiError(`batch ${id} has not ended (${String(batch?.processing_status)}): no results yet`, 'retryable');
  // The key goes only where the API itself lives: a results_url elsewhere is not followed.
  const given = typeof batch.results_url === 'string' ? batch.results_url : undefined;
  const url = given && sameOrigin(given, conn.base) ? given : `${batchUrl}/results`;
  const res = await send(cfg, conn, 'GET', url, signal);
  let skipped = 0;
  for await (const raw of linesOf(res, signal, url)) {
    if (!raw.trim()) continue;
    const line = lineOf(raw);
    const item = line && anthropicResult(cfg, line, url);
    if (item) yield item;
    else skipped++;
  }
  return { skipped };
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

// ---- OpenAI Batch -----------------------------------------------------------------------------

function openaiResult(cfg: HttpLlmConfig, conn: Conn, line: { custom_id: string; [k: string]: any }, url: string): BatchItemResult | null {
  const custom_id = line.custom_id;
  const error = line.error;
  if (error && typeof error === 'object') {
    if (error.code === 'batch_expired') return { custom_id, unfinished: 'expired' };
    if (error.code === 'batch_cancelled') return { custom_id, unfinished: 'canceled' };
    const message = `batch request failed at ${url}: ${String(error.code ?? 'error')}: ${String(error.message ?? 'no message')}`;
    return { custom_id, outcome: { status: 'failed', kind: 'retryable', error: message.slice(0, 600) } };
  }
  const response = line.response;
  if (!response || typeof response !== 'object' || typeof response.status_code !== 'number') return null;
  if (response.status_code === 200) {
    const { stop: _stop, ...outcome } = answerOf(cfg, response.body, url, undefined, PRICE_FACTOR);
    return { custom_id, outcome };
  }
  const text = typeof response.body === 'string' ? response.body : JSON.stringify(response.body ?? null);
  return { custom_id, outcome: failureOf(cfg, { status: response.status_code, text, headers: noHeaders }, url, conn.secrets) };
}

async function* openaiResults(cfg: HttpLlmConfig, id: string, signal: AbortSignal): AsyncGenerator<BatchItemResult, ResultsSummary> {
  const conn = connOf(cfg);
  const batch = await json(cfg, conn, 'GET', `${conn.base}/batches/${batchPath(id)}`, signal);
  const status = String(batch?.status);
  if (status === 'failed') {
    // The input failed validation: sent again, it would fail again.
    const errors = Array.isArray(batch?.errors?.data) ? batch.errors.data : [];
    const said = errors.map((e: any) => `${e?.line !== undefined && e?.line !== null ? `line ${e.line}: ` : ''}${String(e?.message ?? e?.code ?? 'error')}`);
    throw new BatchApiError(`batch ${id} failed: ${said.join('; ').slice(0, 600) || 'no reason given'}`, 'permanent');
  }
  if (!OPENAI_ENDED.has(status)) throw new BatchApiError(`batch ${id} has not ended (${status}): no results yet`, 'retryable');
  let skipped = 0;
  for (const file of [batch.output_file_id, batch.error_file_id]) {
    if (typeof file !== 'string' || !file) continue;
    const url = `${conn.base}/files/${encodeURIComponent(file)}/content`;
    const res = await send(cfg, conn, 'GET', url, signal);
    for await (const raw of linesOf(res, signal, url)) {
      if (!raw.trim()) continue;
      const line = lineOf(raw);
      const item = line && openaiResult(cfg, conn, line, url);
      if (item) yield item;
      else skipped++;
    }
  }
  return { skipped };
}

async function openaiPost(cfg: HttpLlmConfig, conn: Conn, encoded: string[], ref: string, signal: AbortSignal): Promise<{ provider_id: string }> {
  const form = new FormData();
  form.append('purpose', 'batch');
  form.append('file', new Blob([encoded.join('\n'), '\n'], { type: 'application/jsonl' }), `${ref.replace(/[^A-Za-z0-9_.-]/g, '_')}.jsonl`);
  const file = await json(cfg, conn, 'POST', `${conn.base}/files`, signal, form);
  if (typeof file?.id !== 'string') throw new BatchApiError(`POST ${conn.base}/files answered without a file id`, 'retryable');
  const batch = await json(
    cfg,
    conn,
    'POST',
    `${conn.base}/batches`,
    signal,
    JSON.stringify({ input_file_id: file.id, endpoint: OPENAI_ENDPOINT, completion_window: '24h', metadata: { abp_ref: ref } }),
  );
  if (typeof batch?.id !== 'string') throw new BatchApiError(`POST ${conn.base}/batches answered without a batch id`, 'retryable');
  return { provider_id: batch.id };
}

/**
 * The OpenAI batch posted under `ref`: the list is newest first, so the search
 * stops at the first batch created well before `since` (a minute's slack for
 * the two clocks).
 */
async function openaiFind(cfg: HttpLlmConfig, ref: string, since: number, signal: AbortSignal): Promise<string | null> {
  const conn = connOf(cfg);
  const floor = since / 1000 - 60;
  let after: string | undefined;
  for (;;) {
    const page = await json(cfg, conn, 'GET', `${conn.base}/batches?limit=100${after ? `&after=${encodeURIComponent(after)}` : ''}`, signal);
    const data: any[] = Array.isArray(page?.data) ? page.data : [];
    for (const b of data) {
      if (typeof b?.created_at === 'number' && b.created_at < floor) return null;
      if (b?.metadata?.abp_ref === ref && typeof b.id === 'string') return b.id;
    }
    const last = typeof page?.last_id === 'string' ? page.last_id : data.at(-1)?.id;
    if (!page?.has_more || data.length === 0 || typeof last !== 'string' || last === after) return null;
    after = last;
  }
}

// ---- the API ----------------------------------------------------------------------------------

export const httpLlmBatch: HttpLlmBatchApi = {
  priceFactor: PRICE_FACTOR,

  enabled: (cfg) => cfg.batch,

  provider: (cfg) => cfg.api,

  onlineAfterMs: (cfg) => (cfg.batch_deadline_hours === undefined ? undefined : Math.round(cfg.batch_deadline_hours * 3_600_000)),

  limits(cfg) {
    const api = LIMITS[cfg.api];
    return { max_requests: Math.min(api.max_requests, cfg.batch_max_requests ?? api.max_requests), max_bytes: api.max_bytes };
  },

  encode(cfg, { custom_id, unit }: BatchRequest) {
    const { body } = request(cfg, unit);
    return cfg.api === 'anthropic' ? JSON.stringify({ custom_id, params: body }) : JSON.stringify({ custom_id, method: 'POST', url: OPENAI_ENDPOINT, body });
  },

  async post(cfg, encoded, ref, signal) {
    const conn = connOf(cfg);
    if (cfg.api === 'openai') return openaiPost(cfg, conn, encoded, ref, signal);
    // The encoded requests are JSON texts already: joined, not parsed and written again.
    const batch = await json(cfg, conn, 'POST', `${conn.base}/v1/messages/batches`, signal, `{"requests":[${encoded.join(',')}]}`);
    if (typeof batch?.id !== 'string') throw new BatchApiError(`POST ${conn.base}/v1/messages/batches answered without a batch id`, 'retryable');
    return { provider_id: batch.id };
  },

  async find(cfg, ref, since, signal) {
    // Anthropic's batches carry no metadata: there is nothing to find a batch by.
    if (cfg.api === 'anthropic') return undefined;
    return openaiFind(cfg, ref, since, signal);
  },

  async poll(cfg, providerId, signal): Promise<BatchProgress> {
    const conn = connOf(cfg);
    if (cfg.api === 'anthropic') {
      const batch = await json(cfg, conn, 'GET', `${conn.base}/v1/messages/batches/${batchPath(providerId)}`, signal);
      const status = String(batch?.processing_status ?? 'unknown');
      return { state: status === 'ended' ? 'ended' : 'processing', provider_status: status, counts: counts(batch?.request_counts) };
    }
    const batch = await json(cfg, conn, 'GET', `${conn.base}/batches/${batchPath(providerId)}`, signal);
    const status = String(batch?.status ?? 'unknown');
    return { state: OPENAI_ENDED.has(status) ? 'ended' : 'processing', provider_status: status, counts: counts(batch?.request_counts) };
  },

  results(cfg, providerId, signal) {
    return cfg.api === 'anthropic' ? anthropicResults(cfg, providerId, signal) : openaiResults(cfg, providerId, signal);
  },

  async cancel(cfg, providerId, signal) {
    const conn = connOf(cfg);
    const url = cfg.api === 'anthropic' ? `${conn.base}/v1/messages/batches/${batchPath(providerId)}/cancel` : `${conn.base}/batches/${batchPath(providerId)}/cancel`;
    await json(cfg, conn, 'POST', url, signal);
  },
};
