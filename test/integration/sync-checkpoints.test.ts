import { readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, pgExec } from '../helpers/postgres.js';
import { SyncBed } from './sync-support.js';

/**
 * Checkpoints: a side whose checkpoint says nothing changed is not read again.
 * Every kind of change is seen; a change that leaves the checkpoint's fields as
 * they were is not (the documented limit). mtimes are set with utimes: a stamp
 * younger than 2 s is never trusted, so files written just now are read whole.
 */

let bed: SyncBed;
beforeEach(async () => {
  bed = await SyncBed.open();
});
afterEach(async () => {
  await bed.close();
});

/** An mtime long past, `n` seconds apart: each edit gets a stamp of its own. */
function stamp(path: string, n: number): void {
  const t = new Date(Date.UTC(2020, 0, 1) + n * 1000);
  utimesSync(path, t, t);
}

const reads = (plan: any) => [plan.reads.source.text, plan.reads.target?.text];

type Kind = 'jsonl' | 'json' | 'csv';
function writeRecords(kind: Kind, path: string, rows: { id: number; title: string }[]): void {
  if (kind === 'jsonl') writeFileSync(path, rows.map((r) => `${JSON.stringify(r)}\n`).join(''));
  else if (kind === 'json') writeFileSync(path, JSON.stringify(rows));
  else writeFileSync(path, `id,title\n${rows.map((r) => `${r.id},${r.title}`).join('\n')}\n`);
}

describe('whole-file checkpoints (size, mtime, inode)', () => {
  for (const kind of ['jsonl', 'json', 'csv'] as const) {
    it(`${kind}: an unchanged file is not read; an edit, an add and a delete are seen; a same-size edit with its mtime restored is not`, async () => {
      const src = bed.path(`source.${kind}`);
      const dst = bed.path('target.jsonl');
      const rows = [1, 2, 3, 4].map((id) => ({ id, title: `title ${id}` }));
      writeRecords(kind, src, rows);
      stamp(src, 1);
      const pair = { source: { type: kind, path: src }, target: { type: 'jsonl', path: dst }, options: { max_delete_ratio: 0.5 } };
      const first = await bed.run(pair);
      expect(first.summary).toMatchObject({ adds: 4 });
      expect(reads(first.plan)).toEqual(['full snapshot (no checkpoint)', 'full snapshot (no checkpoint)']);
      stamp(dst, 2);
      // The target was written after its read: its checkpoint (none: it did not exist) is not the file's.
      const second = await bed.run(pair);
      expect(reads(second.plan)).toEqual(['checkpoint (unchanged)', 'full snapshot (no checkpoint)']);
      expect(second.job.total).toBe(0);
      const third = await bed.plan(pair);
      expect(reads(third.sync)).toEqual(['checkpoint (unchanged)', 'checkpoint (unchanged)']);
      expect(third.sync.counts).toMatchObject({ adds: 0, updates: 0, removes: 0, unchanged: 4, source_items: 4, target_items: 4 });

      // Edit 2, delete 3, add 5.
      writeRecords(kind, src, [rows[0]!, { id: 2, title: 'edited' }, rows[3]!, { id: 5, title: 'title 5' }]);
      stamp(src, 3);
      const changed = await bed.run(pair);
      expect(reads(changed.plan)).toEqual(['full snapshot (the file changed)', 'checkpoint (unchanged)']);
      expect(changed.summary).toMatchObject({ adds: 1, updates: 1, removes: 1 });
      expect(readFileSync(dst, 'utf8')).toContain('"edited"');

      // The limit: the same size, the same inode, the mtime restored: the edit is not seen.
      stamp(dst, 4);
      await bed.run(pair);
      const before = readFileSync(src, 'utf8');
      writeFileSync(src, before.replace('edited', 'EDITED'));
      stamp(src, 3);
      const hidden = await bed.plan(pair);
      expect(reads(hidden.sync)).toEqual(['checkpoint (unchanged)', 'checkpoint (unchanged)']);
      expect(hidden.sync.counts).toMatchObject({ updates: 0 });
      // Any other mtime shows it.
      stamp(src, 5);
      expect((await bed.plan(pair)).sync.counts).toMatchObject({ updates: 1 });
    });
  }
});

describe('folder checkpoints (each file’s size and mtime)', () => {
  it('reads only changed and added files, sees removed ones, and misses a same-size edit with its mtime restored', async () => {
    const src = bed.files('a', { 'one.txt': 'one\n', 'two.txt': 'two\n', 'sub/three.txt': 'three\n' });
    const dst = bed.files('b', {});
    const all = (root: string, names: string[], n: number) => names.forEach((name) => stamp(join(root, name), n));
    all(src, ['one.txt', 'two.txt', 'sub/three.txt'], 1);
    const pair = { source: { type: 'dir', path: src }, target: { type: 'dir', path: dst }, options: { max_delete_ratio: 0.5 } };
    expect((await bed.run(pair)).summary).toMatchObject({ adds: 3 });
    all(dst, ['one.txt', 'two.txt', 'sub/three.txt'], 2);
    const second = await bed.run(pair);
    expect(reads(second.plan)).toEqual(['checkpoint: 0 of 3 files read', 'checkpoint: 3 of 3 files read']);
    expect(reads((await bed.plan(pair)).sync)).toEqual(['checkpoint: 0 of 3 files read', 'checkpoint: 0 of 3 files read']);

    writeFileSync(join(src, 'one.txt'), 'one, edited\n');
    stamp(join(src, 'one.txt'), 3);
    rmSync(join(src, 'two.txt'));
    writeFileSync(join(src, 'sub/four.txt'), 'four\n');
    stamp(join(src, 'sub/four.txt'), 3);
    const changed = await bed.run(pair);
    expect(reads(changed.plan)).toEqual(['checkpoint: 2 of 3 files read', 'checkpoint: 0 of 3 files read']);
    expect(changed.summary).toMatchObject({ adds: 1, updates: 1, removes: 1 });
    expect(bed.read('b')).toEqual({ 'one.txt': 'one, edited\n', 'sub/three.txt': 'three\n', 'sub/four.txt': 'four\n' });

    // The limit: the same size and mtime, other bytes.
    all(dst, ['one.txt', 'sub/four.txt'], 4);
    await bed.run(pair);
    writeFileSync(join(src, 'sub/three.txt'), 'THREE\n');
    stamp(join(src, 'sub/three.txt'), 1);
    const hidden = await bed.plan(pair);
    expect(hidden.sync.counts).toMatchObject({ adds: 0, updates: 0, removes: 0 });
    stamp(join(src, 'sub/three.txt'), 6);
    expect((await bed.plan(pair)).sync.counts).toMatchObject({ updates: 1 });
  });

  it('a dry run saves nothing, and a run that holds writes back keeps no checkpoint: the guard sees the same inventory next time', async () => {
    const names = Array.from({ length: 30 }, (_, i) => `f${i}.txt`);
    const src = bed.files('a', Object.fromEntries(names.map((n) => [n, `${n}\n`])));
    const dst = bed.files('b', {});
    names.forEach((n) => stamp(join(src, n), 1));
    const pair = { source: { type: 'dir', path: src }, target: { type: 'dir', path: dst } };
    expect(reads((await bed.plan(pair)).sync)).toEqual(['full snapshot (no checkpoint)', 'full snapshot (no checkpoint)']);
    expect(reads((await bed.plan(pair)).sync)).toEqual(['full snapshot (no checkpoint)', 'full snapshot (no checkpoint)']);
    await bed.run(pair);
    names.forEach((n) => stamp(join(dst, n), 2));
    await bed.run(pair);
    // 20 of 30 deleted: read from the checkpoint, the removes are blocked as a full read would block them.
    names.slice(0, 20).forEach((n) => rmSync(join(src, n)));
    const blocked = await bed.run(pair);
    expect(reads(blocked.plan)).toEqual(['checkpoint: 0 of 10 files read', 'checkpoint: 0 of 30 files read']);
    expect(blocked.plan.guards.map((g: any) => g.guard)).toEqual(['mass_delete']);
    expect(blocked.plan.counts).toMatchObject({ removes: 0, blocked: 20 });
    const again = await bed.plan(pair);
    expect(reads(again.sync)).toEqual(['full snapshot (no checkpoint)', 'full snapshot (no checkpoint)']);
    expect(again.sync.counts).toMatchObject({ removes: 0, blocked: 20 });
  });
});

describe('table checkpoints (newest updated_at and row count): SQLite', () => {
  function table(path: string): Database.Database {
    const db = new Database(path);
    db.exec('create table if not exists items (id integer primary key, title text not null, updated_at integer not null)');
    return db;
  }

  it('reads only newer rows; sees updates, inserts and deletes; misses a change that left updated_at behind', async () => {
    const srcPath = bed.path('src.db');
    const src = table(srcPath);
    const insert = src.prepare('insert into items (id, title, updated_at) values (?, ?, ?)');
    for (let i = 1; i <= 20; i++) insert.run(i, `title ${i}`, 1000 + i);
    const dstPath = bed.path('dst.db');
    table(dstPath).close();
    const side = (path: string) => ({ type: 'sqlite', path, table: 'items', updated_at_column: 'updated_at' });
    const pair = { source: side(srcPath), target: side(dstPath) };
    expect((await bed.run(pair)).summary).toMatchObject({ adds: 20 });
    const second = await bed.run(pair);
    expect(second.job.total).toBe(0);
    // The target's rows came from abp's writes, at or after its (empty) checkpoint.
    expect(reads(second.plan)).toEqual(['checkpoint: 1 of 20 rows read (updated_at at or after the checkpoint\'s)', 'checkpoint: 20 of 20 rows read (updated_at at or after the checkpoint\'s)']);

    src.prepare('update items set title = ?, updated_at = ? where id in (3, 4)').run('updated', 2000);
    insert.run(21, 'title 21', 2000);
    src.prepare('delete from items where id = 5').run();
    const changed = await bed.run(pair);
    // The count did not shrink (20 → 20), but the delete is seen: the rows read and the baselines make 21.
    expect(changed.plan.reads.source.text).toMatch(/^full snapshot \(the side holds 20 items, its checkpoint and baselines 21\)$/);
    expect(changed.summary).toMatchObject({ adds: 1, updates: 2, removes: 1 });

    src.prepare('update items set title = ?, updated_at = ? where id = 6').run('newer', 3000);
    src.prepare('delete from items where id = 7').run();
    const shrank = await bed.run(pair);
    expect(shrank.plan.reads.source.text).toBe('full snapshot (the row count shrank from 20 to 19)');
    expect(shrank.summary).toMatchObject({ updates: 1, removes: 1 });

    src.prepare('update items set title = ?, updated_at = ? where id = 8').run('again', 4000);
    const delta = await bed.run(pair);
    // Row 6 shares the checkpoint's updated_at: read again, and found unchanged.
    expect(delta.plan.reads.source.text).toBe("checkpoint: 2 of 19 rows read (updated_at at or after the checkpoint's)");
    expect(delta.summary).toMatchObject({ updates: 1 });
    const dst = new Database(dstPath);
    expect(dst.prepare('select title from items where id in (3, 8, 21) order by id').all()).toEqual([{ title: 'updated' }, { title: 'again' }, { title: 'title 21' }]);
    expect(dst.prepare('select count(*) as n from items').get()).toEqual({ n: 19 });
    dst.close();

    // The limits: a change that leaves updated_at behind the checkpoint, and a delete balanced by such an insert.
    src.prepare('update items set title = ? where id = 9').run('hidden');
    src.prepare('delete from items where id = 10').run();
    insert.run(22, 'old stamp', 1);
    const hidden = await bed.plan(pair);
    expect(hidden.sync.counts).toMatchObject({ adds: 0, updates: 0, removes: 0 });
    src.close();
  });
});

describe('table checkpoints: PostgreSQL (timestamptz updated_at)', () => {
  it('reads only newer rows; sees updates, inserts and deletes; misses a change that left updated_at behind', async () => {
    const url = await createTestDatabase();
    await pgExec(url, 'create table items (id integer primary key, title text not null, updated_at timestamptz not null)');
    await pgExec(url, `insert into items select i, 'title ' || i, timestamptz '2020-01-01 00:00:00+00' + i * interval '1 second' from generate_series(1, 10) i`);
    const dst = bed.path('target.jsonl');
    const pair = { source: { type: 'postgres', url, table: 'items', updated_at_column: 'updated_at' }, target: { type: 'jsonl', path: dst } };
    expect((await bed.run(pair)).summary).toMatchObject({ adds: 10 });
    stamp(dst, 1);
    const second = await bed.run(pair);
    expect(reads(second.plan)).toEqual(["checkpoint: 1 of 10 rows read (updated_at at or after the checkpoint's)", 'full snapshot (no checkpoint)']);
    expect(reads((await bed.plan(pair)).sync)).toEqual(["checkpoint: 1 of 10 rows read (updated_at at or after the checkpoint's)", 'checkpoint (unchanged)']);

    await pgExec(url, "update items set title = 'updated', updated_at = now() where id in (2, 3)");
    await pgExec(url, "insert into items values (11, 'title 11', now())");
    await pgExec(url, 'delete from items where id = 4');
    const changed = await bed.run(pair);
    expect(changed.plan.reads.source.text).toBe('full snapshot (the side holds 10 items, its checkpoint and baselines 11)');
    expect(changed.summary).toMatchObject({ adds: 1, updates: 2, removes: 1 });
    stamp(dst, 2);
    await bed.run(pair);

    await pgExec(url, "update items set title = 'newer', updated_at = now() + interval '1 minute' where id = 5");
    const delta = await bed.run(pair);
    expect(delta.plan.reads.source.text).toMatch(/^checkpoint: \d of 10 rows read/);
    expect(delta.summary).toMatchObject({ updates: 1 });
    stamp(dst, 3);
    await pgExec(url, 'delete from items where id = 6');
    const shrank = await bed.run(pair);
    expect(shrank.plan.reads.source.text).toBe('full snapshot (the row count shrank from 10 to 9)');
    expect(shrank.summary).toMatchObject({ removes: 1 });
    const titles = readFileSync(dst, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: number; title: string });
    expect(titles.map((r) => r.id).sort((a, b) => a - b)).toEqual([1, 2, 3, 5, 7, 8, 9, 10, 11]);
    expect(titles.find((r) => r.id === 5)?.title).toBe('newer');

    // The limit: a change that leaves updated_at behind the checkpoint is not seen.
    stamp(dst, 4);
    await bed.run(pair);
    await pgExec(url, "update items set title = 'hidden' where id = 7");
    expect((await bed.plan(pair)).sync.counts).toMatchObject({ updates: 0 });
  });
});
