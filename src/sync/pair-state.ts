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

export interface PairState {
  baseline: Record<Side, Map<string, BaselineEntry>>;
  tombstones: Map<string, Tombstone>;
  items: Map<string, ItemState>;
}

export function emptyState(): PairState {
  return { baseline: { source: new Map(), target: new Map() }, tombstones: new Map(), items: new Map() };
}
