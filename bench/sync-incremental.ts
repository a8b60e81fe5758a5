import { execFileSync } from 'node:child_process';
import { copyFileSync, cpSync, createWriteStream, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { openStore } from '../src/app.js';
import { resolveConfig } from '../src/config.js';
import { SyncPair } from '../src/domain/sync-pair.js';
import { SyncJobs } from '../src/sync/sync-jobs.js';
import { median, spread, type BenchRow } from './table.js';

const RERUN = fileURLToPath(new URL('./sync-rerun.js', import.meta.url));
const RUNS = Number(process.env.ABP_BENCH_RUNS ?? 3);
/** An mtime well past the 2 s a checkpoint waits before it trusts one. */
const PAST = new Date(Date.UTC(2024, 0, 1));

interface Measured {
  ms: number;
  peak_rss_mb: number;
  reads: { source: { text: string }; target: { text: string } | null };
  counts: Record<string, number>;
}

function rerun(db: string, pair: unknown, mode: 'checkpoint' | 'full'): Measured {
  return JSON.parse(execFileSync(process.execPath, ['--expose-gc', '--max-old-space-size=4096', RERUN, db, JSON.stringify(pair), mode], { encoding: 'utf8', maxBuffer: 1 << 20 }));
}

/** The first real run of the pair (both sides alike: nothing to write), which commits its baselines and checkpoints. */
async function firstRun(db: string, pair: unknown): Promise<void> {
  const repo = await openStore(resolveConfig({ ABP_HOME: join(db, '..'), ABP_DB: db }));
  try {
    const job = (await new SyncJobs(repo).create({ sync: SyncPair.parse(pair), name: 'bench', user_intent: 'bench', max_retries: 0, max_workers: 1, timeout_seconds: 600 } as never, new AbortController().signal)) as { status: string; units: number };
    if (job.units !== 0 || job.status !== 'COMPLETED') throw new Error(`bench: the first run should have nothing to write (${job.units} units, ${job.status})`);
  } finally {
    await repo.close();
  }
}

/** Alternates full and checkpoint re-runs, so drift on a shared machine touches both alike. */
function measurePair(db: string, pair: unknown): { full: Measured[]; checkpoint: Measured[] } {
  const out = { full: [] as Measured[], checkpoint: [] as Measured[] };
  for (let i = 0; i < RUNS; i++) {
    out.full.push(rerun(db, pair, 'full'));
    out.checkpoint.push(rerun(db, pair, 'checkpoint'));
  }
  return out;
}

const secs = (runs: Measured[]) => runs.map((r) => r.ms / 1000);
const rss = (runs: Measured[]) => runs.map((r) => r.peak_rss_mb);
const readsOf = (r: Measured | undefined) => (r ? `source: ${r.reads.source.text}; target: ${r.reads.target?.text}` : '');

async function writeLines(path: string, n: number): Promise<void> {
  const out = createWriteStream(path);
  for (let i = 0; i < n; i++) {
    if (!out.write(`{"id":${i},"title":"item ${i}","body":"some body text for item ${i}","v":"base"}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

async function jsonlUnchanged(dir: string, items: number): Promise<BenchRow> {
  const source = join(dir, 'source.jsonl');
  const target = join(dir, 'target.jsonl');
  await writeLines(source, items);
  copyFileSync(source, target);
  for (const f of [source, target]) utimesSync(f, PAST, PAST);
  const db = join(dir, 'abp.db');
  const pair = { pair: 'bench-jsonl', source: { type: 'jsonl', path: source }, target: { type: 'jsonl', path: target }, mode: 'two-way' };
  await firstRun(db, pair);
  const m = measurePair(db, pair);
  const n = items.toLocaleString('en');
  return againstFull(`sync re-run plan, unchanged ${n} vs ${n} JSONL pair (checkpoints)`, 'read both sides against their checkpoints + baselines + plan, as abp sync plan', m, '≤ 0.5 s and ≤ 200 MB');
}

/** A row whose anchor is the same re-run from full snapshots. */
function againstFull(what: string, how: string, m: { full: Measured[]; checkpoint: Measured[] }, target: string): BenchRow {
  return {
    what,
    measure: `wall time (${how}) and peak RSS of the planning process; ${readsOf(m.checkpoint[0])}`,
    figure: `${spread(secs(m.checkpoint), 3, ' s')}, peak RSS ${median(rss(m.checkpoint)).toFixed(0)} MB`,
    anchor: `the same re-run from full snapshots: ${spread(secs(m.full), 2, ' s')}, peak RSS ${median(rss(m.full)).toFixed(0)} MB`,
    ratio: median(secs(m.checkpoint)) / median(secs(m.full)),
    ratio_note: 'checkpoint ÷ full snapshot',
    target,
    raw: { checkpoint: m.checkpoint, full: m.full },
  };
}

async function folderChanged(dir: string, files: number, changed: number): Promise<BenchRow> {
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  const per = 1000;
  for (let d = 0; d < files / per; d++) {
    mkdirSync(join(a, `d${d}`), { recursive: true });
    for (let f = 0; f < per; f++) writeFileSync(join(a, `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`);
  }
  cpSync(a, b, { recursive: true });
  for (const root of [a, b]) for (let d = 0; d < files / per; d++) for (let f = 0; f < per; f++) utimesSync(join(root, `d${d}`, `f${f}.txt`), PAST, PAST);
  const db = join(dir, 'abp.db');
  const pair = { pair: 'bench-dir', source: { type: 'dir', path: a }, target: { type: 'dir', path: b } };
  await firstRun(db, pair);
  const later = new Date(PAST.getTime() + 60_000);
  for (let i = 0; i < changed; i++) {
    const file = join(a, `d${i % (files / per)}`, `f${i}.txt`);
    writeFileSync(file, `file changed ${i}\n`);
    utimesSync(file, later, later);
  }
  const m = measurePair(db, pair);
  const find: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    execFileSync('find', [a, b, '-printf', '%s %T@ %p\n'], { stdio: ['ignore', 'ignore', 'inherit'] });
    find.push((performance.now() - t) / 1000);
  }
  const n = files.toLocaleString('en');
  return {
    what: `sync re-run plan, ${n}-file folder pair with ${changed} files changed (checkpoints)`,
    measure: `wall time (as abp sync plan) and peak RSS of the planning process; ${readsOf(m.checkpoint[0])}; full snapshot: ${spread(secs(m.full), 2, ' s')}`,
    figure: `${spread(secs(m.checkpoint), 3, ' s')}, peak RSS ${median(rss(m.checkpoint)).toFixed(0)} MB`,
    anchor: `find -printf '%s %T@ %p\\n' over both trees: ${spread(find, 3, ' s')}`,
    ratio: median(secs(m.checkpoint)) / median(find),
    ratio_note: `checkpoint ÷ find (full snapshot ÷ find: ${(median(secs(m.full)) / median(find)).toFixed(1)}×)`,
    target: '≤ 2× find',
    raw: { checkpoint: m.checkpoint, full: m.full, find_s: find },
  };
}

function sqliteTable(path: string, rows: number): void {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.exec('create table items (id integer primary key, title text not null, body text not null, updated_at integer not null)');
  // A table synced incrementally indexes its updated_at: the checkpoint reads its maximum and the rows at or after it.
  db.exec('create index items_updated_at on items (updated_at)');
  const insert = db.prepare('insert into items values (?, ?, ?, ?)');
  db.transaction(() => {
    for (let i = 1; i <= rows; i++) insert.run(i, `item ${i}`, `some body text for item ${i}`, 1_700_000_000_000 + i);
  })();
  db.close();
}

async function tableUpdated(dir: string, rows: number, updated: number): Promise<BenchRow> {
  const source = join(dir, 'source.db');
  const target = join(dir, 'target.db');
  sqliteTable(source, rows);
  copyFileSync(source, target);
  const db = join(dir, 'abp.db');
  const side = (path: string) => ({ type: 'sqlite', path, table: 'items', updated_at_column: 'updated_at' });
  const pair = { pair: 'bench-sqlite', source: side(source), target: side(target) };
  await firstRun(db, pair);
  const src = new Database(source);
  const every = Math.floor(rows / updated);
  src.prepare('update items set title = title || \' (updated)\', updated_at = ? where id % ? = 0').run(1_800_000_000_000, every);
  src.close();
  const m = measurePair(db, pair);
  const n = rows.toLocaleString('en');
  return againstFull(`sync re-run plan, ${n}-row SQLite table pair with ${updated.toLocaleString('en')} updated rows (checkpoints on an indexed updated_at)`, 'as abp sync plan', m, '≤ 0.5 s');
}

/** Re-runs that checkpoints make cheap, each against a full snapshot of the same pair in the same run. */
export async function run(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  for (const measureOne of [(d: string) => jsonlUnchanged(d, 1_000_000), (d: string) => folderChanged(d, 100_000, 100), (d: string) => tableUpdated(d, 1_000_000, 1000)]) {
    const dir = mkdtempSync(join(tmpdir(), 'abp-bench-incremental-'));
    try {
      rows.push(await measureOne(dir));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return rows;
}
