import { isTerminalJob } from '../domain/states.js';
import type { SyncPair } from '../domain/sync-pair.js';
import type { Repository } from '../store/repository.js';
import type { BaselineRow, CheckpointRow, ItemRow, RunCommit, SyncStore, TombstoneRow } from '../store/sync-store.js';
import { parseReport } from './apply-report.js';
import { quarantineUntil } from './guardrails.js';
import { otherSide, type Side } from './pair-state.js';

type KeyOutcome = { status: 'confirmed'; hash: string; read_back?: boolean } | { status: 'skipped' | 'unresolved'; reason: string };

/**
 * When a sync job has ended (completed, failed or cancelled), its confirmed
 * writes and observations become the pair's new baseline, deletions become
 * tombstones, and unresolved items move toward quarantine. Anything not
 * confirmed keeps its old baseline, so the next run plans it again.
 * Idempotent, and safe to race: the store applies a run once.
 */
export async function commitRun(repo: Repository, store: SyncStore, jobId: number, now = Date.now()): Promise<boolean> {
  const run = await store.run(jobId);
  if (!run || run.committed_at !== null) return false;
  const job = await repo.requireJob(jobId);
  if (!isTerminalJob(job.status)) return false;
  const { pair } = JSON.parse(job.worker_config) as { pair: SyncPair };
  const options = pair.options;
  const planned = JSON.parse(run.plan) as { counts?: { blocked?: number; unresolved?: number } };

  const outcomes = new Map<string, KeyOutcome>();
  let transformCalls = 0;
  for await (const unit of repo.iterateUnits(jobId, {})) {
    const report = parseReport(unit.status === 'SUCCEEDED' ? (unit.structured_output ?? unit.output) : unit.output);
    if (!report) continue;
    transformCalls += report.transform_calls ?? 0;
    for (const o of report.outcomes) outcomes.set(`${report.side}\0${o.key}`, o);
  }

  const items = new Map((await store.items(run.pair_id)).map((i) => [i.key, i]));
  const c: RunCommit = { baselineSet: [], baselineDelete: [], tombstoneSet: [], tombstoneDelete: [], items: [], tombstonesBefore: now - options.tombstone_ttl_days * 86_400_000, summary: null, checkpoints: [] };
  const set = (side: Side, key: string, hash: string, observed: boolean) => c.baselineSet.push({ side, key, hash, observed: observed ? 1 : 0 } satisfies BaselineRow);
  const item = (key: string, patch: Partial<ItemRow>) => {
    const prev = items.get(key) ?? { key, failures: 0, quarantined_until: null, phantoms: 0, last_error: null, updated_at: now };
    c.items.push({ ...prev, ...patch, key, updated_at: now });
  };
  const tally = { adds: 0, updates: 0, removes: 0, unresolved: 0, skipped: 0 };
  // The checkpoints the run's reads saw are kept only if every write left the baselines as the
  // sides will show them: confirmed and read back (with the hash copied, unless a transform
  // changed it by design), or a removal done. Then every key is at rest, and each side's baseline
  // is its snapshot less its removes and plus its adds.
  let atRest = run.checkpoints !== null;
  const grew: Record<Side, number> = { source: 0, target: 0 };
  const quarantined: string[] = [];

  for (const row of await store.stage(jobId)) {
    const hashOf = (side: Side) => (side === 'source' ? row.source_hash : row.target_hash);
    if (row.op === null || row.side === null) {
      for (const side of ['source', 'target'] as const) {
        const h = hashOf(side);
        if (h === null) c.baselineDelete.push({ side, key: row.key });
        else set(side, row.key, h, true);
      }
      if ((items.get(row.key)?.phantoms ?? 0) > 0 && row.source_hash !== null && row.target_hash !== null) item(row.key, { phantoms: 0 });
      continue;
    }
    const side = row.side as Side;
    const from = otherSide(side);
    const o = outcomes.get(`${side}\0${row.key}`);
    const gone = o?.status === 'skipped' && row.op === 'remove';
    if (o?.status === 'confirmed' || gone) {
      if (row.op === 'remove') grew[side]--;
      else if (row.op === 'add') grew[side]++;
      if (row.op !== 'remove' && !(o?.status === 'confirmed' && o.read_back === true && (pair.transform !== undefined || o.hash === hashOf(from)))) atRest = false;
      if (row.op === 'remove') {
        tally.removes++;
        c.baselineDelete.push({ side: 'source', key: row.key }, { side: 'target', key: row.key });
        // The deletion was observed when the run planned: a copy modified after that is a re-add.
        c.tombstoneSet.push({ key: row.key, hash: hashOf(side) ?? '', side: from, deleted_at: Number(run.created_at) } satisfies TombstoneRow);
      } else {
        if (row.op === 'add') tally.adds++;
        else tally.updates++;
        const fromHash = hashOf(from);
        if (fromHash !== null) set(from, row.key, fromHash, true);
        // A write abp applied and read back is part of this side's baseline: a later absence is a deletion.
        // An add confirmed without a read-back stays unobserved until a snapshot shows it (the phantom guard).
        const readBack = o?.status === 'confirmed' && o.read_back === true && o.hash !== '';
        set(side, row.key, o?.status === 'confirmed' && o.hash ? o.hash : (fromHash ?? ''), row.op !== 'add' || readBack);
        c.tombstoneDelete.push(row.key);
      }
      const prev = items.get(row.key);
      if (prev || row.phantom) item(row.key, { failures: 0, quarantined_until: null, last_error: null, phantoms: row.phantom ? (prev?.phantoms ?? 0) + 1 : (prev?.phantoms ?? 0) });
    } else if (o?.status === 'unresolved') {
      atRest = false;
      tally.unresolved++;
      const failures = (items.get(row.key)?.failures ?? 0) + 1;
      const until = quarantineUntil(failures, now, options);
      if (until !== null) quarantined.push(row.key);
      item(row.key, { failures, quarantined_until: until, last_error: o.reason.slice(0, 500) });
    } else if (o?.status === 'skipped') {
      atRest = false;
      tally.skipped++;
    } else {
      atRest = false;
      // Never applied (cancelled, or the job failed first): planned again next run.
      tally.unresolved++;
    }
  }
  if (atRest) c.checkpoints = (JSON.parse(run.checkpoints as string) as CheckpointRow[]).map((r) => ({ ...r, items: Number(r.items) + grew[r.side as Side] }));
  const unresolved = tally.unresolved + (planned.counts?.unresolved ?? 0);
  const blocked = planned.counts?.blocked ?? 0;
  c.summary = {
    pair: run.pair_id,
    status: job.status,
    adds: tally.adds,
    updates: tally.updates,
    removes: tally.removes,
    unresolved,
    blocked,
    skipped: tally.skipped,
    transform_calls: transformCalls,
    quarantined,
    text: `+${tally.adds} ~${tally.updates} −${tally.removes} unresolved ${unresolved} blocked ${blocked}`,
  };
  const applied = await store.commitRun(jobId, run.pair_id, c);
  if (applied && quarantined.length) {
    await repo.appendEvent(jobId, 'sync_guard', { guard: 'quarantine', count: quarantined.length, keys: quarantined.slice(0, 20), after_runs: options.quarantine_after });
  }
  return applied;
}
