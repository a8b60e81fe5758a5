import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { numberedFiles, SyncBed } from './sync-support.js';

let bed: SyncBed;
beforeEach(async () => {
  bed = await SyncBed.open();
});
afterEach(async () => {
  await bed.close();
});

const jsonl = (rows: object[]) => rows.map((r) => `${JSON.stringify(r)}\n`).join('');

describe('sync faults', () => {
  it('a snapshot that throws means no writes, and the baseline is unchanged', async () => {
    const src = bed.path('src.jsonl');
    const dst = bed.path('dst.json');
    writeFileSync(src, jsonl([{ id: 'a', v: 1 }, { id: 'b', v: 2 }]));
    const pair = { source: { type: 'jsonl', path: src }, target: { type: 'json', path: dst } };
    const first = await bed.run(pair);
    expect(first.summary).toMatchObject({ adds: 2 });
    const before = readFileSync(dst, 'utf8');
    const baseline = (await bed.app.orchestrator.sync.status(first.job.sync.pair)).baseline;

    writeFileSync(src, `${JSON.stringify({ id: 'a', v: 10 })}\n{"id": "b", broken\n`);
    await expect(bed.app.orchestrator.createJob({ sync: pair })).rejects.toMatchObject({ code: 'enumeration_failed', message: expect.stringMatching(/src\.jsonl:2: not valid JSON.*baseline is unchanged/) });
    expect(readFileSync(dst, 'utf8')).toBe(before);
    const after = await bed.app.orchestrator.sync.status(first.job.sync.pair);
    expect(after.baseline).toEqual(baseline);
    expect(after.runs).toHaveLength(1);
    expect(await bed.events(null, 'sync_failed')).toEqual([expect.objectContaining({ pair: first.job.sync.pair })]);
  });

  it('a down target leaves items unresolved, and the next run applies them', async () => {
    bed.files('src', numberedFiles(3));
    const pair = { source: { type: 'dir', path: bed.path('src') }, target: { type: 'dir', path: bed.path('mnt', 'dst') } };
    const down = await bed.run(pair);
    expect(down.plan.health.target.status).toBe('down');
    expect(down.plan.counts).toMatchObject({ adds: 0, unresolved: 3 });
    expect(down.job.total).toBe(0);
    expect(down.summary).toMatchObject({ adds: 0, unresolved: 3 });
    expect(down.plan.guards).toEqual([expect.objectContaining({ guard: 'provider_down', side: 'target', count: 3 })]);

    mkdirSync(bed.path('mnt', 'dst'), { recursive: true });
    const up = await bed.run(pair);
    expect(up.summary).toMatchObject({ adds: 3, unresolved: 0 });
    expect(bed.read('mnt/dst')).toEqual(numberedFiles(3));
  });

  it('a target that goes down mid-run leaves its chunk unresolved; the next run applies it', async () => {
    bed.files('src', numberedFiles(4));
    bed.files('dst', {});
    const pair = { source: { type: 'dir', path: bed.path('src') }, target: { type: 'dir', path: bed.path('dst') }, options: { apply_chunk_size: 2, chunk_pause_ms: 1500 } };
    const job = (await bed.app.orchestrator.createJob({ sync: pair, max_retries: 0, max_workers: 1 })) as any;
    expect(job.total).toBe(2);
    await bed.app.orchestrator.skipTest(job.job_id);
    // Unmounted after the first chunk, during the pause before the second.
    for (let i = 0; i < 200 && (await bed.app.repo.requireJob(job.job_id)).succeeded < 1; i++) await new Promise((r) => setTimeout(r, 20));
    renameSync(bed.path('dst'), bed.path('dst-away'));
    const ended = await bed.app.orchestrator.waitUntilSettled(job.job_id, 30_000);
    expect(ended.status).toBe('FAILED');
    await bed.app.orchestrator.sync.commit(job.job_id);
    expect(await bed.app.orchestrator.sync.summary(job.job_id)).toMatchObject({ adds: 2, unresolved: 2 });
    renameSync(bed.path('dst-away'), bed.path('dst'));
    const again = await bed.run(pair);
    expect(again.summary).toMatchObject({ adds: 2, unresolved: 0 });
    expect(Object.keys(bed.read('dst')).sort()).toEqual(Object.keys(numberedFiles(4)));
  });

  it('a down source does nothing', async () => {
    bed.files('dst', numberedFiles(2));
    const pair = { source: { type: 'dir', path: bed.path('gone') }, target: { type: 'dir', path: bed.path('dst') }, mode: 'two-way' };
    await expect(bed.app.orchestrator.createJob({ sync: pair })).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/source .* is down/) });
    expect(await bed.app.orchestrator.listJobs()).toEqual([]);
    expect(bed.read('dst')).toEqual(numberedFiles(2));
    expect(await bed.events(null, 'sync_skipped')).toEqual([expect.objectContaining({ side: 'source', health: expect.objectContaining({ status: 'down' }) })]);
  });
});
