import { writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { jsonEnumerator } from '../../enumerators/json.js';
import { collect, failure, tempDir } from './enumerators-support.js';

let t: ReturnType<typeof tempDir>;
beforeEach(() => {
  t = tempDir();
});
afterEach(() => t.cleanup());

function file(name: string, content: string | Buffer): string {
  const p = t.path(name);
  writeFileSync(p, content);
  return p;
}

describe('json enumerator', () => {
  it('a root array: objects keep their fields, scalars become {value}; _index and _id', async () => {
    const { items } = await collect(jsonEnumerator, { file_path: file('a.json', '[{"id":"x","n":1}, 7, "s", [1,2], null]') });
    expect(items).toEqual([
      { id: 'x', n: 1, _index: 0, _id: 0 },
      { value: 7, _index: 1, _id: 1 },
      { value: 's', _index: 2, _id: 2 },
      { value: [1, 2], _index: 3, _id: 3 },
      { value: null, _index: 4, _id: 4 },
    ]);
  });

  it('items at a JSON Pointer or a dot path, id_field, and limit', async () => {
    const p = file('a.json', JSON.stringify({ data: { 'a/b': [{ id: 'p' }], list: [{ id: 'q' }, { id: 'r' }, { id: 's' }] } }));
    expect((await collect(jsonEnumerator, { file_path: p, items_path: '/data/a~1b', id_field: 'id' })).items).toEqual([{ id: 'p', _index: 0, _id: 'p' }]);
    const dot = await collect(jsonEnumerator, { file_path: p, items_path: 'data.list', id_field: 'id', limit: 2 });
    expect(dot.items.map((i) => i._id)).toEqual(['q', 'r']);
  });

  it('JSON Lines, streamed line by line; blank lines are skipped', async () => {
    const ok = await collect(jsonEnumerator, { file_path: file('b.ndjson', '{"id":1}\n\n"two"\r\n{"id":3}\n') });
    expect(ok.items).toEqual([
      { id: 1, _index: 0, _id: 0 },
      { value: 'two', _index: 1, _id: 1 },
      { id: 3, _index: 2, _id: 2 },
    ]);
  });

  it('a large JSONL file streams: reading 3 items of ~60 MB reads only the start', async () => {
    const line = `${JSON.stringify({ text: 'x'.repeat(1000) })}\n`;
    writeFileSync(t.path('big.jsonl'), line.repeat(60_000));
    const before = process.memoryUsage().rss;
    const { items } = await collect(jsonEnumerator, { file_path: t.path('big.jsonl'), limit: 3 });
    expect(items).toHaveLength(3);
    expect(process.memoryUsage().rss - before).toBeLessThan(40 * 1024 * 1024);
  });
});

describe('json enumerator: bad input, each with its exact error', () => {
  it('malformed JSON names its line, column and position', async () => {
    const p = file('a.json', '[\n  {"a": 1},\n  {"b": }\n]');
    const err = await failure(jsonEnumerator, { file_path: p });
    expect(err.code).toBe('enumeration_failed');
    expect(err.message).toBe(`json ${p}: line 3 column 9 (position 22): not valid JSON: Unexpected token '}'`);
  });

  it('truncated JSON points at its end', async () => {
    const p = file('a.json', '[1, 2');
    expect((await failure(jsonEnumerator, { file_path: p })).message).toBe(
      `json ${p}: line 1 column 6 (position 5): not valid JSON: Expected ',' or ']' after array element`,
    );
  });

  it('an items path that is not found says where the walk stopped', async () => {
    const p = file('a.json', JSON.stringify({ data: { rows: [] } }));
    expect((await failure(jsonEnumerator, { file_path: p, items_path: '/data/items' })).message).toBe(
      'enumerator_config.items_path: "/data/items" not found: data has no "items" (keys: rows)',
    );
    expect((await failure(jsonEnumerator, { file_path: p, items_path: 'data.rows.0' })).message).toBe(
      'enumerator_config.items_path: "data.rows.0" not found: data.rows is an array of 0 with no index "0"',
    );
    expect((await failure(jsonEnumerator, { file_path: p })).message).toBe(
      `enumerator_config.items_path: the top level of ${p} is an object, not an array of items (keys: data)`,
    );
  });

  it('a JSONL line that is not JSON names its line number', async () => {
    const p = file('a.jsonl', '{"a":1}\n{"a":2}\n\n{"a":3,}\n');
    const err = await failure(jsonEnumerator, { file_path: p });
    expect(err.message).toBe(`json ${p}: line 4 column 8: not valid JSON: Expected double-quoted property name`);
  });

  it('invalid UTF-8 names its line, in JSON Lines and in JSON', async () => {
    const bad = Buffer.concat([Buffer.from('{"a":1}\n{"a":"'), Buffer.from([0xe2, 0x28, 0xa1]), Buffer.from('"}\n')]);
    const l = file('a.jsonl', bad);
    expect((await failure(jsonEnumerator, { file_path: l })).message).toBe(
      `json ${l}: line 2: invalid UTF-8 (byte 0xe2); re-save the file as UTF-8 or set enumerator_config.encoding to the file's encoding (utf-16le, latin1)`,
    );
    const j = file('a.json', Buffer.concat([Buffer.from('[\n"'), Buffer.from([0xff]), Buffer.from('"]')]));
    expect((await failure(jsonEnumerator, { file_path: j })).message).toBe(
      `json ${j}: line 2: invalid UTF-8 (byte 0xff); re-save the file as UTF-8 or set enumerator_config.encoding to the file's encoding (utf-16le, latin1)`,
    );
  });

  it('a JSON array over the size cap is told to use JSON Lines', async () => {
    const p = file('a.json', JSON.stringify(Array.from({ length: 100 }, (_, i) => ({ i }))));
    const err = await failure(jsonEnumerator, { file_path: p, max_file_bytes: 100 });
    expect(err.message).toBe(
      `enumerator_config.file_path: ${p} is 891 bytes, over max_file_bytes (100); a JSON file is read whole, so convert it to JSON Lines (.jsonl: one item per line), which is streamed`,
    );
  });

  it('an item without its id_field is named', async () => {
    const p = file('a.jsonl', '{"id":1}\n"two"\n');
    expect((await failure(jsonEnumerator, { file_path: p, id_field: 'id' })).message).toBe('enumerator_config.id_field: line 2 has no string or number "id" (got nothing)');
  });

  it('a missing file, a directory, an unknown field and a wrong type', async () => {
    expect((await failure(jsonEnumerator, { file_path: t.path('no.json') })).message).toBe(`enumerator_config.file_path: no such file or directory: ${t.path('no.json')}`);
    expect((await failure(jsonEnumerator, { file_path: t.dir })).message).toBe(`enumerator_config.file_path: ${t.dir} is a directory, not a file`);
    expect((await failure(jsonEnumerator, { file_path: 'x.json', items: '/a' })).message).toBe('unknown field in enumerator_config: items');
    expect((await failure(jsonEnumerator, { file_path: 'x.json', limit: '3' })).message).toBe('enumerator_config.limit: Invalid input: expected number, received string');
  });
});
