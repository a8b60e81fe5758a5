import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProviderConfig } from '../../src/domain/sync-pair.js';
import { openProvider } from '../../src/sync/providers/index.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'abp-providers-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const signal = new AbortController().signal;
const open = (config: unknown) => openProvider(ProviderConfig.parse(config));

describe('sync providers on real files', () => {
  const records: [string, () => unknown][] = [
    ['jsonl', () => ({ type: 'jsonl', path: join(dir, 'x.jsonl') })],
    ['json', () => ({ type: 'json', path: join(dir, 'x.json') })],
    ['csv', () => ({ type: 'csv', path: join(dir, 'x.csv') })],
    ['sqlite', () => {
      const path = join(dir, 'x.db');
      const db = new Database(path);
      db.exec('create table t (id text primary key, name text)');
      db.close();
      return { type: 'sqlite', path, table: 't' };
    }],
  ];
  for (const [type, config] of records) {
    it(`${type}: add, update and remove report an outcome per key, and the snapshot shows the confirmed hash`, async () => {
      const p = open(config());
      expect((await p.health()).status).toBe('ok');
      expect((await p.snapshot(signal)).size).toBe(0);
      const added = await p.add([
        { key: '1', data: { id: '1', name: 'one' } },
        { key: '2', data: { id: '2', name: 'two, with "quotes"' } },
      ]);
      expect(added.map((o) => o.status)).toEqual(['confirmed', 'confirmed']);
      const snapshot = await p.snapshot(signal);
      expect([...snapshot.keys()].sort()).toEqual(['1', '2']);
      for (const o of added) if (o.status === 'confirmed') expect(snapshot.get(o.key)?.hash).toBe(o.hash);
      const updated = await p.update([{ key: '2', data: { id: '2', name: 'deux' } }]);
      expect(updated[0]?.status).toBe('confirmed');
      expect((await p.read(['2'])).get('2')).toMatchObject({ name: 'deux' });
      const removed = await p.remove(['1', 'missing']);
      expect(removed.map((o) => o.status)).toEqual(['confirmed', 'skipped']);
      expect([...(await p.snapshot(signal)).keys()]).toEqual(['2']);
      await p.close();
    });
  }

  it('dir: keys are relative paths, binary files survive, and a key cannot leave the folder', async () => {
    const root = join(dir, 'files');
    mkdirSync(root);
    const p = open({ type: 'dir', path: root });
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0xff, 0x00]);
    const out = await p.add([
      { key: 'a/b.txt', data: { content: 'text\n', encoding: 'utf8' } },
      { key: 'img.png', data: { content: png.toString('base64'), encoding: 'base64' } },
      { key: '../escape.txt', data: { content: 'no', encoding: 'utf8' } },
    ]);
    expect(out.map((o) => o.status)).toEqual(['confirmed', 'confirmed', 'unresolved']);
    expect(readFileSync(join(root, 'img.png'))).toEqual(png);
    expect([...(await p.snapshot(signal)).keys()].sort()).toEqual(['a/b.txt', 'img.png']);
    expect((await p.read(['img.png'])).get('img.png')).toMatchObject({ encoding: 'base64' });
  });

  it('a record without its key field fails the snapshot, naming the line', async () => {
    const path = join(dir, 'bad.jsonl');
    writeFileSync(path, '{"id": 1}\n{"name": "no id"}\n');
    await expect(open({ type: 'jsonl', path }).snapshot(signal)).rejects.toThrow(/bad\.jsonl:2: the item has no id/);
  });

  it('a CSV row and a table row with the same values hash the same', async () => {
    const csv = join(dir, 'x.csv');
    writeFileSync(csv, 'id,n\n7,42\n');
    const db = join(dir, 'y.db');
    const sqlite = new Database(db);
    sqlite.exec('create table t (id integer primary key, n integer, note text); insert into t values (7, 42, null)');
    sqlite.close();
    const a = await open({ type: 'csv', path: csv }).snapshot(signal);
    const b = await open({ type: 'sqlite', path: db, table: 't' }).snapshot(signal);
    expect(a.get('7')?.hash).toBe(b.get('7')?.hash);
  });
});
