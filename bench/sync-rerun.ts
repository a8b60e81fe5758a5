/**
 * One measured re-run plan of a sync pair, in its own process so that peak RSS belongs to it alone:
 *   node dist/bench/sync-rerun.js ABP_DB PAIR_JSON checkpoint|full
 * Opens the store (the pair's state was committed by an earlier real run) and plans the pair as
 * `abp sync plan` does: both sides read against their checkpoints, baselines, plan, guardrails.
 * `full` ignores the checkpoints, as every re-run did before them. `ms` leaves module loading out.
 * Prints {ms, peak_rss_mb, reads, counts} as JSON.
 */
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { openStore } from '../src/app.js';
import { resolveConfig } from '../src/config.js';
import { SyncPair } from '../src/domain/sync-pair.js';
import { SyncJobs } from '../src/sync/sync-jobs.js';

function peakRssMb(): number {
  const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);
  return kb / 1024;
}

const [db, pairJson, mode] = process.argv.slice(2);
if (!db || !pairJson || (mode !== 'checkpoint' && mode !== 'full')) {
  process.stderr.write('usage: sync-rerun.js ABP_DB PAIR_JSON checkpoint|full\n');
  process.exit(2);
}
const pair = SyncPair.parse(JSON.parse(pairJson));
const repo = await openStore(resolveConfig({ ABP_HOME: dirname(db), ABP_DB: db }));
const jobs = new SyncJobs(repo);
if (mode === 'full') jobs.store.checkpoints = async () => [];
(globalThis as { gc?: () => void }).gc?.();
const started = performance.now();
const result = await jobs.plan(pair, new AbortController().signal, Date.now(), false);
const ms = performance.now() - started;
process.stdout.write(`${JSON.stringify({ ms, peak_rss_mb: peakRssMb(), reads: result.reads, counts: result.plan.counts })}\n`);
await repo.close();
