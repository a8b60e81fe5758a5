import { writeFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { csvEnumerator } from '../../enumerators/csv.js';
import { jsonEnumerator } from '../../enumerators/json.js';
import type { Enumerator, Item, SkippedItem } from '../../src/contracts/enumerator.js';
import { AbpError } from '../../src/domain/errors.js';
import { collect, tempDir } from '../unit/enumerators-support.js';
import { fuzz, nastyText } from './support.js';

/**
 * The CSV and JSON enumerators read files that nobody checked. Whatever bytes
 * and settings they get, the answer is a list of items or an AbpError that says
 * which field, line or item is wrong; and files written correctly come back as
 * exactly the rows and values that went in.
 */

let t: ReturnType<typeof tempDir>;
let n = 0;
beforeAll(() => {
  t = tempDir();
});
afterAll(() => t.cleanup());

/** A fresh real file per case. */
function file(ext: string, content: string | Uint8Array): string {
  const p = t.path(`case-${++n}${ext}`);
  writeFileSync(p, content);
  return p;
}

type Outcome = { items: Item[]; skipped: SkippedItem[] } | AbpError;

/** Drains the enumeration; anything thrown that is not an AbpError fails the property with what it was. */
async function outcome(enumerator: Enumerator<any>, config: unknown): Promise<Outcome> {
  try {
    return await collect(enumerator, config);
  } catch (err) {
    if (err instanceof AbpError) return err;
    throw new Error(`expected items or an AbpError, got ${err instanceof Error ? `${err.constructor.name}: ${err.message}` : String(err)}`, { cause: err });
  }
}

/** A refusal says where: a config field, or the file (and then its line, item or position). */
function expectClearRefusal(err: AbpError, path: string, kind: 'csv' | 'json'): void {
  expect(['invalid_input', 'enumeration_failed']).toContain(err.code);
  const where = [`enumerator_config.`, `unknown field in enumerator_config: `, `unknown fields in enumerator_config: `, `${kind} ${path}: `];
  expect(where.some((w) => err.message.startsWith(w)), err.message).toBe(true);
  expect(err.message.length).toBeLessThan(4000);
  if (err.message.startsWith(`${kind} ${path}: `)) expect(err.message, err.message).toMatch(/\b(line|item|position) \d+/);
}

/** Items become unit payloads: they must be plain objects that JSON can carry. */
function expectStorable(items: Item[], index: '_row_index' | '_index'): void {
  items.forEach((item, k) => {
    expect(Object.getPrototypeOf(item)).toBe(Object.prototype);
    expect(item[index]).toBe(index === '_row_index' ? k + 1 : k);
    expect(['string', 'number']).toContain(typeof item._id);
    expect(() => JSON.stringify(item)).not.toThrow();
  });
}

/** Bytes that are sometimes text: random bytes, and pieces of the format's own syntax, invalid UTF-8 and BOMs among them. */
function bytesFrom(pieces: string[]): fc.Arbitrary<Uint8Array> {
  const piece = fc.oneof(
    fc.constantFrom(...pieces).map((s) => Buffer.from(s, 'utf8')),
    fc.uint8Array({ maxLength: 6 }),
    fc.constantFrom([0xef, 0xbb, 0xbf], [0xff, 0xfe], [0xc3], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80], [0x00]).map((b) => Uint8Array.from(b)),
    fc.string({ unit: 'binary', maxLength: 6 }).map((s) => Buffer.from(s, 'utf8')),
  );
  return fc.array(piece, { maxLength: 40 }).map((parts) => Buffer.concat(parts));
}

/** Valid text with a few bytes deleted, replaced or inserted: mostly right, wrong somewhere. */
function mutated(valid: fc.Arbitrary<string>, noise: fc.Arbitrary<Uint8Array>): fc.Arbitrary<Uint8Array> {
  const edit = fc.record({ at: fc.nat(), cut: fc.nat(3), put: noise });
  const edits = fc.oneof(fc.constant<{ at: number; cut: number; put: Uint8Array }[]>([]), fc.array(edit, { minLength: 1, maxLength: 3 }));
  return fc.record({ text: valid, edits }).map(({ text, edits }) =>
    edits.reduce<Buffer>((buf, { at, cut, put }) => {
      const p = buf.length === 0 ? 0 : at % (buf.length + 1);
      return Buffer.concat([buf.subarray(0, p), put, buf.subarray(Math.min(buf.length, p + cut))]);
    }, Buffer.from(text, 'utf8')),
  );
}

describe('csv enumerator: random bytes and settings', () => {
  const syntax = bytesFrom(['a', 'b,c', ',', ';', '\t', '"', "'", '""', '\\', '\n', '\r\n', '\r', '#', ' ', 'id', 'x"y', '"a,b"', '\uFEFF', 'é']);
  const field = fc.oneof(fc.constantFrom('id', 'a', 'b', ''), fc.string({ maxLength: 4 }));
  const valid = fc
    .integer({ min: 1, max: 3 })
    .chain((width) => fc.array(fc.array(field, { minLength: width, maxLength: width }), { minLength: 2, maxLength: 6 }))
    .map((rows) => rows.map((r) => r.map((f) => `"${f.replace(/"/g, '""')}"`).join(',')).join('\n'));
  const bytes = fc.oneof({ weight: 1, arbitrary: syntax }, { weight: 3, arbitrary: mutated(valid, fc.oneof(syntax, fc.constant(new Uint8Array(0)))) });
  const settings = fc.oneof(
    fc.constant<{ limit?: number; id_column?: string }>({}),
    fc.record(
      {
        delimiter: fc.oneof(fc.constantFrom(',', ';', '\t', '|', '||', '"', '#', ' ', '\n', '\r\n'), fc.string({ minLength: 1, maxLength: 4 })),
        quote: fc.oneof(fc.constantFrom('"', "'", ',', '\\', '#'), fc.string({ minLength: 1, maxLength: 1 })),
        escape: fc.oneof(fc.constantFrom('"', "'", '\\', ','), fc.string({ minLength: 1, maxLength: 1 })),
        has_header: fc.boolean(),
        columns: fc.array(fc.oneof(fc.constantFrom('a', 'b', 'id', '_id', '__proto__'), fc.string({ minLength: 1, maxLength: 4 })), { minLength: 1, maxLength: 4 }),
        id_column: fc.oneof(fc.constantFrom('a', 'b', 'id', 'column_1', 'toString', '__proto__'), fc.string({ minLength: 1, maxLength: 4 })),
        encoding: fc.constantFrom('utf-8', 'utf8', 'utf-16le', 'latin1'),
        skip_empty_lines: fc.boolean(),
        comment: fc.constantFrom('#', ',', '"', ';'),
        relax_column_count: fc.boolean(),
        relax_quotes: fc.boolean(),
        on_error: fc.constantFrom('fail', 'skip'),
        limit: fc.integer({ min: 1, max: 5 }),
      },
      { requiredKeys: [] },
    ),
  );

  it('give items or an AbpError that names the field or the line', async () => {
    await fc.assert(
      fc.asyncProperty(bytes, settings, async (content, cfg) => {
        const path = file('.csv', content);
        const result = await outcome(csvEnumerator, { file_path: path, ...cfg });
        if (result instanceof AbpError) return expectClearRefusal(result, path, 'csv');
        expectStorable(result.items, '_row_index');
        if (cfg.limit !== undefined) expect(result.items.length).toBeLessThanOrEqual(cfg.limit);
        // An id_column is a real column of every row, never something every object inherits.
        const idColumn = cfg.id_column;
        for (const item of idColumn === undefined ? [] : result.items) {
          expect(Object.hasOwn(item, idColumn!)).toBe(true);
          if (typeof item[idColumn!] === 'string') expect(item._id).toBe(item[idColumn!]);
        }
        for (const s of result.skipped) expect(s.reason).toMatch(/^csv .*: line (\d+|\?): /);
      }),
      fuzz(300),
    );
  });
});

describe('json enumerator: random bytes and settings', () => {
  const syntax = bytesFrom(['[', ']', '{', '}', '"', ':', ',', '\n', '\r\n', ' ', '1', '-0.5e3', 'true', 'null', '"a"', '{"id":1}', '\\', '\\u', '\\ud800', '\uFEFF', '[[[[[[[[', 'é']);
  // Documents and lines that are valid before the mutation: objects with an "id" often, under "a" sometimes.
  const value = fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.record({ id: fc.oneof(fc.string(), fc.integer()), a: fc.jsonValue({ maxDepth: 1 }) }));
  const valid = fc.oneof(
    fc.array(value, { maxLength: 5 }).map((items) => JSON.stringify(items)),
    fc.array(value, { maxLength: 5 }).map((items) => JSON.stringify({ a: { b: items } }, null, 2)),
    fc.array(value, { maxLength: 5 }).map((items) => items.map((v) => JSON.stringify(v)).join('\n')),
  );
  const bytes = fc.oneof({ weight: 1, arbitrary: syntax }, { weight: 3, arbitrary: mutated(valid, fc.oneof(syntax, fc.constant(new Uint8Array(0)))) });
  const settings = fc.oneof(
    { weight: 2, arbitrary: fc.constant<{ limit?: number; id_field?: string }>({}) },
    {
      weight: 1,
      arbitrary: fc.record(
        {
          format: fc.constantFrom('auto', 'json', 'jsonl'),
          items_path: fc.oneof(fc.constantFrom('', '/', '.', '$', '/a/b', 'a.b', '/0', '0', '/a/~1', '$.a.b', 'constructor', '__proto__', '/__proto__'), fc.string({ maxLength: 5 })),
          id_field: fc.oneof(fc.constantFrom('id', 'id', 'a', 'toString', '__proto__', 'constructor'), fc.string({ minLength: 1, maxLength: 4 })),
          limit: fc.integer({ min: 1, max: 5 }),
          max_file_bytes: fc.integer({ min: 1, max: 2000 }),
        },
        { requiredKeys: [] },
      ),
    },
  );

  it('give items or an AbpError that names the field, the line or the position', async () => {
    await fc.assert(
      fc.asyncProperty(bytes, settings, fc.constantFrom('.json', '.jsonl', '.ndjson', '.txt'), async (content, cfg, ext) => {
        const path = file(ext, content);
        const result = await outcome(jsonEnumerator, { file_path: path, ...cfg });
        if (result instanceof AbpError) return expectClearRefusal(result, path, 'json');
        expectStorable(result.items, '_index');
        if (cfg.limit !== undefined) expect(result.items.length).toBeLessThanOrEqual(cfg.limit);
        const idField = cfg.id_field;
        for (const item of idField === undefined ? [] : result.items) {
          expect(Object.hasOwn(item, idField!)).toBe(true);
          if (idField !== '_index' && idField !== '_id') expect(item._id).toBe(item[idField!]);
        }
      }),
      fuzz(300),
    );
  });

  it('deeply nested documents are refused or read, never a stack overflow', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 200_000 }), fc.boolean(), fc.constantFrom('.json', '.jsonl'), async (depth, closed, ext) => {
        const path = file(ext, `[${'['.repeat(depth)}${closed ? ']'.repeat(depth) : ''}]`);
        const result = await outcome(jsonEnumerator, { file_path: path });
        if (result instanceof AbpError) return expectClearRefusal(result, path, 'json');
        expectStorable(result.items, '_index');
      }),
      fuzz(10),
    );
  });
});

// ---- round trips ---------------------------------------------------------------

/** Cell text that a file can hold (no lone surrogates): including the delimiters, quotes and line breaks that need quoting. */
const cell = fc
  .array(fc.oneof(fc.constantFrom(',', ';', '|', '\t', '"', "'", '""', '\n', '\r\n', '\r', ' ', '#', '\\', 'é', '\u2028', '👩‍👩‍👧', ''), fc.string({ unit: 'binary', maxLength: 5 })), {
    maxLength: 6,
  })
  .map((p) => p.join(''));

const csvCase = fc
  .record({
    header: fc.uniqueArray(
      fc.oneof(fc.constantFrom('id', 'name', 'a b', 'é', '__proto__', 'constructor'), cell).filter((h) => h !== '_row_index' && h !== '_id' && h.trim() !== '' && !h.startsWith('\uFEFF')),
      { minLength: 1, maxLength: 5 },
    ),
    rowCount: fc.integer({ min: 0, max: 6 }),
    delimiter: fc.constantFrom(',', ';', '\t', '|', '||', '::'),
    quote: fc.constantFrom('"', "'"),
    newline: fc.constantFrom('\n', '\r\n'),
    encoding: fc.constantFrom('utf-8', 'utf-16le', 'latin1'),
    bom: fc.boolean(),
    trailingNewline: fc.boolean(),
    inlineHeader: fc.boolean(),
    idColumn: fc.option(fc.nat(), { nil: undefined }),
  })
  .chain((c) =>
    fc.record({ c: fc.constant(c), rows: fc.array(fc.array(cell, { minLength: c.header.length, maxLength: c.header.length }), { minLength: c.rowCount, maxLength: c.rowCount }) }),
  )
  .map(({ c, rows }) => {
    // latin1 holds only U+0000-U+00FF: keep what it can carry.
    const fit = (s: string) => (c.encoding === 'latin1' ? s.replace(/[^\u0000-\u00ff]/gu, '') : s);
    const header = [...new Set(c.header.map(fit))].filter((h) => h.trim() !== '' && h !== '_row_index' && h !== '_id');
    return { ...c, header, rows: rows.map((r) => header.map((_, k) => fit(r[k] ?? ''))) };
  })
  .filter((c) => c.header.length > 0);

function writeCsv(c: { header: string[]; rows: string[][]; delimiter: string; quote: string; newline: string; inlineHeader: boolean; trailingNewline: boolean }): string {
  // Every field quoted, quotes doubled: what a spreadsheet writes.
  const line = (fields: string[]) => fields.map((f) => `${c.quote}${f.split(c.quote).join(c.quote + c.quote)}${c.quote}`).join(c.delimiter);
  const lines = [...(c.inlineHeader ? [line(c.header)] : []), ...c.rows.map(line)];
  return lines.join(c.newline) + (c.trailingNewline ? c.newline : '');
}

describe('csv enumerator: a well-formed file reads back as exactly its rows', () => {
  it('any header, cells with delimiters, quotes and line breaks, three encodings, with or without a BOM', async () => {
    await fc.assert(
      fc.asyncProperty(csvCase, async (c) => {
        const body = writeCsv(c);
        // csv-parse 7.0.3 looks for a BOM only once it has 3 bytes, so a UTF-16LE file holding
        // nothing but its 2-byte BOM reads as one row "\uFEFF" (upstream; left alone, see the report).
        fc.pre(!(c.bom && c.encoding === 'utf-16le' && body === ''));
        const text = (c.bom && c.encoding !== 'latin1' ? '\uFEFF' : '') + body;
        const path = file('.csv', c.encoding === 'utf-16le' ? Buffer.from(text, 'utf16le') : Buffer.from(text, c.encoding === 'latin1' ? 'latin1' : 'utf8'));
        const idColumn = c.idColumn === undefined ? undefined : c.header[c.idColumn % c.header.length];
        const result = await outcome(csvEnumerator, {
          file_path: path,
          delimiter: c.delimiter,
          quote: c.quote,
          escape: c.quote,
          encoding: c.encoding,
          ...(c.inlineHeader ? {} : { has_header: false, columns: c.header }),
          ...(idColumn === undefined ? {} : { id_column: idColumn }),
        });
        if (result instanceof AbpError) throw new Error(`a well-formed file was refused: ${result.message}`);
        const expected = c.rows.map((r, k) => ({
          ...Object.fromEntries(c.header.map((h, j) => [h, r[j]])),
          _row_index: k + 1,
          _id: idColumn === undefined ? k + 1 : r[c.header.indexOf(idColumn)],
        }));
        expect(result.items).toEqual(expected);
        expect(result.items.map((i) => Object.keys(i))).toEqual(expected.map((e) => Object.keys(e)));
      }),
      fuzz(200),
    );
  });
});

describe('json enumerator: a well-formed file reads back as exactly its values', () => {
  const value = fc.jsonValue({ maxDepth: 3 });
  const segment = fc.oneof(fc.constantFrom('data', 'items', 'a/b', 'a~b', '~1', 'é', '__proto__'), fc.string({ maxLength: 5 }));

  /** What an item looks like: objects keep their fields, anything else becomes {value}; then _index and _id. */
  const itemOf = (v: unknown, k: number, idField?: string) => ({
    ...(v !== null && typeof v === 'object' && !Array.isArray(v) ? v : { value: v }),
    _index: k,
    _id: idField === undefined ? k : (v as Record<string, string | number>)[idField],
  });

  it('a JSON array, at the root or under a JSON Pointer, in any layout', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(value, { maxLength: 8 }), fc.array(segment, { maxLength: 3 }), fc.constantFrom(0, 2, '\t'), fc.boolean(), async (values, segments, indent, bom) => {
        const items = JSON.parse(JSON.stringify(values)) as unknown[];
        const root = segments.reduceRight<unknown>((inner, key) => JSON.parse(`{${JSON.stringify(key)}:${JSON.stringify(inner)}}`), items);
        const path = file('.json', (bom ? '\uFEFF' : '') + JSON.stringify(root, null, indent));
        const pointer = segments.map((s) => `/${s.replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');
        // By RFC 6901 "/" is the key "" of the root; the enumerator reads it as the root itself, on purpose.
        fc.pre(pointer !== '/');
        const result = await outcome(jsonEnumerator, { file_path: path, ...(segments.length ? { items_path: pointer } : {}) });
        if (result instanceof AbpError) throw new Error(`a well-formed file was refused: ${result.message}`);
        expect(result.items).toEqual(items.map((v, k) => itemOf(v, k)));
      }),
      fuzz(200),
    );
  });

  it('JSON Lines with blank lines and CRLF, and an id_field', async () => {
    const record = fc.record({ id: fc.oneof(fc.string(), fc.integer()), body: value }).map((r) => JSON.parse(JSON.stringify(r)) as Record<string, unknown>);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(value, record), { maxLength: 8 }), fc.constantFrom('\n', '\r\n'), fc.array(fc.nat(8), { maxLength: 3 }), async (values, newline, blanks, ) => {
        const items = JSON.parse(JSON.stringify(values)) as unknown[];
        const lines = items.map((v) => JSON.stringify(v));
        for (const at of blanks) lines.splice(Math.min(at, lines.length), 0, '  ');
        const path = file('.jsonl', lines.join(newline) + newline);
        const withIds = items.length > 0 && items.every((v) => v !== null && typeof v === 'object' && !Array.isArray(v) && ['string', 'number'].includes(typeof (v as { id?: unknown }).id));
        const result = await outcome(jsonEnumerator, { file_path: path, ...(withIds ? { id_field: 'id' } : {}) });
        if (result instanceof AbpError) throw new Error(`a well-formed file was refused: ${result.message}`);
        expect(result.items).toEqual(items.map((v, k) => itemOf(v, k, withIds ? 'id' : undefined)));
      }),
      fuzz(200),
    );
  });
});
