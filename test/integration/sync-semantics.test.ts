import { rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
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
const readJsonl = (path: string) =>
  Object.fromEntries(
    readFileSync(path, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l))
      .map((r) => [r.id, r]),
  );

describe('sync semantics', () => {
  it('in one-way mode, a destination-only item is never removed', async () => {
    bed.files('src', numberedFiles(30));
    bed.files('dst', { 'mine.txt': 'only in the destination\n' });
    const pair = { source: { type: 'dir', path: bed.path('src') }, target: { type: 'dir', path: bed.path('dst') }, mode: 'one-way' };
    await bed.run(pair);
    rmSync(bed.path('src', 'f001.txt'));
    const run = await bed.run(pair);
    expect(run.plan.writes).toEqual([{ op: 'remove', side: 'target', key: 'f001.txt' }]);
    await bed.run(pair);
    expect(bed.read('dst')['mine.txt']).toBe('only in the destination\n');
    expect(Object.keys(bed.read('dst'))).toHaveLength(30);
  });

  it('conflicts go by updated_at, then to the configured source', async () => {
    const a = bed.path('a.jsonl');
    const b = bed.path('b.jsonl');
    const base = [
      { id: 'x', v: 'x0', at: '2024-01-01T00:00:00Z' },
      { id: 'y', v: 'y0', at: '2024-01-01T00:00:00Z' },
    ];
    writeFileSync(a, jsonl(base));
    writeFileSync(b, jsonl(base));
    const side = (path: string) => ({ type: 'jsonl', path, updated_at_field: 'at' });
    const pair = { source: side(a), target: side(b), mode: 'two-way' };
    await bed.run(pair);
    // x: B changed later, so B wins. y: both changed at the same time, so the configured winner (the source) wins.
    writeFileSync(a, jsonl([{ id: 'x', v: 'x-a', at: '2024-02-01T00:00:00Z' }, { id: 'y', v: 'y-a', at: '2024-03-01T00:00:00Z' }]));
    writeFileSync(b, jsonl([{ id: 'x', v: 'x-b', at: '2024-02-02T00:00:00Z' }, { id: 'y', v: 'y-b', at: '2024-03-01T00:00:00Z' }]));
    const run = await bed.run(pair);
    expect(run.plan.writes).toEqual(
      expect.arrayContaining([
        { op: 'update', side: 'source', key: 'x' },
        { op: 'update', side: 'target', key: 'y' },
      ]),
    );
    for (const path of [a, b]) expect(readJsonl(path)).toEqual({ x: { id: 'x', v: 'x-b', at: '2024-02-02T00:00:00Z' }, y: { id: 'y', v: 'y-a', at: '2024-03-01T00:00:00Z' } });

    // With conflict_winner target, the same tie goes the other way.
    writeFileSync(a, jsonl([{ id: 'x', v: 'x-b', at: '2024-02-02T00:00:00Z' }, { id: 'y', v: 'y-a2', at: '2024-04-01T00:00:00Z' }]));
    writeFileSync(b, jsonl([{ id: 'x', v: 'x-b', at: '2024-02-02T00:00:00Z' }, { id: 'y', v: 'y-b2', at: '2024-04-01T00:00:00Z' }]));
    await bed.run({ ...pair, options: { conflict_winner: 'target' } });
    expect(readJsonl(a).y.v).toBe('y-b2');
  });

  it('a dry run followed by a real run still propagates the deletion', async () => {
    bed.files('a', numberedFiles(30));
    bed.files('b', numberedFiles(30));
    const pair = { source: { type: 'dir', path: bed.path('a') }, target: { type: 'dir', path: bed.path('b') }, mode: 'two-way' };
    const first = await bed.run(pair);
    rmSync(bed.path('a', 'f010.txt'));
    const before = await bed.app.orchestrator.sync.status(first.job.sync.pair);
    const dry = await bed.plan(pair);
    expect(dry.sync.dry_run).toBe(true);
    expect(dry.count).toBe(1);
    expect(dry.sync.writes).toEqual([{ op: 'remove', side: 'target', key: 'f010.txt' }]);
    expect(existsSync(bed.path('b', 'f010.txt'))).toBe(true);
    const after = await bed.app.orchestrator.sync.status(first.job.sync.pair);
    expect(after).toEqual(before);
    expect(await bed.app.orchestrator.listJobs()).toHaveLength(1);
    const real = await bed.run(pair);
    expect(real.summary).toMatchObject({ removes: 1 });
    expect(existsSync(bed.path('b', 'f010.txt'))).toBe(false);
  });

  it('two pairs that share a provider do not resurrect each other’s deletions', async () => {
    bed.files('a', numberedFiles(30));
    bed.files('b', numberedFiles(30));
    bed.files('c', numberedFiles(30));
    const dir = (name: string) => ({ type: 'dir', path: bed.path(name) });
    const ab = { source: dir('a'), target: dir('b'), mode: 'two-way' };
    const ac = { source: dir('a'), target: dir('c'), mode: 'two-way' };
    await bed.run(ab);
    await bed.run(ac);
    rmSync(bed.path('b', 'f005.txt'));
    const r1 = await bed.run(ab);
    expect(r1.plan.writes).toEqual([{ op: 'remove', side: 'source', key: 'f005.txt' }]);
    const r2 = await bed.run(ac);
    // A's deletion (made by the other pair) reaches C; C's copy does not come back to A.
    expect(r2.plan.writes).toEqual([{ op: 'remove', side: 'target', key: 'f005.txt' }]);
    await bed.run(ab);
    await bed.run(ac);
    for (const name of ['a', 'b', 'c']) expect(bed.read(name)['f005.txt']).toBeUndefined();
    expect(r1.job.sync.pair).not.toBe(r2.job.sync.pair);
  });
});
