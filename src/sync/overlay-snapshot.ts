import type { Snapshot, SnapshotEntry } from '../contracts/provider.js';
import type { Baselines, Side } from './pair-state.js';

/**
 * A side read against its checkpoint: the items read anew over the side's
 * baselines, less the keys that are gone. The baselines are what the side showed
 * at the run that saved the checkpoint (commit.ts keeps a checkpoint only then),
 * so every item not read is as they have it. Entries from the baselines carry no
 * updated_at: it only settles conflicts, and a side that changed an item read it.
 */
export class OverlaySnapshot implements ReadonlyMap<string, SnapshotEntry> {
  readonly size: number;
  private readonly removed: ReadonlySet<string>;

  /** `baseSize`: the side's baseline size (the Baselines may hold only the keys an incremental plan visits). */
  constructor(
    private readonly base: Baselines,
    private readonly side: Side,
    private readonly changed: Snapshot,
    removed: readonly string[],
    baseSize: number,
  ) {
    this.removed = new Set(removed);
    let size = baseSize;
    changed.forEach((_, key) => {
      if (!this.fromBase(key)) size++;
    });
    for (const key of this.removed) if (!changed.has(key) && this.fromBase(key)) size--;
    this.size = size;
  }

  private fromBase(key: string): SnapshotEntry | undefined {
    return this.base.pair(key)?.[this.side];
  }

  get(key: string): SnapshotEntry | undefined {
    return this.changed.get(key) ?? (this.removed.has(key) ? undefined : this.fromBase(key));
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  forEach(fn: (value: SnapshotEntry, key: string, map: ReadonlyMap<string, SnapshotEntry>) => void, thisArg?: unknown): void {
    for (const [key, entry] of this.base.entries(this.side)) if (!this.removed.has(key) && !this.changed.has(key)) fn.call(thisArg, entry, key, this);
    this.changed.forEach((entry, key) => fn.call(thisArg, entry, key, this));
  }

  *entries(): MapIterator<[string, SnapshotEntry]> {
    for (const [key, entry] of this.base.entries(this.side)) if (!this.removed.has(key) && !this.changed.has(key)) yield [key, entry];
    yield* this.changed.entries();
  }

  *keys(): MapIterator<string> {
    for (const [key] of this.entries()) yield key;
  }

  *values(): MapIterator<SnapshotEntry> {
    for (const [, entry] of this.entries()) yield entry;
  }

  [Symbol.iterator](): MapIterator<[string, SnapshotEntry]> {
    return this.entries();
  }
}
