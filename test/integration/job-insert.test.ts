import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { UnitDraft } from '../../src/store/repository.js';
import { createTestStore, type TestStore } from '../helpers/store.js';

/*
 * A job's units go in through one precompiled multi-row INSERT, a hundred units a
 * statement, inside the job's transaction: every unit in order with its kind, the
 * short last statement too, and nothing at all when the stream fails partway. On
 * SQLite the page cache is held small for the insert and given back after it.
 */
let store: TestStore;
beforeEach(async () => {
  store = await createTestStore();
});
afterEach(async () => {
  await store.cleanup();
});

const job = {
  name: 'insert test',
  user_intent: 'test',
  enumerator_type: 'json',
  enumerator_config: '{}',
  worker_type: 'shell',
  worker_config: '{"command":"true"}',
  max_workers: 1,
  max_retries: 0,
  timeout_seconds: 60,
  prompt_template: '{{item.n}}',
};

async function* drafts(n: number, failAt?: number): AsyncGenerator<UnitDraft> {
  for (let i = 0; i < n; i++) {
    if (i === failAt) throw new Error(`item ${i} is broken`);
    yield { item_id: `item-${i}`, payload: JSON.stringify({ n: i, text: `it's "quoted", ${'é'.repeat(i % 5)}` }), ...(i === n - 1 ? { kind: 'synthesis' as const } : {}) };
  }
}

describe('job creation: the units insert', () => {
  it.each([1, 100, 250])('%i units: all of them, in order, with their payload, kind and counters', async (n) => {
    const created = await store.repo.createJob(job, drafts(n), () => []);
    expect(created).toMatchObject({ status: 'CREATED', total: n, pending: n });
    const units = await store.repo.listUnits(created.id, {}, { limit: 1000, offset: 0 });
    expect(units.map((u) => u.seq)).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(units.map((u) => u.item_id)).toEqual(Array.from({ length: n }, (_, i) => `item-${i}`));
    expect(units.every((u) => u.status === 'PENDING' && u.attempt === 0)).toBe(true);
    expect(JSON.parse(units[n - 1]?.payload as string)).toEqual({ n: n - 1, text: `it's "quoted", ${'é'.repeat((n - 1) % 5)}` });
    expect(units.map((u) => u.kind)).toEqual(Array.from({ length: n }, (_, i) => (i === n - 1 ? 'synthesis' : 'item')));
  });

  it('a stream that fails after two full statements leaves no job and no unit behind', async () => {
    await expect(store.repo.createJob(job, drafts(500, 230), () => [])).rejects.toThrow('item 230 is broken');
    expect(await store.repo.listJobs({}, { limit: 10, offset: 0 })).toEqual([]);
    // The next job's units still insert whole.
    const next = await store.repo.createJob(job, drafts(3), () => []);
    expect(next.total).toBe(3);
  });
});
