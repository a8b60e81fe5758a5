import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProviderConfig } from '../../src/domain/sync-pair.js';
import type { SnapshotEntry } from '../../src/contracts/provider.js';
import { csvFormat } from '../../src/sync/providers/csv.js';
import { openProvider } from '../../src/sync/providers/index.js';
import { jsonlFormat } from '../../src/sync/providers/jsonl.js';
import { createHash } from 'node:crypto';
import { THREAD_MIN_FILES } from '../../src/sync/providers/dir.js';
import { FILE_HASH_CHARS, walkFolder, type WalkEnd } from '../../src/sync/providers/folder-walk.js';
import { PACKED_BATCH_MAX, PackedSnapshot } from '../../src/sync/providers/packed-snapshot.js';
import { entryOf, HASH_CHARS, recordHash } from '../../src/sync/providers/records.js';
import { THREAD_MIN_BYTES, updatedAtFieldOf, type FileProviderConfig, type RecordFileFormat } from '../../src/sync/providers/whole-file.js';

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

  it('dir: links planted inside the folder never carry a write, a read or a remove outside it', async () => {
    const root = join(dir, 'files');
    const elsewhere = join(dir, 'elsewhere');
    mkdirSync(root);
    mkdirSync(elsewhere);
    writeFileSync(join(elsewhere, 'victim.txt'), 'keep me');
    symlinkSync(elsewhere, join(root, 'sub'));
    symlinkSync(join(elsewhere, 'victim.txt'), join(root, 'linked.txt'));
    const p = open({ type: 'dir', path: root });
    const out = await p.add([
      { key: 'sub/pwned.txt', data: { content: 'no', encoding: 'utf8' } },
      { key: 'sub/victim.txt', data: { content: 'no', encoding: 'utf8' } },
      { key: 'linked.txt', data: { content: 'replaced', encoding: 'utf8' } },
      { key: 'fine/x.txt', data: { content: 'yes', encoding: 'utf8' } },
    ]);
    expect(out.map((o) => [o.key, o.status])).toEqual([
      ['sub/pwned.txt', 'unresolved'],
      ['sub/victim.txt', 'unresolved'],
      ['linked.txt', 'confirmed'],
      ['fine/x.txt', 'confirmed'],
    ]);
    expect(out[0]).toMatchObject({ reason: 'sub is a symbolic link; links inside the folder are never followed' });
    // The link at linked.txt was replaced by a file; what it pointed to is untouched.
    expect(lstatSync(join(root, 'linked.txt')).isSymbolicLink()).toBe(false);
    expect(readFileSync(join(root, 'linked.txt'), 'utf8')).toBe('replaced');
    expect(readdirSync(elsewhere)).toEqual(['victim.txt']);
    expect(readFileSync(join(elsewhere, 'victim.txt'), 'utf8')).toBe('keep me');
    // Reading and removing through the link are refused too.
    expect((await p.read(['sub/victim.txt'])).size).toBe(0);
    const removed = await p.remove(['sub/victim.txt', 'fine/x.txt']);
    expect(removed.map((o) => [o.key, o.status])).toEqual([
      ['sub/victim.txt', 'unresolved'],
      ['fine/x.txt', 'confirmed'],
    ]);
    expect(readFileSync(join(elsewhere, 'victim.txt'), 'utf8')).toBe('keep me');
    // The folder the removal emptied is gone; no temporary file is left anywhere.
    expect(readdirSync(root).sort()).toEqual(['linked.txt', 'sub']);
  });

  it('dir: a large folder is walked on a thread exactly as inline, whatever order its checkpoint lists the files in', async () => {
    const root = join(dir, 'many');
    const old = new Date(Date.UTC(2024, 0, 1));
    const n = THREAD_MIN_FILES + 500;
    for (let d = 0; d < 5; d++) mkdirSync(join(root, `d${d}`), { recursive: true });
    const path = (i: number) => join(root, `d${i % 5}`, `f${i}.txt`);
    for (let i = 0; i < n; i++) {
      writeFileSync(path(i), `file ${i}\n`);
      utimesSync(path(i), old, old);
    }
    const p = open({ type: 'dir', path: root });
    const first = await p.readSince(null, signal);
    expect(first.kind).toBe('full');
    expect(first.kind === 'full' && first.snapshot.size).toBe(n);
    expect(first.kind === 'full' && first.snapshot.get('d3/f8.txt')).toEqual({ hash: createHash('sha256').update('file 8\n').digest('hex'), updated_at: old.getTime() });
    const saved = first.checkpoint as { files: number; stamps: string };
    expect(saved.files).toBe(n);

    // Changed (other size), touched (same size, other mtime), removed, added, and one written just now (never trusted).
    writeFileSync(path(1), 'file 1, changed\n');
    utimesSync(path(1), old, old);
    utimesSync(path(2), new Date(old.getTime() + 1000), new Date(old.getTime() + 1000));
    rmSync(path(3));
    writeFileSync(join(root, 'd0', 'new.txt'), 'new\n');
    utimesSync(join(root, 'd0', 'new.txt'), old, old);
    writeFileSync(join(root, 'd1', 'fresh.txt'), 'fresh\n');

    const inline = (stamps: string): { end: WalkEnd; changed: PackedSnapshot } => {
      const changed = new PackedSnapshot(FILE_HASH_CHARS);
      const end = walkFolder(root, undefined, stamps, Date.now(), (b) => changed.add(b.keys, b.hashes, b.updated));
      return { end, changed };
    };
    const [keys, sizes, mtimes] = JSON.parse(saved.stamps) as [string[], number[], number[]];
    const reversed = JSON.stringify([[...keys].reverse(), [...sizes].reverse(), [...mtimes].reverse()]);
    const threaded = await p.readSince(saved, signal);
    for (const read of [threaded, { kind: 'delta' as const, ...inline(saved.stamps) }, { kind: 'delta' as const, ...inline(reversed) }]) {
      expect(read.kind).toBe('delta');
      if (read.kind !== 'delta') continue;
      const end = 'end' in read ? read.end : { removed: read.removed, count: read.items };
      expect([...read.changed.keys()].sort()).toEqual(['d0/new.txt', 'd1/f1.txt', 'd1/fresh.txt', 'd2/f2.txt']);
      expect(end.removed).toEqual(['d3/f3.txt']);
      expect(end.count).toBe(n + 1);
    }
    // The fresh file's stamp is kept as untrusted (size -1), so the next walk reads it again.
    const next = threaded.checkpoint as { stamps: string };
    const [k2, s2] = JSON.parse(next.stamps) as [string[], number[]];
    expect(s2[k2.indexOf('d1/fresh.txt')]).toBe(-1);
    expect(s2[k2.indexOf('d1/f1.txt')]).toBe('file 1, changed\n'.length);
    const again = await p.readSince(next, signal);
    expect(again.kind === 'delta' && [...again.changed.keys()]).toEqual(['d1/fresh.txt']);

    // A checkpoint of another format is a full read.
    expect((await p.readSince({ files: { 'd0/f0.txt': [7, 0] } }, signal)).kind).toBe('full');
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

describe('large files are snapshotted on a worker thread', () => {
  /** The snapshot of a file as the provider's format reads it in this thread: what the thread must equal. */
  function inline(config: FileProviderConfig, format: RecordFileFormat): Map<string, SnapshotEntry> {
    const out = new Map<string, SnapshotEntry>();
    format.parse(readFileSync(config.path, 'utf8'), config.path, (key, record) => out.set(key, entryOf(record, updatedAtFieldOf(config))));
    return out;
  }

  /** n JSON records past THREAD_MIN_BYTES; every third has a time, some have unicode, one repeats a key. */
  function bigRecords(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (let i = 0, bytes = 0; bytes < THREAD_MIN_BYTES * 1.5; i++) {
      const record = { id: i, title: `item ${i} ${i % 7 === 0 ? 'çé漢字🙂' : ''}`, body: 'x'.repeat(60), ...(i % 3 === 0 ? { at: 1_700_000_000_000 + i } : {}) };
      out.push(record);
      bytes += Buffer.byteLength(JSON.stringify(record)) + 1;
    }
    out.push({ id: 5, title: 'the later record with key 5 wins', body: '' });
    return out;
  }

  it('jsonl (read in pieces) and csv (read whole) give the same entries as parsing in this thread', async () => {
    const records = bigRecords();
    const jsonl: FileProviderConfig = { type: 'jsonl', path: join(dir, 'big.jsonl'), id_field: 'id', updated_at_field: 'at' };
    // Blank lines, and CRLF on one line, as files in the wild have them.
    writeFileSync(jsonl.path, records.map((r, i) => `${JSON.stringify(r)}${i === 10 ? '\r\n\n' : '\n'}`).join(''));
    const csv: FileProviderConfig = { type: 'csv', path: join(dir, 'big.csv'), id_column: 'id', updated_at_column: 'at' };
    writeFileSync(csv.path, ['id,title,body,at', ...records.map((r) => [r.id, `"${String(r.title)}"`, r.body, r.at ?? ''].join(','))].join('\n'));
    for (const [config, format] of [[jsonl, jsonlFormat(jsonl)], [csv, csvFormat(csv)]] as const) {
      expect(statSync(config.path).size).toBeGreaterThanOrEqual(THREAD_MIN_BYTES);
      const threaded = await openProvider(config).snapshot(signal);
      const expected = inline(config, format);
      expect(threaded.size).toBe(records.length - 1);
      expect(new Map(threaded)).toEqual(expected);
      expect(threaded.get('3')?.updated_at).toBe(1_700_000_000_003);
      // The later record with a repeated key wins, as it does read in this thread.
      if (config.type === 'jsonl') expect(threaded.get('5')?.hash).toBe(entryOf(records.at(-1) as Record<string, unknown>, 'at').hash);
    }
  });

  it('a malformed line deep in a large file fails the snapshot, naming that line', async () => {
    const lines = bigRecords().map((r) => JSON.stringify(r));
    const bad = lines.length - 3;
    lines[bad - 1] = '{"id": 1, "title": "cut off';
    const path = join(dir, 'bad-big.jsonl');
    writeFileSync(path, `${lines.join('\n')}\n`);
    await expect(open({ type: 'jsonl', path }).snapshot(signal)).rejects.toThrow(new RegExp(`bad-big\\.jsonl:${bad}: not valid JSON`));
  });

  it('an aborted snapshot stops its thread and says so', async () => {
    const path = join(dir, 'big.jsonl');
    writeFileSync(path, bigRecords().map((r) => `${JSON.stringify(r)}\n`).join(''));
    const stop = new AbortController();
    const taking = open({ type: 'jsonl', path }).snapshot(stop.signal);
    stop.abort('test');
    await expect(taking).rejects.toThrow(/snapshot was stopped \(test\)/);
  });
});

describe('recordHash', () => {
  // The definition, written out: sha256 over "name NUL value SOH" in name order, null fields left out.
  const reference = (r: Record<string, unknown>): string =>
    createHash('sha256')
      .update(
        Object.keys(r)
          .sort()
          .filter((k) => r[k] !== null && r[k] !== undefined)
          .map((k) => `${k}\u0000${String(r[k])}\u0001`)
          .join(''),
      )
      .digest('base64');

  it('is the same for the same fields in any order, as records of changing shapes come one after another', () => {
    const records: Record<string, unknown>[] = [
      { id: 1, title: 'a', body: 'b' },
      { id: 2, title: 'c', body: 'd' },
      { body: 'd', id: 2, title: 'c' },
      { title: 'c', body: 'd', id: 2 },
      { id: 3, title: 'e' },
      { id: 3, title: 'e', extra: null },
      { zeta: 'z', id: 4, alpha: true, body: 5 },
      { id: 1, title: 'a', body: 'b' },
    ];
    const hashes = records.map(recordHash);
    expect(hashes).toEqual(records.map(reference));
    expect(hashes[2]).toBe(hashes[1]);
    expect(hashes[3]).toBe(hashes[1]);
    expect(hashes[5]).toBe(hashes[4]); // a null field is left out
    expect(hashes[7]).toBe(hashes[0]);
    expect(new Set(hashes).size).toBe(4);
  });
});

describe('PackedSnapshot', () => {
  const h = (c: string) => c.repeat(HASH_CHARS);

  it('reads like the Map of its entries: a later key replaces an earlier one, in the first place it took', () => {
    const packed = new PackedSnapshot();
    packed.add(['a', 'b', 'c'], h('A') + h('B') + h('C'), Float64Array.from([Number.NaN, 5, Number.NaN]));
    packed.add(['d', 'a'], h('D') + h('E'), Float64Array.from([7, Number.NaN]));
    const expected = new Map([
      ['a', { hash: h('E') }],
      ['b', { hash: h('B'), updated_at: 5 }],
      ['c', { hash: h('C') }],
      ['d', { hash: h('D'), updated_at: 7 }],
    ]);
    expect(packed.size).toBe(4);
    expect([...packed]).toEqual([...expected]);
    expect([...packed.keys()]).toEqual(['a', 'b', 'c', 'd']);
    expect([...packed.values()]).toEqual([...expected.values()]);
    const seen: [string, unknown][] = [];
    packed.forEach((entry, key) => seen.push([key, entry]));
    expect(seen).toEqual([...expected]);
    expect(packed.get('b')).toEqual({ hash: h('B'), updated_at: 5 });
    expect(packed.get('c')).not.toHaveProperty('updated_at');
    expect(packed.get('z')).toBeUndefined();
    expect(packed.has('d')).toBe(true);
    expect(packed.has('z')).toBe(false);
  });

  it('refuses a batch too large for its positions', () => {
    const keys = Array.from({ length: PACKED_BATCH_MAX + 1 }, (_, i) => String(i));
    expect(() => new PackedSnapshot().add(keys, '', new Float64Array(keys.length))).toThrow(/at most 65536/);
  });
});
