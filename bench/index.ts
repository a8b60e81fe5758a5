/**
 * `npm run bench`: runs every benchmark, prints one table, writes bench/results.json
 * and refreshes the table in README.md between its bench markers.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../src/package-root.js';
import * as core from './core.js';
import * as enumerators from './enumerators.js';
import * as workers from './workers.js';
import type { BenchRow } from './table.js';

const suites: { name: string; run: () => Promise<BenchRow[]> }[] = [
  { name: 'core', run: core.run },
  { name: 'enumerators', run: enumerators.run },
  { name: 'workers', run: workers.run },
];

function markdown(rows: BenchRow[]): string {
  const lines = ['| what | measure | figure (median, min–max) | anchor, same run | ratio | target |', '|---|---|---|---|---|---|'];
  for (const r of rows) {
    const ratio = r.ratio === null ? r.ratio_note : `**${r.ratio.toFixed(2)}×** — ${r.ratio_note}`;
    lines.push(`| ${r.what} | ${r.measure} | ${r.figure} | ${r.anchor} | ${ratio} | ${r.target ?? ''} |`);
  }
  return lines.join('\n');
}

const only = process.argv.slice(2);
const rows: BenchRow[] = [];
for (const suite of suites) {
  if (only.length && !only.includes(suite.name)) continue;
  process.stderr.write(`bench: ${suite.name}…\n`);
  rows.push(...(await suite.run()));
}
const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
const table = markdown(rows);
process.stdout.write(`${table}\n\n${machine}\n`);
writeFileSync(join(PACKAGE_ROOT, 'bench', 'results.json'), `${JSON.stringify({ date: new Date().toISOString(), machine, rows }, null, 2)}\n`);

if (only.length === 0) {
  const readme = join(PACKAGE_ROOT, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const start = '<!-- bench:start -->';
  const end = '<!-- bench:end -->';
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a >= 0 && b > a) {
    const block = `${start}\n${table}\n\nMeasured ${new Date().toISOString().slice(0, 10)} on ${machine}.\n${end}`;
    writeFileSync(readme, text.slice(0, a) + block + text.slice(b + end.length));
  }
}
