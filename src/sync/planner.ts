import type { Snapshot, SnapshotEntry } from '../contracts/provider.js';
import type { SyncMode, SyncOptions } from '../domain/sync-pair.js';
import { exceedsDeleteRatio, isQuarantined, isStaleCopy, isSuspect, phantomBlocked, tombstoneLive, type Guard } from './guardrails.js';
import { otherSide, type BaselineEntry, type BaselinePair, type Baselines, type Op, type PairState, type Side } from './pair-state.js';

/**
 * One key's planned change to the pair's state. With `op` it is a write to `side`;
 * without, it records what both sides showed (the new baseline for that key).
 * Either way the baseline changes only when the run has ended, and for a write
 * only if the write was confirmed.
 */
export interface StageRow {
  key: string;
  source_hash: string | null;
  target_hash: string | null;
  op: Op | null;
  side: Side | null;
  /** A re-add of an add that was confirmed but never appeared. */
  phantom: boolean;
}

export interface HeldWrite {
  key: string;
  side: Side;
  op: Op;
  guard: Guard;
}

export interface GuardEvent {
  guard: Guard;
  side?: Side;
  count: number;
  keys: string[];
  [detail: string]: unknown;
}

export interface PlanCounts {
  adds: number;
  updates: number;
  removes: number;
  blocked: number;
  unresolved: number;
  unchanged: number;
  source_items: number;
  target_items: number;
}

export interface Plan {
  first_run: boolean;
  /** Writes and baseline observations, in write order (adds, updates, removes) after the observations. */
  stage: StageRow[];
  blocked: HeldWrite[];
  unresolved: HeldWrite[];
  events: GuardEvent[];
  counts: PlanCounts;
  /**
   * Whether the pair is at rest once every staged write is confirmed as planned: both sides
   * were read, no write is held back, so each side's baseline will be what it showed (or what
   * abp wrote and read back). Only such a run keeps its checkpoints (commit.ts).
   */
  settles: boolean;
}

/**
 * An incremental plan: only `keys` can differ from the pair's baselines; every other key is on
 * both sides as its baselines have it, and at rest (its decision is to observe, and nothing
 * changes). `rest` is how many such keys there are, `baseline` each side's baseline size.
 */
export interface PlanScope {
  keys: Iterable<string>;
  rest: number;
  baseline: Record<Side, number>;
}

export interface PlanInput {
  mode: SyncMode;
  source: Snapshot;
  /** Null when the target is down: the plan is made against its baseline and no write goes out. */
  target: Snapshot | null;
  state: PairState;
  options: SyncOptions;
  /** One-way through a transform: the target differs from the source by design, so changes are read from the source's baseline. */
  transform: boolean;
  now: number;
  /** Plan only these keys (the rest is known to rest); without it, every key of both snapshots and the baselines. */
  scope?: PlanScope;
}

/** What a key without baselines looks up. */
const NO_BASELINE: BaselinePair = Object.freeze({});

type Decision = { op: Op; side: Side; cause?: Side; phantom?: boolean; stale?: boolean } | 'observe' | 'none';

const EVENT_KEYS = 20;

/**
 * Compares both snapshots with the pair's baselines and decides every key's
 * write, then applies the guardrails. Pure: it reads the state and writes
 * nothing, so a dry run and a real run plan the same.
 */
export function plan(input: PlanInput): Plan {
  const { mode, source, state, options, now } = input;
  const targetDown = input.target === null;
  const target: Snapshot = input.target ?? baselineAsSnapshot(state.baseline);
  const base = state.baseline;
  const bsSize = input.scope?.baseline.source ?? base.size('source');
  const btSize = input.scope?.baseline.target ?? base.size('target');
  const firstRun = bsSize === 0 && btSize === 0;

  const decide = mode === 'one-way' ? oneWay : twoWay;
  const suspect: Record<Side, boolean> = {
    source: isSuspect(bsSize, source.size, options),
    target: !targetDown && isSuspect(btSize, target.size, options),
  };

  const writes: (StageRow & { cause?: Side; stale?: boolean })[] = [];
  const stage: StageRow[] = [];
  const blocked: HeldWrite[] = [];
  const unresolved: HeldWrite[] = [];
  const counts: PlanCounts = { adds: 0, updates: 0, removes: 0, blocked: 0, unresolved: 0, unchanged: 0, source_items: source.size, target_items: targetDown ? 0 : target.size };

  // Baseline keys seen while visiting the snapshots: when they account for a whole
  // baseline, no key is left that only the baseline has, and its loop is skipped.
  let seenBs = 0;
  let seenBt = 0;
  let seenT = 0;
  const visit = (key: string, s: SnapshotEntry | undefined, t: SnapshotEntry | undefined) => {
    const b = base.pair(key) ?? NO_BASELINE;
    if (b.source) seenBs++;
    if (b.target) seenBt++;
    const d = decide(key, s, t, b, input, firstRun);
    if (d === 'none') return;
    if (d === 'observe') {
      if (!targetDown) observe(key, s, t, b.source, b.target, stage);
      counts.unchanged++;
      return;
    }
    const row = { key, source_hash: s?.hash ?? null, target_hash: t?.hash ?? null, op: d.op, side: d.side, phantom: d.phantom === true, cause: d.cause, stale: d.stale };
    if (isQuarantined(state.items.get(key), now)) blocked.push({ key, side: d.side, op: d.op, guard: 'quarantine' });
    else if (d.phantom && phantomBlocked(state.items.get(key), options)) blocked.push({ key, side: d.side, op: d.op, guard: 'phantom' });
    else if (targetDown) unresolved.push({ key, side: d.side, op: d.op, guard: 'provider_down' });
    else if (d.op === 'remove' && d.cause && suspect[d.cause] && !options.allow_mass_delete) blocked.push({ key, side: d.side, op: d.op, guard: 'suspect_snapshot' });
    else writes.push(row);
  };
  // Every key once: the source's, then the target's the source lacks (none, when the
  // source's visits met every target key), then keys only a baseline still has.
  // forEach, not for-of: a PackedSnapshot's entries come faster that way than through an iterator.
  if (input.scope) {
    for (const key of input.scope.keys) visit(key, source.get(key), target.get(key));
    counts.unchanged += input.scope.rest;
  } else {
    source.forEach((s, key) => {
      const t = target.get(key);
      if (t) seenT++;
      visit(key, s, t);
    });
    if (seenT < target.size) target.forEach((t, key) => !source.has(key) && visit(key, undefined, t));
    if (seenBs < bsSize || seenBt < btSize) for (const key of base.keys()) if (!source.has(key) && !target.has(key)) visit(key, undefined, undefined);
  }

  // Mass-delete block: per written side, against that side's current size.
  const events: GuardEvent[] = [];
  for (const side of ['source', 'target'] as const) {
    const removes = writes.filter((w) => w.op === 'remove' && w.side === side);
    const items = side === 'source' ? source.size : target.size;
    if (!options.allow_mass_delete && exceedsDeleteRatio(removes.length, items, options.max_delete_ratio)) {
      for (const w of removes) blocked.push({ key: w.key, side, op: 'remove', guard: 'mass_delete' });
      events.push({ guard: 'mass_delete', side, count: removes.length, keys: removes.slice(0, EVENT_KEYS).map((w) => w.key), items, max_delete_ratio: options.max_delete_ratio });
    }
  }
  const massBlocked = new Set(blocked.filter((b) => b.guard === 'mass_delete').map((b) => `${b.side}\0${b.key}`));
  const kept = writes.filter((w) => !(w.op === 'remove' && massBlocked.has(`${w.side}\0${w.key}`)));

  for (const side of ['source', 'target'] as const) {
    if (suspect[side]) {
      const held = blocked.filter((b) => b.guard === 'suspect_snapshot' && b.side === otherSide(side));
      const previous = base.size(side);
      events.push({ guard: 'suspect_snapshot', side, count: held.length, keys: held.slice(0, EVENT_KEYS).map((b) => b.key), previous, current: (side === 'source' ? source : target).size });
    }
  }
  for (const guard of ['quarantine', 'phantom'] as const) {
    const held = blocked.filter((b) => b.guard === guard);
    if (held.length) events.push({ guard, count: held.length, keys: held.slice(0, EVENT_KEYS).map((b) => b.key) });
  }
  const stale = kept.filter((w) => w.stale);
  if (stale.length) events.push({ guard: 'tombstone', count: stale.length, keys: stale.slice(0, EVENT_KEYS).map((w) => w.key) });
  if (targetDown) events.push({ guard: 'provider_down', side: 'target', count: unresolved.length, keys: unresolved.slice(0, EVENT_KEYS).map((u) => u.key) });

  const order: Record<Op, number> = { add: 0, update: 1, remove: 2 };
  kept.sort((a, b) => order[a.op as Op] - order[b.op as Op]);
  for (const w of kept) {
    if (w.op === 'add') counts.adds++;
    else if (w.op === 'update') counts.updates++;
    else counts.removes++;
    stage.push({ key: w.key, source_hash: w.source_hash, target_hash: w.target_hash, op: w.op, side: w.side, phantom: w.phantom });
  }
  counts.blocked = blocked.length;
  counts.unresolved = unresolved.length;
  return { first_run: firstRun, stage, blocked, unresolved, events, counts, settles: !targetDown && blocked.length === 0 && unresolved.length === 0 };
}

/** Whether a baseline already says what a snapshot shows. */
function unchanged(e: SnapshotEntry | undefined, b: BaselineEntry | undefined): boolean {
  return e === undefined ? b === undefined : b !== undefined && b.observed && b.hash === e.hash;
}

/** Records a key both sides agree on (or both lost) when that changes the baseline. */
function observe(key: string, s: SnapshotEntry | undefined, t: SnapshotEntry | undefined, bs: BaselineEntry | undefined, bt: BaselineEntry | undefined, stage: StageRow[]): void {
  if (unchanged(s, bs) && unchanged(t, bt)) return;
  stage.push({ key, source_hash: s?.hash ?? null, target_hash: t?.hash ?? null, op: null, side: null, phantom: false });
}

function baselineAsSnapshot(base: Baselines): Snapshot {
  const out = new Map<string, SnapshotEntry>();
  for (const [key, entry] of base.entries('target')) out.set(key, { hash: entry.hash });
  return out;
}

/** One-way: the target follows the source; what only the target has is never removed. */
function oneWay(_key: string, s: SnapshotEntry | undefined, t: SnapshotEntry | undefined, b: BaselinePair, input: PlanInput): Decision {
  const { source: bs, target: bt } = b;
  if (s) {
    if (!t) return bt && !bt.observed ? { op: 'add', side: 'target', phantom: true } : { op: 'add', side: 'target' };
    const changed = input.transform ? !bs || bs.hash !== s.hash : s.hash !== t.hash;
    return changed ? { op: 'update', side: 'target' } : 'observe';
  }
  if (t) return bs ? { op: 'remove', side: 'target', cause: 'source' } : 'observe';
  return bs || bt ? 'observe' : 'none';
}

/**
 * Two-way: a change on one side since the baseline goes to the other; a
 * deletion observed on one side propagates; a first run never deletes; a value
 * conflict goes to the newer updated_at, then to the configured winner.
 */
function twoWay(key: string, s: SnapshotEntry | undefined, t: SnapshotEntry | undefined, b: BaselinePair, input: PlanInput, firstRun: boolean): Decision {
  const { state, options, now } = input;
  const { source: bs, target: bt } = b;
  if (s && t) {
    if (s.hash === t.hash) return 'observe';
    const changedS = !bs || bs.hash !== s.hash;
    const changedT = !bt || bt.hash !== t.hash;
    if (!firstRun && changedS && !changedT) return { op: 'update', side: 'target' };
    if (!firstRun && changedT && !changedS) return { op: 'update', side: 'source' };
    return { op: 'update', side: conflictWinner(s, t, options.conflict_winner) === 'source' ? 'target' : 'source' };
  }
  if (!s && !t) return bs || bt ? 'observe' : 'none';
  const [here, present, baseHere, baseThere]: [Side, SnapshotEntry, BaselineEntry | undefined, BaselineEntry | undefined] = s
    ? ['source', s, bs, bt]
    : ['target', t as SnapshotEntry, bt, bs];
  const there = otherSide(here);
  if (firstRun) return { op: 'add', side: there };
  if (baseThere) {
    // The other side had it at the last run. Never shown there: a phantom add, not a deletion.
    if (!baseThere.observed) return { op: 'add', side: there, phantom: true };
    return { op: 'remove', side: here, cause: there };
  }
  void baseHere;
  const tomb = state.tombstones.get(key);
  if (tombstoneLive(tomb, now, options.tombstone_ttl_days) && isStaleCopy(present, tomb)) {
    return { op: 'remove', side: here, cause: there, stale: true };
  }
  return { op: 'add', side: there };
}

function conflictWinner(s: SnapshotEntry, t: SnapshotEntry, fallback: Side): Side {
  if (s.updated_at !== undefined && t.updated_at !== undefined && s.updated_at !== t.updated_at) {
    return s.updated_at > t.updated_at ? 'source' : 'target';
  }
  return fallback;
}
