import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { startMockAnthropic, userText, type MockServer } from '../fixtures/mock-anthropic.js';
import { startMockOpenAI, userContent, type Script } from '../fixtures/mock-openai.js';
import { Sandbox, sleep } from '../helpers/cli.js';

let sb: Sandbox | undefined;
let mock: MockServer | undefined;

afterEach(async () => {
  await sb?.cleanup();
  await mock?.close();
  sb = undefined;
  mock = undefined;
});

function sandbox(env: Record<string, string> = {}): Sandbox {
  sb = new Sandbox({ ABP_SKIP_TEST: '1', OPENAI_API_KEY: 'sk-test-openai', ANTHROPIC_API_KEY: 'sk-test-anthropic', ...env });
  return sb;
}

async function createJob(s: Sandbox, ids: string[], spec: Record<string, unknown>): Promise<number> {
  const items = s.path('items.csv');
  writeFileSync(items, ['id,text', ...ids.map((id) => `${id},text of ${id}`)].join('\n') + '\n');
  const file = s.path('spec.json');
  writeFileSync(
    file,
    JSON.stringify({
      name: 'llm job',
      user_intent: 'Classify the text.',
      enumerator_type: 'csv',
      enumerator_config: { file_path: items, id_column: 'id' },
      worker_type: 'http-llm',
      max_workers: 4,
      max_retries: 2,
      timeout_seconds: 30,
      ...spec,
    }),
  );
  return (await s.ok(['create', '--spec', file])).job_id as number;
}

async function run(s: Sandbox, id: number): Promise<any> {
  await s.ok(['start', String(id)]);
  return s.waitFor(id, (st) => ['COMPLETED', 'FAILED', 'PAUSED'].includes(st.status), 60_000);
}

const itemOf = (text: string) => /text of (\w+)/.exec(text)?.[1];

describe('http-llm worker against a mock OpenAI Chat Completions API', () => {
  it('succeeds with usage and cost from the price table', async () => {
    mock = await startMockOpenAI((req) => ({ type: 'text', text: `label for ${itemOf(userContent(req))}`, usage: { input_tokens: 800, cache_read_input_tokens: 200, output_tokens: 500 } }));
    const s = sandbox();
    const id = await createJob(s, ['a1', 'b2'], { worker_config: { api: 'openai', base_url: `${mock.url}/v1`, model: 'gpt-4o-mini', system: 'You classify.', temperature: 0 } });
    const done = await run(s, id);
    expect(done.status).toBe('COMPLETED');
    // gpt-4o-mini: $0.15 in, $0.075 cached in, $0.60 out per million tokens.
    const perUnit = (800 * 0.15 + 200 * 0.075 + 500 * 0.6) / 1e6;
    expect(done.cost_usd).toBeCloseTo(2 * perUnit, 9);
    expect(done.tokens).toEqual({ input: 1600, output: 1000 });
    const results = await s.results(id);
    expect(results.map((r) => r.output).sort()).toEqual(['label for a1', 'label for b2']);
    const unit = await s.ok(['unit', String(results[0].unit_id)]);
    expect(unit.usage).toEqual({ input_tokens: 800, output_tokens: 500, cache_read_tokens: 200 });
    expect(unit.cost_usd).toBeCloseTo(perUnit, 9);
    const req = mock.requests[0]!;
    expect(req.headers.authorization).toBe('Bearer sk-test-openai');
    expect(req.body).toMatchObject({ model: 'gpt-4o-mini', temperature: 0, max_tokens: 4096 });
    expect(req.body.messages[0]).toEqual({ role: 'system', content: 'You classify.' });
  });

  it('structured output: a valid answer is stored; an invalid one is retried with the errors fed back, a bounded number of times', async () => {
    const schema = { type: 'object', properties: { label: { type: 'string' }, score: { type: 'number' } }, required: ['label', 'score'], additionalProperties: false };
    mock = await startMockOpenAI((req) => {
      const text = userContent(req);
      const item = itemOf(text);
      // "good" answers right after feedback; "bad" never learns.
      if (item === 'good' && text.includes('Your previous answer was rejected')) return { type: 'text', text: 'Sure:\n```json\n{"label": "ok", "score": 0.9}\n```' };
      return { type: 'text', text: '{"label": 5}' };
    });
    const s = sandbox();
    const id = await createJob(s, ['good', 'bad'], { output_schema: schema, max_retries: 1, worker_config: { api: 'openai', base_url: `${mock.url}/v1`, model: 'gpt-4o' } });
    const done = await run(s, id);
    expect(done.status).toBe('FAILED');
    const results = await s.results(id);
    const good = results.find((r) => r.item_id === 'good');
    const bad = results.find((r) => r.item_id === 'bad');
    expect(good).toMatchObject({ status: 'SUCCEEDED', attempt: 2, structured_output: { label: 'ok', score: 0.9 } });
    expect(bad.status).toBe('FAILED');
    expect(bad.attempt).toBe(2); // max_retries 1: two attempts, then it stops
    expect(bad.error).toContain("must have required property 'score'");
    expect(bad.error).toContain('/label: must be string');

    // The API was asked for the schema, and the retry carried the validation errors to it.
    expect(mock.requests[0]!.body.response_format).toEqual({ type: 'json_schema', json_schema: { name: 'output', schema, strict: false } });
    const retries = mock.requests.filter((r) => userContent(r).includes('Your previous answer was rejected'));
    expect(retries).toHaveLength(2);
    for (const r of retries) {
      expect(userContent(r)).toContain("must have required property 'score'");
      expect(userContent(r)).toContain('{"label": 5}');
    }
    const unit = await s.ok(['unit', String(good.unit_id)]);
    expect(unit.prompt).toContain('Your previous answer was rejected');
  });

  it('429 with Retry-After: no request is sent before it expires, and no attempt is spent', async () => {
    let n = 0;
    mock = await startMockOpenAI(() => (++n === 1 ? { type: 'error', status: 429, errorType: 'rate_limit_exceeded', message: 'slow down', headers: { 'retry-after': '2' } } : { type: 'text', text: 'fine' }));
    const s = sandbox();
    const id = await createJob(s, ['r1', 'r2', 'r3'], { max_workers: 1, max_retries: 0, worker_config: { api: 'openai', base_url: `${mock.url}/v1`, model: 'local-model' } });
    const done = await run(s, id);
    expect(done.status).toBe('COMPLETED');
    expect(mock.requests).toHaveLength(4);
    const [limited, ...after] = mock.requests;
    for (const r of after) expect(r.at - limited!.at).toBeGreaterThanOrEqual(2000);
    const results = await s.results(id);
    for (const r of results) expect(r.status).toBe('SUCCEEDED');
    const failures = await s.queryOne<{ n: number }>('select sum(failures) n from work_units where job_id = ?', id);
    expect(failures?.n).toBe(0);
    const cool = await s.queryOne<{ n: number }>("select count(*) n from events where job_id = ? and type = 'cool_down'", id);
    expect(cool?.n).toBe(1);
    // Unpriced local model: no cost, not a made-up one.
    expect(done.cost_usd).toBe(0);
  });

  it('500 is retried, spending an attempt', async () => {
    let n = 0;
    mock = await startMockOpenAI(() => (++n === 1 ? { type: 'error', status: 500, message: 'boom' } : { type: 'text', text: 'recovered' }));
    const s = sandbox();
    const id = await createJob(s, ['x'], { worker_config: { api: 'openai', base_url: `${mock.url}/v1`, model: 'gpt-4o-mini' } });
    const done = await run(s, id);
    expect(done.status).toBe('COMPLETED');
    const [line] = await s.results(id);
    expect(line).toMatchObject({ status: 'SUCCEEDED', attempt: 2, output: 'recovered' });
    const unit = await s.ok(['unit', String(line.unit_id)]);
    expect(unit.failures).toBe(1);
    expect(mock.requests).toHaveLength(2);
  });

  it('malformed JSON fails the attempt with a clear error, and is retried', async () => {
    mock = await startMockOpenAI(() => ({ type: 'raw', status: 200, body: '{"choices": [ this is not json' }));
    const s = sandbox();
    const id = await createJob(s, ['m'], { max_retries: 1, worker_config: { api: 'openai', base_url: `${mock.url}/v1`, model: 'gpt-4o-mini' } });
    const done = await run(s, id);
    expect(done.status).toBe('FAILED');
    const [line] = await s.results(id);
    expect(line.error).toMatch(/malformed JSON from http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions \(HTTP 200\)/);
    expect(line.error).toContain('after 2 attempts');
    expect(mock.requests).toHaveLength(2);
  });

  it('a missing key env var: health is auth_failed naming the variable, and the job does not start', async () => {
    mock = await startMockOpenAI(() => ({ type: 'text', text: 'never' }));
    const s = sandbox({ MY_LLM_KEY: '' });
    const id = await createJob(s, ['k'], { worker_config: { api: 'openai', base_url: `${mock.url}/v1`, model: 'gpt-4o-mini', api_key_env: 'MY_LLM_KEY' } });
    const r = await s.cli(['start', String(id), '--json']);
    expect(r.exitCode).toBe(1);
    expect(r.json.error.message).toContain('MY_LLM_KEY is not set');
    expect((await s.status(id)).status).toBe('CREATED');
    await sleep(200);
    expect(mock.requests).toHaveLength(0);
  });
});

describe('http-llm worker against a mock Anthropic Messages API', () => {
  it('succeeds with usage, overridden prices and the schema sent as output_config', async () => {
    const schema = { type: 'object', properties: { label: { type: 'string' } }, required: ['label'] };
    mock = await startMockAnthropic((req) => ({ type: 'text', text: JSON.stringify({ label: `L-${itemOf(userText(req))}` }), usage: { input_tokens: 1000, output_tokens: 500, cache_read_input_tokens: 100, cache_creation_input_tokens: 10 } }));
    const s = sandbox();
    const id = await createJob(s, ['p1', 'p2'], {
      output_schema: schema,
      worker_config: {
        api: 'anthropic',
        base_url: mock.url,
        model: 'claude-sonnet-4-5',
        max_tokens: 256,
        system: 'Be brief.',
        prices: { input_per_mtok: 1, output_per_mtok: 2, cache_read_per_mtok: 0.5, cache_write_per_mtok: 4 },
      },
    });
    const done = await run(s, id);
    expect(done.status).toBe('COMPLETED');
    const perUnit = (1000 * 1 + 500 * 2 + 100 * 0.5 + 10 * 4) / 1e6;
    expect(done.cost_usd).toBeCloseTo(2 * perUnit, 9);
    const results = await s.results(id);
    expect(results.map((r) => r.structured_output).sort((a, b) => a.label.localeCompare(b.label))).toEqual([{ label: 'L-p1' }, { label: 'L-p2' }]);
    const unit = await s.ok(['unit', String(results[0].unit_id)]);
    expect(unit.usage).toEqual({ input_tokens: 1000, output_tokens: 500, cache_read_tokens: 100, cache_write_tokens: 10 });
    const req = mock.requests[0]!;
    expect(req.headers['x-api-key']).toBe('sk-test-anthropic');
    expect(req.headers['anthropic-version']).toBe('2023-06-01');
    expect(req.body).toMatchObject({ model: 'claude-sonnet-4-5', max_tokens: 256, system: [{ type: 'text', text: 'Be brief.', cache_control: { type: 'ephemeral' } }], output_config: { format: { type: 'json_schema', schema } } });
  });
});
