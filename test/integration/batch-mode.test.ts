import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startMockBatches, type BatchMockApi, type MockBatches, type MockBatchesOptions } from '../fixtures/mock-batches.js';
import { CLI, ROOT, Sandbox, sleep } from '../helpers/cli.js';

/** get_job_status through a real `abp mcp` over stdio. */
async function mcpStatus(s: Sandbox, id: number): Promise<any> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp'], env: { ...process.env, ...s.env } as Record<string, string>, stderr: 'pipe' });
  const client = new Client({ name: 'batch-test', version: '1.0.0' });
  await client.connect(transport);
  try {
    const result = (await client.callTool({ name: 'get_job_status', arguments: { job_id: id } })) as any;
    return result.structuredContent;
  } finally {
    await client.close();
  }
}

/*
 * Batch mode (http-llm `batch: true`) end to end: the real CLI and a detached
 * executor against loopback mocks of the Anthropic Message Batches and OpenAI
 * Batch APIs. The test unit runs online; the rest go in provider batches, are
 * polled under a lease and harvested fenced by attempt.
 */

let sb: Sandbox | undefined;
let mock: MockBatches | undefined;

afterEach(async () => {
  await sb?.cleanup();
  await mock?.close();
  sb = undefined;
  mock = undefined;
});

/** $1 in, $5 out per million tokens: 100 in + 20 out cost $0.0002 online, $0.0001 in a batch. */
const PRICES = { input_per_mtok: 1, output_per_mtok: 5 };
const ONLINE = (100 * 1 + 20 * 5) / 1e6;

function sandbox(env: Record<string, string> = {}): Sandbox {
  sb = new Sandbox({ OPENAI_API_KEY: 'sk-test-openai', ANTHROPIC_API_KEY: 'sk-test-anthropic', ABP_BATCH_POLL_SECONDS: '0.1', ABP_LEASE_SECONDS: '3', ...env });
  return sb;
}

async function createJob(s: Sandbox, api: BatchMockApi, m: MockBatches, n: number, spec: Record<string, unknown> = {}): Promise<number> {
  const items = s.path('items.csv');
  if (n > 0) writeFileSync(items, ['id,text', ...Array.from({ length: n }, (_, i) => `i${i},text of item ${i}`)].join('\n') + '\n');
  const file = s.path('spec.json');
  const { worker_config, ...rest } = spec;
  writeFileSync(
    file,
    JSON.stringify({
      name: 'batch job',
      user_intent: 'Label the text.',
      enumerator_type: 'csv',
      enumerator_config: { file_path: items, id_column: 'id' },
      worker_type: 'http-llm',
      worker_config: { api, base_url: m.baseUrl, model: api === 'anthropic' ? 'claude-haiku-4-5' : 'gpt-4o-mini', prices: PRICES, batch: true, ...(worker_config as object) },
      max_workers: 4,
      max_retries: 2,
      timeout_seconds: 30,
      ...rest,
    }),
  );
  return (await s.ok(['create', '--spec', file])).job_id as number;
}

/** Runs the test unit online, approves it, and waits for the job to end. */
async function testThenRun(s: Sandbox, id: number, timeoutMs = 90_000): Promise<any> {
  const tested = await s.ok(['start', String(id), '--wait']);
  expect(tested.test_unit.status).toBe('SUCCEEDED');
  await s.ok(['start', String(id), '--approve']);
  return s.waitFor(id, (st) => ['COMPLETED', 'FAILED', 'PAUSED', 'CANCELLED'].includes(st.status), timeoutMs);
}

/** Each unit's outcome events by status: a unit recorded twice would show two. */
async function outcomeEvents(s: Sandbox, id: number): Promise<Map<number, string[]>> {
  const rows = await s.query<{ data: string }>("select data from events where job_id = ? and type = 'unit'", id);
  const byUnit = new Map<number, string[]>();
  for (const r of rows) {
    const d = JSON.parse(r.data) as { unit_id: number; status: string };
    byUnit.set(d.unit_id, [...(byUnit.get(d.unit_id) ?? []), d.status]);
  }
  return byUnit;
}

async function start(api: BatchMockApi, options: MockBatchesOptions = {}): Promise<MockBatches> {
  mock = await startMockBatches(api, { processMs: 100, ...options });
  return mock;
}

describe.each(['anthropic', 'openai'] as const)('batch mode against a mock %s batch API', (api) => {
  it('a 500-unit job: the test unit online, the rest in a batch at half the price, every unit recorded exactly once', async () => {
    const m = await start(api, { seed: 7 });
    const s = sandbox();
    const id = await createJob(s, api, m, 500);
    const done = await testThenRun(s, id);
    expect(done.status).toBe('COMPLETED');
    expect(done.counts).toMatchObject({ succeeded: 500, failed: 0, submitted: 0, pending: 0, running: 0 });

    // One online request (the test unit); the other 499 in batches, each request posted once.
    expect(m.counters.online).toBe(1);
    const posted = m.creates.flatMap((c) => c.custom_ids);
    expect(posted).toHaveLength(499);
    expect(new Set(posted).size).toBe(499);

    const units = await s.query<{ id: number; status: string; cost_usd: number; batch_id: number | null; output: string }>('select id, status, cost_usd, batch_id, output from work_units where job_id = ?', id);
    expect(units).toHaveLength(500);
    const batched = units.filter((u) => u.batch_id !== null);
    expect(batched).toHaveLength(499);
    for (const u of batched) {
      expect(u.status).toBe('SUCCEEDED');
      expect(u.cost_usd).toBeCloseTo(ONLINE / 2, 12);
      expect(u.output).toBe(`answer to u${u.id}-a1`);
    }
    const online = units.find((u) => u.batch_id === null)!;
    expect(online.cost_usd).toBeCloseTo(ONLINE, 12);
    expect(done.cost_usd).toBeCloseTo(ONLINE + 499 * (ONLINE / 2), 9);

    // Recorded once each: one SUCCEEDED outcome event per unit.
    const events = await outcomeEvents(s, id);
    expect(events.size).toBe(500);
    for (const statuses of events.values()) expect(statuses).toEqual(['SUCCEEDED']);

    // The ledger: every batch ended, and status shows them.
    const status = await s.status(id);
    expect(status.counts.submitted).toBe(0);
    const rows = await s.query<{ state: string; provider_id: string; requests: number }>('select state, provider_id, requests from llm_batches where job_id = ?', id);
    expect(rows.every((r) => r.state === 'ended' && r.provider_id)).toBe(true);
    expect(rows.reduce((a, r) => a + r.requests, 0)).toBe(499);
  });

  it('expired requests run again without spending a retry; errored ones spend one', async () => {
    // Item 3 errors once (a server error), item 4 always (a bad request); half of the first batch expires.
    const seen = new Map<string, number>();
    const m = await start(api, {
      hold: true,
      answer: (req) => {
        const text = JSON.stringify(req.body);
        const item = /text of item (\d+)/.exec(text)?.[1];
        const n = (seen.get(item ?? '') ?? 0) + 1;
        seen.set(item ?? '', n);
        if (!req.online && item === '3' && n === 1) return { type: 'error', status: 500, message: 'internal' };
        if (!req.online && item === '4') return { type: 'error', status: 400, message: 'bad request' };
        return { type: 'text', text: `ok ${item}`, usage: { input_tokens: 100, output_tokens: 20 } };
      },
    });
    const s = sandbox();
    const id = await createJob(s, api, m, 11, { max_retries: 2 });
    await s.ok(['start', String(id), '--wait']);
    await s.ok(['start', String(id), '--approve']);
    // The first batch: 10 requests; 4 are answered, the other 6 expire.
    const first = await waitForCreates(m, 1);
    m.expire(first[0]!.id, 4);
    // Every later batch completes as it comes.
    const done = await finishing(m, s, id);
    expect(done.status).toBe('FAILED'); // item 4 never succeeds
    const units = await s.query<{ item_id: string; status: string; attempt: number; failures: number; error_kind: string | null }>('select item_id, status, attempt, failures, error_kind from work_units where job_id = ? order by seq', id);
    const byItem = new Map(units.map((u) => [u.item_id, u]));
    // Item 4 failed for good at its first answer: a bad request is not retried.
    expect(byItem.get('i4')).toMatchObject({ status: 'FAILED', failures: 1, error_kind: 'permanent' });
    // Every other unit succeeded; expiries spent nothing, item 3's error spent one.
    for (const u of units.filter((u) => u.item_id !== 'i4')) expect(u.status).toBe('SUCCEEDED');
    const expiredOnce = units.filter((u) => u.item_id !== 'i3' && u.item_id !== 'i4' && u.attempt > 1);
    expect(expiredOnce.length).toBeGreaterThan(0);
    for (const u of expiredOnce) expect(u.failures).toBe(0);
    expect(byItem.get('i3')!.failures).toBe(1);
  });

  it('cancel during processing: the batch is cancelled at the provider, and results that still come are recorded and billed', async () => {
    const m = await start(api, { hold: true, completeOnCancel: 3 });
    const s = sandbox();
    const id = await createJob(s, api, m, 9);
    await s.ok(['start', String(id), '--wait']);
    await s.ok(['start', String(id), '--approve']);
    await waitForCreates(m, 1);
    await s.waitFor(id, (st) => st.counts.submitted === 8, 30_000);
    // Status shows the open batch with the provider's id.
    const shown = await s.ok(['status', String(id)]);
    expect(shown.batches.open).toHaveLength(1);
    expect(shown.batches.open[0]).toMatchObject({ provider: api, state: 'submitted', requests: 8 });
    expect(shown.batches.open[0].provider_id).toBe(m.creates[0]!.id);
    const viaMcp = await mcpStatus(s, id);
    expect(viaMcp.counts.submitted).toBe(8);
    expect(viaMcp.batches.open[0]).toMatchObject({ provider: api, provider_id: m.creates[0]!.id, requests: 8 });
    await s.ok(['cancel', String(id)]);
    const end = await waitUntil(async () => {
      const rows = await s.query<{ state: string }>('select state from llm_batches where job_id = ?', id);
      return rows.length > 0 && rows.every((r) => r.state === 'ended') ? rows : undefined;
    }, 30_000);
    expect(end).toBeDefined();
    expect(m.counters.cancels).toBe(1);
    const units = await s.query<{ status: string; cost_usd: number | null }>('select status, cost_usd from work_units where job_id = ? and batch_id is not null', id);
    expect(units).toHaveLength(8);
    const late = units.filter((u) => u.status === 'SUCCEEDED');
    expect(late).toHaveLength(3);
    for (const u of late) expect(u.cost_usd).toBeCloseTo(ONLINE / 2, 12);
    expect(units.filter((u) => u.status === 'CANCELLED')).toHaveLength(5);
    const job = await s.status(id);
    expect(job.status).toBe('CANCELLED');
    expect(job.counts).toMatchObject({ succeeded: 4, cancelled: 5, submitted: 0 });
    expect(job.cost_usd).toBeCloseTo(ONLINE + 3 * (ONLINE / 2), 9);
  });

  it('a budget stops submission at the cap: spend stays within the cap plus what was submitted', async () => {
    const m = await start(api);
    const s = sandbox();
    // The test unit costs $0.0002 online, so a unit is expected at $0.0001 in a batch: $0.0021 leaves room for 19.
    const cap = 0.0021;
    const id = await createJob(s, api, m, 60, { max_cost_usd: cap });
    await s.ok(['start', String(id), '--wait']);
    await s.ok(['start', String(id), '--approve']);
    // Paused once no more fits; the batch already posted still comes back.
    const done = await s.waitFor(id, (st) => st.status === 'PAUSED' && st.counts.submitted === 0, 60_000);
    expect(done.status_reason).toMatch(/^budget_exhausted/);
    const submitted = m.creates.flatMap((c) => c.custom_ids).length;
    expect(submitted).toBeGreaterThan(0);
    expect(submitted).toBeLessThan(59);
    expect(done.cost_usd).toBeLessThanOrEqual(cap + 1e-9);
    expect(done.counts.succeeded).toBe(1 + submitted);
    expect(done.counts.pending).toBe(59 - submitted);
  });

  it('a job with a post_processing_prompt: the units go in a batch, the synthesis unit runs online over their outputs', async () => {
    const m = await start(api);
    const s = sandbox();
    const id = await createJob(s, api, m, 6, { post_processing_prompt: 'Sum up the labels.' });
    const done = await testThenRun(s, id);
    expect(done.status).toBe('COMPLETED');
    // The test unit and the synthesis unit online; the five others in a batch.
    expect(m.counters.online).toBe(2);
    expect(m.creates.flatMap((c) => c.custom_ids)).toHaveLength(5);
    const synthesis = await s.queryOne<{ status: string; batch_id: number | null; prompt: string }>("select status, batch_id, prompt from work_units where job_id = ? and kind = 'synthesis'", id);
    expect(synthesis).toMatchObject({ status: 'SUCCEEDED', batch_id: null });
    expect(synthesis!.prompt).toContain('Sum up the labels.');
    const job = await s.ok(['status', String(id)]);
    expect(job.counts.succeeded).toBe(7);
  });

  it('past batch_deadline_hours the batch is cancelled: what it answered is recorded, the rest runs online', async () => {
    const m = await start(api, { hold: true, completeOnCancel: 2 });
    const s = sandbox();
    // 0.0003 hours: about a second.
    const id = await createJob(s, api, m, 6, { worker_config: { batch_deadline_hours: 0.0003 } });
    const done = await testThenRun(s, id);
    expect(done.status).toBe('COMPLETED');
    expect(m.counters.cancels).toBe(1);
    // The test unit and the three units the batch did not answer ran online; two came from the batch.
    expect(m.counters.online).toBe(4);
    expect(m.creates.flatMap((c) => c.custom_ids)).toHaveLength(5);
    const units = await s.query<{ status: string; cost_usd: number; batch_id: number | null; attempt: number; failures: number }>('select status, cost_usd, batch_id, attempt, failures from work_units where job_id = ?', id);
    for (const u of units) expect(u).toMatchObject({ status: 'SUCCEEDED', failures: 0 });
    const fromBatch = units.filter((u) => u.batch_id !== null && u.attempt === 1);
    expect(fromBatch).toHaveLength(2);
    for (const u of fromBatch) expect(u.cost_usd).toBeCloseTo(ONLINE / 2, 12);
    expect(units.filter((u) => u.batch_id !== null && u.attempt === 2)).toHaveLength(3);
    expect(done.cost_usd).toBeCloseTo(4 * ONLINE + 2 * (ONLINE / 2), 9);
  });

  it('hostile answers in the results: NUL bytes, a 2 MB answer and one that breaks the schema harm no other unit', async () => {
    const m = await start(api, {
      answer: (req) => {
        const item = /text of item (\d+)/.exec(JSON.stringify(req.body))?.[1];
        if (item === '1') return { type: 'text', text: '{"label": "a\u0000b"}\u0000', usage: { input_tokens: 100, output_tokens: 20 } };
        if (item === '2') return { type: 'text', text: `{"label": "${'x'.repeat(2_000_000)}"}`, usage: { input_tokens: 100, output_tokens: 20 } };
        if (item === '3') return { type: 'text', text: '{"label": 5}', usage: { input_tokens: 100, output_tokens: 20 } };
        return { type: 'text', text: `{"label": "ok ${item}"}`, usage: { input_tokens: 100, output_tokens: 20 } };
      },
    });
    const s = sandbox();
    const schema = { type: 'object', properties: { label: { type: 'string' } }, required: ['label'] };
    const id = await createJob(s, api, m, 6, { output_schema: schema, max_retries: 0 });
    const done = await testThenRun(s, id);
    expect(done.status).toBe('FAILED');
    expect(done.counts).toMatchObject({ succeeded: 5, failed: 1, submitted: 0 });
    const units = await s.query<{ item_id: string; status: string; output: string; error_kind: string | null; structured_output: string | null }>('select item_id, status, output, error_kind, structured_output from work_units where job_id = ?', id);
    const by = new Map(units.map((u) => [u.item_id, u]));
    // NUL cannot be stored (PostgreSQL refuses it): it becomes U+FFFD, and the answer is kept.
    expect(by.get('i1')).toMatchObject({ status: 'SUCCEEDED' });
    expect(by.get('i1')!.output).not.toContain('\u0000');
    expect(JSON.parse(by.get('i1')!.structured_output!)).toEqual({ label: 'a\uFFFDb' });
    expect(by.get('i2')!.status).toBe('SUCCEEDED');
    expect(by.get('i3')).toMatchObject({ status: 'FAILED', error_kind: 'invalid_output' });
    for (const k of ['i0', 'i4', 'i5']) expect(by.get(k)).toMatchObject({ status: 'SUCCEEDED', structured_output: JSON.stringify({ label: `ok ${k.slice(1)}` }) });
  });

  it('with cache on, identical prompts are sent once, and the same job run again makes no request at all', async () => {
    const m = await start(api);
    const s = sandbox();
    // 40 rows, 10 distinct prompts: the template reads only the text.
    const items = s.path('dup.csv');
    writeFileSync(items, ['id,text', ...Array.from({ length: 40 }, (_, i) => `d${i},value ${i % 10}`)].join('\n') + '\n');
    const spec = { cache: true, enumerator_config: { file_path: items, id_column: 'id' }, prompt_template: 'Label: {{item.text}}' };
    const first = await createJob(s, api, m, 0, spec);
    const done = await testThenRun(s, first);
    expect(done.status).toBe('COMPLETED');
    // The test unit online (its prompt is one of the ten), the other nine distinct prompts in the batch.
    expect(m.counters.online).toBe(1);
    expect(m.creates.flatMap((c) => c.custom_ids)).toHaveLength(9);
    const units = await s.query<{ status: string; cached_from: number | null; cost_usd: number | null }>('select status, cached_from, cost_usd from work_units where job_id = ?', first);
    expect(units.filter((u) => u.status === 'SUCCEEDED')).toHaveLength(40);
    expect(units.filter((u) => u.cached_from !== null)).toHaveLength(30);
    for (const u of units.filter((u) => u.cached_from !== null)) expect(u.cost_usd).toBe(0);
    expect(done.cost_usd).toBeCloseTo(ONLINE + 9 * (ONLINE / 2), 9);

    const again = await createJob(s, api, m, 0, spec);
    const rerun = await testThenRun(s, again);
    expect(rerun.status).toBe('COMPLETED');
    expect(rerun.cost_usd).toBe(0);
    expect(m.counters.online).toBe(1);
    expect(m.creates.flatMap((c) => c.custom_ids)).toHaveLength(9);
    const cached = await s.queryOne<{ n: number }>('select count(*) n from work_units where job_id = ? and cached_from is not null', again);
    expect(Number(cached?.n)).toBe(40);
  });

  it('429 on create: the units wait out the Retry-After without spending a retry, then go in a batch', async () => {
    const m = await start(api);
    m.failCreates(1, { status: 429, retryAfterSeconds: 1 });
    const s = sandbox();
    const id = await createJob(s, api, m, 6);
    const done = await testThenRun(s, id);
    expect(done.status).toBe('COMPLETED');
    expect(m.counters.createsRefused).toBe(1);
    const spent = await s.queryOne<{ n: number }>('select sum(failures) n from work_units where job_id = ?', id);
    expect(Number(spent?.n)).toBe(0);
    const refused = await s.queryOne<{ error: string }>("select error from llm_batches where job_id = ? and provider_id is null", id);
    expect(refused?.error).toMatch(/rate_limited/);
  });
});

async function waitUntil<T>(probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T | undefined> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const got = await probe();
    if (got !== undefined) return got;
    await sleep(100);
  }
  return undefined;
}

async function waitForCreates(m: MockBatches, n: number): Promise<MockBatches['creates']> {
  const got = await waitUntil(async () => (m.creates.length >= n ? m.creates : undefined), 30_000);
  if (!got) throw new Error(`the mock saw ${m.creates.length} batch creates, not ${n}`);
  return got;
}

/** Finishes every batch the mock holds until the job ends. */
async function finishing(m: MockBatches, s: Sandbox, id: number): Promise<any> {
  const until = Date.now() + 90_000;
  while (Date.now() < until) {
    m.finish();
    const st = await s.status(id);
    if (['COMPLETED', 'FAILED', 'PAUSED', 'CANCELLED'].includes(st.status)) return st;
    await sleep(150);
  }
  throw new Error(`job ${id} did not end`);
}

describe('the README example of batch mode', () => {
  it('examples/classify-in-batch.json runs as written, pointed at the mock: labels in a batch, then a re-run answered from the cache', async () => {
    const m = await start('anthropic', {
      answer: (req) => ({ type: 'text', text: JSON.stringify({ label: /refund|invoice/i.test(JSON.stringify(req.body)) ? 'billing' : 'other' }), usage: { input_tokens: 300, output_tokens: 10 } }),
    });
    const s = sandbox();
    const example = JSON.parse(readFileSync(join(ROOT, 'examples', 'classify-in-batch.json'), 'utf8'));
    example.enumerator_config.file_path = join(ROOT, example.enumerator_config.file_path);
    example.worker_config.base_url = m.baseUrl;
    writeFileSync(s.path('example.json'), JSON.stringify(example));
    const id = (await s.ok(['create', '--spec', s.path('example.json')])).job_id as number;
    const done = await testThenRun(s, id);
    expect(done.status).toBe('COMPLETED');
    expect(m.creates.flatMap((c) => c.custom_ids)).toHaveLength(5);
    const results = await s.results(id);
    expect(results.find((r) => r.item_id === 't1').structured_output).toEqual({ label: 'billing' });
    expect(results.find((r) => r.item_id === 't6').structured_output).toEqual({ label: 'other' });

    const again = (await s.ok(['create', '--spec', s.path('example.json')])).job_id as number;
    const rerun = await testThenRun(s, again);
    expect(rerun).toMatchObject({ status: 'COMPLETED', cost_usd: 0 });
    expect(m.counters.online).toBe(1);
    expect(m.creates).toHaveLength(1);
  });
});
