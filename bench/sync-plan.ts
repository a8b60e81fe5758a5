/**
 * One measured sync plan, in its own process so that peak RSS belongs to it alone:
 *   node dist/bench/sync-plan.js SOURCE_JSONL TARGET_JSONL one-way|two-way first|steady
 * Snapshots both JSON Lines files with the jsonl provider and plans the pair.
 * `steady` plans against baselines taken from an earlier snapshot of both sides
 * (built before the clock starts), as every run after the first does.
 * Prints {ms, peak_rss_mb, source_items, target_items, counts} as JSON.
 */
import { readFileSync } from 'node:fs';
import type { Snapshot } from '../src/contracts/provider.js';
import { SyncOptions } from '../src/domain/sync-pair.js';
import { emptyState, type PairState } from '../src/sync/pair-state.js';
import { plan } from '../src/sync/planner.js';
import { snapshotBoth } from '../src/sync/sync-jobs.js';
import { openProvider } from '../src/sync/providers/index.js';

function peakRssMb(): number {
  const kb = Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? 0);
  return kb / 1024;
}

const [source, target, mode, kind] = process.argv.slice(2);
if (!source || !target || (mode !== 'one-way' && mode !== 'two-way') || (kind !== 'first' && kind !== 'steady')) {
  process.stderr.write('usage: sync-plan.js SOURCE_JSONL TARGET_JSONL one-way|two-way first|steady\n');
  process.exit(2);
}
const signal = new AbortController().signal;
const src = openProvider({ type: 'jsonl', path: source, id_field: 'id' });
const dst = openProvider({ type: 'jsonl', path: target, id_field: 'id' });
let state: PairState = emptyState();
if (kind === 'steady') {
  // The baselines of the previous run: the target as it was (so the source's changes show).
  let before: Snapshot | undefined = await dst.snapshot(signal);
  state = emptyState();
  for (const [k, e] of before) {
    state.baseline.set('source', k, { hash: e.hash, observed: true });
    state.baseline.set('target', k, { hash: e.hash, observed: true });
  }
  before = undefined;
  void before;
  // The baselines are in; start from a settled heap, as a planning process would.
  (globalThis as { gc?: () => void }).gc?.();
}
const started = performance.now();
// As a sync run takes them: both sides at once.
const { source: s, target: snap } = await snapshotBoth(src, dst, signal);
const t = snap as NonNullable<typeof snap>;
const snapshotMs = performance.now() - started;
const result = plan({ mode, source: s, target: t, state, options: SyncOptions.parse({ allow_mass_delete: true }), transform: false, now: Date.now() });
const ms = performance.now() - started;
process.stdout.write(`${JSON.stringify({ ms, snapshot_ms: snapshotMs, plan_ms: ms - snapshotMs, peak_rss_mb: peakRssMb(), source_items: s.size, target_items: t.size, counts: result.counts })}\n`);
