/**
 * `npm run bench [SUITE…]`: runs the benchmarks, prints the table, writes
 * bench/results.json and refreshes the table in README.md between its bench
 * markers. Naming suites re-measures only those rows; the others keep their
 * last figures (each row says when it was measured).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../src/package-root.js';
import * as core from './core.js';
import * as cost from './cost.js';
import * as enumerators from './enumerators.js';
import * as files from './files.js';
import * as postgres from './postgres.js';
import * as scale from './scale.js';
import * as startup from './startup.js';
import * as status from './status.js';
import * as sync from './sync.js';
import * as syncIncremental from './sync-incremental.js';
import * as workers from './workers.js';
import type { BenchRow } from './table.js';

const suites: { name: string; run: () => Promise<BenchRow[]> }[] = [
  { name: 'core', run: core.run },
  { name: 'enumerators', run: enumerators.run },
  { name: 'status', run: status.run },
  { name: 'startup', run: startup.run },
  { name: 'workers', run: workers.run },
  { name: 'sync', run: sync.run },
  { name: 'sync-incremental', run: syncIncremental.run },
  { name: 'postgres', run: postgres.run },
  { name: 'cost', run: cost.run },
  { name: 'files', run: files.run },
  { name: 'scale', run: scale.run },
];

type Stored = BenchRow & { suite: string; measured: string };

function markdown(rows: Stored[]): string {
  const lines = ['| what | measure | figure (median, min–max) | anchor, same run | ratio | target |', '|---|---|---|---|---|---|'];
  for (const r of rows) {
    const ratio = r.ratio === null ? r.ratio_note : `**${r.ratio.toFixed(2)}×** — ${r.ratio_note}`;
    lines.push(`| ${r.what} | ${r.measure} | ${r.figure} | ${r.anchor} | ${ratio} | ${r.target ?? ''} |`);
  }
  return lines.join('\n');
}

const resultsFile = join(PACKAGE_ROOT, 'bench', 'results.json');
const previous: Stored[] = existsSync(resultsFile) ? ((JSON.parse(readFileSync(resultsFile, 'utf8')).rows ?? []) as Stored[]).filter((r) => r.suite) : [];
const only = process.argv.slice(2);
for (const name of only) if (!suites.some((s) => s.name === name)) throw new Error(`bench: unknown suite ${name}; expected ${suites.map((s) => s.name).join(', ')}`);
const machine = `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
const rows: Stored[] = [];
for (const suite of suites) {
  if (only.length && !only.includes(suite.name)) {
    rows.push(...previous.filter((r) => r.suite === suite.name));
    continue;
  }
  process.stderr.write(`bench: ${suite.name}…\n`);
  const measured = new Date().toISOString().slice(0, 10);
  rows.push(...(await suite.run()).map((r) => ({ ...r, suite: suite.name, measured })));
}
const table = markdown(rows);
process.stdout.write(`${table}\n\n${machine}\n`);
writeFileSync(resultsFile, `${JSON.stringify({ machine, rows }, null, 2)}\n`);

const readme = join(PACKAGE_ROOT, 'README.md');
const text = readFileSync(readme, 'utf8');
const start = '<!-- bench:start -->';
const end = '<!-- bench:end -->';
const a = text.indexOf(start);
const b = text.indexOf(end);
if (a >= 0 && b > a) {
  const block = `${start}\n${table}\n\nMeasured on ${machine}; \`bench/results.json\` has every run.\n${end}`;
  writeFileSync(readme, text.slice(0, a) + block + text.slice(b + end.length));
}
