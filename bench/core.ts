import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { PACKAGE_ROOT } from '../src/package-root.js';
import { timeInProcessJob } from './in-process.js';
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

const ECHO = join(PACKAGE_ROOT, 'test', 'fixtures', 'functions', 'echo-thread.mjs');

/** Units per second, start → COMPLETED, of near no-op function units through one in-process executor on SQLite. */
async function abpFunctionRate(units: number, slots: number): Promise<number> {
  const ms = await timeInProcessJob(units, slots, { name: 'in-process dispatch', user_intent: 'nothing', worker_type: 'function', worker_config: { module: ECHO } });
  return units / (ms / 1000);
}

/** The same tasks straight through a piscina pool on the same module, with as many in flight: no abp at all. */
async function piscinaRate(units: number, slots: number): Promise<number> {
  const pool = new Piscina({ filename: ECHO, minThreads: 0, maxThreads: availableParallelism(), idleTimeout: 30_000 });
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < units) {
      const k = ++next;
      await pool.run({ item: { id: String(k), text: 't' }, prompt: '', unit_id: k, job_id: 1, attempt: 1, work_dir: tmpdir() });
    }
  };
  await Promise.all(Array.from({ length: slots }, lane));
  const seconds = (performance.now() - started) / 1000;
  await pool.destroy();
  return units / seconds;
}

/** In-process dispatch: claim, run on a thread, record the outcome (fenced), against piscina alone. */
export async function inProcessDispatch(units = 20_000, slots = 256): Promise<BenchRow> {
  const abp: number[] = [];
  const bare: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    abp.push(await abpFunctionRate(units, slots));
    bare.push(await piscinaRate(units, slots));
  }
  return {
    what: `in-process dispatch, ${units.toLocaleString('en')} no-op function units`,
    measure: `units/s start → COMPLETED, one executor, SQLite, ${slots} slots, piscina threads = cores`,
    figure: spread(abp, 0, ' units/s'),
    anchor: `the same tasks through piscina alone, ${slots} in flight: ${spread(bare, 0, ' tasks/s')}`,
    ratio: median(abp) / median(bare),
    ratio_note: 'abp ÷ piscina alone',
    target: '≥ 16,000 units/s',
    raw: { abp_units_per_s: abp, piscina_tasks_per_s: bare },
  };
}

export async function run(): Promise<BenchRow[]> {
  return [await jobCreation(), await inProcessDispatch()];
}

