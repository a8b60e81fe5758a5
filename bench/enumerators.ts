/**
 * Enumerating 1,000,000 CSV rows and 1,000,000 JSONL lines into a job, through the
 * Orchestrator (createApp, a temp ABP_HOME), with time and peak RSS. Each run is
 * its own process, so its VmHWM is its alone:
 *   node dist/bench/enumerators.js            → runs both, prints the rows
 *   node dist/bench/enumerators.js --child csv|json FILE HOME   (one measured run)
 * Memory must stay flat: well under 300 MB however big the input.
 */
import { execFileSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApp } from '../src/app.js';
import { resolveConfig } from '../src/config.js';
import { median, spread, type BenchRow } from './table.js';

const ROWS = Number(process.env.ABP_BENCH_ROWS ?? 1_000_000);
const RSS_TARGET_MB = 300;
const RUNS = Number(process.env.ABP_BENCH_RUNS ?? 3);

function peakRssMb(): number {
  const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);
  return kb / 1024;
}

async function writeLines(path: string, header: string | null, line: (i: number) => string): Promise<void> {
  const out = createWriteStream(path);
  if (header !== null) out.write(`${header}\n`);
  for (let i = 1; i <= ROWS; i++) {
    if (!out.write(`${line(i)}\n`)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

async function child(kind: 'csv' | 'json', file: string, home: string): Promise<void> {
  const app = await createApp(resolveConfig({ ABP_HOME: home, ABP_DB: join(home, 'abp.db') }));
  const started = performance.now();
  const job = await app.orchestrator.createJob({
    name: `bench ${kind}`,
    user_intent: 'bench',
    enumerator_type: kind,
    enumerator_config: kind === 'csv' ? { file_path: file, id_column: 'id' } : { file_path: file, id_field: 'id' },
    worker_type: 'shell',
    worker_config: { command: 'true' },
  });
  const ms = performance.now() - started;
  await app.close();
  process.stdout.write(`${JSON.stringify({ ms, peak_rss_mb: peakRssMb(), units: job.total })}\n`);
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
        const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', kind, file, home], { encoding: 'utf8', maxBuffer: 1 << 20 });
        const r = JSON.parse(out.trim().split('\n').at(-1) as string) as { ms: number; peak_rss_mb: number; units: number };
        if (r.units !== ROWS) throw new Error(`${kind}: expected ${ROWS} units, got ${r.units}`);
        runs.push(r);
        rmSync(home, { recursive: true, force: true });
      }
      const rss = runs.map((r) => r.peak_rss_mb);
      rows.push({
        what: `enumerate ${ROWS.toLocaleString('en')} ${kind === 'csv' ? 'CSV rows' : 'JSONL lines'} into a job`,
        measure: 'time and peak RSS of one createJob (own process each run)',
        figure: `${spread(runs.map((r) => r.ms / 1000), 1, ' s')}, peak RSS ${spread(rss, 0, ' MB')}`,
        anchor: `${RSS_TARGET_MB} MB RSS ceiling`,
        ratio: median(rss) / RSS_TARGET_MB,
        ratio_note: 'peak RSS ÷ the 300 MB ceiling (must stay well under 1)',
        target: `< ${RSS_TARGET_MB} MB`,
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
    await child(kind, file, home);
  } else {
    for (const row of await run()) process.stdout.write(`${JSON.stringify(row)}\n`);
  }
}
