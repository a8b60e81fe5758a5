import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/cli.js';
import { END, generatedPart, renderTable, START } from './render.js';
import { ROWS, SURFACES } from './rows.js';

const DOC = join(ROOT, 'docs', 'bad-inputs.md');

describe('docs/bad-inputs.md', () => {
  it('holds exactly the table rendered from test/catalogue/rows.ts (npm run catalogue rewrites it)', () => {
    const table = renderTable(ROWS);
    let doc = readFileSync(DOC, 'utf8');
    const current = generatedPart(doc);
    if (process.env.CATALOGUE_WRITE === '1' && current !== undefined) {
      doc = doc.replace(current, () => table); // a function: a `$` in a row is text, not a replacement pattern
      writeFileSync(DOC, doc);
    }
    expect(current, `${DOC} has no ${START} … ${END} section`).toBeDefined();
    expect(generatedPart(doc)).toBe(table);
  });

  it('covers every surface with at least 8 rows, and at least 60 in all', () => {
    expect(ROWS.length).toBeGreaterThanOrEqual(60);
    for (const surface of SURFACES) expect(ROWS.filter((r) => r.surface === surface).length, surface).toBeGreaterThanOrEqual(8);
  });
});
