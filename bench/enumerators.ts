/**
 * Enumerating 1,000,000 CSV rows and 1,000,000 JSONL lines into a job with
 * `abp create`, as a user runs it: a whole process each run (a temp ABP_HOME, a
 * fresh database), with its wall time and its peak RSS (VmHWM, read at exit by the
 * reporter of process-report.ts, preloaded with -r).
 *   node dist/bench/enumerators.js            → runs both, prints the rows
 *   node dist/bench/enumerators.js --child csv|json FILE HOME   (one measured run)
 * Memory must stay flat, and under 120 MB however big the input.
 */
import { execFileSync } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI_ENTRY } from '../src/executor/launcher.js';
import { median, spread, type BenchRow } from './table.js';
import { readReport, writeReporter } from './process-report.js';

const ROWS = Number(process.env.ABP_BENCH_ROWS ?? 1_000_000);
const RSS_CEILING_MB = 300;
const RSS_TARGET_MB = 120;
const RUNS = Number(process.env.ABP_BENCH_RUNS ?? 3);


async function writeLines(path: string, header: string | null, line: (i: number) => string): Promise<void> {
  const out = createWriteStream(path);
  if (header !== null) out.write(`${header}\n`);
  for (let i = 1; i <= ROWS; i++) {
    if (!out.write(`${line(i)}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

/** One `abp create` of FILE into a fresh database under HOME: {ms, peak_rss_mb, units}. */
function child(kind: 'csv' | 'json', file: string, home: string): { ms: number; peak_rss_mb: number; units: number } {
  const rssFile = join(home, 'rss');
  mkdirSync(home, { recursive: true });
  const preload = writeReporter(home);
  const config = kind === 'csv' ? { file_path: file, id_column: 'id' } : { file_path: file, id_field: 'id' };
  const args = ['-r', preload, CLI_ENTRY, 'create', '--name', `bench ${kind}`, '--intent', 'bench', '--enumerator', kind, '--enumerator-config', JSON.stringify(config)];
  const { NODE_EXTRA_CA_CERTS: _ca, ...env } = process.env;
  const started = performance.now();
  const out = execFileSync(process.execPath, [...args, '--worker', 'shell', '-w', 'command=true', '--json'], {
    env: { ...env, ABP_HOME: home, ABP_DB: join(home, 'abp.db'), ABP_BENCH_RSS_FILE: rssFile },
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  const ms = performance.now() - started;
  const units = (JSON.parse(out) as { total: number }).total;
  return { ms, peak_rss_mb: readReport(rssFile).mb, units };
}

export async function run(): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'abp-bench-enum-'));
  try {
    const csv = join(dir, 'rows.csv');
    const jsonl = join(dir, 'rows.jsonl');
    await writeLines(csv, 'id,title,body', (i) => `r${i},"title ${i}","some text, with a comma, for row ${i}"`);
    await writeLines(jsonl, null, (i) => JSON.stringify({ id: `r${i}`, title: `title ${i}`, body: `some text for line ${i}`, n: i }));
    const rows: BenchRow[] = [];
    for (const [kind, file] of [
      ['csv', csv],
      ['json', jsonl],
    ] as const) {
      const runs: { ms: number; peak_rss_mb: number; units: number }[] = [];
      for (let i = 0; i < RUNS; i++) {
        const home = join(dir, `home-${kind}-${i}`);
        const r = child(kind, file, home);
        if (r.units !== ROWS) throw new Error(`${kind}: expected ${ROWS} units, got ${r.units}`);
        runs.push(r);
        rmSync(home, { recursive: true, force: true });
      }
      const rss = runs.map((r) => r.peak_rss_mb);
      rows.push({
        what: `enumerate ${ROWS.toLocaleString('en')} ${kind === 'csv' ? 'CSV rows' : 'JSONL lines'} into a job`,
        measure: 'wall time and peak RSS of `abp create`, the whole process, a fresh database each run',
        figure: `${spread(runs.map((r) => r.ms / 1000), 1, ' s')}, peak RSS ${spread(rss, 0, ' MB')}`,
        anchor: `${RSS_CEILING_MB} MB RSS ceiling`,
        ratio: median(rss) / RSS_CEILING_MB,
        ratio_note: `peak RSS ÷ the ${RSS_CEILING_MB} MB ceiling (must stay well under 1)`,
        target: `≤ ${RSS_TARGET_MB} MB`,
        raw: { runs, rows_per_second: runs.map((r) => Math.round(ROWS / (r.ms / 1000))) },
      });
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [flag, kind, file, home] = process.argv.slice(2);
  if (flag === '--child' && (kind === 'csv' || kind === 'json') && file && home) {
    process.stdout.write(`${JSON.stringify(child(kind, file, home))}\n`);
  } else {
    for (const row of await run()) process.stdout.write(`${JSON.stringify(row)}\n`);
  }
}
