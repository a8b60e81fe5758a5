import Database from 'better-sqlite3';
import pg from 'pg';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, pgExec } from '../helpers/postgres.js';
import { SyncBed } from './sync-support.js';

let bed: SyncBed;
let url: string;
beforeEach(async () => {
  bed = await SyncBed.open();
  url = await createTestDatabase();
  await pgExec(url, 'create table items (id integer primary key, title text not null, tags jsonb, seen boolean)');
});
afterEach(async () => {
  await bed.close();
});

async function pgRows(): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query('select id, title from items order by id')).rows;
  } finally {
    await client.end();
  }
}

function sqliteTable(rows: [number, string][]): string {
  const path = bed.path('src.db');
  const db = new Database(path);
  db.exec('create table if not exists items (id integer primary key, title text not null)');
  db.exec('delete from items');
  const insert = db.prepare('insert into items (id, title) values (?, ?)');
  for (const [id, title] of rows) insert.run(id, title);
  db.close();
  return path;
}

describe('the postgres table provider, on the test PostgreSQL server', () => {
  it('keeps a postgres table in step with a SQLite table (one-way): adds, updates, removes by primary key', async () => {
    const seed = Array.from({ length: 20 }, (_, i) => [i + 1, `title ${i + 1}`] as [number, string]);
    const src = sqliteTable(seed);
    const pair = { source: { type: 'sqlite', path: src, table: 'items' }, target: { type: 'postgres', url, table: 'items' } };
    const first = await bed.run(pair);
    expect(first.plan.health.target).toMatchObject({ status: 'ok', details: expect.stringMatching(/key id/) });
    expect(first.summary).toMatchObject({ adds: 20 });
    expect(await pgRows()).toHaveLength(20);

    sqliteTable([...seed.slice(1, 19).map(([id, t]) => [id, id === 5 ? 'renamed' : t] as [number, string]), [20, 'title 20'], [21, 'new']]);
    const second = await bed.run(pair);
    expect(second.plan.counts).toMatchObject({ adds: 1, updates: 1, removes: 1 });
    const rows = await pgRows();
    expect(rows.map((r) => r.id)).toEqual([...Array.from({ length: 20 }, (_, i) => i + 2)]);
    expect(rows.find((r) => r.id === 5)?.title).toBe('renamed');
    expect((await bed.run(pair)).job.total).toBe(0);
  });

  it('two-way between a postgres table and a JSON Lines file', async () => {
    await pgExec(url, "insert into items (id, title) values (1, 'one'), (2, 'two')");
    const { writeFileSync, readFileSync } = await import('node:fs');
    const file = bed.path('items.jsonl');
    writeFileSync(file, `${JSON.stringify({ id: 3, title: 'three' })}\n`);
    const pair = { source: { type: 'postgres', url, table: 'items' }, target: { type: 'jsonl', path: file }, mode: 'two-way' };
    const run = await bed.run(pair);
    expect(run.summary).toMatchObject({ adds: 3, removes: 0 });
    expect((await pgRows()).map((r) => r.title)).toEqual(['one', 'two', 'three']);
    expect(readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(3);
    // Equal values on both sides compare equal whatever holds them: nothing left to do.
    expect((await bed.run(pair)).job.total).toBe(0);
  });

  it('auth_failed skips the pair, with an event, and writes nothing', async () => {
    const file = bed.path('items.jsonl');
    const bad = new URL(url);
    bad.username = 'no_such_role';
    const pair = { source: { type: 'jsonl', path: file }, target: { type: 'postgres', url: bad.toString(), table: 'items' } };
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, `${JSON.stringify({ id: 1, title: 'one' })}\n`);
    await expect(bed.app.orchestrator.createJob({ sync: pair })).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/auth_failed/) });
    const events = await bed.events(null, 'sync_skipped');
    expect(events).toEqual([expect.objectContaining({ side: 'target', health: expect.objectContaining({ status: 'auth_failed' }) })]);
    expect(await bed.app.orchestrator.listJobs()).toEqual([]);
    expect(await pgRows()).toEqual([]);
  });
});
