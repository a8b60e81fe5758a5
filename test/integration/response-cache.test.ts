import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { httpLlmWorker } from '../../workers/http-llm.js';
import { cacheKey, ResponseCache } from '../../src/executor/response-cache.js';
import { startMockOpenAI, userContent, type MockServer } from '../fixtures/mock-openai.js';
import { Sandbox } from '../helpers/cli.js';

let sb: Sandbox | undefined;
let mock: MockServer | undefined;

afterEach(async () => {
  await sb?.cleanup();
  await mock?.close();
  sb = undefined;
  mock = undefined;
});

function sandbox(): Sandbox {
  sb = new Sandbox({ ABP_SKIP_TEST: '1', OPENAI_API_KEY: 'sk-test-openai' });
  return sb;
}

/** Answers "label for <text>", or that label as JSON when the request asks for a schema; a short delay makes identical requests overlap. */
async function startMock(): Promise<MockServer> {
  return startMockOpenAI((req) => {
    const text = /Label: (\S+)/.exec(userContent(req))?.[1] ?? '?';
    return { type: 'text', text: req.body?.response_format ? JSON.stringify({ label: `label for ${text}` }) : `label for ${text}`, delayMs: 20 };
  });
}

/** A CSV of `rows` rows whose `text` takes `rows / repeat` distinct values, each on `repeat` adjacent rows (so identical requests run at once). */
function itemsFile(s: Sandbox, name: string, rows: number, repeat: number): string {
  const file = s.path(name);
  const lines = ['id,text'];
  for (let i = 0; i < rows; i++) lines.push(`row${i},v${Math.floor(i / repeat)}`);
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

async function createJob(s: Sandbox, items: string, spec: Record<string, unknown>, workerConfig: Record<string, unknown> = {}): Promise<number> {
  const file = s.path(`spec-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      name: 'cached job',
      user_intent: 'Label the text.',
      enumerator_type: 'csv',
      enumerator_config: { file_path: items, id_column: 'id' },
      worker_type: 'http-llm',
      worker_config: { api: 'openai', base_url: `${mock!.url}/v1`, model: 'gpt-4o-mini', ...workerConfig },
      // Only the text: the row's id must not make prompts distinct.
      prompt_template: 'Label: {{item.text}}',
      max_workers: 8,
      max_retries: 2,
      timeout_seconds: 30,
      cache: true,
      ...spec,
    }),
  );
  return (await s.ok(['create', '--spec', file])).job_id as number;
}

async function run(s: Sandbox, id: number): Promise<any> {
  await s.ok(['start', String(id)]);
  return s.waitFor(id, (st) => ['COMPLETED', 'FAILED', 'PAUSED'].includes(st.status), 150_000);
}

interface UnitFacts {
  id: number;
  status: string;
  output: string;
  cost_usd: number | null;
  cache_key: string | null;
  cached_from: number | null;
}

const unitsOf = (s: Sandbox, job: number) => s.query<UnitFacts>('select id, status, output, cost_usd, cache_key, cached_from from work_units where job_id = ? order by id', job);

describe('response cache across jobs (http-llm against a mock OpenAI API)', () => {
  it('1,000 units of 100 distinct prompts make 100 requests; a re-run makes none; another model or output_schema misses; the unit views say so', { timeout: 600_000 }, async () => {
    mock = await startMock();
    const s = sandbox();
    const items = itemsFile(s, 'items.csv', 1000, 10);

    const first = await createJob(s, items, {});
    const done = await run(s, first);
    expect(done.status).toBe('COMPLETED');
    expect(done.counts.succeeded).toBe(1000);
    // Identical requests running at once waited for the first: one request per distinct prompt.
    expect(mock.requests).toHaveLength(100);
    expect(new Set(mock.requests.map((r) => userContent(r))).size).toBe(100);

    const units = await unitsOf(s, first);
    const byId = new Map(units.map((u) => [u.id, u]));
    const cached = units.filter((u) => u.cached_from !== null);
    const asked = units.filter((u) => u.cached_from === null);
    expect(cached).toHaveLength(900);
    expect(asked).toHaveLength(100);
    for (const u of units) {
      expect(u.status).toBe('SUCCEEDED');
      expect(u.cache_key).toMatch(/^[0-9a-f]{64}$/);
    }
    for (const u of asked) expect(u.cost_usd).toBeGreaterThan(0);
    for (const u of cached) {
      expect(u.cost_usd).toBe(0);
      const source = byId.get(u.cached_from!)!;
      expect(source.cached_from).toBeNull();
      expect(source.cache_key).toBe(u.cache_key);
      expect(u.output).toBe(source.output);
    }
    expect(new Set(units.map((u) => u.cache_key)).size).toBe(100);
    // The job paid for the 100 requests only.
    expect(done.cost_usd).toBeCloseTo(asked.reduce((sum, u) => sum + (u.cost_usd ?? 0), 0), 9);

    // The unit views show where an answer came from.
    const hit = cached[0]!;
    const detail = await s.ok(['unit', String(hit.id)]);
    expect(detail).toMatchObject({ unit_id: hit.id, status: 'SUCCEEDED', cached: true, cached_from: hit.cached_from, cost_usd: 0, usage: null });
    expect(detail.conversation).toEqual([expect.objectContaining({ kind: 'cached', data: { from_unit_id: hit.cached_from, cache_key: hit.cache_key } })]);
    const fresh = await s.ok(['unit', String(asked[0]!.id)]);
    expect(fresh).toMatchObject({ cached: false, cached_from: null });
    const listed = await s.ok(['units', String(first), '--limit', '20']);
    expect(listed).toHaveLength(20);
    for (const u of listed) {
      expect(u.cached).toBe(u.cached_from !== null);
      expect(u.cached_from).toBe(byId.get(u.unit_id)!.cached_from);
    }

    // The same spec again, as a new job: every answer is cached, nothing is asked, nothing is paid.
    const again = await createJob(s, items, {});
    const redone = await run(s, again);
    expect(redone.status).toBe('COMPLETED');
    expect(redone.counts.succeeded).toBe(1000);
    expect(mock.requests).toHaveLength(100);
    expect(redone.cost_usd).toBe(0);
    const second = await unitsOf(s, again);
    for (const u of second) {
      expect(u.cached_from).not.toBeNull();
      expect(u.cost_usd).toBe(0);
      // A hit points at a unit that was asked for, not at another hit.
      expect(byId.get(u.cached_from!)?.cached_from).toBeNull();
    }

    // A few of the same prompts: with the same model they hit; another model or an output_schema misses.
    const few = itemsFile(s, 'few.csv', 30, 10);
    const same = await run(s, await createJob(s, few, {}));
    expect(same.status).toBe('COMPLETED');
    expect(mock.requests).toHaveLength(100);

    const otherModel = await run(s, await createJob(s, few, {}, { model: 'gpt-4o' }));
    expect(otherModel.status).toBe('COMPLETED');
    expect(mock.requests).toHaveLength(103);
    expect(mock.requests.slice(100).map((r) => r.body.model)).toEqual(['gpt-4o', 'gpt-4o', 'gpt-4o']);

    const schema = { type: 'object', properties: { label: { type: 'string' } }, required: ['label'] };
    const withSchema = await createJob(s, few, { output_schema: schema });
    const structured = await run(s, withSchema);
    expect(structured.status).toBe('COMPLETED');
    expect(mock.requests).toHaveLength(106);
    // Its hits carry the source's structured output, unvalidated again.
    const results = await s.results(withSchema);
    for (const r of results) expect(r.structured_output).toEqual({ label: `label for ${(r.payload as { text: string }).text}` });
    expect(results.filter((r) => r.cost_usd === 0)).toHaveLength(27);
  });

  it('with the cache off (the default) every unit asks: 1,000 requests', { timeout: 600_000 }, async () => {
    mock = await startMock();
    const s = sandbox();
    const items = itemsFile(s, 'items.csv', 1000, 10);
    const done = await run(s, await createJob(s, items, { cache: false }));
    expect(done.status).toBe('COMPLETED');
    expect(mock.requests).toHaveLength(1000);
    const marked = await s.queryOne<{ n: number }>('select count(*) n from work_units where cache_key is not null or cached_from is not null');
    expect(marked?.n).toBe(0);
    // A later job with the cache on finds nothing: a job without the cache leaves no answers for it.
    const few = itemsFile(s, 'few.csv', 20, 10);
    const cachedRun = await run(s, await createJob(s, few, {}));
    expect(cachedRun.status).toBe('COMPLETED');
    expect(mock.requests).toHaveLength(1002);
  });
});

describe('the cache key', () => {
  const parse = (config: Record<string, unknown>) => httpLlmWorker.configSchema.parse({ api: 'openai', model: 'gpt-4o-mini', ...config });
  const cache = new ResponseCache({ cachedResponse: async () => undefined });
  const job = { cache: 1, worker_type: 'http-llm' };
  const schema = { type: 'object', properties: { label: { type: 'string' } } };
  const keyOf = (config: Record<string, unknown> = {}, prompt = 'Label: v1', outputSchema: Record<string, unknown> | null = schema) =>
    cache.keyFor(job, httpLlmWorker, parse(config), prompt, outputSchema);

  it('is the same for the same request, and a sha256', () => {
    expect(keyOf()).toMatch(/^[0-9a-f]{64}$/);
    expect(keyOf()).toBe(keyOf());
    // Key order and defaults written out make no difference.
    expect(keyOf({ temperature: 0, max_tokens: 4096 })).toBe(keyOf({ max_tokens: 4096, temperature: 0 }));
    expect(keyOf({ max_tokens: 4096 })).toBe(keyOf());
    expect(keyOf({}, 'p', { b: 1, a: { d: 2, c: 3 } })).toBe(keyOf({}, 'p', { a: { c: 3, d: 2 }, b: 1 }));
  });

  it('changes with the prompt, model, temperature, system prompt, endpoint and output_schema', () => {
    const base = keyOf();
    const others = [
      keyOf({}, 'Label: v2'),
      keyOf({ model: 'gpt-4o' }),
      keyOf({ temperature: 0.7 }),
      keyOf({ system: 'Be terse.' }),
      keyOf({ base_url: 'http://127.0.0.1:9/v1' }),
      keyOf({ max_tokens: 100 }),
      keyOf({}, 'Label: v1', null),
      keyOf({}, 'Label: v1', { type: 'object', properties: { label: { type: 'number' } } }),
    ];
    for (const k of others) expect(k).not.toBe(base);
    expect(new Set(others).size).toBe(others.length);
    // Another worker type with the same request is another request.
    expect(cache.keyFor({ cache: 1, worker_type: 'other' }, httpLlmWorker, parse({}), 'Label: v1', schema)).not.toBe(base);
  });

  it('does not change with rate limits, prices, the batch route or where the key is read from', () => {
    const base = keyOf();
    expect(keyOf({ rpm: 60, tpm: 100_000 })).toBe(base);
    expect(keyOf({ batch: true })).toBe(base);
    expect(keyOf({ prices: { input_per_mtok: 1, output_per_mtok: 2 } })).toBe(base);
    expect(keyOf({ api_key_env: 'OTHER_KEY' })).toBe(base);
    expect(keyOf({ api_key_env: null })).toBe(base);
  });

  it('holds no secret: the values of the key variable and of {{env.NAME}} headers leave it unchanged', () => {
    const before = { key: process.env.OPENAI_API_KEY, header: process.env.ABP_TEST_ROUTER_TOKEN };
    try {
      process.env.OPENAI_API_KEY = 'sk-one';
      process.env.ABP_TEST_ROUTER_TOKEN = 'token-one';
      const headers = { authorization: 'Bearer {{env.ABP_TEST_ROUTER_TOKEN}}' };
      const one = keyOf({ headers });
      process.env.OPENAI_API_KEY = 'sk-two';
      process.env.ABP_TEST_ROUTER_TOKEN = 'token-two';
      expect(keyOf({ headers })).toBe(one);
    } finally {
      for (const [name, value] of [['OPENAI_API_KEY', before.key], ['ABP_TEST_ROUTER_TOKEN', before.header]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });

  it('is null when the job has the cache off, and for the synthesis unit', () => {
    expect(cache.keyFor({ cache: 0, worker_type: 'http-llm' }, httpLlmWorker, parse({}), 'Label: v1', schema)).toBeNull();
    expect(cache.keyFor(job, httpLlmWorker, parse({}), 'Label: v1', schema, 'synthesis')).toBeNull();
  });

  it('keys on the whole config for a worker without answerShape', () => {
    const plain = { answerShape: undefined };
    expect(cache.keyFor(job, plain, { command: 'a', rpm: 1 }, 'p', null)).toBe(cacheKey({ worker_type: 'http-llm', prompt: 'p', output_schema: null, config: { rpm: 1, command: 'a' } }));
    expect(cache.keyFor(job, plain, { command: 'a', rpm: 1 }, 'p', null)).not.toBe(cache.keyFor(job, plain, { command: 'a', rpm: 2 }, 'p', null));
  });
});

describe('identical requests at once, in one executor', () => {
  it('only the first asks; the others wait for its outcome, then take it, or ask themselves once when it failed', async () => {
    let stored: { unit_id: number; output: string; structured_output: string | null } | undefined;
    const cache = new ResponseCache({ cachedResponse: async () => stored });
    const first = await cache.acquire('k');
    expect(first.hit).toBeUndefined();
    const waiting = [cache.acquire('k'), cache.acquire('k')];
    // The first's request failed: its outcome is written without an answer, and the waiters run themselves.
    first.release!();
    const [a, b] = await Promise.all(waiting);
    expect(a!.hit).toBeUndefined();
    expect(b!.hit).toBeUndefined();
    // One of them leads now; a newcomer waits for it and takes its answer.
    const later = cache.acquire('k');
    stored = { unit_id: 7, output: 'answer', structured_output: null };
    a!.release!();
    b!.release!();
    expect((await later).hit).toEqual(stored);
    expect(cache.inFlightCount).toBe(0);
  });

  it('a unit that comes while another looks the key up waits for it, so a lookup never races the answer being written', async () => {
    let stored: { unit_id: number; output: string; structured_output: string | null } | undefined;
    let lookups = 0;
    let answerFirst!: () => void;
    const cache = new ResponseCache({
      cachedResponse: async () => {
        lookups++;
        if (lookups === 1) await new Promise<void>((r) => (answerFirst = r));
        return stored;
      },
    });
    const first = cache.acquire('k');
    const second = cache.acquire('k');
    await new Promise((r) => setImmediate(r));
    expect(lookups).toBe(1);
    answerFirst();
    const turn = await first;
    expect(turn.hit).toBeUndefined();
    expect(lookups).toBe(1);
    // The first unit's answer is written, then it lets the second look.
    stored = { unit_id: 3, output: 'answer', structured_output: null };
    turn.release!();
    expect((await second).hit).toEqual(stored);
    expect(lookups).toBe(2);
    expect(cache.inFlightCount).toBe(0);
  });

  it('a waiter stops waiting when its unit is aborted', async () => {
    const cache = new ResponseCache({ cachedResponse: async () => undefined });
    const first = await cache.acquire('k');
    const controller = new AbortController();
    const waiting = cache.acquire('k', controller.signal);
    controller.abort('cancelled');
    await expect(waiting).rejects.toBe('cancelled');
    first.release!();
    expect(cache.inFlightCount).toBe(0);
  });
});
