import type { HealthStatus } from './worker.js';

/**
 * A sync inventory: something that can be read whole (snapshot) and written a key
 * at a time. Snapshots are light (key → hash), so a million items fit in memory;
 * full items are read only for the keys a chunk writes.
 */

/** One item in a snapshot: a content hash and, when the provider knows it, the last-modified time. */
export interface SnapshotEntry {
  hash: string;
  /** Epoch ms. */
  updated_at?: number;
}

/** Items keyed by their canonical key: a Map, or a large file's PackedSnapshot. */
export type Snapshot = ReadonlyMap<string, SnapshotEntry>;

/** A full item, as read from or written to a provider. Records are plain JSON objects; dir items are {key, content, encoding}. */
export type ProviderRecord = Record<string, unknown>;

export interface ProviderItem {
  key: string;
  data: ProviderRecord;
}

export const WRITE_STATUSES = ['confirmed', 'skipped', 'unresolved'] as const;
export type WriteStatus = (typeof WRITE_STATUSES)[number];

/** What happened to one key of a write. Outcomes are values: a write never throws for one bad item. */
export type WriteOutcome =
  | {
      key: string;
      status: 'confirmed';
      /** The hash a snapshot will show for what was written. */
      hash: string;
      /**
       * The item was read back after the write, under its key and through the provider's own view
       * (its filters, its format), so the next snapshot shows it with this hash. A confirmed add
       * without it stays unobserved until a snapshot shows it (the phantom guard).
       */
      read_back?: boolean;
    }
  | { key: string; status: 'skipped' | 'unresolved'; reason: string };

/**
 * What a provider keeps of one side of a pair after a run that committed, to tell at the next run
 * what changed since: plain JSON in the provider's own shape (a file's size, mtime and inode; a
 * folder's per-file size and mtime; a table's newest updated_at and row count).
 */
export type Checkpoint = Record<string, unknown>;

/**
 * One side as read against its checkpoint.
 * - `full`: every item was read (no usable checkpoint, or what changed cannot be told from it).
 * - `delta`: only what changed since the checkpoint: `changed` holds the items read anew (changed or
 *   added), `removed` the keys that are gone, and `items`, when the provider counts them, how many
 *   items the side holds now. Every other item is as the pair's baselines have it.
 * Either way `checkpoint` is what the provider saw, taken before it read (null: none to keep).
 */
export type SideRead =
  | { kind: 'full'; snapshot: Snapshot; checkpoint: Checkpoint | null; why: string }
  | { kind: 'delta'; changed: Snapshot; removed: readonly string[]; items: number | null; checkpoint: Checkpoint; note: string };

export interface ProviderHealth {
  status: HealthStatus;
  details: string;
}

export interface Provider {
  readonly type: string;
  /** ok, down (unreachable: no writes) or auth_failed (the pair is skipped). Never throws. */
  health(): Promise<ProviderHealth>;
  /** Every item's key and hash. Throws AbpError('enumeration_failed') when the inventory cannot be read whole. */
  snapshot(signal: AbortSignal): Promise<Snapshot>;
  /**
   * The side's items, reading only what changed since `since` (this provider's checkpoint from the
   * pair's last committed run; null reads everything). The one place a provider compares a
   * checkpoint. Throws as snapshot() does.
   */
  readSince(since: Checkpoint | null, signal: AbortSignal): Promise<SideRead>;
  /** Full items for these keys; keys that are gone are absent from the map. */
  read(keys: readonly string[]): Promise<Map<string, ProviderRecord>>;
  /** Adds (or overwrites, so a retried chunk is harmless) each item. */
  add(items: readonly ProviderItem[]): Promise<WriteOutcome[]>;
  update(items: readonly ProviderItem[]): Promise<WriteOutcome[]>;
  remove(keys: readonly string[]): Promise<WriteOutcome[]>;
  /** Idempotent. */
  close(): Promise<void>;
}

/** A provider type: its name and how to open one from a parsed config. */
export interface ProviderFactory<C> {
  readonly type: string;
  readonly description: string;
  open(config: C): Provider;
}
