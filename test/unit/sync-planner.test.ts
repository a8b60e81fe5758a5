import { describe, expect, it } from 'vitest';
import type { Snapshot } from '../../src/contracts/provider.js';
import { SyncOptions } from '../../src/domain/sync-pair.js';
import { exceedsDeleteRatio, isStaleCopy, isSuspect } from '../../src/sync/guardrails.js';
import { Baselines, emptyState, type PairState } from '../../src/sync/pair-state.js';
import { plan } from '../../src/sync/planner.js';
import { chunkUnits } from '../../src/sync/chunks.js';

const options = SyncOptions.parse({});
const snap = (entries: Record<string, string>): Snapshot => new Map(Object.entries(entries).map(([k, hash]) => [k, { hash }]));
function stateOf(source: Record<string, string>, target: Record<string, string>): PairState {
  const s = emptyState();
  for (const [k, hash] of Object.entries(source)) s.baseline.set('source', k, { hash, observed: true });
  for (const [k, hash] of Object.entries(target)) s.baseline.set('target', k, { hash, observed: true });
  return s;
}
const many = (n: number, skip = 0) => Object.fromEntries(Array.from({ length: n - skip }, (_, i) => [`k${i + skip}`, `h${i + skip}`]));

describe('the sync planner (pure: snapshots and baselines in, a plan out)', () => {
  it('the mass-delete boundary is inclusive at the ratio: 10 of 100 pass, 11 are blocked', () => {
    expect(exceedsDeleteRatio(10, 100, 0.1)).toBe(false);
    expect(exceedsDeleteRatio(11, 100, 0.1)).toBe(true);
    expect(exceedsDeleteRatio(0, 0, 0.1)).toBe(false);
    const base = stateOf(many(100), many(100));
    const ten = plan({ mode: 'one-way', source: snap(many(100, 10)), target: snap(many(100)), state: base, options, transform: false, now: 0 });
    expect(ten.counts).toMatchObject({ removes: 10, blocked: 0 });
    const eleven = plan({ mode: 'one-way', source: snap(many(100, 11)), target: snap(many(100)), state: base, options, transform: false, now: 0 });
    expect(eleven.counts).toMatchObject({ removes: 0, blocked: 11 });
    const allowed = plan({ mode: 'one-way', source: snap(many(100, 11)), target: snap(many(100)), state: base, options: { ...options, allow_mass_delete: true }, transform: false, now: 0 });
    expect(allowed.counts).toMatchObject({ removes: 11, blocked: 0 });
  });

  it('a snapshot is suspect only from suspect_min_prev items and at most suspect_shrink_ratio of them', () => {
    expect(isSuspect(30, 0, options)).toBe(true);
    expect(isSuspect(30, 3, options)).toBe(true);
    expect(isSuspect(30, 4, options)).toBe(false);
    expect(isSuspect(19, 0, options)).toBe(false);
  });

  it('a stale copy matches the tombstone and is not newer than the deletion; a changed or newer one is a re-add', () => {
    const t = { hash: 'h', side: 'source' as const, deleted_at: 1000 };
    expect(isStaleCopy({ hash: 'h', updated_at: 900 }, t)).toBe(true);
    expect(isStaleCopy({ hash: 'h' }, t)).toBe(true);
    expect(isStaleCopy({ hash: 'h', updated_at: 1001 }, t)).toBe(false);
    expect(isStaleCopy({ hash: 'other', updated_at: 900 }, t)).toBe(false);
  });

  it('a first two-way run never deletes, and writes nothing for equal items', () => {
    const p = plan({ mode: 'two-way', source: snap({ a: '1', same: 's' }), target: snap({ b: '2', same: 's' }), state: emptyState(), options, transform: false, now: 0 });
    expect(p.first_run).toBe(true);
    expect(p.stage.filter((r) => r.op).map((r) => [r.op, r.side, r.key])).toEqual([
      ['add', 'target', 'a'],
      ['add', 'source', 'b'],
    ]);
    expect(p.stage.filter((r) => !r.op).map((r) => r.key)).toEqual(['same']);
  });

  it('a down target gets a plan but no writes: everything is unresolved and nothing is staged', () => {
    const p = plan({ mode: 'one-way', source: snap({ a: '1', b: '2' }), target: null, state: emptyState(), options, transform: false, now: 0 });
    expect(p.counts).toMatchObject({ adds: 0, unresolved: 2 });
    expect(p.stage).toEqual([]);
  });

  it('chunks never mix sides or kinds of write, and honour each side’s size', () => {
    const rows = [
      ...['a', 'b', 'c'].map((key) => ({ key, source_hash: '1', target_hash: null, op: 'add' as const, side: 'target' as const, phantom: false })),
      ...['d', 'e'].map((key) => ({ key, source_hash: null, target_hash: '1', op: 'add' as const, side: 'source' as const, phantom: false })),
      { key: 'f', source_hash: null, target_hash: '1', op: 'remove' as const, side: 'target' as const, phantom: false },
    ];
    const units = chunkUnits(rows, { source: 1, target: 2 }).map((u) => JSON.parse(u.payload));
    expect(units.map((u) => [u.op, u.side, u.keys])).toEqual([
      ['add', 'target', ['a', 'b']],
      ['add', 'target', ['c']],
      ['add', 'source', ['d']],
      ['add', 'source', ['e']],
      ['remove', 'target', ['f']],
    ]);
  });
});

describe('Baselines', () => {
  it('keeps both sides of a key together and counts each side', () => {
    const b = new Baselines();
    b.set('source', 'a', { hash: 'h1', observed: true });
    b.set('target', 'a', { hash: 'h2', observed: false });
    b.set('target', 'b', { hash: 'h3', observed: true });
    b.set('source', 'a', { hash: 'h4', observed: true }); // replaces, does not count twice
    expect(b.size('source')).toBe(1);
    expect(b.size('target')).toBe(2);
    expect(b.pair('a')).toEqual({ source: { hash: 'h4', observed: true }, target: { hash: 'h2', observed: false } });
    expect(b.pair('b')?.target).toEqual({ hash: 'h3', observed: true });
    expect(b.pair('b')?.source).toBeUndefined();
    expect(b.pair('z')).toBeUndefined();
    expect([...b.keys()]).toEqual(['a', 'b']);
    expect([...b.entries('target')].map(([k]) => k)).toEqual(['a', 'b']);
    expect([...b.entries('source')]).toEqual([['a', { hash: 'h4', observed: true }]]);
  });
});
