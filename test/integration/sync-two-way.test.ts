import { existsSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, dropTestDatabase, queryPostgres } from '../helpers/postgres.js';
import { numberedFiles, SyncBed } from './sync-support.js';

let bed: SyncBed;
/** A PostgreSQL database for the test's postgres sides, made on first use. */
let pgUrl: string | undefined;
beforeEach(async () => {
  bed = await SyncBed.open();
});
afterEach(async () => {
  await bed.close();
  if (pgUrl) await dropTestDatabase(pgUrl);
  pgUrl = undefined;
});

const pairAB = () => ({ source: { type: 'dir', path: bed.path('a') }, target: { type: 'dir', path: bed.path('b') }, mode: 'two-way' });

describe('two-way sync between two folders', () => {
  it('bootstrap merges both sides without removes', async () => {
    bed.files('a', { 'only-a.txt': 'A\n', 'both.txt': 'same\n', 'conflict.txt': 'from a\n' });
    bed.files('b', { 'only-b.txt': 'B\n', 'both.txt': 'same\n', 'conflict.txt': 'from b, newer\n' });
    // B's copy of the conflicting file is newer, so it wins the first run.
    utimesSync(bed.path('a', 'conflict.txt'), new Date(2020, 0, 1), new Date(2020, 0, 1));
    const run = await bed.run(pairAB());
    expect(run.plan.first_run).toBe(true);
    expect(run.plan.counts).toMatchObject({ adds: 2, updates: 1, removes: 0 });
    expect(run.status).toBe('COMPLETED');
    const merged = { 'only-a.txt': 'A\n', 'only-b.txt': 'B\n', 'both.txt': 'same\n', 'conflict.txt': 'from b, newer\n' };
    expect(bed.read('a')).toEqual(merged);
    expect(bed.read('b')).toEqual(merged);
    expect(run.summary).toMatchObject({ adds: 2, updates: 1, removes: 0, unresolved: 0, blocked: 0 });
    expect(run.summary.text).toBe('+2 ~1 −0 unresolved 0 blocked 0');
    const again = await bed.run(pairAB());
    expect(again.job.total).toBe(0);
    expect(again.plan.counts).toMatchObject({ adds: 0, updates: 0, removes: 0 });
  });

  it('a delete on A propagates to B and stays deleted, even when a stale copy comes back', async () => {
    bed.files('a', numberedFiles(30));
    bed.files('b', numberedFiles(30));
    await bed.run(pairAB());
    rmSync(bed.path('a', 'f007.txt'));
    const run = await bed.run(pairAB());
    expect(run.plan.counts).toMatchObject({ removes: 1, adds: 0 });
    expect(existsSync(bed.path('b', 'f007.txt'))).toBe(false);
    expect(run.summary).toMatchObject({ removes: 1 });

    const quiet = await bed.run(pairAB());
    expect(quiet.job.total).toBe(0);
    expect(existsSync(bed.path('a', 'f007.txt'))).toBe(false);

    // A backup restores the old file on B with its old time: the tombstone keeps it deleted.
    writeFileSync(bed.path('b', 'f007.txt'), 'content of f7\n');
    utimesSync(bed.path('b', 'f007.txt'), new Date(2020, 0, 1), new Date(2020, 0, 1));
    const stale = await bed.run(pairAB());
    expect(stale.plan.writes).toEqual([{ op: 'remove', side: 'target', key: 'f007.txt' }]);
    expect(stale.plan.guards).toEqual(expect.arrayContaining([expect.objectContaining({ guard: 'tombstone', count: 1 })]));
    expect(existsSync(bed.path('a', 'f007.txt'))).toBe(false);
    expect(existsSync(bed.path('b', 'f007.txt'))).toBe(false);
  });

  it('re-adding wins over the tombstone', async () => {
    bed.files('a', numberedFiles(30));
    bed.files('b', numberedFiles(30));
    await bed.run(pairAB());
    rmSync(bed.path('a', 'f003.txt'));
    await bed.run(pairAB());
    expect(existsSync(bed.path('b', 'f003.txt'))).toBe(false);
    // Re-added on A, with the very same content but now: a re-add, not a stale copy.
    writeFileSync(bed.path('a', 'f003.txt'), 'content of f3\n');
    const run = await bed.run(pairAB());
    expect(run.plan.writes).toEqual([{ op: 'add', side: 'target', key: 'f003.txt' }]);
    expect(bed.read('b')['f003.txt']).toBe('content of f3\n');
    const quiet = await bed.run(pairAB());
    expect(quiet.job.total).toBe(0);
  });

  it('deletes on both sides in one run', async () => {
    bed.files('a', numberedFiles(30));
    bed.files('b', numberedFiles(30));
    await bed.run(pairAB());
    rmSync(bed.path('a', 'f001.txt'));
    rmSync(bed.path('b', 'f002.txt'));
    const run = await bed.run(pairAB());
    expect(run.plan.writes).toEqual(
      expect.arrayContaining([
        { op: 'remove', side: 'target', key: 'f001.txt' },
        { op: 'remove', side: 'source', key: 'f002.txt' },
      ]),
    );
    expect(run.plan.counts).toMatchObject({ adds: 0, removes: 2 });
    for (const side of ['a', 'b']) {
      expect(Object.keys(bed.read(side))).toHaveLength(28);
      expect(bed.read(side)['f001.txt']).toBeUndefined();
      expect(bed.read(side)['f002.txt']).toBeUndefined();
    }
    expect((await bed.run(pairAB())).job.total).toBe(0);
  });
});

type Rows = Record<string, string>;

/** One kind of provider as a test sees it: make a side holding these items (id → v), and read its items back. */
interface Kind {
  name: string;
  side(name: string, rows: Rows): Promise<Record<string, unknown>>;
  read(config: Record<string, unknown>): Promise<Rows>;
}

const fromRecords = (records: { id: unknown; v: unknown }[]): Rows => Object.fromEntries(records.map((r) => [String(r.id), String(r.v)]));

const KINDS: Kind[] = [
  {
    name: 'dir',
    side: async (name, rows) => ({ type: 'dir', path: bed.files(name, Object.fromEntries(Object.entries(rows).map(([k, v]) => [`${k}.txt`, v]))) }),
    read: async (c) => Object.fromEntries(Object.entries(bed.read(String(c.path).slice(bed.dir.length + 1))).map(([k, v]) => [k.replace(/\.txt$/, ''), v])),
  },
  {
    name: 'jsonl',
    side: async (name, rows) => {
      const path = bed.path(`${name}.jsonl`);
      writeFileSync(path, Object.entries(rows).map(([id, v]) => `${JSON.stringify({ id, v })}\n`).join(''));
      return { type: 'jsonl', path };
    },
    read: async (c) => fromRecords(readFileSync(String(c.path), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))),
  },
  {
    name: 'json',
    side: async (name, rows) => {
      const path = bed.path(`${name}.json`);
      writeFileSync(path, JSON.stringify(Object.entries(rows).map(([id, v]) => ({ id, v }))));
      return { type: 'json', path };
    },
    read: async (c) => fromRecords(JSON.parse(readFileSync(String(c.path), 'utf8'))),
  },
  {
    name: 'csv',
    side: async (name, rows) => {
      const path = bed.path(`${name}.csv`);
      writeFileSync(path, `id,v\n${Object.entries(rows).map(([id, v]) => `${id},${v}\n`).join('')}`);
      return { type: 'csv', path };
    },
    read: async (c) => fromRecords(readFileSync(String(c.path), 'utf8').split('\n').slice(1).filter(Boolean).map((l) => ({ id: l.split(',')[0], v: l.split(',')[1] }))),
  },
  {
    name: 'sqlite',
    side: async (name, rows) => {
      const path = bed.path(`${name}.db`);
      const db = new Database(path);
      db.exec('create table items (id text primary key, v text not null)');
      for (const [id, v] of Object.entries(rows)) db.prepare('insert into items (id, v) values (?, ?)').run(id, v);
      db.close();
      return { type: 'sqlite', path, table: 'items' };
    },
    read: async (c) => {
      const db = new Database(String(c.path), { readonly: true });
      try {
        return fromRecords(db.prepare('select id, v from items').all() as { id: string; v: string }[]);
      } finally {
        db.close();
      }
    },
  },
  {
    name: 'postgres',
    side: async (name, rows) => {
      pgUrl ??= await createTestDatabase();
      const table = name.replace(/-/g, '_');
      await queryPostgres(pgUrl, `create table ${table} (id text primary key, v text not null)`);
      for (const [id, v] of Object.entries(rows)) await queryPostgres(pgUrl, `insert into ${table} (id, v) values (?, ?)`, [id, v]);
      return { type: 'postgres', url: pgUrl, table };
    },
    read: async (c) => fromRecords(await queryPostgres<{ id: string; v: string }>(String(c.url), `select id, v from ${String(c.table)}`)),
  },
];

/** Removes one item from a side, the way a person would: the file or row goes. */
async function drop(kind: Kind, config: Record<string, unknown>, id: string): Promise<void> {
  if (kind.name === 'dir') return rmSync(`${String(config.path)}/${id}.txt`);
  if (kind.name === 'postgres') {
    await queryPostgres(String(config.url), `delete from ${String(config.table)} where id = ?`, [id]);
    return;
  }
  if (kind.name === 'sqlite') {
    const db = new Database(String(config.path));
    db.prepare('delete from items where id = ?').run(id);
    return db.close();
  }
  const rows = await kind.read(config);
  delete rows[id];
  await kind.side(String(config.path).replace(/^.*\/|\.[a-z]+$/g, ''), rows);
}

// Every pairing two-way allows: dir with dir, and the record kinds with each other (each with itself, and across).
const PAIRS: [Kind, Kind][] = [
  [KINDS[0]!, KINDS[0]!],
  ...KINDS.slice(1).map((k, i, all) => [k, all[(i + 1) % all.length]!] as [Kind, Kind]),
  ...KINDS.slice(1).map((k) => [k, k] as [Kind, Kind]),
];

describe.each(PAIRS.map(([a, b]) => ({ a, b, title: `${a.name} ↔ ${b.name}` })))('two-way, $title: a deletion of an item the previous run copied', ({ a, b }) => {
  it('propagates: the copy on A is part of A\'s baseline, so its absence is a deletion, not a phantom add', async () => {
    const A = await a.side('side-a', { a01: 'one' });
    const B = await b.side('side-b', { b01: 'from b', b02: 'two' });
    // Two items would be removed on B if B held three: allow a third, not the default tenth.
    const pair = { source: A, target: B, mode: 'two-way', options: { max_delete_ratio: 0.5 } };
    const first = await bed.run(pair);
    expect(first.status).toBe('COMPLETED');
    expect(await a.read(A)).toEqual({ a01: 'one', b01: 'from b', b02: 'two' });

    await drop(a, A, 'b01');
    const second = await bed.run(pair);
    expect(second.plan.writes).toEqual([{ op: 'remove', side: 'target', key: b.name === 'dir' ? 'b01.txt' : 'b01' }]);
    expect(second.plan.blocked).toEqual([]);
    expect(second.summary).toMatchObject({ adds: 0, removes: 1, blocked: 0 });
    expect(await a.read(A)).toEqual({ a01: 'one', b02: 'two' });
    expect(await b.read(B)).toEqual({ a01: 'one', b02: 'two' });

    const quiet = await bed.run(pair);
    expect(quiet.job.total).toBe(0);
    expect(quiet.plan.counts).toMatchObject({ adds: 0, removes: 0, blocked: 0 });
    expect(await a.read(A)).toEqual({ a01: 'one', b02: 'two' });
  });
});
