import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BatchApiError, customIdOf, parseCustomId, type BatchItemResult } from '../../src/contracts/batch.js';
import type { UnitInput, UnitOutcome } from '../../src/contracts/worker.js';
import { SlidingWindowThrottle } from '../../src/executor/throttle.js';
import { answerOf, httpLlmWorker, type HttpLlmConfig } from '../../workers/http-llm.js';
import { httpLlmBatch, type ResultsSummary } from '../../workers/llm-batch.js';
import { startMockBatches, type AnswerFn, type BatchMockApi, type MockBatches, type MockBatchesOptions } from '../fixtures/mock-batches.js';

/*
 * http-llm's batch API against loopback mocks of both providers' batch APIs:
 * the wire formats, the mapping of each result to a unit's outcome at the batch
 * price, and the failures a runner has to tell apart.
 */

const KEY_ENV = 'ABP_TEST_BATCH_KEY';
const KEY = 'sk-batch-test-0123456789';
const MODELS: Record<BatchMockApi, string> = { anthropic: 'claude-haiku-4-5', openai: 'gpt-4o-mini' };

let mock: MockBatches | undefined;
const signal = new AbortController().signal;

beforeAll(() => {
  process.env[KEY_ENV] = KEY;
});
afterAll(() => {
  delete process.env[KEY_ENV];
});
afterEach(async () => {
  await mock?.close();
  mock = undefined;
});

async function start(api: BatchMockApi, options: MockBatchesOptions = {}): Promise<MockBatches> {
  mock = await startMockBatches(api, { apiKey: KEY, hold: true, ...options });
  return mock;
}

function configOf(m: MockBatches, extra: Record<string, unknown> = {}): HttpLlmConfig {
  return httpLlmWorker.configSchema.parse({ api: m.api, base_url: m.baseUrl, model: MODELS[m.api], api_key_env: KEY_ENV, batch: true, ...extra });
}

const unitOf = (id: number): UnitInput => ({ unit_id: id, job_id: 1, job_name: 'batch test', attempt: 1, item: { id: `i${id}` }, prompt: `Label item ${id}.`, work_dir: '/tmp' });

const range = (n: number, from = 1) => Array.from({ length: n }, (_, i) => from + i);

async function post(cfg: HttpLlmConfig, ids: number[], ref = 'abp-b1'): Promise<string> {
  const encoded = ids.map((id) => httpLlmBatch.encode(cfg, { custom_id: customIdOf(id, 1), unit: unitOf(id) }));
  return (await httpLlmBatch.post(cfg, encoded, ref, signal)).provider_id;
}

/** Every result and the generator's summary. */
async function harvest(cfg: HttpLlmConfig, id: string): Promise<{ items: BatchItemResult[]; summary: ResultsSummary }> {
  const gen = httpLlmBatch.results(cfg, id, signal);
  const items: BatchItemResult[] = [];
  for (;;) {
    const next = await gen.next();
    if (next.done) return { items, summary: next.value };
    items.push(next.value);
  }
}

const byId = (items: BatchItemResult[]) => new Map(items.map((i) => [i.custom_id, i]));
const outcomeOf = (items: BatchItemResult[], unit: number): UnitOutcome => {
  const item = byId(items).get(customIdOf(unit, 1));
  if (!item || !('outcome' in item)) throw new Error(`no outcome for unit ${unit}: ${JSON.stringify(item)}`);
  return item.outcome;
};
const kindOf = (o: UnitOutcome) => (o.status === 'failed' ? o.kind : o.status);

/** The online answer with the same usage as the mock's batch answer, priced at the full price. */
function onlineCost(cfg: HttpLlmConfig, input: number, output: number): number {
  const json =
    cfg.api === 'anthropic'
      ? { content: [{ type: 'text', text: 'x' }], stop_reason: 'end_turn', usage: { input_tokens: input, output_tokens: output } }
      : { choices: [{ message: { content: 'x' }, finish_reason: 'stop' }], usage: { prompt_tokens: input, completion_tokens: output } };
  const cost = answerOf(cfg, json, 'online', undefined, 1).cost_usd;
  if (cost === undefined) throw new Error('the test model has no price');
  return cost;
}

async function rejection(p: Promise<unknown>): Promise<BatchApiError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BatchApiError);
  return err as BatchApiError;
}

describe.each(['anthropic', 'openai'] as const)('http-llm batch API: %s', (api) => {
  it('encodes a unit as the API expects, and posts, polls and harvests a batch out of order at half the online price', async () => {
    const m = await start(api, { answer: (r) => ({ type: 'text', text: `label of ${r.custom_id ?? 'online'}`, usage: { input_tokens: 1000, output_tokens: 200 } }) });
    const cfg = configOf(m, { system: 'You label.' });

    const line = JSON.parse(httpLlmBatch.encode(cfg, { custom_id: 'u7-a2', unit: unitOf(7) }));
    if (api === 'anthropic') {
      expect(Object.keys(line)).toEqual(['custom_id', 'params']);
      // The system prompt is marked for prompt caching, in a batch as online.
      expect(line.params).toMatchObject({ model: MODELS.anthropic, system: [{ type: 'text', text: 'You label.', cache_control: { type: 'ephemeral' } }], messages: [{ role: 'user', content: 'Label item 7.' }] });
    } else {
      expect(line).toMatchObject({ custom_id: 'u7-a2', method: 'POST', url: '/v1/chat/completions' });
      expect(line.body.messages).toEqual([
        { role: 'system', content: 'You label.' },
        { role: 'user', content: 'Label item 7.' },
      ]);
    }

    const ids = range(8);
    const id = await post(cfg, ids);
    expect(id).toMatch(api === 'anthropic' ? /^msgbatch_/ : /^batch_/);
    expect(m.creates).toEqual([{ id, custom_ids: ids.map((u) => customIdOf(u, 1)) }]);
    // The key and the API's headers went with every request.
    for (const req of m.log) expect(api === 'anthropic' ? req.headers['x-api-key'] : req.headers.authorization).toBe(api === 'anthropic' ? KEY : `Bearer ${KEY}`);
    if (api === 'anthropic') expect(m.log.every((r) => r.headers['anthropic-version'] === '2023-06-01')).toBe(true);
    if (api === 'openai') expect(m.batches.get(id)?.metadata).toEqual({ abp_ref: 'abp-b1' });

    const running = await httpLlmBatch.poll(cfg, id, signal);
    expect(running.state).toBe('processing');
    expect(running.counts).toEqual(api === 'anthropic' ? { processing: 8, succeeded: 0, errored: 0, canceled: 0, expired: 0 } : { total: 8, completed: 0, failed: 0 });

    m.finish(id);
    const ended = await httpLlmBatch.poll(cfg, id, signal);
    expect(ended).toEqual({
      state: 'ended',
      provider_status: api === 'anthropic' ? 'ended' : 'completed',
      counts: api === 'anthropic' ? { processing: 0, succeeded: 8, errored: 0, canceled: 0, expired: 0 } : { total: 8, completed: 8, failed: 0 },
    });

    const { items, summary } = await harvest(cfg, id);
    expect(summary).toEqual({ skipped: 0 });
    expect(items.map((i) => i.custom_id).sort()).toEqual(ids.map((u) => customIdOf(u, 1)).sort());
    // The provider's order, not the requests'.
    expect(items.map((i) => i.custom_id)).not.toEqual(ids.map((u) => customIdOf(u, 1)));
    const half = onlineCost(cfg, 1000, 200) / 2;
    for (const u of ids) {
      const o = outcomeOf(items, u);
      expect(o).toMatchObject({ status: 'succeeded', output: `label of ${customIdOf(u, 1)}` });
      expect(o.usage).toMatchObject({ input_tokens: 1000, output_tokens: 200 });
      expect(o.cost_usd).toBeCloseTo(half, 12);
      expect(o).not.toHaveProperty('stop');
    }
    expect(m.billed.batch).toEqual({ input: 8000, output: 1600 });
    expect(m.counters.resultsDownloads).toBe(1);
  });

  it('costs half of what the online worker pays for the same usage', async () => {
    const m = await start(api, { processMs: 0, hold: false });
    const cfg = configOf(m);
    const ctx = { signal, onProcess: () => undefined, onEvent: () => undefined, throttle: new SlidingWindowThrottle() };
    const online = await httpLlmWorker.run(unitOf(1), cfg, ctx);
    expect(online.status).toBe('succeeded');
    const id = await post(cfg, [2]);
    expect((await httpLlmBatch.poll(cfg, id, signal)).state).toBe('ended');
    const { items } = await harvest(cfg, id);
    const batched = outcomeOf(items, 2);
    expect(batched.usage).toMatchObject({ input_tokens: 100, output_tokens: 20 });
    expect(online.cost_usd).toBeGreaterThan(0);
    expect(batched.cost_usd).toBeCloseTo(online.cost_usd! / 2, 12);
    expect(m.counters.online).toBe(1);
    expect(m.billed).toEqual({ online: { input: 100, output: 20 }, batch: { input: 100, output: 20 } });
  });

  it('maps partial errors to failure kinds, and expired requests to unfinished', async () => {
    const answers: Record<number, ReturnType<AnswerFn>> = {
      2: { type: 'error', status: 400, message: 'max_tokens: too large' },
      3: { type: 'error', status: 500, message: 'internal' },
      4: { type: 'expire' },
      5: { type: 'error', status: 429, message: 'slow down' },
      6: { type: 'error', status: 401, message: 'key refused' },
    };
    const m = await start(api, { answer: (r) => answers[parseCustomId(r.custom_id ?? '')?.unit_id ?? 0] ?? { type: 'text', text: 'fine' } });
    const cfg = configOf(m);
    const id = await post(cfg, range(6));
    m.finish(id);
    const progress = await httpLlmBatch.poll(cfg, id, signal);
    expect(progress.counts).toEqual(api === 'anthropic' ? { processing: 0, succeeded: 1, errored: 4, canceled: 0, expired: 1 } : { total: 6, completed: 1, failed: 5 });
    const { items } = await harvest(cfg, id);
    expect(items).toHaveLength(6);
    expect(outcomeOf(items, 1)).toMatchObject({ status: 'succeeded', output: 'fine' });
    expect(byId(items).get(customIdOf(4, 1))).toEqual({ custom_id: customIdOf(4, 1), unfinished: 'expired' });
    // Anthropic names the error type per request; OpenAI gives the status, read like an online answer's.
    const kinds = Object.fromEntries([2, 3, 5, 6].map((u) => [u, kindOf(outcomeOf(items, u))]));
    expect(kinds).toEqual(api === 'anthropic' ? { 2: 'permanent', 3: 'retryable', 5: 'retryable', 6: 'permanent' } : { 2: 'permanent', 3: 'retryable', 5: 'rate_limited', 6: 'auth_failed' });
    const bad = outcomeOf(items, 2);
    expect(bad.status === 'failed' && bad.error).toContain('max_tokens: too large');
    expect(outcomeOf(items, 3).cost_usd).toBeUndefined();
  });

  it('an expired batch: the requests done are billed, the others come back unfinished', async () => {
    const m = await start(api);
    const cfg = configOf(m);
    const id = await post(cfg, range(5));
    m.expire(id, 2);
    const progress = await httpLlmBatch.poll(cfg, id, signal);
    expect(progress).toMatchObject({ state: 'ended', provider_status: api === 'anthropic' ? 'ended' : 'expired' });
    const { items } = await harvest(cfg, id);
    const done = items.filter((i) => 'outcome' in i);
    expect(done.map((i) => i.custom_id).sort()).toEqual([customIdOf(1, 1), customIdOf(2, 1)]);
    expect(items.filter((i) => 'unfinished' in i).map((i) => (i as { unfinished: string }).unfinished)).toEqual(['expired', 'expired', 'expired']);
    expect(m.billed.batch).toEqual({ input: 200, output: 40 });
  });

  it('a cancel: canceling, then ended, with the late results billed and the rest canceled', async () => {
    const m = await start(api, { completeOnCancel: 2 });
    const cfg = configOf(m);
    const id = await post(cfg, range(6));
    await httpLlmBatch.cancel(cfg, id, signal);
    expect(m.counters.cancels).toBe(1);
    const canceling = await httpLlmBatch.poll(cfg, id, signal);
    expect(canceling).toMatchObject({ state: 'processing', provider_status: api === 'anthropic' ? 'canceling' : 'cancelling' });
    const ended = await httpLlmBatch.poll(cfg, id, signal);
    expect(ended).toMatchObject({ state: 'ended', provider_status: api === 'anthropic' ? 'ended' : 'cancelled' });
    expect(ended.counts).toEqual(api === 'anthropic' ? { processing: 0, succeeded: 2, errored: 0, canceled: 4, expired: 0 } : { total: 6, completed: 2, failed: 4 });
    const { items } = await harvest(cfg, id);
    const late = items.filter((i): i is Extract<BatchItemResult, { outcome: UnitOutcome }> => 'outcome' in i);
    expect(late).toHaveLength(2);
    for (const i of late) expect(i.outcome.cost_usd).toBeCloseTo(onlineCost(cfg, 100, 20) / 2, 12);
    expect(items.filter((i) => 'unfinished' in i && i.unfinished === 'canceled')).toHaveLength(4);
    expect(m.billed.batch).toEqual({ input: 200, output: 40 });
  });

  it('a 429 on create is rate_limited with its Retry-After; the next create goes through', async () => {
    const m = await start(api);
    const cfg = configOf(m);
    m.failCreates(1, { status: 429, retryAfterSeconds: 7 });
    const err = await rejection(post(cfg, range(3)));
    expect(err.kind).toBe('rate_limited');
    expect(err.retry_after_ms).toBe(7000);
    expect(err.message).toContain('HTTP 429');
    expect(err.message).not.toContain(KEY);
    const id = await post(cfg, range(3));
    expect(m.counters).toMatchObject({ createsRefused: 1, creates: 1 });
    expect(m.creates.map((c) => c.id)).toEqual([id]);
    if (api === 'openai') expect(m.counters.uploads).toBe(2);
  });

  it('a server fault on create is retryable; an unreachable API is retryable', async () => {
    const m = await start(api);
    const cfg = configOf(m);
    m.failCreates(1, { status: 503 });
    expect((await rejection(post(cfg, [1]))).kind).toBe('retryable');
    await m.close();
    mock = undefined;
    const err = await rejection(post(cfg, [1]));
    expect(err.kind).toBe('retryable');
    // Refused, or a kept-alive connection found closed: either way the request never got an answer.
    expect(err.message).toMatch(new RegExp(`^POST ${m.baseUrl}/(v1/messages/batches|files) failed: (ECONNREFUSED|ECONNRESET|EPIPE|UND_ERR_SOCKET)`));
  });

  it('a missing key is auth_failed naming the variable, before any request; a refused key is auth_failed too', async () => {
    const m = await start(api);
    const unset = configOf(m, { api_key_env: 'ABP_TEST_UNSET_BATCH_KEY' });
    delete process.env.ABP_TEST_UNSET_BATCH_KEY;
    for (const call of [post(unset, [1]), httpLlmBatch.poll(unset, 'b1', signal), httpLlmBatch.cancel(unset, 'b1', signal), harvest(unset, 'b1')]) {
      const err = await rejection(call);
      expect(err.kind).toBe('auth_failed');
      expect(err.message).toContain('ABP_TEST_UNSET_BATCH_KEY');
    }
    expect(m.log).toHaveLength(0);

    process.env.ABP_TEST_WRONG_BATCH_KEY = 'sk-wrong-key-9876';
    try {
      const err = await rejection(post(configOf(m, { api_key_env: 'ABP_TEST_WRONG_BATCH_KEY' }), [1]));
      expect(err.kind).toBe('auth_failed');
      expect(err.message).toContain('ABP_TEST_WRONG_BATCH_KEY');
    } finally {
      delete process.env.ABP_TEST_WRONG_BATCH_KEY;
    }
  });

  it("skips results lines that are not JSON or not abp's", async () => {
    const m = await start(api, { extraResultLines: ['this is not json', JSON.stringify({ custom_id: 'someone-else', result: { type: 'expired' } }), '{"no_custom_id":1}'] });
    const cfg = configOf(m);
    const encoded = [
      httpLlmBatch.encode(cfg, { custom_id: customIdOf(1, 3), unit: unitOf(1) }),
      httpLlmBatch.encode(cfg, { custom_id: 'foreign-request', unit: unitOf(2) }),
      httpLlmBatch.encode(cfg, { custom_id: customIdOf(3, 1), unit: unitOf(3) }),
    ];
    const { provider_id } = await httpLlmBatch.post(cfg, encoded, 'abp-b2', signal);
    m.finish(provider_id);
    const { items, summary } = await harvest(cfg, provider_id);
    expect(items.map((i) => i.custom_id).sort()).toEqual([customIdOf(1, 3), customIdOf(3, 1)]);
    expect(summary).toEqual({ skipped: 4 });
  });

  it('streams a long results file: 20,000 lines, each yielded once', async () => {
    const m = await start(api);
    const cfg = configOf(m);
    const ids = range(20_000);
    const id = await post(cfg, ids);
    m.finish(id);
    let n = 0;
    const seen = new Set<string>();
    let succeeded = 0;
    for await (const item of httpLlmBatch.results(cfg, id, signal)) {
      n++;
      seen.add(item.custom_id);
      if ('outcome' in item && item.outcome.status === 'succeeded') succeeded++;
    }
    expect(n).toBe(20_000);
    expect(seen.size).toBe(20_000);
    expect(succeeded).toBe(20_000);
  });

  it('results of a batch that has not ended are a retryable error', async () => {
    const m = await start(api);
    const cfg = configOf(m);
    const id = await post(cfg, [1]);
    const err = await rejection(harvest(cfg, id));
    expect(err.kind).toBe('retryable');
    expect(err.message).toContain('has not ended');
    expect(m.counters.resultsDownloads).toBe(0);
  });

  it('a reader that stops early leaves no download hanging', async () => {
    const m = await start(api, { resultsDelayPerLineMs: 5 });
    const cfg = configOf(m);
    const id = await post(cfg, range(50));
    m.finish(id);
    const got: string[] = [];
    for await (const item of httpLlmBatch.results(cfg, id, signal)) {
      got.push(item.custom_id);
      if (got.length === 3) break;
    }
    expect(got).toHaveLength(3);
    // The same batch reads whole afterwards: nothing was consumed at the provider.
    const { items } = await harvest(cfg, id);
    expect(items).toHaveLength(50);
  });

  it('limits: the API caps, lowered by batch_max_requests; the price factor; enabled by batch', async () => {
    const m = await start(api);
    const cfg = configOf(m);
    expect(httpLlmBatch.limits(cfg)).toEqual(api === 'anthropic' ? { max_requests: 100_000, max_bytes: 256_000_000 } : { max_requests: 50_000, max_bytes: 200_000_000 });
    expect(httpLlmBatch.limits(configOf(m, { batch_max_requests: 500 })).max_requests).toBe(500);
    expect(httpLlmBatch.limits(configOf(m, { batch_max_requests: 1_000_000 })).max_requests).toBe(api === 'anthropic' ? 100_000 : 50_000);
    expect(() => configOf(m, { batch_max_requests: 0 })).toThrow();
    expect(httpLlmBatch.priceFactor).toBe(0.5);
    expect(httpLlmBatch.enabled(cfg)).toBe(true);
    expect(httpLlmBatch.enabled(configOf(m, { batch: false }))).toBe(false);
    expect(httpLlmWorker.batch).toBe(httpLlmBatch);
  });
});

describe('finding a batch by its ref', () => {
  it('openai: the batch whose metadata names the ref, null for an unknown ref, paging through the list', async () => {
    const m = await start('openai', { maxListLimit: 2 });
    const cfg = configOf(m);
    const since = Date.now() - 1000;
    const ids: string[] = [];
    for (const n of range(5)) ids.push(await post(cfg, [n], `abp-ref-${n}`));
    expect(await httpLlmBatch.find(cfg, 'abp-ref-4', since, signal)).toBe(ids[3]);
    // The oldest is on the third page.
    const lists = m.counters.lists;
    expect(await httpLlmBatch.find(cfg, 'abp-ref-1', since, signal)).toBe(ids[0]);
    expect(m.counters.lists - lists).toBe(3);
    expect(await httpLlmBatch.find(cfg, 'abp-ref-unknown', since, signal)).toBeNull();
  });

  it('openai: the search stops at batches created well before `since`', async () => {
    const m = await start('openai', { maxListLimit: 1 });
    const cfg = configOf(m);
    const old = await post(cfg, [1], 'abp-old');
    const older = await post(cfg, [2], 'abp-older');
    await post(cfg, [3], 'abp-new');
    m.backdate(older, 3 * 3600_000);
    m.backdate(old, 2 * 3600_000);
    const since = Date.now() - 5000;
    const lists = m.counters.lists;
    expect(await httpLlmBatch.find(cfg, 'abp-older', since, signal)).toBeNull();
    // abp-new, then abp-old (too old: stop); abp-older's page is never read.
    expect(m.counters.lists - lists).toBe(2);
    expect(await httpLlmBatch.find(cfg, 'abp-older', since - 4 * 3600_000, signal)).toBe(older);
  });

  it('openai: a batch whose create answer never arrived is found by its ref', async () => {
    const m = await start('openai');
    const cfg = configOf(m);
    const hold = m.holdCreate();
    const poster = new AbortController();
    const encoded = [httpLlmBatch.encode(cfg, { custom_id: customIdOf(1, 1), unit: unitOf(1) })];
    const posting = httpLlmBatch.post(cfg, encoded, 'abp-lost', poster.signal).then(
      () => 'answered',
      (e: unknown) => e,
    );
    const created = await hold.created;
    poster.abort(new Error('poster died'));
    expect(((await posting) as Error).message).toBe('poster died');
    hold.release();
    expect(await httpLlmBatch.find(cfg, 'abp-lost', Date.now() - 1000, signal)).toBe(created.id);
    expect(m.creates.map((c) => c.id)).toEqual([created.id]);
  });

  it('anthropic: batches carry no metadata, so find cannot tell (undefined) and asks nothing', async () => {
    const m = await start('anthropic');
    const cfg = configOf(m);
    await post(cfg, [1], 'abp-any');
    const before = m.log.length;
    expect(await httpLlmBatch.find(cfg, 'abp-any', Date.now() - 1000, signal)).toBeUndefined();
    expect(m.log).toHaveLength(before);
  });
});

describe('batches the provider refuses as a whole', () => {
  it('openai: a batch that failed validation is permanent, with the provider’s reasons', async () => {
    const m = await start('openai');
    const cfg = configOf(m);
    const line = httpLlmBatch.encode(cfg, { custom_id: customIdOf(1, 1), unit: unitOf(1) });
    const { provider_id } = await httpLlmBatch.post(cfg, [line, line], 'abp-dup', signal);
    expect(await httpLlmBatch.poll(cfg, provider_id, signal)).toMatchObject({ state: 'ended', provider_status: 'failed' });
    const err = await rejection(harvest(cfg, provider_id));
    expect(err.kind).toBe('permanent');
    expect(err.message).toContain('line 2: The custom_id for this request is a duplicate');
    expect(m.counters.resultsDownloads).toBe(0);
  });

  it('anthropic: an invalid batch is refused at create, permanent', async () => {
    const m = await start('anthropic');
    const cfg = configOf(m);
    const line = httpLlmBatch.encode(cfg, { custom_id: customIdOf(1, 1), unit: unitOf(1) });
    const err = await rejection(httpLlmBatch.post(cfg, [line, line], 'abp-dup', signal));
    expect(err.kind).toBe('permanent');
    expect(err.message).toContain('duplicate custom_id');
    expect(m.counters.creates).toBe(0);
  });
});
