import { SURFACES, type Row } from './rows.js';

/** The markers around the generated part of docs/bad-inputs.md. */
export const START = '<!-- catalogue:start (generated from test/catalogue/rows.ts by npm run catalogue; do not edit) -->';
export const END = '<!-- catalogue:end -->';

/** Text as a Markdown code span inside a table cell: long enough backtick fences, pipes escaped. */
function code(text: string): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const bar = '`'.repeat(longest + 1);
  const pad = text.startsWith('`') || text.endsWith('`') ? ' ' : '';
  return `${bar}${pad}${text}${pad}${bar}`.replace(/\|/g, '\\|');
}

/** Prose for a table cell: pipes escaped, so a `|` inside a code span does not end the cell. */
function cell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

/** The rows in the table's order (by surface, in the order of SURFACES), so row n of the table is index n - 1. */
export function tableOrder(rows: readonly Row[]): Row[] {
  return SURFACES.flatMap((s) => rows.filter((r) => r.surface === s));
}

/** One table row per catalogue row, numbered. */
export function renderTable(rows: readonly Row[]): string {
  const sorted = tableOrder(rows);
  const counts = SURFACES.map((s) => `${s} ${rows.filter((r) => r.surface === s).length}`).join(', ');
  return [
    START,
    '',
    `${rows.length} bad inputs: ${counts}.`,
    '',
    '| # | surface | bad input | what the user sees, exactly | signal | what is kept |',
    '|---|---|---|---|---|---|',
    ...sorted.map((r, i) => `| ${i + 1} | ${r.surface} | ${cell(r.input)} | ${code(r.error)} | ${cell(r.signal)} | ${cell(r.kept)} |`),
    '',
    END,
  ].join('\n');
}

/** The generated part of a document: from START to END, both included. */
export function generatedPart(doc: string): string | undefined {
  const from = doc.indexOf(START);
  const to = doc.indexOf(END);
  return from < 0 || to < from ? undefined : doc.slice(from, to + END.length);
}
