import { FAILURE_KINDS, type ConversationEvent, type FailureKind, type TokenUsage, type UnitOutcome } from '../contracts/worker.js';
import { errorMessage } from '../domain/errors.js';

/**
 * Everything a worker hands back is untrusted input: an agent CLI's stream, an
 * API's JSON, a user's function. It is checked here, once, on its way in, so
 * that what reaches the store is only values every store binds (text without
 * NUL, finite numbers in range) and one odd value never fails a commit that
 * other units' outcomes share. What is dropped is said, not silently lost.
 */

/** No API bills more tokens than this for one unit; a larger count is a bug or a lie. */
export const MAX_TOKENS = 1_000_000_000;
/** Nor does one unit cost more than this (USD). */
export const MAX_UNIT_COST_USD = 100_000;
const MAX_SESSION_ID = 256;
const MAX_EVENT_KIND = 64;
const DAY_MS = 86_400_000;

/** Text a store can hold: PostgreSQL refuses NUL in text, so it becomes U+FFFD. */
function text(value: unknown): string {
  const s = typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint' ? String(value) : jsonText(value);
  return s.includes('\u0000') ? s.replaceAll('\u0000', '\uFFFD') : s;
}

/** JSON text of any value; a value JSON cannot hold (a cycle, a BigInt) is described instead. */
function jsonText(value: unknown): string {
  try {
    const s = JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
    return s === undefined ? 'null' : s;
  } catch (err) {
    return JSON.stringify({ unserialisable: errorMessage(err) });
  }
}

/** What checking an outcome found and left out, for the executor's log. */
export interface Checked {
  outcome: UnitOutcome;
  dropped: string[];
}

/** The outcome as the store may take it. */
export function checkedOutcome(raw: unknown): Checked {
  const dropped: string[] = [];
  if (raw === null || typeof raw !== 'object') {
    return { outcome: { status: 'failed', kind: 'retryable', error: `the worker returned ${raw === null ? 'null' : typeof raw}, not an outcome` }, dropped };
  }
  const r = raw as Record<string, unknown>;
  const number = (field: string, min: number, max: number, integer = false): number | undefined => {
    const v = r[field];
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max && (!integer || Number.isInteger(v))) return v;
    dropped.push(`${field} ${clip(text(v))} (not ${integer ? 'an integer' : 'a number'} from ${min} to ${max})`);
    return undefined;
  };
  const common: Record<string, unknown> = {};
  const set = (field: string, value: unknown) => {
    if (value !== undefined) common[field] = value;
  };
  set('cost_usd', number('cost_usd', 0, MAX_UNIT_COST_USD));
  set('usage', usageOf(r.usage, dropped));
  set('exit_code', r.exit_code === null ? null : number('exit_code', -(2 ** 31), 2 ** 31 - 1, true));
  set('duration_ms', number('duration_ms', 0, 365 * DAY_MS));
  if (r.stderr_tail !== undefined && r.stderr_tail !== null) common.stderr_tail = text(r.stderr_tail);
  if (r.session_id !== undefined && r.session_id !== null) {
    if (typeof r.session_id === 'string' && r.session_id.length <= MAX_SESSION_ID && !r.session_id.includes('\u0000')) common.session_id = r.session_id;
    else dropped.push(`session_id ${clip(text(r.session_id))} (not an id)`);
  }
  const output = r.output === undefined || r.output === null ? undefined : text(r.output);
  const error = text(r.error ?? 'the worker gave no reason');
  switch (r.status) {
    case 'succeeded': {
      const outcome = { ...common, status: 'succeeded' as const, output: output ?? '' };
      if (r.structured_output === undefined) return { outcome, dropped };
      try {
        // The store keeps it as JSON text; a value JSON cannot hold is the unit's failure, not the batch's.
        JSON.stringify(r.structured_output);
        return { outcome: { ...outcome, structured_output: r.structured_output }, dropped };
      } catch (err) {
        return { outcome: { ...common, status: 'failed', kind: 'invalid_output', error: `the structured output cannot be stored as JSON: ${errorMessage(err)}`, output: outcome.output }, dropped };
      }
    }
    case 'failed': {
      const kind = FAILURE_KINDS.includes(r.kind as FailureKind) ? (r.kind as FailureKind) : 'retryable';
      if (kind !== r.kind) dropped.push(`failure kind ${clip(text(r.kind))} (read as retryable)`);
      const retryAfter = number('retry_after_ms', 0, DAY_MS);
      const resetsAt = number('resets_at', 0, 8.64e15);
      return {
        outcome: { ...common, status: 'failed', kind, error, ...(output !== undefined ? { output } : {}), ...(retryAfter !== undefined ? { retry_after_ms: retryAfter } : {}), ...(resetsAt !== undefined ? { resets_at: resetsAt } : {}) },
        dropped,
      };
    }
    case 'timed_out':
      return { outcome: { ...common, status: 'timed_out', error, ...(output !== undefined ? { output } : {}) }, dropped };
    case 'cancelled':
      return { outcome: { ...common, status: 'cancelled', error }, dropped };
    default:
      return { outcome: { status: 'failed', kind: 'retryable', error: `the worker returned an outcome with status ${clip(text(r.status))}` }, dropped };
  }
}

/** Token counts: each a whole number from 0 to MAX_TOKENS, or the usage is left out whole. */
function usageOf(value: unknown, dropped: string[]): TokenUsage | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object') {
    dropped.push(`usage ${clip(text(value))} (not token counts)`);
    return undefined;
  }
  const out: TokenUsage = {};
  for (const field of ['input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_write_tokens'] as const) {
    const v = (value as Record<string, unknown>)[field];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_TOKENS) {
      dropped.push(`usage ${clip(text(value))} (${field} is not a count from 0 to ${MAX_TOKENS})`);
      return undefined;
    }
    out[field] = v;
  }
  return out;
}

/** One attempt's conversation is stored up to this many events… */
export const MAX_EVENTS = 10_000;
/** …and this many characters of event data; the rest is counted, not kept. */
export const MAX_EVENT_CHARS = 16 * 1024 * 1024;

/**
 * What is stored of one attempt's conversation: its first MAX_EVENTS events, within
 * MAX_EVENT_CHARS of data. An agent that floods its stream cannot fill the store or
 * make its unit's page slow to read; the last event says how much was left out.
 */
export class ConversationLimit {
  private events = 0;
  private chars = 0;
  private cut = 0;

  /** The row to store for this event, or null once the limits are reached. */
  take(event: ConversationEvent): { kind: string; data: string } | null {
    // Once cut, a flood's events are counted, not serialised.
    const row = this.cut > 0 || this.events >= MAX_EVENTS ? null : eventRow(event);
    if (row === null || this.chars + row.data.length > MAX_EVENT_CHARS) {
      this.cut++;
      return null;
    }
    this.events++;
    this.chars += row.data.length;
    return row;
  }

  /** After the attempt: one event that records the cut, if there was one. */
  end(): { kind: string; data: string } | null {
    return this.cut === 0 ? null : { kind: 'events_cut', data: JSON.stringify({ kept: this.events, left_out: this.cut, max_events: MAX_EVENTS, max_chars: MAX_EVENT_CHARS }) };
  }
}

/** A conversation event as the store keeps it: a short kind, and its data as JSON text. */
export function eventRow(event: ConversationEvent): { kind: string; data: string } {
  const kind = text(event?.kind ?? 'event').slice(0, MAX_EVENT_KIND);
  return { kind, data: text(jsonText(event?.data ?? null)) };
}

function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 80)}…` : s;
}
