import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { startMockBatches, type BatchMockApi, type MockBatches } from '../fixtures/mock-batches.js';
import { Sandbox, sleep } from '../helpers/cli.js';

/*
 * Batch mode when the executor is SIGKILLed at the two moments that matter:
 * after the provider took a batch and before its id was recorded, and in the
 * middle of a harvest. Whatever happens, no unit is lost, none is recorded
 * twice, and no batch is posted twice for the same attempts.
 */

let sb: Sandbox | undefined;
let mock: MockBatches | undefined;

afterEach(async () => {
  await sb?.cleanup();
  await mock?.close();
  sb = undefined;
  mock = undefined;
});

const N = 120;

async function setUp(api: BatchMockApi, options: Parameters<typeof startMockBatches>[1]): Promise<{ s: Sandbox; m: MockBatches; id: number }> {
  const m = (mock = await startMockBatches(api, { processMs: 100, ...options }));
  const s = (sb = new Sandbox({ OPENAI_API_KEY: 'sk-test-openai', ANTHROPIC_API_KEY: 'sk-test-anthropic', ABP_BATCH_POLL_SECONDS: '0.1', ABP_LEASE_SECONDS: '2' }));
  const items = s.path('items.csv');
  writeFileSync(items, ['id,text', ...Array.from({ length: N }, (_, i) => `i${i},text of item ${i}`)].join('\n') + '\n');
  const file = s.path('spec.json');
  writeFileSync(
    file,
    JSON.stringify({
      name: 'batch chaos',
      user_intent: 'Label the text.',
      enumerator_type: 'csv',
      enumerator_config: { file_path: items, id_column: 'id' },
      worker_type: 'http-llm',
      worker_config: { api, base_url: m.baseUrl, model: 'mock-model', prices: { input_per_mtok: 1, output_per_mtok: 5 }, batch: true },
      max_retries: 2,
    }),
  );
  const id = (await s.ok(['create', '--spec', file])).job_id as number;
  const tested = await s.ok(['start', String(id), '--wait']);
  expect(tested.test_unit.status).toBe('SUCCEEDED');
  return { s, m, id };
}

async function executorPids(s: Sandbox): Promise<number[]> {
  return (await s.query<{ pid: number }>('select pid from executors')).map((r) => r.pid);
}

async function until<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const got = await probe();
    if (got !== undefined) return got;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** No unit lost or recorded twice: every unit SUCCEEDED, with exactly one outcome event each. */
async function expectEachRecordedOnce(s: Sandbox, id: number): Promise<void> {
  const units = await s.query<{ id: number; status: string }>('select id, status from work_units where job_id = ?', id);
  expect(units).toHaveLength(N);
  for (const u of units) expect(u.status).toBe('SUCCEEDED');
  const events = await s.query<{ data: string }>("select data from events where job_id = ? and type = 'unit'", id);
  const outcomes = new Map<number, string[]>();
  for (const e of events) {
    const d = JSON.parse(e.data) as { unit_id: number; status: string };
    outcomes.set(d.unit_id, [...(outcomes.get(d.unit_id) ?? []), d.status]);
  }
  expect(outcomes.size).toBe(N);
  for (const [unit, statuses] of outcomes) expect(statuses, `unit ${unit}`).toEqual(['SUCCEEDED']);
  const job = await s.status(id);
  expect(job.status).toBe('COMPLETED');
  expect(job.counts).toMatchObject({ succeeded: N, submitted: 0, running: 0, pending: 0 });
}

/** No batch posted twice for the same attempts: each custom_id (unit and attempt) went to the provider once. */
function expectNoAttemptPostedTwice(m: MockBatches): string[] {
  const posted = m.creates.flatMap((c) => c.custom_ids);
  expect(new Set(posted).size).toBe(posted.length);
  return posted;
}

describe.each(['openai', 'anthropic'] as const)('batch mode under SIGKILL (%s)', (api) => {
  it('killed between the post and recording the batch id: the batch is found again, or its units run again at new attempts', async () => {
    const { s, m, id } = await setUp(api, {});
    const held = m.holdCreate();
    await s.ok(['start', String(id), '--approve']);
    // The provider has the batch; the executor has not heard back.
    const batch = await held.created;
    expect(batch.requests).toHaveLength(N - 1);
    const [pid] = await until(async () => ((await executorPids(s)).length ? executorPids(s) : undefined), 'the executor to register');
    process.kill(pid!, 'SIGKILL');
    held.release();
    const row = await s.queryOne<{ state: string; provider_id: string | null }>('select state, provider_id from llm_batches where job_id = ?', id);
    expect(row).toEqual({ state: 'submitting', provider_id: null });

    // Another executor takes the row once its lease expires.
    const next = s.executor();
    await s.waitFor(id, (st) => st.status === 'COMPLETED', 60_000);
    next.kill('SIGTERM');
    await next;
    await expectEachRecordedOnce(s, id);
    const posted = expectNoAttemptPostedTwice(m);
    if (api === 'openai') {
      // Found by the ref in its metadata: never posted again.
      expect(m.creates).toHaveLength(1);
      const rows = await s.query<{ provider_id: string }>('select provider_id from llm_batches where job_id = ?', id);
      expect(rows).toEqual([{ provider_id: batch.id }]);
    } else {
      // Anthropic keeps no name for a batch: its units ran again at their next attempt, in a new batch.
      expect(m.creates).toHaveLength(2);
      expect(posted.filter((c) => c.endsWith('-a1'))).toHaveLength(N - 1);
      expect(posted.filter((c) => c.endsWith('-a2'))).toHaveLength(N - 1);
      const lost = await s.queryOne<{ error: string }>('select error from llm_batches where job_id = ? and provider_id is null', id);
      expect(lost?.error).toMatch(/keeps no name to find a batch by/);
      // No retry was spent on it.
      const spent = await s.queryOne<{ n: number }>('select sum(failures) n from work_units where job_id = ?', id);
      expect(Number(spent?.n)).toBe(0);
    }
  });

  it('killed in the middle of a harvest: the next executor records the rest, none twice', async () => {
    const { s, m, id } = await setUp(api, { resultsDelayPerLineMs: 25, seed: 3 });
    await s.ok(['start', String(id), '--approve']);
    // Some of the batch's results are recorded, not all.
    await until(async () => {
      const row = await s.queryOne<{ n: number }>("select count(*) n from work_units where job_id = ? and status = 'SUCCEEDED'", id);
      const n = Number(row?.n);
      return n > 5 && n < N - 20 ? n : undefined;
    }, 'a harvest under way');
    for (const pid of await executorPids(s)) process.kill(pid, 'SIGKILL');
    const partial = Number((await s.queryOne<{ n: number }>("select count(*) n from work_units where job_id = ? and status = 'SUCCEEDED'", id))?.n);
    expect(partial).toBeLessThan(N);

    const next = s.executor();
    await s.waitFor(id, (st) => st.status === 'COMPLETED', 60_000);
    next.kill('SIGTERM');
    await next;
    await expectEachRecordedOnce(s, id);
    expectNoAttemptPostedTwice(m);
    // One batch, read twice: once by the killed executor, once by its successor.
    expect(m.creates).toHaveLength(1);
    expect(m.counters.resultsDownloads).toBeGreaterThanOrEqual(2);
  });
});
