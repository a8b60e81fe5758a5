import { hash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { sep } from 'node:path';
import type { Checkpoint } from '../../contracts/provider.js';
import { settledMtime } from './stamps.js';

/**
 * One walk over a folder for the dir provider, against its checkpoint: every
 * file is stat'ed; one whose size and mtime are the checkpoint's is not read
 * (its hash is the baseline's), any other is read and hashed; a file the
 * checkpoint lists that is gone is removed. The same walk runs inline or on a
 * worker thread (folder-walk-thread.ts), so it takes and returns plain data.
 */

/** A file's content hash: sha256 in hex, as the dir provider has always kept it. */
export const FILE_HASH_CHARS = 64;

/** Entries per posted batch (at most PACKED_BATCH_MAX). */
const BATCH = 20_000;

/**
 * A folder's checkpoint: how many files it lists, and `stamps`, the JSON text of
 * [keys, sizes, mtimes] (a size of -1 marks a stamp too recent to trust: read
 * again). Text, so that it crosses to a walk thread as one string and parses
 * there as three flat arrays, not as an object of 100,000 keys.
 */
export interface FolderCheckpoint extends Checkpoint {
  files: number;
  stamps: string;
}

export function folderCheckpointOf(since: Checkpoint | null): FolderCheckpoint | null {
  return since && typeof since.stamps === 'string' && typeof since.files === 'number' ? (since as FolderCheckpoint) : null;
}

/** Whether a snapshot lists a file of this name: the config's extensions, and never abp's own temporary files. */
export function shownIn(extensions: readonly string[] | undefined): (name: string) => boolean {
  return (name) => (!extensions || extensions.some((e) => name.endsWith(e))) && !name.endsWith('.tmp');
}

export interface WalkBatch {
  keys: string[];
  /** FILE_HASH_CHARS per key. */
  hashes: string;
  /** Each file's mtime (ms, floored). */
  updated: Float64Array;
}

export interface WalkEnd {
  /** False when there was no usable checkpoint: every file was read. */
  delta: boolean;
  removed: string[];
  count: number;
  checkpoint: FolderCheckpoint;
}

/** A checkpoint's stamps, or null when its text is not three arrays of one length. */
function parseStamps(text: string): { keys: string[]; sizes: number[]; mtimes: number[] } | null {
  try {
    const [keys, sizes, mtimes] = JSON.parse(text) as [unknown, unknown, unknown];
    if (!Array.isArray(keys) || !Array.isArray(sizes) || !Array.isArray(mtimes) || sizes.length !== keys.length || mtimes.length !== keys.length) return null;
    return { keys, sizes, mtimes };
  } catch {
    return null;
  }
}

/**
 * Finds each key's place in the checkpoint. A walk meets a folder's files in the
 * order the last one met them (the order readdir gives), so the next place is
 * tried first; a map of every key is built only once the order differs.
 */
class StampIndex {
  private next = 0;
  private byKey: Map<string, number> | null = null;
  private readonly seen: Uint8Array;

  constructor(private readonly keys: readonly string[]) {
    this.seen = new Uint8Array(keys.length);
  }

  /** The key's place, marked seen; -1 when the checkpoint does not list it. */
  take(key: string): number {
    let at = this.keys[this.next] === key ? this.next : -1;
    if (at < 0) {
      this.byKey ??= new Map(this.keys.map((k, i) => [k, i]));
      at = this.byKey.get(key) ?? -1;
    }
    if (at >= 0) {
      this.seen[at] = 1;
      this.next = at + 1;
    }
    return at;
  }

  /** The keys the walk did not meet. */
  unseen(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.keys.length; i++) if (this.seen[i] === 0) out.push(this.keys[i] as string);
    return out;
  }
}

/**
 * Walks `root` (files only; keys are relative paths with /), posting the files read
 * anew in batches through `emit`. `stamps` is a FolderCheckpoint's text, or null.
 * `check` runs between entries (an inline walk throws there when it is stopped).
 */
export function walkFolder(root: string, extensions: readonly string[] | undefined, stamps: string | null, now: number, emit: (batch: WalkBatch) => void, check: () => void = () => undefined): WalkEnd {
  const shown = shownIn(extensions);
  const before = stamps === null ? null : parseStamps(stamps);
  const index = before ? new StampIndex(before.keys) : null;
  const keys: string[] = [];
  const sizes: number[] = [];
  const mtimes: number[] = [];
  let batch: { keys: string[]; hashes: string[]; updated: number[] } = { keys: [], hashes: [], updated: [] };
  const flush = (): void => {
    if (batch.keys.length === 0) return;
    emit({ keys: batch.keys, hashes: batch.hashes.join(''), updated: Float64Array.from(batch.updated) });
    batch = { keys: [], hashes: [], updated: [] };
  };
  // Keys and paths are built by concatenation: path.join and path.relative per file were a good
  // part of a walk over a large folder that reads almost nothing.
  const walk = (dir: string, prefix: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      check();
      const full = `${dir}${sep}${entry.name}`;
      if (entry.isDirectory()) walk(full, `${prefix}${entry.name}/`);
      else if (entry.isFile() && shown(entry.name)) {
        const key = `${prefix}${entry.name}`;
        const info = statSync(full);
        const at = index ? index.take(key) : -1;
        keys.push(key);
        if (at >= 0 && before?.sizes[at] === info.size && before.mtimes[at] === info.mtimeMs) {
          sizes.push(info.size);
          mtimes.push(info.mtimeMs);
          continue;
        }
        sizes.push(settledMtime(info.mtimeMs, now) ? info.size : -1);
        mtimes.push(info.mtimeMs);
        batch.keys.push(key);
        batch.hashes.push(hash('sha256', readFileSync(full)));
        batch.updated.push(Math.floor(info.mtimeMs));
        if (batch.keys.length >= BATCH) flush();
      }
    }
  };
  walk(root, '');
  flush();
  return {
    delta: index !== null,
    removed: index ? index.unseen() : [],
    count: keys.length,
    checkpoint: { files: keys.length, stamps: JSON.stringify([keys, sizes, mtimes]) },
  };
}
