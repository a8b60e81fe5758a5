import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApp } from '../src/app.js';
import { resolveConfig } from '../src/config.js';
import { median, spread, type BenchRow } from './table.js';

const CREATE_JOB = fileURLToPath(new URL('./create-job.js', import.meta.url));
const RUNS = Number(process.env.ABP_BENCH_RUNS ?? 3);

function writeCsv(path: string, rows: number): void {
  const lines = ['id,title,body'];
  for (let i = 1; i <= rows; i++) lines.push(`${i},Title ${i},"Some body text for row ${i}, with a comma"`);
  writeFileSync(path, `${lines.join('\n')}\n`);
}

function measure(mode: 'abp' | 'raw', csv: string, dir: string): { ms: number; peak_rss_mb: number } {
  const db = join(dir, `${mode}-${Math.random().toString(36).slice(2)}.db`);
  const out = execFileSync(process.execPath, [CREATE_JOB, mode, csv, db], { encoding: 'utf8' });
  rmSync(db, { force: true });
  return JSON.parse(out);
}

/** Creating a job of 100,000 CSV rows, against raw better-sqlite3 inserts of the same rows in one transaction. */
export async function jobCreation(rows = 100_000): Promise<BenchRow> {
  const dir = mkdtempSync(join(tmpdir(), 'abp-bench-create-'));
  const csv = join(dir, 'rows.csv');
  writeCsv(csv, rows);
  const abp: number[] = [];
  const raw: number[] = [];
  const rss: number[] = [];
  const rawRss: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    // Alternate, so that drift on a shared machine touches both sides alike.
    const a = measure('abp', csv, dir);
    const r = measure('raw', csv, dir);
    abp.push(a.ms);
    rss.push(a.peak_rss_mb);
    raw.push(r.ms);
    rawRss.push(r.peak_rss_mb);
  }
  rmSync(dir, { recursive: true, force: true });
  const ratios = abp.map((a, i) => a / (raw[i] as number));
  return {
    what: `job creation, ${rows.toLocaleString('en')} CSV rows`,
    measure: 'wall time and peak RSS of the creating process',
    figure: `${spread(abp.map((x) => x / 1000), 2, ' s')}, peak RSS ${median(rss).toFixed(0)} MB`,
    anchor: `raw better-sqlite3, one transaction, same CSV parse: ${spread(raw.map((x) => x / 1000), 2, ' s')}, peak RSS ${median(rawRss).toFixed(0)} MB`,
    ratio: median(ratios),
    ratio_note: `abp ÷ raw (${spread(ratios, 2, '×')})`,
    target: '≤ 1.5×',
    raw: { abp_ms: abp, raw_ms: raw, abp_rss_mb: rss, raw_rss_mb: rawRss },
  };
}

/** Dispatching units of `true` through the shell worker with an in-process executor. */
export async function shellDispatch(units = 2000, concurrency = 8): Promise<BenchRow> {
  const rates: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const home = mkdtempSync(join(tmpdir(), 'abp-bench-dispatch-'));
    mkdirSync(home, { recursive: true });
    const csv = join(home, 'items.csv');
    writeFileSync(csv, ['id', ...Array.from({ length: units }, (_, k) => String(k + 1))].join('\n'));
    const config = resolveConfig({ ABP_HOME: home, ABP_DB: join(home, 'abp.db'), ABP_MAX_WORKERS: String(concurrency), ABP_EXECUTOR_IDLE_SECONDS: '0', ABP_POLL_MS: '20' });
    const app = await createApp(config);
    const job = await app.orchestrator.createJob({
      name: 'dispatch',
      user_intent: 'nothing',
      enumerator_type: 'csv',
      enumerator_config: { file_path: csv },
      worker_type: 'shell',
      worker_config: { command: 'true' },
      max_workers: concurrency,
    });
    const executor = app.createExecutor({ idleExitMs: 0 });
    const running = executor.run();
    const started = performance.now();
    await app.orchestrator.start(job.job_id, { skipTest: true });
    const done = await app.orchestrator.waitUntilSettled(job.job_id, 600_000);
    const seconds = (performance.now() - started) / 1000;
    await executor.stop();
    await running;
    if (done.status !== 'COMPLETED') throw new Error(`dispatch bench: job ended ${done.status}`);
    rates.push(units / seconds);
    await app.close();
    rmSync(home, { recursive: true, force: true });
  }
  return {
    what: `dispatch, ${units.toLocaleString('en')} shell units of \`true\``,
    measure: `units per second at concurrency ${concurrency}, start to COMPLETED`,
    figure: spread(rates, 0, ' units/s'),
    anchor: '—',
    ratio: null,
    ratio_note: 'first cut: no anchor yet',
    raw: { rates },
  };
}

export async function run(): Promise<BenchRow[]> {
  return [await jobCreation(), await shellDispatch()];
}

