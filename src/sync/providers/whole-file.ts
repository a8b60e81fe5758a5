import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Provider, ProviderHealth, ProviderItem, ProviderRecord, SideRead, Snapshot, SnapshotEntry, WriteOutcome } from '../../contracts/provider.js';
import type { ProviderConfig } from '../../domain/sync-pair.js';
import { PackedSnapshot } from './packed-snapshot.js';
import { fileStamp, sameStamp, settledMtime } from './stamps.js';
import { readInThread, threadScript } from './thread-read.js';
import { allUnresolved, down, entryOf, ok, recordHash, snapshotFailed, writeFileAtomic } from './records.js';

/** The config of a provider over one file of records. */
export type FileProviderConfig = Extract<ProviderConfig, { type: 'jsonl' | 'json' | 'csv' }>;

/** Files from this size on are snapshotted on a worker thread. */
export const THREAD_MIN_BYTES = 8 * 1024 * 1024;

export function updatedAtFieldOf(config: FileProviderConfig): string | undefined {
  return config.type === 'csv' ? config.updated_at_column : config.updated_at_field;
}

/** How one file format reads and writes its records: the rest of a file provider is shared. */
export interface RecordFileFormat {
  /**
   * Visits the records in file order, each with its key; throws on a malformed file,
   * naming the line. A format with one record per line (`lineBased`) may be given any
   * run of whole lines, the first of which is line `firstLine + 1` of the file.
   */
  parse(text: string, path: string, visit: (key: string, record: ProviderRecord) => void, firstLine?: number): void;
  serialise(records: ProviderRecord[], path: string): string;
  /** One record per line: the snapshot thread reads such a file in pieces, not whole. */
  lineBased?: boolean;
}

/**
 * A provider over one file of records (jsonl, json, csv). Writes rewrite the
 * whole file atomically, so the sync job runs its chunks one at a time.
 */
export function wholeFileProvider(config: FileProviderConfig, format: RecordFileFormat): Provider {
  const { type } = config;
  const path = resolve(config.path);
  const updatedAtField = updatedAtFieldOf(config);
  const load = async (): Promise<{ key: string; record: ProviderRecord }[]> => {
    if (!existsSync(path)) return [];
    const rows: { key: string; record: ProviderRecord }[] = [];
    format.parse(await readFile(path, 'utf8'), path, (key, record) => rows.push({ key, record }));
    return rows;
  };
  const write = async (apply: (byKey: Map<string, ProviderRecord>) => WriteOutcome[]): Promise<{ outcomes: WriteOutcome[]; text: string }> => {
    const rows = await load();
    const byKey = new Map(rows.map((r) => [r.key, r.record]));
    const outcomes = apply(byKey);
    const text = format.serialise([...byKey.values()], path);
    writeFileAtomic(path, text);
    return { outcomes, text };
  };
  const put = async (items: readonly ProviderItem[]): Promise<WriteOutcome[]> => {
    const keys = items.map((i) => i.key);
    try {
      const { text } = await write((byKey) => {
        for (const item of items) byKey.set(item.key, item.data);
        return [];
      });
      // Read back: the file's text as written, parsed as a snapshot parses it (CSV keeps only text,
      // and a row gains the columns other rows have), so the hash is the one the next snapshot shows.
      const wanted = new Set(keys);
      const stored = new Map<string, string>();
      format.parse(text, path, (key, record) => {
        if (wanted.has(key)) stored.set(key, recordHash(record));
      });
      return keys.map((key) => {
        const hash = stored.get(key);
        return hash === undefined ? { key, status: 'unresolved' as const, reason: 'written, but not found under its key' } : { key, status: 'confirmed' as const, hash, read_back: true };
      });
    } catch (err) {
      return allUnresolved(keys, err);
    }
  };
  const snapshot = async (signal: AbortSignal): Promise<Snapshot> => {
    try {
      const out = new Map<string, SnapshotEntry>();
      if (!existsSync(path)) return out;
      // A large file is parsed and hashed on a thread of its own: both sides of a pair
      // are read at once, and the event loop stays free meanwhile.
      if (statSync(path).size >= THREAD_MIN_BYTES) return await snapshotInThread(config, signal);
      // Records are hashed as they are parsed and not kept: a million-line file fits in a snapshot.
      format.parse(await readFile(path, 'utf8'), path, (key, record) => out.set(key, entryOf(record, updatedAtField)));
      return out;
    } catch (err) {
      throw snapshotFailed(`${type} ${path}`, err);
    }
  };
  return {
    type,
    async health(): Promise<ProviderHealth> {
      if (existsSync(path)) return statSync(path).isFile() ? ok(`${path} is readable`) : down(`${path} is not a file`);
      return existsSync(dirname(path)) ? ok(`${path} does not exist yet; it is empty until the first write`) : down(`the folder of ${path} does not exist`);
    },
    snapshot,
    /**
     * The checkpoint is the file's size, mtime and inode, taken before the read: the same stamp
     * means the same records (the pair's baselines); any other means a full read. A stamp that
     * changed while the file was read, or is too recent to trust, is not kept.
     */
    async readSince(since, signal): Promise<SideRead> {
      const now = Date.now();
      const before = fileStamp(path);
      if (since && before && sameStamp(since, before)) return { kind: 'delta', changed: new Map(), removed: [], items: null, checkpoint: since, note: 'unchanged' };
      const full = await snapshot(signal);
      const after = fileStamp(path);
      const keep = before && after && sameStamp(before, after) && settledMtime(before.mtime_ms, now);
      return { kind: 'full', snapshot: full, checkpoint: keep ? { ...before } : null, why: since ? 'the file changed' : 'no checkpoint' };
    },
    async read(keys) {
      const wanted = new Set(keys);
      const out = new Map<string, ProviderRecord>();
      for (const { key, record } of await load()) if (wanted.has(key)) out.set(key, record);
      return out;
    },
    add: put,
    update: put,
    async remove(keys) {
      try {
        const { outcomes } = await write((byKey) => keys.map((key) => (byKey.delete(key) ? { key, status: 'confirmed' as const, hash: '' } : { key, status: 'skipped' as const, reason: 'not present' })));
        return outcomes;
      } catch (err) {
        return allUnresolved(keys, err);
      }
    },
    async close() {},
  };
}

/** The snapshot of a large file, parsed and hashed by snapshot-thread.ts while the entries it has sent go into the snapshot. */
async function snapshotInThread(config: FileProviderConfig, signal: AbortSignal): Promise<Snapshot> {
  const snapshot = new PackedSnapshot();
  await readInThread<true>(threadScript('snapshot-thread'), { config }, snapshot, signal);
  return snapshot;
}
