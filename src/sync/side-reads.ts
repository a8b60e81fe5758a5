import { createHash } from 'node:crypto';
import type { Checkpoint, Provider, SideRead, Snapshot } from '../contracts/provider.js';
import type { SyncPair } from '../domain/sync-pair.js';
import type { CheckpointRow, SyncStore } from '../store/sync-store.js';
import { OverlaySnapshot } from './overlay-snapshot.js';
import { emptyState, SIDES, type PairState, type Side } from './pair-state.js';
import type { PlanScope } from './planner.js';

/**
 * Reading both sides of a pair for a plan, each against its checkpoint, and the
 * baselines the plan needs. A side with a usable checkpoint is read as a delta
 * (OverlaySnapshot); when both are, only the keys they name are planned and only
 * their baselines are read (the rest is at rest: see PlanScope). Whatever the
 * path, each side's snapshot is the inventory a full read would show, within the
 * limits of its provider's checkpoint, so the guardrails judge the same thing.
 */

/** How one side was read, for the plan's view: `checkpoint (unchanged)`, `full snapshot (no checkpoint)`. */
export interface SideReport {
  read: 'full' | 'checkpoint';
  text: string;
}

export interface PairReads {
  source: Snapshot;
  /** Null when the target is down. */
  target: Snapshot | null;
  state: PairState;
  scope?: PlanScope;
  reports: { source: SideReport; target: SideReport | null };
  /** What the reads saw, for a real run to stage (built on demand: a dry run keeps none): its commit keeps them only if the run leaves the pair at rest. */
  checkpoints: () => CheckpointRow[];
}

/** A checkpoint belongs to one side's provider config (chunk sizes aside) and the pair's mode. */
export function fingerprintOf(pair: SyncPair, side: Side): string {
  const { apply_chunk_size: _ignored, ...where } = pair[side];
  return createHash('sha256').update(JSON.stringify({ where, mode: pair.mode, transform: pair.transform !== undefined })).digest('hex').slice(0, 24);
}

/** Runs one read per side at once; the first to fail stops the other. */
export async function bothAtOnce<T>(source: (s: AbortSignal) => Promise<T>, target: ((s: AbortSignal) => Promise<T>) | null, signal: AbortSignal): Promise<{ source: T; target: T | null }> {
  const both = new AbortController();
  const stop = () => both.abort(signal.reason);
  if (signal.aborted) stop();
  else signal.addEventListener('abort', stop, { once: true });
  const take = async (read: (s: AbortSignal) => Promise<T>): Promise<T> => {
    try {
      return await read(both.signal);
    } catch (err) {
      both.abort('the other side failed');
      throw err;
    }
  };
  try {
    const [s, t] = await Promise.all([take(source), target ? take(target) : null]);
    return { source: s, target: t };
  } finally {
    signal.removeEventListener('abort', stop);
  }
}

function report(read: SideRead, why?: string): SideReport {
  if (read.kind === 'full') return { read: 'full', text: `full snapshot (${why ?? read.why})` };
  return { read: 'checkpoint', text: read.note === 'unchanged' ? 'checkpoint (unchanged)' : `checkpoint: ${read.note}` };
}

/** Reads both sides (no target when it is down) and loads the baselines their plan needs. */
export async function readPair(store: SyncStore, pairId: string, pair: SyncPair, providers: { source: Provider; target: Provider | null }, signal: AbortSignal): Promise<PairReads> {
  const saved = new Map<Side, CheckpointRow>();
  for (const row of await store.checkpoints(pairId)) if (row.fingerprint === fingerprintOf(pair, row.side as Side)) saved.set(row.side as Side, row);
  const since = (side: Side): Checkpoint | null => {
    const row = saved.get(side);
    return row ? (JSON.parse(row.data) as Checkpoint) : null;
  };
  const { source: src, target: dst } = providers;
  const first = await bothAtOnce((s) => src.readSince(since('source'), s), dst ? (s) => dst.readSince(since('target'), s) : null, signal);
  const reads: Record<Side, SideRead | null> = { source: first.source, target: first.target };
  const why: Partial<Record<Side, string>> = {};
  const provider = (side: Side) => providers[side] as Provider;
  /** A delta whose count disagrees with what it composes to is not trusted: the side is read whole. */
  const readWhole = async (side: Side, reason: string) => {
    reads[side] = await provider(side).readSince(null, signal);
    why[side] = reason;
  };
  const compose = (state: PairState, side: Side, baseSize: number): Snapshot | null => {
    const read = reads[side];
    if (!read) return null;
    if (read.kind === 'full') return read.snapshot;
    return new OverlaySnapshot(state.baseline, side, read.changed, read.removed, baseSize);
  };
  const mismatch = (side: Side, snap: Snapshot | null): string | null => {
    const read = reads[side];
    return read?.kind === 'delta' && read.items !== null && snap !== null && read.items !== snap.size ? `the side holds ${read.items} items, its checkpoint and baselines ${snap.size}` : null;
  };

  // Both sides as deltas: plan only the keys they name.
  const rs = reads.source;
  const rt = reads.target;
  if (rs?.kind === 'delta' && rt?.kind === 'delta') {
    const touched = new Set<string>();
    for (const r of [rs, rt]) {
      r.changed.forEach((_, key) => touched.add(key));
      for (const key of r.removed) touched.add(key);
    }
    const state = await loadState(store, pairId, [...touched]);
    const sizes = { source: Number(saved.get('source')?.items), target: Number(saved.get('target')?.items) };
    const source = compose(state, 'source', sizes.source) as Snapshot;
    const target = compose(state, 'target', sizes.target) as Snapshot;
    const bad = SIDES.map((side) => [side, mismatch(side, side === 'source' ? source : target)] as const).filter(([, m]) => m !== null);
    if (bad.length === 0) {
      let withBaseline = 0;
      for (const key of touched) if (state.baseline.pair(key)) withBaseline++;
      const scope: PlanScope = { keys: touched, rest: Math.max(sizes.source, sizes.target) - withBaseline, baseline: sizes };
      return { source, target, state, scope, reports: { source: report(rs), target: report(rt) }, checkpoints: () => staged(pair, reads, { source, target }) };
    }
    for (const [side, m] of bad) await readWhole(side, m as string);
  }

  // Otherwise every baseline, and each side from its delta or whole.
  const state = await loadState(store, pairId);
  for (const side of SIDES) {
    const read = reads[side];
    if (read?.kind === 'delta' && state.baseline.size(side) !== Number(saved.get(side)?.items)) await readWhole(side, 'the baselines are not the checkpoint’s');
  }
  const snaps: Record<Side, Snapshot | null> = { source: compose(state, 'source', state.baseline.size('source')), target: compose(state, 'target', state.baseline.size('target')) };
  for (const side of SIDES) {
    const m = mismatch(side, snaps[side]);
    if (m !== null) {
      await readWhole(side, m);
      snaps[side] = compose(state, side, state.baseline.size(side));
    }
  }
  const reports = { source: report(reads.source as SideRead, why.source), target: reads.target ? report(reads.target, why.target) : null };
  return { source: snaps.source as Snapshot, target: snaps.target, state, reports, checkpoints: () => staged(pair, reads, snaps) };
}

function staged(pair: SyncPair, reads: Record<Side, SideRead | null>, snaps: Record<Side, Snapshot | null>): CheckpointRow[] {
  const rows: CheckpointRow[] = [];
  for (const side of SIDES) {
    const read = reads[side];
    const snap = snaps[side];
    if (read?.checkpoint && snap) rows.push({ side, fingerprint: fingerprintOf(pair, side), data: JSON.stringify(read.checkpoint), items: snap.size });
  }
  return rows;
}

/** The pair's state, its baselines streamed from the store: all of them, or those of `keys`. */
export async function loadState(store: SyncStore, pairId: string, keys?: readonly string[]): Promise<PairState> {
  const state = emptyState();
  const raw = await store.loadState(pairId, (b) => state.baseline.set(b.side as Side, b.key, { hash: b.hash, observed: Number(b.observed) === 1 }), keys);
  for (const t of raw.tombstones) state.tombstones.set(t.key, { hash: t.hash, side: t.side as Side, deleted_at: Number(t.deleted_at) });
  for (const i of raw.items) state.items.set(i.key, { failures: i.failures, quarantined_until: i.quarantined_until === null ? null : Number(i.quarantined_until), phantoms: i.phantoms });
  return state;
}
