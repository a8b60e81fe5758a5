import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { namedToPositional } from '../../enumerators/sql-params.js';
import { sqlEnumerator } from '../../enumerators/sql.js';
import { createTestDatabase, pgExec } from '../helpers/postgres.js';
import { collect, failure, tempDir } from './enumerators-support.js';

const SETUP = `
  CREATE TABLE items (id integer PRIMARY KEY, title text NOT NULL, updated_at text, is_deleted integer NOT NULL);
  INSERT INTO items (id, title, updated_at, is_deleted) VALUES
    (1, 'alpha', '2024-01-01', 0), (2, 'beta', '2024-01-02', 1), (3, 'gamma', '2024-01-03', 0), (4, 'delta', NULL, 0);
`;

interface Backend {
  name: 'sqlite' | 'postgres';
  connection: string;
  /** Placeholder syntax for positional parameters. */
  p: (n: number) => string;
  count(): Promise<number>;
  cleanup(): void;
}

async function sqliteBackend(): Promise<Backend> {
  const t = tempDir();
  const path = t.path('data.db');
  const db = new Database(path);
  db.exec(SETUP);
  db.close();
  return {
    name: 'sqlite',
    connection: path,
    p: () => '?',
    async count() {
      const d = new Database(path, { readonly: true });
      try {
        return (d.prepare('select count(*) n from items').get() as { n: number }).n;
      } finally {
        d.close();
      }
    },
    cleanup: t.cleanup,
  };
}

async function postgresBackend(): Promise<Backend> {
  const url = await createTestDatabase();
  await pgExec(url, SETUP);
  return {
    name: 'postgres',
    connection: url,
    p: (n) => `$${n}`,
    async count() {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        return Number((await c.query('select count(*) n from items')).rows[0].n);
      } finally {
        await c.end();
      }
    },
    cleanup: () => undefined,
  };
}

describe.each([
  ['sqlite', sqliteBackend],
  ['postgres', postgresBackend],
] as const)('sql enumerator on %s', (name, make) => {
  let b: Backend;
  beforeAll(async () => {
    b = await make();
  });
  afterAll(() => b.cleanup());

  const run = (config: Record<string, unknown>) => collect(sqlEnumerator, { connection_string: b.connection, ...config });
  const fail = (config: Record<string, unknown>) => failure(sqlEnumerator, { connection_string: b.connection, ...config });

  it('a SELECT streams its rows, with _row_index and _id from id_column', async () => {
    const { items } = await run({ query: 'SELECT id, title, updated_at, is_deleted FROM items ORDER BY id', id_column: 'title' });
    expect(items).toHaveLength(4);
    expect(items[0]).toEqual({ id: 1, title: 'alpha', updated_at: '2024-01-01', is_deleted: 0, _row_index: 1, _id: 'alpha' });
    expect(items[3]).toMatchObject({ updated_at: null, _row_index: 4, _id: 'delta' });
  });

  it('columns named updated_at and is_deleted, and WITH … SELECT, are fine: no keyword filter', async () => {
    const q = 'WITH live AS (SELECT id, updated_at, is_deleted FROM items WHERE is_deleted = 0) SELECT * FROM live ORDER BY id';
    const { items } = await run({ query: q });
    expect(items.map((i) => i.id)).toEqual([1, 3, 4]);
  });

  it('positional and named params, and limit', async () => {
    const positional = await run({ query: `SELECT id FROM items WHERE is_deleted = ${b.p(1)} AND id > ${b.p(2)} ORDER BY id`, params: [0, 1] });
    expect(positional.items.map((i) => i.id)).toEqual([3, 4]);
    const named = await run({ query: "SELECT id, ':not_a_param' AS s FROM items WHERE is_deleted = :deleted AND id >= :min ORDER BY id", params: { deleted: 0, min: 3 } });
    expect(named.items.map((i) => [i.id, i.s])).toEqual([[3, ':not_a_param'], [4, ':not_a_param']]);
    const limited = await run({ query: 'SELECT id FROM items ORDER BY id', limit: 2 });
    expect(limited.items.map((i) => i.id)).toEqual([1, 2]);
  });

  it('rows stream: a large result is read a batch at a time, and limit stops early', async () => {
    // Row 101 onwards fails to compute (integer overflow, division by zero): a reader
    // that loaded the result whole would meet it; one that streams stops first.
    const q =
      name === 'sqlite'
        ? 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000) SELECT CASE WHEN i > 100 THEN abs(-9223372036854775807 - 1) ELSE i END AS i FROM n'
        : 'SELECT CASE WHEN i > 100 THEN i / 0 ELSE i END AS i FROM generate_series(1, 2000000) AS i';
    const { items } = await run({ query: q, limit: 5, batch_size: 5 });
    expect(items.map((i) => i.i)).toEqual([1, 2, 3, 4, 5]);
    // The same query read past row 100 fails, so the poison is real.
    await expect(run({ query: q, limit: 200, batch_size: 5 })).rejects.toThrow(/overflow|division by zero/);
  });

  const writes: [string, string][] = [
    ['INSERT', "INSERT INTO items (id, title, is_deleted) VALUES (9, 'x', 0)"],
    ['INSERT … RETURNING', "INSERT INTO items (id, title, is_deleted) VALUES (9, 'x', 0) RETURNING id"],
    ['UPDATE', 'UPDATE items SET is_deleted = 1'],
    ['DELETE', 'DELETE FROM items'],
  ];
  it.each(writes)('a write (%s) is refused by the database, and nothing changes', async (_label, query) => {
    const err = await fail({ query });
    expect(err.code).toBe('invalid_input');
    const verb = query.split(' ')[0];
    expect(err.message).toBe(
      name === 'sqlite'
        ? 'enumerator_config.query: SQLite refused the statement: it writes to the database, which is opened read-only; only a single SELECT is allowed'
        : `enumerator_config.query: PostgreSQL refused the statement: cannot execute ${verb} in a read-only transaction; only a single SELECT is allowed`,
    );
    expect(await b.count()).toBe(4);
  });

  it('two statements are refused', async () => {
    expect((await fail({ query: 'SELECT 1; DELETE FROM items' })).message).toBe('enumerator_config.query: only one statement is allowed, and the query has more than one');
    expect(await b.count()).toBe(4);
  });

  it('a missing id_column is named, with the real columns', async () => {
    expect((await fail({ query: 'SELECT id, title FROM items', id_column: 'uuid' })).message).toBe(
      'enumerator_config.id_column: "uuid" is not a column of the query\'s result (columns: id, title)',
    );
  });

  it('an unknown field and a wrong type', async () => {
    expect((await fail({ query: 'SELECT 1', sql: 'x' })).message).toBe('unknown field in enumerator_config: sql');
    expect((await fail({ query: 'SELECT 1', params: 'x' })).message).toMatch(/^enumerator_config\.params: /);
    expect((await fail({ query: 'SELECT 1', limit: 0 })).message).toBe('enumerator_config.limit: Too small: expected number to be >0');
  });

  if (name === 'sqlite') {
    it('ATTACH and writing PRAGMAs are refused', async () => {
      const t = tempDir();
      try {
        for (const query of [`ATTACH DATABASE '${t.path('other.db')}' AS other`, "ATTACH ':memory:' AS m", 'PRAGMA query_only = OFF', 'DETACH main']) {
          expect((await fail({ query })).message).toBe(
            'enumerator_config.query: SQLite refused the statement: it returns no rows (ATTACH, DETACH, PRAGMA assignments and other commands are not allowed); only a single SELECT is allowed',
          );
        }
        for (const query of ['PRAGMA user_version = 7', 'PRAGMA journal_mode = DELETE', 'VACUUM', "VACUUM INTO '/tmp/x.db'", 'CREATE TEMP TABLE z (a)']) {
          expect((await fail({ query })).message).toBe(
            'enumerator_config.query: SQLite refused the statement: it writes to the database, which is opened read-only; only a single SELECT is allowed',
          );
        }
        // A reading PRAGMA returns rows and is allowed.
        expect((await run({ query: 'PRAGMA user_version' })).items).toEqual([{ user_version: 0, _row_index: 1, _id: 1 }]);
      } finally {
        t.cleanup();
      }
    });

    it('sqlite: URLs, a missing file and a directory', async () => {
      expect((await collect(sqlEnumerator, { connection_string: `sqlite://${b.connection}`, query: 'SELECT 1 AS one' })).items).toHaveLength(1);
      expect((await collect(sqlEnumerator, { connection_string: `sqlite:${b.connection}`, query: 'SELECT 1 AS one' })).items).toHaveLength(1);
      const t = tempDir();
      try {
        expect((await failure(sqlEnumerator, { connection_string: t.path('none.db'), query: 'SELECT 1' })).message).toBe(
          `enumerator_config.connection_string: no such file or directory: ${t.path('none.db')}`,
        );
        expect((await failure(sqlEnumerator, { connection_string: t.dir, query: 'SELECT 1' })).message).toBe(
          `enumerator_config.connection_string: ${t.dir} is a directory, not a file`,
        );
      } finally {
        t.cleanup();
      }
    });
  } else {
    it('other writes PostgreSQL refuses: DDL and sequences', async () => {
      expect((await fail({ query: 'CREATE TABLE z (a int)' })).message).toBe(
        'enumerator_config.query: PostgreSQL refused the statement: cannot execute CREATE TABLE in a read-only transaction; only a single SELECT is allowed',
      );
      await pgExec(b.connection, 'CREATE SEQUENCE s');
      expect((await fail({ query: "SELECT nextval('s')" })).message).toBe(
        'enumerator_config.query: PostgreSQL refused the statement: cannot execute nextval() in a read-only transaction; only a single SELECT is allowed',
      );
    });

    it('an unreachable server is named without its password', async () => {
      const err = await failure(sqlEnumerator, { connection_string: 'postgres://u:hunter2@127.0.0.1:1/db', query: 'SELECT 1' });
      expect(err.message).toMatch(/^enumerator_config\.connection_string: cannot connect to postgres:\/\/u:\*\*\*@127\.0\.0\.1:1\/db: /);
      expect(err.message).not.toContain('hunter2');
    });
  }
});

describe('named parameters for PostgreSQL', () => {
  it('rewrites :name outside strings, identifiers, comments, dollar quotes and casts', () => {
    const q = `SELECT ':a', ":a", $$ :a $$, x::int, :a, :b, :a -- :a\n/* :a */ FROM t`;
    expect(namedToPositional(q, { a: 1, b: 2 })).toEqual({ text: `SELECT ':a', ":a", $$ :a $$, x::int, $1, $2, $1 -- :a\n/* :a */ FROM t`, values: [1, 2] });
  });

  it('a placeholder without a param is named', () => {
    expect(() => namedToPositional('SELECT :missing', { a: 1 })).toThrow('enumerator_config.params: the query uses :missing but params has no "missing" (params: a)');
  });
});
