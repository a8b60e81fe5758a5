import { hash } from 'node:crypto';
import { closeSync, constants, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { tempPath } from '../../util/confined-write.js';
import type { ProviderHealth, ProviderRecord, SnapshotEntry, WriteOutcome } from '../../contracts/provider.js';
import { AbpError, errorMessage } from '../../domain/errors.js';
import { isoTime } from '../../domain/iso-time.js';

/**
 * Helpers shared by the record providers (jsonl, json, csv, sqlite, postgres):
 * one hash for a record whatever holds it, so a CSV row and a table row with the
 * same values compare equal.
 */

function scalar(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  if (value instanceof Date) return isoTime(value.getTime());
  if (Buffer.isBuffer(value)) return value.toString('base64');
  return canonicalJson(value);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * sha256 over the record's fields in key order, every value as text and null
 * fields left out: a CSV's "5" equals a table's 5, and a NULL column one side
 * lacks does not make two equal records differ. Built by concatenation, with
 * control characters as separators, because this runs once per item of every
 * snapshot (a million-item pair plans in seconds).
 */
export function recordHash(record: ProviderRecord): string {
  const keys = sortedKeys(Object.keys(record));
  let text = '';
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i] as string;
    const raw = record[k];
    const v = typeof raw === 'string' ? raw : scalar(raw);
    if (v !== null) text += `${k}\u0000${v}\u0001`;
  }
  // base64, not hex: a million-item snapshot keeps a million of these in memory.
  return hash('sha256', text, 'base64');
}

/** The length of every recordHash: sha256 in base64. */
export const HASH_CHARS = 44;

// The field names of the last record seen, and the same names in order.
let lastKeys: string[] = [];
let lastSorted: string[] = [];

/**
 * The names in order. The records of one snapshot nearly always share their
 * names, in the same order, so the last sort is kept and reused: the sort and
 * its comparisons were half the cost of building a record's text.
 */
function sortedKeys(keys: string[]): string[] {
  if (keys.length === lastKeys.length) {
    let same = true;
    for (let i = 0; i < keys.length; i++) {
      if (keys[i] !== lastKeys[i]) {
        same = false;
        break;
      }
    }
    if (same) return lastSorted;
  }
  lastKeys = keys;
  lastSorted = [...keys].sort();
  return lastSorted;
}

export function parseTime(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'string' && value.trim() !== '') {
    const n = Number(value);
    if (Number.isFinite(n)) return n;
    const t = Date.parse(value);
    return Number.isNaN(t) ? undefined : t;
  }
  return undefined;
}

/** A record's last-modified time from its updated_at field, if it has one. */
export function updatedAtOf(record: ProviderRecord, updatedAtField: string | undefined): number | undefined {
  return updatedAtField === undefined ? undefined : parseTime(record[updatedAtField]);
}

export function entryOf(record: ProviderRecord, updatedAtField: string | undefined): SnapshotEntry {
  const updated = updatedAtOf(record, updatedAtField);
  return updated === undefined ? { hash: recordHash(record) } : { hash: recordHash(record), updated_at: updated };
}

/** A record's key as text; records without one are an error that names the field and the position. */
export function keyOf(record: ProviderRecord, field: string, where: () => string): string {
  const value = record[field];
  if (value === null || value === undefined || value === '') {
    throw new AbpError('enumeration_failed', `${where()}: the item has no ${field} (the key field)`);
  }
  return typeof value === 'string' ? value : String(value);
}

/**
 * Writes through a temporary file and a rename, so a reader never sees half a
 * file. The temporary name is random and opened exclusively without following a
 * link, so nothing planted beside the file can catch the write.
 */
export function writeFileAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = tempPath(dirname(path), basename(path));
  try {
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o666);
    try {
      writeFileSync(fd, text);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** Every key of a failed whole-file write is unresolved, with the same reason. */
export function allUnresolved(keys: readonly string[], err: unknown): WriteOutcome[] {
  const reason = errorMessage(err);
  return keys.map((key) => ({ key, status: 'unresolved' as const, reason }));
}

export function ok(details: string): ProviderHealth {
  return { status: 'ok', details };
}

export function down(details: string): ProviderHealth {
  return { status: 'down', details };
}

export function snapshotFailed(what: string, err: unknown): AbpError {
  if (err instanceof AbpError) return err;
  return new AbpError('enumeration_failed', `${what}: snapshot failed: ${errorMessage(err)}`, { cause: err });
}
