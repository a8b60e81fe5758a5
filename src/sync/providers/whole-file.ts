import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Provider, ProviderHealth, ProviderItem, ProviderRecord, Snapshot, WriteOutcome } from '../../contracts/provider.js';
import { allUnresolved, down, entryOf, ok, recordHash, snapshotFailed, writeFileAtomic } from './records.js';

/** How one file format reads and writes its records: the rest of a file provider is shared. */
export interface RecordFileFormat {
  /** Visits the records in file order, each with its key; throws on a malformed file, naming the line. */
  parse(text: string, path: string, visit: (key: string, record: ProviderRecord) => void): void;
  serialise(records: ProviderRecord[], path: string): string;
}

/**
 * A provider over one file of records (jsonl, json, csv). Writes rewrite the
 * whole file atomically, so the sync job runs its chunks one at a time.
 */
export function wholeFileProvider(type: string, rawPath: string, updatedAtField: string | undefined, format: RecordFileFormat): Provider {
  const path = resolve(rawPath);
  const load = async (): Promise<{ key: string; record: ProviderRecord }[]> => {
    if (!existsSync(path)) return [];
    const rows: { key: string; record: ProviderRecord }[] = [];
    format.parse(await readFile(path, 'utf8'), path, (key, record) => rows.push({ key, record }));
    return rows;
  };
  const write = async (apply: (byKey: Map<string, ProviderRecord>) => WriteOutcome[], keys: readonly string[]): Promise<WriteOutcome[]> => {
    try {
      const rows = await load();
      const byKey = new Map(rows.map((r) => [r.key, r.record]));
      const outcomes = apply(byKey);
      writeFileAtomic(path, format.serialise([...byKey.values()], path));
      return outcomes;
    } catch (err) {
      return allUnresolved(keys, err);
    }
  };
  const put = (items: readonly ProviderItem[]) =>
    write(
      (byKey) =>
        items.map((item) => {
          byKey.set(item.key, item.data);
          // The hash a snapshot will show: the record as this format stores it (CSV keeps only text).
          let stored = item.data;
          format.parse(format.serialise([item.data], path), path, (_key, record) => (stored = record));
          return { key: item.key, status: 'confirmed' as const, hash: recordHash(stored) };
        }),
      items.map((i) => i.key),
    );
  return {
    type,
    async health(): Promise<ProviderHealth> {
      if (existsSync(path)) return statSync(path).isFile() ? ok(`${path} is readable`) : down(`${path} is not a file`);
      return existsSync(dirname(path)) ? ok(`${path} does not exist yet; it is empty until the first write`) : down(`the folder of ${path} does not exist`);
    },
    async snapshot(): Promise<Snapshot> {
      try {
        const snapshot: Snapshot = new Map();
        if (!existsSync(path)) return snapshot;
        // Records are hashed as they are parsed and not kept: a million-line file fits in a snapshot.
        format.parse(await readFile(path, 'utf8'), path, (key, record) => snapshot.set(key, entryOf(record, updatedAtField)));
        return snapshot;
      } catch (err) {
        throw snapshotFailed(`${type} ${path}`, err);
      }
    },
    async read(keys) {
      const wanted = new Set(keys);
      const out = new Map<string, ProviderRecord>();
      for (const { key, record } of await load()) if (wanted.has(key)) out.set(key, record);
      return out;
    },
    add: put,
    update: put,
    remove: (keys) =>
      write(
        (byKey) => keys.map((key) => (byKey.delete(key) ? { key, status: 'confirmed' as const, hash: '' } : { key, status: 'skipped' as const, reason: 'not present' })),
        keys,
      ),
    async close() {},
  };
}
