import { execFileSync } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, spread, type BenchRow } from './table.js';

const PLAN = fileURLToPath(new URL('./sync-plan.js', import.meta.url));
const RUNS = Number(process.env.ABP_BENCH_RUNS ?? 3);

/** n records; `changed` of them (spread evenly) differ from the base, and the last `missing` are left out. */
async function writeJsonl(path: string, n: number, changed: number, missing: number): Promise<void> {
  const out = createWriteStream(path);
  const every = changed > 0 ? Math.floor(n / changed) : 0;
  for (let i = 0; i < n - missing; i++) {
    const v = every > 0 && i % every === 0 ? 'changed' : 'base';
    const line = `{"id":${i},"title":"item ${i}","body":"some body text for item ${i}","v":"${v}"}\n`;
    if (!out.write(line)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

interface Measured {
  ms: number;
  peak_rss_mb: number;
  counts: Record<string, number>;
}

function measure(args: string[]): Measured {
  return JSON.parse(execFileSync(process.execPath, ['--expose-gc', '--max-old-space-size=4096', PLAN, ...args], { encoding: 'utf8', maxBuffer: 1 << 20 }));
}

/**
 * Planning a pair of 1,000,000 vs 1,000,000 JSON Lines records (1% changed, 0.5%
 * missing on the target): snapshot both sides, compare with the baselines,
 * apply the guardrails. Two shapes: the first run (no baselines) and a steady
 * run (baselines of 1,000,000 per side). Each run is a child process, for its peak RSS.
 */
export async function run(items = 1_000_000): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'abp-bench-sync-'));
  try {
    const source = join(dir, 'source.jsonl');
    const target = join(dir, 'target.jsonl');
    await writeJsonl(source, items, items / 100, 0);
    await writeJsonl(target, items, 0, items / 200);
    const rows: BenchRow[] = [];
    for (const [mode, kind] of [
      ['two-way', 'first'],
      ['two-way', 'steady'],
    ] as const) {
      const runs: Measured[] = [];
      for (let i = 0; i < RUNS; i++) runs.push(measure([source, target, mode, kind]));
      const ms = runs.map((r) => r.ms / 1000);
      const rss = runs.map((r) => r.peak_rss_mb);
      rows.push({
        what: `sync plan, ${items.toLocaleString('en')} vs ${items.toLocaleString('en')} items (${mode}, ${kind === 'first' ? 'first run' : 'with baselines'})`,
        measure: 'wall time (snapshot both JSONL sides + plan + guardrails) and peak RSS of the planning process',
        figure: `${spread(ms, 2, ' s')}, peak RSS ${median(rss).toFixed(0)} MB`,
        anchor: 'targets: < 5 s, < 1 GB',
        ratio: median(ms) / 5,
        ratio_note: 'time ÷ the 5 s target',
        target: '< 5 s and < 1024 MB',
        raw: { seconds: ms, peak_rss_mb: rss, counts: runs[0]?.counts },
      });
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
