import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { openSqliteFile } from '../../util/sqlite-file.js';
import type { z } from 'zod';
import type { Provider, ProviderFactory, ProviderItem, ProviderRecord, Snapshot, SnapshotEntry, WriteOutcome } from '../../contracts/provider.js';
import { AbpError, errorMessage } from '../../domain/errors.js';
import type { SqliteProviderConfig } from '../../domain/sync-pair.js';
import { down, entryOf, ok, recordHash, snapshotFailed } from './records.js';
import { bindable, chunks, jsonRow, quoteIdent } from './table.js';
import { tableReadSince } from './table-checkpoint.js';

type Config = z.infer<typeof SqliteProviderConfig>;

/** A SQLite table; key = its primary key (or key_column). */
export const sqliteProvider: ProviderFactory<Config> = {
  type: 'sqlite',
  description: 'A SQLite table; key = the primary key.',
  open(cfg): Provider {
    const path = resolve(cfg.path);
    const table = quoteIdent(cfg.table);
    let db: BetterSqlite3.Database | undefined;
    let keyCol: string | undefined;
    const conn = () => {
      if (!db) {
        db = openSqliteFile(path, { fileMustExist: true });
        db.pragma('busy_timeout = 5000');
      }
      return db;
    };
    const columns = () => (conn().pragma(`table_info(${table})`) as { name: string; pk: number }[]);
    const key = (): string => {
      if (keyCol) return keyCol;
      const cols = columns();
      if (cols.length === 0) throw new AbpError('enumeration_failed', `sqlite ${path}: table ${cfg.table} does not exist`);
      const pk = cfg.key_column ?? cols.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk)[0]?.name;
      if (!pk) throw new AbpError('invalid_input', `sync provider sqlite ${cfg.table}: the table has no primary key; set key_column`);
      if (!cols.some((c) => c.name === pk)) throw new AbpError('invalid_input', `sync provider sqlite ${cfg.table}: key_column ${JSON.stringify(pk)} is not a column`);
      return (keyCol = pk);
    };
    const readOne = (k: string): ProviderRecord | undefined => {
      const row = conn().prepare(`select * from ${table} where ${quoteIdent(key())} = ?`).get(k) as Record<string, unknown> | undefined;
      return row ? jsonRow(row) : undefined;
    };
    const upsert = async (items: readonly ProviderItem[]): Promise<WriteOutcome[]> => {
      const out: WriteOutcome[] = [];
      for (const item of items) {
        try {
          const k = key();
          const data = { ...item.data, [k]: item.data[k] ?? item.key };
          const cols = Object.keys(data);
          const updates = cols.filter((c) => c !== k).map((c) => `${quoteIdent(c)} = excluded.${quoteIdent(c)}`);
          const sql = `insert into ${table} (${cols.map(quoteIdent).join(', ')}) values (${cols.map(() => '?').join(', ')}) on conflict(${quoteIdent(k)}) do ${updates.length ? `update set ${updates.join(', ')}` : 'nothing'}`;
          conn().prepare(sql).run(...cols.map((c) => bindable(data[c], true)));
          const stored = readOne(item.key);
          out.push(stored ? { key: item.key, status: 'confirmed', hash: recordHash(stored), read_back: true } : { key: item.key, status: 'unresolved', reason: 'written, but not found under its key' });
        } catch (err) {
          out.push({ key: item.key, status: 'unresolved', reason: errorMessage(err) });
        }
      }
      return out;
    };
    /** The rows a query returns, as snapshot entries by key. */
    const rows = (sql: string, params: unknown[], signal: AbortSignal): Snapshot => {
      const k = key();
      const snapshot = new Map<string, SnapshotEntry>();
      for (const row of conn().prepare(sql).iterate(...params) as IterableIterator<Record<string, unknown>>) {
        const record = jsonRow(row);
        const value = record[k];
        if (value === null || value === undefined) continue;
        snapshot.set(String(value), entryOf(record, cfg.updated_at_column));
        if (snapshot.size % 10_000 === 0) signal.throwIfAborted();
      }
      return snapshot;
    };
    return {
      type: 'sqlite',
      async health() {
        if (!existsSync(path)) return down(`${path} does not exist`);
        try {
          if (columns().length === 0) return down(`${path}: table ${cfg.table} does not exist`);
          key();
          return ok(`${path} table ${cfg.table}, key ${key()}`);
        } catch (err) {
          return down(`${path}: ${errorMessage(err)}`);
        }
      },
      async snapshot(signal) {
        try {
          return rows(`select * from ${table}`, [], signal);
        } catch (err) {
          throw snapshotFailed(`sqlite ${path} ${cfg.table}`, err);
        }
      },
      async readSince(since, signal) {
        const u = cfg.updated_at_column === undefined ? undefined : quoteIdent(cfg.updated_at_column);
        const db = conn();
        try {
          // One read transaction: the stats and the rows are of the same moment.
          db.exec('begin');
          try {
            return await tableReadSince(cfg.updated_at_column, since, {
              stats: async () => {
                const k = quoteIdent(key());
                const r = db.prepare(`select count(*) as n, count(${u}) as nu, max(${u}) as m from ${table} where ${k} is not null`).get() as { n: number; nu: number; m: number | string | null };
                return { count: Number(r.n), stamped: Number(r.nu), max: typeof r.m === 'bigint' ? Number(r.m) : r.m };
              },
              newer: async (max) => (max === null ? rows(`select * from ${table}`, [], signal) : rows(`select * from ${table} where ${u} >= ?`, [max], signal)),
              all: async () => rows(`select * from ${table}`, [], signal),
            });
          } finally {
            db.exec('commit');
          }
        } catch (err) {
          throw snapshotFailed(`sqlite ${path} ${cfg.table}`, err);
        }
      },
      async read(keys) {
        const k = key();
        const out = new Map<string, ProviderRecord>();
        for (const batch of chunks(keys, 500)) {
          const rows = conn()
            .prepare(`select * from ${table} where ${quoteIdent(k)} in (${batch.map(() => '?').join(', ')})`)
            .all(...batch) as Record<string, unknown>[];
          for (const row of rows) out.set(String(row[k]), jsonRow(row));
        }
        return out;
      },
      add: upsert,
      update: upsert,
      async remove(keys) {
        const out: WriteOutcome[] = [];
        for (const k of keys) {
          try {
            const result = conn().prepare(`delete from ${table} where ${quoteIdent(key())} = ?`).run(k);
            out.push(result.changes > 0 ? { key: k, status: 'confirmed', hash: '' } : { key: k, status: 'skipped', reason: 'not present' });
          } catch (err) {
            out.push({ key: k, status: 'unresolved', reason: errorMessage(err) });
          }
        }
        return out;
      },
      async close() {
        db?.close();
        db = undefined;
      },
    };
  },
};
