import { resolve } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { z } from 'zod';
import type { EnumerateContext, Enumerator, Item } from '../src/contracts/enumerator.js';
import { AbpError, errorMessage } from '../src/domain/errors.js';
import { requireFile } from './fs-checks.js';
import { refuseNonQueryPostgres } from './sql-guard.js';
import { namedToPositional } from './sql-params.js';
import { openSqliteFile } from '../src/util/sqlite-file.js';
import { isoTime } from '../src/domain/iso-time.js';

const scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);

const config = z.strictObject({
  connection_string: z
    .string()
    .min(1)
    .describe('A SQLite file path (or sqlite:PATH / sqlite:///ABSOLUTE/PATH), or a postgres:// URL.'),
  query: z.string().trim().min(1).describe('Exactly one read-only statement that returns rows, e.g. SELECT or WITH … SELECT.'),
  params: z
    .union([z.array(scalar), z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), scalar)])
    .optional()
    .describe('Values for the placeholders: a list for ? (SQLite) or $1, $2 (PostgreSQL), or an object for :name.'),
  id_column: z.string().min(1).optional().describe('The column whose value identifies each row; default: the row number.'),
  limit: z.int().positive().optional().describe('Stop after this many rows.'),
  batch_size: z.int().min(1).max(10_000).default(500).describe('PostgreSQL: rows fetched per round trip from the server-side cursor.'),
});
type SqlConfig = z.infer<typeof config>;

const ONE_STATEMENT = 'enumerator_config.query: only one statement is allowed, and the query has more than one';

type Target = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

function target(connection: string): Target {
  if (/^postgres(ql)?:\/\//i.test(connection)) return { kind: 'postgres', url: connection };
  if (/^sqlite:/i.test(connection)) {
    // sqlite:///abs/path, sqlite://rel/path and sqlite:path all name a file.
    const rest = connection.replace(/^sqlite:/i, '');
    const path = rest.startsWith('///') ? rest.slice(2) : rest.startsWith('//') ? rest.slice(2) : rest;
    return { kind: 'sqlite', path: resolve(decodeURIComponent(path)) };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(connection)) {
    throw new AbpError('invalid_input', `enumerator_config.connection_string: unsupported database ${JSON.stringify(connection.split(':')[0])}; use a SQLite file path or a postgres:// URL`);
  }
  return { kind: 'sqlite', path: resolve(connection) };
}

/** JSON-safe column values: blobs as base64, big integers as text when they do not fit a double. */
function jsonValue(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return value.toString('base64');
  if (typeof value === 'bigint') return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (value instanceof Date) return isoTime(value.getTime());
  return value;
}

function toItem(row: Record<string, unknown>, index: number, idColumn: string | undefined): Item {
  const item: Item = {};
  for (const [k, v] of Object.entries(row)) item[k] = jsonValue(v);
  const id = idColumn === undefined ? index : item[idColumn];
  item._row_index = index;
  item._id = typeof id === 'string' || typeof id === 'number' ? id : id === null || id === undefined ? index : String(id);
  return item;
}

function missingColumn(idColumn: string, columns: string[]): AbpError {
  return new AbpError('invalid_input', `enumerator_config.id_column: ${JSON.stringify(idColumn)} is not a column of the query's result (columns: ${columns.join(', ') || 'none'})`);
}

async function* fromSqlite(path: string, cfg: SqlConfig, ctx: EnumerateContext): AsyncGenerator<Item> {
  await requireFile('enumerator_config.connection_string', path);
  let db: BetterSqlite3.Database;
  try {
    db = openSqliteFile(path, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new AbpError('invalid_input', `enumerator_config.connection_string: cannot open ${path} as SQLite: ${errorMessage(err)}`, { cause: err });
  }
  try {
    // Opened read-only, and query_only on top: SQLite itself refuses every write.
    db.pragma('query_only = ON');
    let stmt: BetterSqlite3.Statement;
    try {
      stmt = db.prepare(cfg.query);
    } catch (err) {
      const message = errorMessage(err);
      if (/more than one statement/i.test(message)) throw new AbpError('invalid_input', ONE_STATEMENT);
      if (/file is not a database/i.test(message)) {
        throw new AbpError('invalid_input', `enumerator_config.connection_string: ${path} is not a SQLite database`);
      }
      throw new AbpError('invalid_input', `enumerator_config.query: SQLite cannot prepare it: ${message}`, { cause: err });
    }
    // SQLite's own judgement of the compiled statement, not a keyword filter.
    if (!stmt.readonly) {
      throw new AbpError('invalid_input', 'enumerator_config.query: SQLite refused the statement: it writes to the database, which is opened read-only; only a single SELECT is allowed');
    }
    // ATTACH, DETACH and pragma assignments are "read-only" to SQLite yet change
    // the connection; none of them returns rows, so none can enumerate anything.
    if (!stmt.reader) {
      throw new AbpError('invalid_input', 'enumerator_config.query: SQLite refused the statement: it returns no rows (ATTACH, DETACH, PRAGMA assignments and other commands are not allowed); only a single SELECT is allowed');
    }
    const columns = stmt.columns().map((c) => c.name);
    if (cfg.id_column !== undefined && !columns.includes(cfg.id_column)) throw missingColumn(cfg.id_column, columns);
    let rows: IterableIterator<unknown>;
    try {
      rows = cfg.params === undefined ? stmt.iterate() : stmt.iterate(cfg.params as never);
    } catch (err) {
      throw new AbpError('invalid_input', `enumerator_config.params: ${errorMessage(err)}`, { cause: err });
    }
    let index = 0;
    try {
      for (const row of rows) {
        if (ctx.signal.aborted) throw new AbpError('enumeration_failed', 'sql enumeration was cancelled');
        index++;
        yield toItem(row as Record<string, unknown>, index, cfg.id_column);
        if (cfg.limit !== undefined && index >= cfg.limit) break;
      }
    } catch (err) {
      if (err instanceof AbpError) throw err;
      throw new AbpError('enumeration_failed', `enumerator_config.query: SQLite failed at row ${index + 1}: ${errorMessage(err)}`, { cause: err });
    } finally {
      (rows as IterableIterator<unknown> & { return?: () => void }).return?.();
    }
  } finally {
    db.close();
  }
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'the postgres URL';
  }
}

function pgError(err: unknown): AbpError {
  if (err instanceof AbpError) return err;
  const e = err as Error & { code?: string; position?: string };
  if (e.code === '25006') {
    return new AbpError('invalid_input', `enumerator_config.query: PostgreSQL refused the statement: ${e.message}; only a single SELECT is allowed`, { cause: err });
  }
  if (e.code === '42601' && /multiple commands/i.test(e.message)) return new AbpError('invalid_input', ONE_STATEMENT, { cause: err });
  const at = e.position ? ` (at character ${e.position})` : '';
  return new AbpError('invalid_input', `enumerator_config.query: PostgreSQL error${at}: ${e.message}`, { cause: err });
}

async function* fromPostgres(url: string, cfg: SqlConfig, ctx: EnumerateContext): AsyncGenerator<Item> {
  refuseNonQueryPostgres(cfg.query);
  const [{ default: pg }, { default: Cursor }] = await Promise.all([import('pg'), import('pg-cursor')]);
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 15_000, application_name: 'abp-enumerator' });
  try {
    await client.connect();
  } catch (err) {
    throw new AbpError('invalid_input', `enumerator_config.connection_string: cannot connect to ${redact(url)}: ${errorMessage(err)}`, { cause: err });
  }
  const onAbort = () => void client.end().catch(() => undefined);
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  try {
    // The server refuses writes inside a READ ONLY transaction, whatever the text says.
    await client.query('BEGIN TRANSACTION READ ONLY');
    const { text, values } = Array.isArray(cfg.params)
      ? { text: cfg.query, values: cfg.params as unknown[] }
      : cfg.params
        ? namedToPositional(cfg.query, cfg.params)
        : { text: cfg.query, values: [] };
    // A cursor uses the extended protocol (one statement per Parse, by the server's
    // own rule) and a portal, so rows arrive a batch at a time.
    const cursor = client.query(new Cursor(text, values));
    const read = (n: number) =>
      new Promise<{ rows: Record<string, unknown>[]; fields: string[] }>((ok, fail) => {
        cursor.read(n, (err, rows, result) => (err ? fail(err) : ok({ rows, fields: (result?.fields ?? []).map((f) => f.name) })));
      });
    let index = 0;
    let checked = false;
    try {
      for (;;) {
        const want = cfg.limit === undefined ? cfg.batch_size : Math.min(cfg.batch_size, cfg.limit - index);
        if (want <= 0) break;
        const { rows, fields } = await read(want);
        if (!checked) {
          checked = true;
          if (fields.length === 0) {
            throw new AbpError('invalid_input', 'enumerator_config.query: PostgreSQL ran a statement that returns no rows; only a single SELECT is allowed');
          }
          if (cfg.id_column !== undefined && !fields.includes(cfg.id_column)) throw missingColumn(cfg.id_column, fields);
        }
        for (const row of rows) {
          index++;
          yield toItem(row, index, cfg.id_column);
        }
        if (rows.length < want) break;
      }
    } finally {
      await cursor.close().catch(() => undefined);
    }
  } catch (err) {
    if (ctx.signal.aborted) throw new AbpError('enumeration_failed', 'sql enumeration was cancelled', { cause: err });
    throw pgError(err);
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    await client.query('ROLLBACK').catch(() => undefined);
    await client.end().catch(() => undefined);
  }
}

export const sqlEnumerator: Enumerator<SqlConfig> = {
  type: 'sql',
  description: 'One item per row of one read-only query on SQLite or PostgreSQL, streamed: the row’s columns plus _row_index (1-based, as in csv) and _id.',
  promptTemplate: 'generic',
  configSchema: config,
  async *enumerate(cfg, ctx) {
    const t = target(cfg.connection_string);
    yield* t.kind === 'sqlite' ? fromSqlite(t.path, cfg, ctx) : fromPostgres(t.url, cfg, ctx);
  },
};
