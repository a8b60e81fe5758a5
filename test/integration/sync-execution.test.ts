import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { numberedFiles, SyncBed } from './sync-support.js';

let bed: SyncBed;
beforeEach(async () => {
  bed = await SyncBed.open();
});
afterEach(async () => {
  await bed.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('sync execution', () => {
  it('chunking 250 writes at 100 gives 3 units, applied by the executor', async () => {
    const src = bed.path('src.jsonl');
    writeFileSync(src, Array.from({ length: 250 }, (_, i) => `${JSON.stringify({ id: i + 1, name: `item ${i + 1}` })}\n`).join(''));
    const pair = { source: { type: 'jsonl', path: src }, target: { type: 'csv', path: bed.path('dst.csv') }, options: { apply_chunk_size: 100 } };
    const run = await bed.run(pair);
    expect(run.job.total).toBe(3);
    const units = await bed.app.orchestrator.listUnits(run.job.job_id);
    const sizes = await Promise.all(units.map(async (u: { unit_id: number }) => ((await bed.app.orchestrator.unit(u.unit_id)).payload as { keys: string[] }).keys.length));
    expect(sizes).toEqual([100, 100, 50]);
    expect(run.status).toBe('COMPLETED');
    expect(run.summary).toMatchObject({ adds: 250 });
    expect(readFileSync(bed.path('dst.csv'), 'utf8').trim().split('\n')).toHaveLength(251);
    // The per-provider override wins over the option.
    const over = await bed.plan({ ...pair, target: { ...pair.target, path: bed.path('other.csv'), apply_chunk_size: 50 } });
    expect(over.count).toBe(250);
    const job = (await bed.app.orchestrator.createJob({ sync: { ...pair, target: { ...pair.target, path: bed.path('other.csv'), apply_chunk_size: 50 } } })) as any;
    expect(job.total).toBe(5);
  });

  it('cancel between chunks: applied chunks stay applied and count, the rest is planned again', async () => {
    bed.files('src', numberedFiles(30));
    bed.files('dst', {});
    const pair = { source: { type: 'dir', path: bed.path('src') }, target: { type: 'dir', path: bed.path('dst') }, options: { apply_chunk_size: 10, chunk_pause_ms: 2000 } };
    const job = (await bed.app.orchestrator.createJob({ sync: pair, max_workers: 1 })) as any;
    expect(job.total).toBe(3);
    await bed.app.orchestrator.skipTest(job.job_id);
    while ((await bed.app.repo.requireJob(job.job_id)).succeeded < 1) await sleep(20);
    const cancelled = await bed.app.orchestrator.cancel(job.job_id);
    expect(cancelled.status).toBe('CANCELLED');
    await sleep(300);
    expect(Object.keys(bed.read('dst'))).toHaveLength(10);
    // Whoever comes first (the executor, after the aborted unit, or this call) applies the run once.
    await bed.app.orchestrator.sync.commit(job.job_id);
    expect(await bed.app.orchestrator.sync.summary(job.job_id)).toMatchObject({ status: 'CANCELLED', adds: 10, unresolved: 20 });
    const next = await bed.run({ ...pair, options: { apply_chunk_size: 10 } });
    expect(next.plan.counts).toMatchObject({ adds: 20 });
    expect(Object.keys(bed.read('dst'))).toHaveLength(30);
  });

  it('a translated one-way sync re-runs only the changed items (counting the worker calls)', async () => {
    bed.files('en', { 'a.md': 'hello\n', 'b.md': 'good morning\n', 'sub/c.md': 'good night\n' });
    bed.files('fr', {});
    const calls = bed.path('calls.log');
    const pair = {
      source: { type: 'dir', path: bed.path('en') },
      target: { type: 'dir', path: bed.path('fr') },
      transform: {
        worker_type: 'shell',
        // A stand-in translator: upper-cases the text, and logs one line per call.
        worker_config: { command: 'sh', args: ['-c', 'echo "$1" >> "$2"; tr a-z A-Z', 'sh', '{{item.key}}', calls], stdin: '{{item.content}}' },
      },
    };
    const count = () => (existsSync(calls) ? readFileSync(calls, 'utf8').split('\n').filter(Boolean) : []);
    const first = await bed.run(pair, { user_intent: 'Translate into French.' });
    expect(first.status).toBe('COMPLETED');
    expect(count()).toHaveLength(3);
    expect(first.summary).toMatchObject({ adds: 3, transform_calls: 3 });
    expect(bed.read('fr')).toEqual({ 'a.md': 'HELLO', 'b.md': 'GOOD MORNING', 'sub/c.md': 'GOOD NIGHT' });

    writeFileSync(bed.path('en', 'b.md'), 'good evening\n');
    const second = await bed.run(pair, { user_intent: 'Translate into French.' });
    expect(second.plan.writes).toEqual([{ op: 'update', side: 'target', key: 'b.md' }]);
    expect(count()).toHaveLength(4);
    expect(count()[3]).toBe('b.md');
    expect(bed.read('fr')['b.md']).toBe('GOOD EVENING');

    const third = await bed.run(pair, { user_intent: 'Translate into French.' });
    expect(third.job.total).toBe(0);
    expect(count()).toHaveLength(4);
  });
});
