import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { claimStem } from '../../src/sinks/dir.js';
import { columnName } from '../../src/sinks/table.js';
import { csvCell, csvHeader, csvRow, fieldKey, fields, flatten } from '../../src/wire/exports.js';

/*
 * The names the sinks and the CSV export derive from data: a file per item, a
 * column per structured-output field, a CSV header per field. Each must be the
 * same on every run and never the same for two distinct inputs.
 */

/** Ids as hostile data makes them: separators, dots, case, unicode, lengths past a file name's limit. */
const hostileId = fc.oneof(
  fc.string({ unit: fc.constantFrom('a', 'A', 'b', '.', '/', '\\', ' ', '_', '-', '~', 'é', '日', '\0', '\n'), maxLength: 12 }),
  fc.constantFrom('x', 'x.unit-3', 'a.txt/b', 'a', 'a.TXT/b', '..', '.', '../../etc/passwd', '/abs', 'sub/pwned', 'a b', 'a_b', 'A', 'CON', '日本/語'),
  fc.nat({ max: 400 }).map((n) => 'L'.repeat(200 + n)),
  fc.array(fc.constantFrom('d', 'dd', 'd'.repeat(250), '..', ''), { maxLength: 60 }).map((parts) => parts.join('/')),
);

function stemsOf(ids: string[]): string[] {
  const taken = new Set<string>();
  return ids.map((id, i) => claimStem(id, i + 1, taken));
}

describe('dir sink: file names from item ids', () => {
  it('keeps a safe id as it is, and gives every other id a readable name ending in its hash', () => {
    expect(stemsOf(['a1', 'b/2', 'c-3.d_e'])).toEqual(['a1', 'b/2', 'c-3.d_e']);
    const [plain, spaced, underscored] = stemsOf(['a_b', 'a b', 'a  b']);
    expect(plain).toBe('a_b');
    expect(spaced).toMatch(/^a_b~[0-9a-f]{16}$/);
    expect(underscored).toMatch(/^a_b~[0-9a-f]{16}$/);
    expect(spaced).not.toBe(underscored);
    // The same id gets the same name on every run (in a fresh set of taken names).
    expect(stemsOf(['a b'])[0]).toBe(spaced);
  });

  it('a duplicate and a look-alike never share a file: x.unit-3, x, x are three names', () => {
    const stems = stemsOf(['x.unit-3', 'x', 'x']);
    expect(stems[0]).toBe('x.unit-3');
    expect(stems[1]).toBe('x');
    expect(stems[2]).toMatch(/^x~[0-9a-f]{16}$/);
    expect(new Set(stems).size).toBe(3);
    // A third unit of the same item adds its unit id.
    const taken = new Set<string>();
    expect([claimStem('x', 1, taken), claimStem('x', 2, taken), claimStem('x', 3, taken)]).toEqual(['x', expect.stringMatching(/^x~[0-9a-f]{16}$/), expect.stringMatching(/^x~[0-9a-f]{16}-u3$/)]);
  });

  it('one item’s file is never another’s folder: a and a.txt/b', () => {
    const [a, ab] = stemsOf(['a', 'a.txt/b']);
    expect(a).toBe('a');
    expect(ab).toMatch(/^a\.txt~[0-9a-f]{16}\/b~[0-9a-f]{16}$/);
  });

  it('names that differ only in case stay apart, for case-insensitive file systems', () => {
    const [upper, lower] = stemsOf(['Report', 'report']);
    expect(upper).toBe('Report');
    expect(lower).toMatch(/^report~[0-9a-f]{16}$/);
  });

  it('a 300-character id and a very deep id are shortened, not refused', () => {
    const long = 'L'.repeat(300);
    const [stem] = stemsOf([long]);
    expect(Buffer.byteLength(stem!)).toBeLessThanOrEqual(200);
    expect(stem).toMatch(/^L+~[0-9a-f]{16}$/);
    const deep = Array.from({ length: 200 }, () => 'dddddddd').join('/');
    const [flat] = stemsOf([deep]);
    expect(flat).not.toContain('/');
    expect(flat).toMatch(/^d[d_]+~[0-9a-f]{16}$/);
  });

  it('property: names are distinct (case-folded), safe, short enough, and no file is another name’s folder', () => {
    fc.assert(
      fc.property(fc.array(hostileId, { maxLength: 40 }), (ids) => {
        const stems = stemsOf(ids);
        expect(new Set(stems.map((s) => s.toLowerCase())).size).toBe(stems.length);
        const folders = new Set<string>();
        for (const stem of stems) {
          expect(Buffer.byteLength(stem)).toBeLessThanOrEqual(1024);
          const parts = stem.split('/');
          for (const part of parts) {
            expect(part).toMatch(/^[A-Za-z0-9_-][A-Za-z0-9._~-]*$/);
            expect(Buffer.byteLength(part)).toBeLessThanOrEqual(200);
          }
          for (let i = 1; i < parts.length; i++) folders.add(parts.slice(0, i).join('/').toLowerCase());
        }
        for (const stem of stems) for (const ext of ['json', 'txt']) expect(folders.has(`${stem}.${ext}`.toLowerCase())).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});

/** Field paths as agent output makes them: dots inside keys, case, empty keys, backslashes, long names. */
const segment = fc.oneof(
  fc.string({ unit: fc.constantFrom('a', 'B', 'b', '.', '_', '\\', ' ', '1', 'é', '_'), maxLength: 6 }),
  fc.constantFrom('score', 'Score', 'status', 'output_status', 'structured_output', 'value', '__proto__', 'constructor', 'a__b', 'x'.repeat(70)),
);
const fieldPath = fc.array(segment, { maxLength: 4 });

describe('structured-output fields: keys, CSV headers and table columns', () => {
  it('two distinct fields never share a key: {"a.b"} and {"a": {"b"}}', () => {
    const flat = flatten({ Score: 1, score: 2, 'a.b': 3, a: { b: 4 }, '': 5, 'c\\': { d: 6 }, c: { '\\d': 7 } });
    expect(flat).toEqual({ Score: 1, score: 2, 'a\\.b': 3, 'a.b': 4, '\\e': 5, 'c\\\\.d': 6, 'c.\\\\d': 7 });
    expect(Object.keys(flat)).toHaveLength(7);
  });

  it('a field named __proto__ is a field like any other', () => {
    const flat = flatten(JSON.parse('{"__proto__": [1, 2], "constructor": "c"}'));
    expect(Object.keys(flat).sort()).toEqual(['__proto__', 'constructor']);
    expect(flat['__proto__']).toEqual([1, 2]);
  });

  it('CSV headers: output.KEY, and structured_output for an output that is not an object', () => {
    expect(csvHeader(fieldKey(['a', 'b']))).toBe('output.a.b');
    expect(csvHeader(fieldKey(['a.b']))).toBe('output.a\\.b');
    expect(csvHeader(fieldKey([]))).toBe('structured_output');
  });

  it('columns: plain names stay, others get a hash, and {"Score","score","a.b","a":{"b"}} is four columns', () => {
    const names = fields({ Score: 1, score: 2, 'a.b': 3, a: { b: 4 } }).map((f) => columnName(f.path));
    expect(names[1]).toBe('score');
    expect(names[3]).toBe('a__b');
    expect(names[0]).toMatch(/^score___[0-9a-f]{10}$/);
    expect(names[2]).toMatch(/^a_b___[0-9a-f]{10}$/);
    expect(new Set(names).size).toBe(4);
    expect(columnName(['status'])).toBe('output_status');
    expect(columnName(['output_status'])).toMatch(/^output_status___[0-9a-f]{10}$/);
    expect(columnName([])).toBe('structured_output');
    expect(columnName(['structured_output'])).toMatch(/^structured_output___[0-9a-f]{10}$/);
    expect(columnName(['shape', 'upper'])).toBe('shape__upper');
    // Past PostgreSQL's 63 bytes: two names that share their first 63 characters stay apart.
    const a = columnName([`${'x'.repeat(70)}_a`]);
    const b = columnName([`${'x'.repeat(70)}_b`]);
    expect(a).not.toBe(b);
    expect(a.length).toBeLessThanOrEqual(63);
  });

  it('property: distinct paths give distinct keys and distinct columns, every column a valid identifier of at most 63 bytes', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fieldPath, { maxLength: 30, selector: (p) => JSON.stringify(p) }), (paths) => {
        const keys = paths.map(fieldKey);
        expect(new Set(keys).size).toBe(paths.length);
        const columns = paths.map(columnName);
        expect(new Set(columns).size).toBe(paths.length);
        for (const c of columns) {
          expect(c).toMatch(/^[a-z_][a-z0-9_]*$/);
          expect(Buffer.byteLength(c)).toBeLessThanOrEqual(63);
          expect(['unit_id', 'job_id', 'item_id', 'status', 'attempt', 'output', 'error', 'cost_usd']).not.toContain(c);
        }
        const headers = keys.map(csvHeader);
        expect(new Set(headers).size).toBe(paths.length);
        for (const h of headers) expect(['unit_id', 'item_id', 'status', 'attempt', 'output', 'error', 'cost_usd', 'duration_ms', 'payload']).not.toContain(h);
      }),
      { numRuns: 500 },
    );
  });
});
