/** What a pair remembers between runs. Loaded before a plan, changed only when a real run ends. */

export const SIDES = ['source', 'target'] as const;
export type Side = (typeof SIDES)[number];

export const OPS = ['add', 'update', 'remove'] as const;
export type Op = (typeof OPS)[number];

export function otherSide(side: Side): Side {
  return side === 'source' ? 'target' : 'source';
}

export interface BaselineEntry {
  hash: string;
  /** False for an add that was confirmed but that no snapshot has shown yet. */
  observed: boolean;
}

export interface Tombstone {
  hash: string;
  /** The side the deletion was observed on. */
  side: Side;
  deleted_at: number;
}

export interface ItemState {
  /** Runs in a row in which this item's write stayed unresolved. */
  failures: number;
  quarantined_until: number | null;
  /** Re-adds of an add that was confirmed but never appeared. */
  phantoms: number;
}

/** One key's baselines: one entry per side that has one. */
export interface BaselinePair {
  source?: BaselineEntry;
  target?: BaselineEntry;
}

/**
 * Both sides' baselines in one map, so that planning looks each key up once,
 * not once per side: in a million-item plan those lookups were a third of the time.
 */
export class Baselines {
  private readonly pairs = new Map<string, BaselinePair>();
  private readonly counts: Record<Side, number> = { source: 0, target: 0 };

  set(side: Side, key: string, entry: BaselineEntry): void {
    let pair = this.pairs.get(key);
    if (!pair) this.pairs.set(key, (pair = {}));
    if (!pair[side]) this.counts[side]++;
    pair[side] = entry;
  }

  pair(key: string): BaselinePair | undefined {
    return this.pairs.get(key);
  }

  /** How many keys this side has a baseline for. */
  size(side: Side): number {
    return this.counts[side];
  }

  /** Every key with a baseline on either side, once. */
  keys(): MapIterator<string> {
    return this.pairs.keys();
  }

  /** One side's baselines. */
  *entries(side: Side): Generator<[string, BaselineEntry]> {
    for (const [key, pair] of this.pairs) {
      const entry = pair[side];
      if (entry) yield [key, entry];
    }
  }
}

export interface PairState {
  baseline: Baselines;
  tombstones: Map<string, Tombstone>;
  items: Map<string, ItemState>;
}

export function emptyState(): PairState {
  return { baseline: new Baselines(), tombstones: new Map(), items: new Map() };
}
