import { z } from 'zod';
import type { TokenUsage, UnitInput, UnitOutcome, Worker, WorkerHealth } from '../src/contracts/worker.js';
import { costOf, Price, priceOf } from './llm-prices.js';
import { referencedValues, resolveEnvRecord, secretFreeRecord } from './secret-refs.js';
import { postJson, type PostResponse } from './http-post.js';
import { httpLlmBatch } from './llm-batch.js';

const API_DEFAULTS = {
  openai: { base_url: 'https://api.openai.com/v1', api_key_env: 'OPENAI_API_KEY' },
  anthropic: { base_url: 'https://api.anthropic.com', api_key_env: 'ANTHROPIC_API_KEY' },
} as const;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const config = z.strictObject({
  api: z.enum(['openai', 'anthropic']).default('openai').describe('openai: Chat Completions (OpenAI, vLLM, llama.cpp, Ollama, LM Studio, OpenRouter); anthropic: the Messages API.'),
  base_url: z
    .url()
    .optional()
    .describe('openai: up to /v1 (default https://api.openai.com/v1); anthropic: the host (default https://api.anthropic.com).'),
  model: z.string().min(1).describe('The model name the API expects.'),
  api_key_env: z
    .string()
    .regex(ENV_NAME, 'expected an environment variable name')
    .nullable()
    .optional()
    .describe('The NAME of the env var holding the key (default OPENAI_API_KEY / ANTHROPIC_API_KEY; null = send no key). The key itself is never stored.'),
  temperature: z.number().min(0).max(2).optional(),
  max_tokens: z.int().positive().default(4096),
  system: z.string().min(1).optional().describe('A system prompt sent with every unit.'),
  structured_output: z.boolean().default(true).describe("When the job has an output_schema, ask the API to enforce it (response_format / output_config)."),
  rpm: z.int().positive().optional().describe('Requests per minute, shared by every http-llm unit in the executor.'),
  tpm: z.int().positive().optional().describe('Tokens per minute (input + output), shared the same way.'),
  prices: Price.optional().describe('Overrides the built-in price table for this model (USD per million tokens).'),
  headers: secretFreeRecord()
    .default({})
    .describe('Extra HTTP headers (e.g. OpenRouter attribution). A credential is named, not stored: "api-key": "{{env.AZURE_OPENAI_KEY}}".'),
  batch: z
    .boolean()
    .default(false)
    .describe(
      "Send the units (after the test unit, which runs online) through the provider's batch API (Anthropic Message Batches, OpenAI Batch) at half the price; results come within 24 hours, most within one. Needs api openai with OpenAI itself, or api anthropic.",
    ),
  batch_max_requests: z.int().positive().optional().describe("At most this many requests per batch (default: the API's limit)."),
  batch_deadline_hours: z
    .number()
    .positive()
    .max(24)
    .optional()
    .describe('A batch still processing this long after it was posted is cancelled at the provider; what it answered is recorded, and the units it did not answer run online.'),
});
export type HttpLlmConfig = z.infer<typeof config>;

const THROTTLE_KEY = 'http-llm';
const BODY_SNIPPET = 300;

export function keyEnvOf(cfg: HttpLlmConfig): string | null {
  return cfg.api_key_env === undefined ? API_DEFAULTS[cfg.api].api_key_env : cfg.api_key_env;
}

export function baseOf(cfg: HttpLlmConfig): string {
  return (cfg.base_url ?? API_DEFAULTS[cfg.api].base_url).replace(/\/+$/, '');
}

export function authHeaders(cfg: HttpLlmConfig, key: string | undefined): Record<string, string> {
  if (!key) return cfg.api === 'anthropic' ? { 'anthropic-version': '2023-06-01' } : {};
  return cfg.api === 'anthropic' ? { 'x-api-key': key, 'anthropic-version': '2023-06-01' } : { authorization: `Bearer ${key}` };
}

/** The parts of a unit a request is made of. */
export type RequestUnit = Pick<UnitInput, 'prompt' | 'output_schema' | 'shared_prefix_chars'>;

/*
 * Anthropic caches a prompt's prefix only where a block asks for it
 * (cache_control): the blocks up to a marked one are written to the cache on
 * the first request and read at a tenth of the price by later ones. A unit's
 * prompt starts with what every unit of the job shares (the template up to the
 * item), so that part is a block of its own, marked. The marks are always sent:
 * a prefix under the model's minimum (1,024 tokens and up) is simply not cached,
 * at no cost. OpenAI caches long prefixes by itself, unmarked.
 */
const EPHEMERAL = { type: 'ephemeral' } as const;

/** The user message's content: the shared prefix as a marked block, then the rest; the bare prompt when nothing is shared. */
function anthropicContent(prompt: string, sharedChars: number | undefined): string | Record<string, unknown>[] {
  const shared = Math.min(sharedChars ?? 0, prompt.length);
  if (shared <= 0) return prompt;
  // The API refuses an empty text block: a prompt that is all prefix is one block.
  if (shared === prompt.length) return [{ type: 'text', text: prompt, cache_control: EPHEMERAL }];
  return [
    { type: 'text', text: prompt.slice(0, shared), cache_control: EPHEMERAL },
    { type: 'text', text: prompt.slice(shared) },
  ];
}

/** One unit's request: the URL and JSON body of an online call (a batch request carries the same body). */
export function request(cfg: HttpLlmConfig, unit: RequestUnit): { url: string; body: Record<string, unknown> } {
  const base = baseOf(cfg);
  const prompt = unit.prompt;
  const schema = unit.output_schema;
  const structured = cfg.structured_output && schema ? schema : undefined;
  if (cfg.api === 'openai') {
    return {
      url: `${base}/chat/completions`,
      body: {
        model: cfg.model,
        messages: [...(cfg.system ? [{ role: 'system', content: cfg.system }] : []), { role: 'user', content: prompt }],
        max_tokens: cfg.max_tokens,
        ...(cfg.temperature !== undefined ? { temperature: cfg.temperature } : {}),
        // strict: false, so schemas outside OpenAI's strict subset still work; the pool validates anyway.
        ...(structured ? { response_format: { type: 'json_schema', json_schema: { name: 'output', schema: structured, strict: false } } } : {}),
      },
    };
  }
  return {
    url: `${base}/v1/messages`,
    body: {
      model: cfg.model,
      max_tokens: cfg.max_tokens,
      messages: [{ role: 'user', content: anthropicContent(prompt, unit.shared_prefix_chars) }],
      // The system prompt comes before the messages, the same for every unit: cached too.
      ...(cfg.system ? { system: [{ type: 'text', text: cfg.system, cache_control: EPHEMERAL }] } : {}),
      ...(cfg.temperature !== undefined ? { temperature: Math.min(1, cfg.temperature) } : {}),
      ...(structured ? { output_config: { format: { type: 'json_schema', schema: structured } } } : {}),
    },
  };
}

/** Retry-After as milliseconds: `retry-after-ms`, or `retry-after` in seconds or as an HTTP date. */
export function retryAfterMs(headers: Pick<Headers, 'get'>, now = Date.now()): number | undefined {
  const ms = headers.get('retry-after-ms');
  if (ms && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const raw = headers.get('retry-after');
  if (!raw) return undefined;
  if (/^\d+(\.\d+)?$/.test(raw.trim())) return Math.round(Number(raw) * 1000);
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

export interface Parsed {
  text: string;
  usage: TokenUsage;
  refusal?: string;
  stop?: string;
}

export function parseBody(api: HttpLlmConfig['api'], body: any): Parsed | string {
  if (api === 'openai') {
    const choice = body?.choices?.[0];
    if (!choice || typeof choice !== 'object') return 'the response has no choices[0]';
    const content = choice.message?.content;
    const u = body.usage ?? {};
    const cached = Number(u.prompt_tokens_details?.cached_tokens ?? 0);
    return {
      text: typeof content === 'string' ? content : Array.isArray(content) ? content.map((c: any) => c?.text ?? '').join('') : '',
      usage: { input_tokens: Math.max(0, Number(u.prompt_tokens ?? 0) - cached), output_tokens: Number(u.completion_tokens ?? 0), cache_read_tokens: cached },
      ...(typeof choice.message?.refusal === 'string' && choice.message.refusal ? { refusal: choice.message.refusal } : {}),
      ...(choice.finish_reason ? { stop: String(choice.finish_reason) } : {}),
    };
  }
  if (!Array.isArray(body?.content)) return 'the response has no content array';
  const u = body.usage ?? {};
  return {
    text: body.content.filter((b: any) => b?.type === 'text').map((b: any) => String(b.text ?? '')).join(''),
    usage: {
      input_tokens: Number(u.input_tokens ?? 0),
      output_tokens: Number(u.output_tokens ?? 0),
      cache_read_tokens: Number(u.cache_read_input_tokens ?? 0),
      cache_write_tokens: Number(u.cache_creation_input_tokens ?? 0),
    },
    ...(body.stop_reason === 'refusal' ? { refusal: 'the model refused' } : {}),
    ...(body.stop_reason ? { stop: String(body.stop_reason) } : {}),
  };
}

/** The text with every (non-trivial) secret in it replaced by ***. */
export function scrub(text: string, secrets: (string | undefined)[]): string {
  return secrets.reduce<string>((t, s) => (s && s.length >= 4 ? t.split(s).join('***') : t), text);
}

/** The API's own error message, from either API's error shape. */
function apiMessage(text: string): string {
  try {
    const body = JSON.parse(text);
    const e = body?.error;
    const msg = typeof e === 'string' ? e : (e?.message ?? body?.message);
    if (msg) return `${e?.type ?? e?.code ? `${e.type ?? e.code}: ` : ''}${msg}`.slice(0, BODY_SNIPPET);
  } catch {
    // not JSON
  }
  return text.slice(0, BODY_SNIPPET);
}

/**
 * The outcome of an answer that was not 2xx, by its status: a refused key,
 * an exhausted quota, a rate limit (with its Retry-After), a server fault, or
 * the request's own fault. Secrets the API may echo are scrubbed from the error.
 */
export function failureOf(cfg: HttpLlmConfig, res: Pick<PostResponse, 'status' | 'text' | 'headers'>, url: string, secrets: (string | undefined)[], duration_ms?: number): UnitOutcome {
  const message = apiMessage(scrub(res.text, secrets));
  const wait = retryAfterMs(res.headers);
  const common = { ...(duration_ms !== undefined ? { duration_ms } : {}), ...(wait !== undefined ? { retry_after_ms: wait } : {}) };
  const plain = duration_ms !== undefined ? { duration_ms } : {};
  const what = `HTTP ${res.status} from ${url}: ${message}`;
  if (res.status === 401 || res.status === 403) {
    return { ...plain, status: 'failed', kind: 'auth_failed', error: `${what}. Check the key in ${keyEnvOf(cfg) ?? '(no api_key_env)'}` };
  }
  if (res.status === 429 && /insufficient_quota|quota|billing|credit/i.test(message)) {
    // A Retry-After on a quota error is when the quota resets: the job may resume by itself then.
    return { ...plain, status: 'failed', kind: 'quota_exhausted', error: what, ...(wait !== undefined ? { resets_at: Date.now() + wait } : {}) };
  }
  if (res.status === 429 || res.status === 529) return { ...common, status: 'failed', kind: 'rate_limited', error: what };
  if (res.status >= 500 || res.status === 408 || res.status === 409) return { ...common, status: 'failed', kind: 'retryable', error: what };
  return { ...plain, status: 'failed', kind: 'permanent', error: what };
}

/**
 * The outcome of a 2xx answer's JSON: its text, usage and cost. `priceFactor`
 * is the share of the online price the call was billed at (a batch's 0.5).
 * `stop` is the API's stop reason, for the conversation event.
 */
export function answerOf(cfg: HttpLlmConfig, json: unknown, url: string, duration_ms: number | undefined, priceFactor: number): UnitOutcome & { output?: string; stop?: string } {
  const plain = duration_ms !== undefined ? { duration_ms } : {};
  const parsed = parseBody(cfg.api, json);
  if (typeof parsed === 'string') return { ...plain, status: 'failed', kind: 'retryable', error: `unexpected response from ${url}: ${parsed}` };
  const cost = costOf(parsed.usage, priceOf(cfg.model, cfg.prices));
  const common = { ...plain, usage: parsed.usage, ...(cost !== undefined ? { cost_usd: Math.round(cost * priceFactor * 1e9) / 1e9 } : {}), ...(parsed.stop ? { stop: parsed.stop } : {}) };
  if (parsed.refusal) return { ...common, status: 'failed', kind: 'permanent', error: `the model refused: ${parsed.refusal}`, output: parsed.text };
  return { ...common, status: 'succeeded', output: parsed.text };
}

const total = (u: TokenUsage) => (u.input_tokens ?? 0) + (u.output_tokens ?? 0) + (u.cache_read_tokens ?? 0) + (u.cache_write_tokens ?? 0);

export const httpLlmWorker: Worker<HttpLlmConfig> = {
  type: 'http-llm',
  description: 'Calls an LLM HTTP API per unit: OpenAI-compatible Chat Completions or the Anthropic Messages API.',
  configSchema: config,
  // Read when asked: llm-batch.ts imports this file, so either may be loaded first.
  get batch() {
    return httpLlmBatch;
  },
  healthProbes: [
    { label: 'http-llm (openai)', config: { api: 'openai', model: 'gpt-4o-mini' } },
    { label: 'http-llm (anthropic)', config: { api: 'anthropic', model: 'claude-sonnet-4-5' } },
  ],
  // The key is read from the executor's environment; headers' {{env.NAME}} references are found in the config.
  envNames: (cfg) => {
    const keyEnv = keyEnvOf(cfg);
    return keyEnv ? [keyEnv] : [];
  },
  // An online run and a batch run of one request share answers: rate limits, prices and where the key is read from change no answer.
  answerShape: (cfg) => Object.fromEntries(Object.entries(cfg).filter(([k]) => !['rpm', 'tpm', 'batch', 'batch_max_requests', 'batch_deadline_hours', 'prices', 'api_key_env'].includes(k))),

  async run(unit, cfg, ctx): Promise<UnitOutcome> {
    const started = Date.now();
    const keyEnv = keyEnvOf(cfg);
    const key = keyEnv ? process.env[keyEnv] : undefined;
    if (keyEnv && !key) {
      return { status: 'failed', kind: 'auth_failed', error: `${keyEnv} is not set: export ${keyEnv}=… where abp runs (worker_config.api_key_env names the variable)` };
    }
    const { url, body } = request(cfg, unit);
    const headers = resolveEnvRecord(cfg.headers);
    const aborted = (): UnitOutcome => {
      const reason = String(ctx.signal.reason);
      const common = { duration_ms: Date.now() - started };
      return reason === 'timeout' ? { ...common, status: 'timed_out', error: 'timed out waiting for the API' } : { ...common, status: 'cancelled', error: `stopped (${reason})` };
    };

    let ticket;
    try {
      ticket = await ctx.throttle.acquire(THROTTLE_KEY, { rpm: cfg.rpm, tpm: cfg.tpm }, Math.ceil(unit.prompt.length / 4) + cfg.max_tokens, ctx.signal);
    } catch {
      return aborted();
    }
    ctx.onEvent({ kind: 'request', data: { api: cfg.api, url, model: cfg.model, structured: 'response_format' in body || 'output_config' in body } });
    let res: PostResponse;
    try {
      res = await postJson(url, { 'content-type': 'application/json', ...authHeaders(cfg, key), ...headers }, JSON.stringify(body), ctx.signal);
    } catch (err) {
      ticket.settle(0);
      if (ctx.signal.aborted) return aborted();
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      return { status: 'failed', kind: 'retryable', error: `request to ${url} failed: ${cause?.code ?? cause?.message ?? (err as Error).message}`, duration_ms: Date.now() - started };
    }
    const duration_ms = Date.now() - started;
    const secrets = [key, ...referencedValues(cfg.headers)];
    if (!res.ok) {
      ticket.settle(0);
      return failureOf(cfg, res, url, secrets, duration_ms);
    }
    let json: unknown;
    try {
      json = JSON.parse(res.text);
    } catch (err) {
      ticket.settle(0);
      return { duration_ms, status: 'failed', kind: 'retryable', error: `malformed JSON from ${url} (HTTP ${res.status}): ${(err as Error).message}; body starts ${JSON.stringify(scrub(res.text, secrets).slice(0, 120))}` };
    }
    const answer = answerOf(cfg, json, url, duration_ms, 1);
    ticket.settle(answer.usage ? total(answer.usage) : 0);
    if (answer.usage && answer.status !== 'cancelled') ctx.onEvent({ kind: 'assistant', data: { text: answer.output ?? '', stop: answer.stop ?? null, usage: answer.usage } });
    const { stop: _stop, ...outcome } = answer;
    return outcome;
  },

  async health(cfg): Promise<WorkerHealth> {
    const keyEnv = keyEnvOf(cfg);
    const key = keyEnv ? process.env[keyEnv] : undefined;
    const base = baseOf(cfg);
    const features = [cfg.api, ...(cfg.rpm ? [`rpm ${cfg.rpm}`] : []), ...(cfg.tpm ? [`tpm ${cfg.tpm}`] : []), ...(priceOf(cfg.model, cfg.prices) ? ['priced'] : ['unpriced model'])];
    if (keyEnv && !key) {
      return { status: 'auth_failed', features, details: `${keyEnv} is not set: export ${keyEnv}=<your key> in the environment abp runs in (or name another variable in worker_config.api_key_env)` };
    }
    const url = cfg.api === 'openai' ? `${base}/models` : `${base}/v1/models`;
    try {
      const res = await fetch(url, { headers: { ...authHeaders(cfg, key), ...resolveEnvRecord(cfg.headers) }, signal: AbortSignal.timeout(5000) });
      await res.body?.cancel();
      if (res.status === 401 || res.status === 403) return { status: 'auth_failed', features, details: `${url} refused the key in ${keyEnv} (HTTP ${res.status})` };
      if (res.status >= 500) return { status: 'degraded', features, details: `${url} answered HTTP ${res.status}` };
      return { status: 'ok', features, details: `${base} reachable (GET ${url.slice(base.length)}: HTTP ${res.status})` };
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      return { status: 'down', features, details: `${url} unreachable: ${cause?.code ?? (err as Error).message}` };
    }
  },
};
