import type { SnapshotEntry } from '../contracts/provider.js';
import type { SyncOptions } from '../domain/sync-pair.js';
import type { ItemState, Tombstone } from './pair-state.js';

/**
 * The safety rules of a sync run, as small pure functions the planner asks.
 * Each one that acts is reported as a guard event.
 */

export const GUARDS = ['suspect_snapshot', 'mass_delete', 'quarantine', 'phantom', 'tombstone', 'provider_down'] as const;
export type Guard = (typeof GUARDS)[number];

/**
 * A snapshot that shrank sharply is more likely a broken read (an unmounted
 * folder, an expired token returning nothing) than a real mass deletion.
 */
export function isSuspect(previous: number, current: number, o: Pick<SyncOptions, 'suspect_min_prev' | 'suspect_shrink_ratio'>): boolean {
  return previous >= o.suspect_min_prev && previous > 0 && current <= o.suspect_shrink_ratio * previous;
}

/**
 * Whether `removes` deletions from a side holding `items` cross the ratio. The
 * boundary is inclusive: at 0.1, 10 of 100 pass and 11 are blocked. The epsilon
 * keeps 0.1 × 100 = 10 exact in floating point.
 */
export function exceedsDeleteRatio(removes: number, items: number, ratio: number): boolean {
  return removes > 0 && removes > ratio * items + 1e-9;
}

/** Quarantined items are skipped until their cool-down ends. */
export function isQuarantined(state: ItemState | undefined, now: number): boolean {
  return state?.quarantined_until !== null && state?.quarantined_until !== undefined && state.quarantined_until > now;
}

/** After how many failed runs in a row an item is quarantined, and until when. */
export function quarantineUntil(failures: number, now: number, o: Pick<SyncOptions, 'quarantine_after' | 'quarantine_cooldown_hours'>): number | null {
  return failures >= o.quarantine_after ? now + o.quarantine_cooldown_hours * 3_600_000 : null;
}

/** A tombstone is live until its TTL runs out. */
export function tombstoneLive(t: Tombstone | undefined, now: number, ttlDays: number): t is Tombstone {
  return t !== undefined && now - t.deleted_at < ttlDays * 86_400_000;
}

/**
 * A one-sided item that matches a live tombstone (same content, not modified
 * since the deletion) is a stale copy coming back, not a re-add: it stays
 * deleted. A changed or newer item is a re-add, and re-adding wins.
 */
export function isStaleCopy(entry: SnapshotEntry, t: Tombstone): boolean {
  if (entry.hash !== t.hash) return false;
  return entry.updated_at === undefined || entry.updated_at <= t.deleted_at;
}

/** An add confirmed earlier that no snapshot has shown is re-tried this many times, then blocked. */
export function phantomBlocked(state: ItemState | undefined, o: Pick<SyncOptions, 'phantom_max_readds'>): boolean {
  return (state?.phantoms ?? 0) >= o.phantom_max_readds;
}
