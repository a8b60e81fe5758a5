import type { SnapshotEntry } from '../../contracts/provider.js';
import { HASH_CHARS } from './records.js';

/** Entries per batch at most: a position is (batch << 16) | index, a small integer. */
export const PACKED_BATCH_MAX = 1 << 16;

/**
 * A large file's snapshot, kept as the snapshot thread sends it: per batch one
 * string of hashes and one array of times, and a map from each key to its
 * position. Entries are made when they are read. A million-item snapshot so
 * holds a million keys and small integers, not a million entry objects and hash
 * strings besides: objects that outlive a young-generation collection are
 * copied by it, and that copying was most of what receiving a large snapshot
 * cost the main thread.
 */
export class PackedSnapshot implements ReadonlyMap<string, SnapshotEntry> {
  private readonly positions = new Map<string, number>();
  private readonly hashes: string[] = [];
  private readonly times: Float64Array[] = [];

  /** `hashChars`: the width of every hash (a record's base64 sha256 by default; a folder's files use hex). */
  constructor(private readonly hashChars: number = HASH_CHARS) {}

  /** One batch: keys[i]'s hash is hashes from i × hashChars; a time of NaN is none. A later key replaces an earlier one. */
  add(keys: readonly string[], hashes: string, updated: Float64Array): void {
    if (keys.length > PACKED_BATCH_MAX) throw new Error(`a snapshot batch holds at most ${PACKED_BATCH_MAX} entries`);
    const base = this.hashes.length << 16;
    this.hashes.push(hashes);
    this.times.push(updated);
    for (let i = 0; i < keys.length; i++) this.positions.set(keys[i] as string, base | i);
  }

  get size(): number {
    return this.positions.size;
  }

  has(key: string): boolean {
    return this.positions.has(key);
  }

  get(key: string): SnapshotEntry | undefined {
    const at = this.positions.get(key);
    return at === undefined ? undefined : this.entry(at);
  }

  private entry(at: number): SnapshotEntry {
    const batch = at >>> 16;
    const i = at & 0xffff;
    const hash = (this.hashes[batch] as string).slice(i * this.hashChars, (i + 1) * this.hashChars);
    const time = (this.times[batch] as Float64Array)[i] as number;
    return Number.isNaN(time) ? { hash } : { hash, updated_at: time };
  }

  *entries(): MapIterator<[string, SnapshotEntry]> {
    for (const [key, at] of this.positions) yield [key, this.entry(at)];
  }

  keys(): MapIterator<string> {
    return this.positions.keys();
  }

  *values(): MapIterator<SnapshotEntry> {
    for (const at of this.positions.values()) yield this.entry(at);
  }

  forEach(fn: (value: SnapshotEntry, key: string, map: ReadonlyMap<string, SnapshotEntry>) => void, thisArg?: unknown): void {
    for (const [key, at] of this.positions) fn.call(thisArg, this.entry(at), key, this);
  }

  [Symbol.iterator](): MapIterator<[string, SnapshotEntry]> {
    return this.entries();
  }
}
