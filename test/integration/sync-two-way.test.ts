import { existsSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { numberedFiles, SyncBed } from './sync-support.js';

let bed: SyncBed;
beforeEach(async () => {
  bed = await SyncBed.open();
});
afterEach(async () => {
  await bed.close();
});

const pairAB = () => ({ source: { type: 'dir', path: bed.path('a') }, target: { type: 'dir', path: bed.path('b') }, mode: 'two-way' });

describe('two-way sync between two folders', () => {
  it('bootstrap merges both sides without removes', async () => {
    bed.files('a', { 'only-a.txt': 'A\n', 'both.txt': 'same\n', 'conflict.txt': 'from a\n' });
    bed.files('b', { 'only-b.txt': 'B\n', 'both.txt': 'same\n', 'conflict.txt': 'from b, newer\n' });
    // B's copy of the conflicting file is newer, so it wins the first run.
    utimesSync(bed.path('a', 'conflict.txt'), new Date(2020, 0, 1), new Date(2020, 0, 1));
    const run = await bed.run(pairAB());
    expect(run.plan.first_run).toBe(true);
    expect(run.plan.counts).toMatchObject({ adds: 2, updates: 1, removes: 0 });
    expect(run.status).toBe('COMPLETED');
    const merged = { 'only-a.txt': 'A\n', 'only-b.txt': 'B\n', 'both.txt': 'same\n', 'conflict.txt': 'from b, newer\n' };
    expect(bed.read('a')).toEqual(merged);
    expect(bed.read('b')).toEqual(merged);
    expect(run.summary).toMatchObject({ adds: 2, updates: 1, removes: 0, unresolved: 0, blocked: 0 });
    expect(run.summary.text).toBe('+2 ~1 −0 unresolved 0 blocked 0');
    const again = await bed.run(pairAB());
    expect(again.job.total).toBe(0);
    expect(again.plan.counts).toMatchObject({ adds: 0, updates: 0, removes: 0 });
  });

  it('a delete on A propagates to B and stays deleted, even when a stale copy comes back', async () => {
    bed.files('a', numberedFiles(30));
    bed.files('b', numberedFiles(30));
    await bed.run(pairAB());
    rmSync(bed.path('a', 'f007.txt'));
    const run = await bed.run(pairAB());
    expect(run.plan.counts).toMatchObject({ removes: 1, adds: 0 });
    expect(existsSync(bed.path('b', 'f007.txt'))).toBe(false);
    expect(run.summary).toMatchObject({ removes: 1 });

    const quiet = await bed.run(pairAB());
    expect(quiet.job.total).toBe(0);
    expect(existsSync(bed.path('a', 'f007.txt'))).toBe(false);

    // A backup restores the old file on B with its old time: the tombstone keeps it deleted.
    writeFileSync(bed.path('b', 'f007.txt'), 'content of f7\n');
    utimesSync(bed.path('b', 'f007.txt'), new Date(2020, 0, 1), new Date(2020, 0, 1));
    const stale = await bed.run(pairAB());
    expect(stale.plan.writes).toEqual([{ op: 'remove', side: 'target', key: 'f007.txt' }]);
    expect(stale.plan.guards).toEqual(expect.arrayContaining([expect.objectContaining({ guard: 'tombstone', count: 1 })]));
    expect(existsSync(bed.path('a', 'f007.txt'))).toBe(false);
    expect(existsSync(bed.path('b', 'f007.txt'))).toBe(false);
  });

  it('re-adding wins over the tombstone', async () => {
    bed.files('a', numberedFiles(30));
    bed.files('b', numberedFiles(30));
    await bed.run(pairAB());
    rmSync(bed.path('a', 'f003.txt'));
    await bed.run(pairAB());
    expect(existsSync(bed.path('b', 'f003.txt'))).toBe(false);
    // Re-added on A, with the very same content but now: a re-add, not a stale copy.
    writeFileSync(bed.path('a', 'f003.txt'), 'content of f3\n');
    const run = await bed.run(pairAB());
    expect(run.plan.writes).toEqual([{ op: 'add', side: 'target', key: 'f003.txt' }]);
    expect(bed.read('b')['f003.txt']).toBe('content of f3\n');
    const quiet = await bed.run(pairAB());
    expect(quiet.job.total).toBe(0);
  });

  it('deletes on both sides in one run', async () => {
    bed.files('a', numberedFiles(30));
    bed.files('b', numberedFiles(30));
    await bed.run(pairAB());
    rmSync(bed.path('a', 'f001.txt'));
    rmSync(bed.path('b', 'f002.txt'));
    const run = await bed.run(pairAB());
    expect(run.plan.writes).toEqual(
      expect.arrayContaining([
        { op: 'remove', side: 'target', key: 'f001.txt' },
        { op: 'remove', side: 'source', key: 'f002.txt' },
      ]),
    );
    expect(run.plan.counts).toMatchObject({ adds: 0, removes: 2 });
    for (const side of ['a', 'b']) {
      expect(Object.keys(bed.read(side))).toHaveLength(28);
      expect(bed.read(side)['f001.txt']).toBeUndefined();
      expect(bed.read(side)['f002.txt']).toBeUndefined();
    }
    expect((await bed.run(pairAB())).job.total).toBe(0);
  });
});
