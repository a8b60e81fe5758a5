import type pg from 'pg';
import type { z } from 'zod';
import type { Provider, ProviderFactory, ProviderHealth, ProviderItem, ProviderRecord, Snapshot, SnapshotEntry, WriteOutcome } from '../../contracts/provider.js';
import { AbpError, errorMessage } from '../../domain/errors.js';
import type { PostgresProviderConfig } from '../../domain/sync-pair.js';
import { entryOf, recordHash, snapshotFailed } from './records.js';
import { bindable, chunks, jsonRow, quoteIdent } from './table.js';
import { tableReadSince } from './table-checkpoint.js';

type Config = z.infer<typeof PostgresProviderConfig>;

/** SQLSTATE class 28 is "invalid authorization specification": wrong password, unknown role. */
function classify(err: unknown): ProviderHealth['status'] {
  const code = (err as { code?: string }).code ?? '';
  return code.startsWith('28') ? 'auth_failed' : 'down';
}

/** The URL without its password, for messages. */
function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://…';
  }
}

/** A PostgreSQL table; key = its primary key (or key_column). One connection per operation. */
export const postgresProvider: ProviderFactory<Config> = {
  type: 'postgres',
  description: 'A PostgreSQL table; key = the primary key.',
  open(cfg): Provider {
    const table = `${quoteIdent(cfg.schema)}.${quoteIdent(cfg.table)}`;
    const where = `${safeUrl(cfg.url)} ${cfg.schema}.${cfg.table}`;
    let keyCol: string | undefined;
    const withClient = async <T>(fn: (c: pg.Client) => Promise<T>): Promise<T> => {
      const { Client } = (await import('pg')).default;
      const client = new Client({ connectionString: cfg.url, connectionTimeoutMillis: 10_000 });
      client.on('error', () => undefined);
      await client.connect();
      try {
        return await fn(client);
      } finally {
        await client.end().catch(() => undefined);
      }
    };
    const key = async (c: pg.Client): Promise<string> => {
      if (keyCol) return keyCol;
      if (cfg.key_column) return (keyCol = cfg.key_column);
      const r = await c.query<{ column_name: string }>(
        `select a.attname as column_name from pg_index i
           join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
          where i.indrelid = $1::regclass and i.indisprimary`,
        [`${quoteIdent(cfg.schema)}.${quoteIdent(cfg.table)}`],
      );
      const pk = r.rows[0]?.column_name;
      if (!pk || r.rows.length > 1) throw new AbpError('invalid_input', `sync provider postgres ${cfg.table}: the table needs a one-column primary key, or set key_column`);
      return (keyCol = pk);
    };
    const readRows = async (c: pg.Client, k: string, keys: readonly string[]) => {
      const out = new Map<string, ProviderRecord>();
      for (const batch of chunks(keys, 1000)) {
        const r = await c.query(`select * from ${table} where ${quoteIdent(k)}::text = any($1::text[])`, [batch]);
        for (const row of r.rows as Record<string, unknown>[]) out.set(String(row[k]), jsonRow(row));
      }
      return out;
    };
    const upsert = async (items: readonly ProviderItem[]): Promise<WriteOutcome[]> => {
      try {
        return await withClient(async (c) => {
          const k = await key(c);
          const out: WriteOutcome[] = [];
          for (const item of items) {
            try {
              const data = { ...item.data, [k]: item.data[k] ?? item.key };
              const cols = Object.keys(data);
              const updates = cols.filter((col) => col !== k).map((col) => `${quoteIdent(col)} = excluded.${quoteIdent(col)}`);
              await c.query(
                `insert into ${table} (${cols.map(quoteIdent).join(', ')}) values (${cols.map((_, i) => `$${i + 1}`).join(', ')})
                 on conflict (${quoteIdent(k)}) do ${updates.length ? `update set ${updates.join(', ')}` : 'nothing'}`,
                cols.map((col) => bindable(data[col], false)),
              );
              const stored = (await readRows(c, k, [item.key])).get(item.key);
              out.push(stored ? { key: item.key, status: 'confirmed', hash: recordHash(stored), read_back: true } : { key: item.key, status: 'unresolved', reason: 'written, but not found under its key' });
            } catch (err) {
              out.push({ key: item.key, status: 'unresolved', reason: errorMessage(err) });
            }
          }
          return out;
        });
      } catch (err) {
        return items.map((i) => ({ key: i.key, status: 'unresolved' as const, reason: `cannot connect: ${errorMessage(err)}` }));
      }
    };
    /** The rows a query returns, as snapshot entries by key. */
    const rows = async (c: pg.Client, k: string, sql: string, params: unknown[]): Promise<Snapshot> => {
      const snapshot = new Map<string, SnapshotEntry>();
      const r = await c.query(sql, params);
      for (const row of r.rows as Record<string, unknown>[]) {
        const record = jsonRow(row);
        if (record[k] === null || record[k] === undefined) continue;
        snapshot.set(String(record[k]), entryOf(record, cfg.updated_at_column));
      }
      return snapshot;
    };
    return {
      type: 'postgres',
      async health() {
        try {
          return await withClient(async (c) => {
            await c.query(`select 1 from ${table} limit 0`);
            return { status: 'ok', details: `${where}, key ${await key(c)}` };
          });
        } catch (err) {
          return { status: classify(err), details: `${where}: ${errorMessage(err)}` };
        }
      },
      async snapshot() {
        try {
          return await withClient(async (c) => rows(c, await key(c), `select * from ${table}`, []));
        } catch (err) {
          throw snapshotFailed(`postgres ${where}`, err);
        }
      },
      async readSince(since) {
        const u = cfg.updated_at_column === undefined ? undefined : quoteIdent(cfg.updated_at_column);
        try {
          return await withClient(async (c) => {
            const k = await key(c);
            // One snapshot of the database for the stats and the rows.
            await c.query('begin isolation level repeatable read read only');
            try {
              return await tableReadSince(cfg.updated_at_column, since, {
                stats: async () => {
                  // max as text keeps the column's own precision (a timestamp's microseconds) for the next comparison.
                  const r = await c.query<{ n: string; nu: string; m: string | null }>(`select count(*) as n, count(${u}) as nu, max(${u})::text as m from ${table} where ${quoteIdent(k)} is not null`);
                  const row = r.rows[0] as { n: string; nu: string; m: string | null };
                  return { count: Number(row.n), stamped: Number(row.nu), max: row.m };
                },
                newer: (max) => (max === null ? rows(c, k, `select * from ${table}`, []) : rows(c, k, `select * from ${table} where ${u} >= $1`, [max])),
                all: () => rows(c, k, `select * from ${table}`, []),
              });
            } finally {
              await c.query('commit');
            }
          });
        } catch (err) {
          throw snapshotFailed(`postgres ${where}`, err);
        }
      },
      read: (keys) => withClient(async (c) => readRows(c, await key(c), keys)),
      add: upsert,
      update: upsert,
      async remove(keys) {
        try {
          return await withClient(async (c) => {
            const k = await key(c);
            const out: WriteOutcome[] = [];
            for (const kv of keys) {
              try {
                const r = await c.query(`delete from ${table} where ${quoteIdent(k)}::text = $1`, [kv]);
                out.push((r.rowCount ?? 0) > 0 ? { key: kv, status: 'confirmed', hash: '' } : { key: kv, status: 'skipped', reason: 'not present' });
              } catch (err) {
                out.push({ key: kv, status: 'unresolved', reason: errorMessage(err) });
              }
            }
            return out;
          });
        } catch (err) {
          return keys.map((kv) => ({ key: kv, status: 'unresolved' as const, reason: `cannot connect: ${errorMessage(err)}` }));
        }
      },
      async close() {},
    };
  },
};
