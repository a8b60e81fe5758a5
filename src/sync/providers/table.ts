import type { ProviderRecord } from '../../contracts/provider.js';
import { isoTime } from '../../domain/iso-time.js';

/** Helpers shared by the sqlite and postgres table providers. */

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A value a driver can bind: objects as JSON text, booleans as 1/0 (SQLite has no boolean). */
export function bindable(value: unknown, booleansAsInt: boolean): unknown {
  if (value === undefined) return null;
  if (typeof value === 'boolean') return booleansAsInt ? (value ? 1 : 0) : value;
  if (value !== null && typeof value === 'object' && !(value instanceof Date) && !Buffer.isBuffer(value)) return JSON.stringify(value);
  return value;
}

/** Row values as JSON-safe data: big integers as numbers when they fit, dates as ISO text. */
export function jsonRow(row: Record<string, unknown>): ProviderRecord {
  const out: ProviderRecord = {};
  for (const [k, v] of Object.entries(row)) {
    if (typeof v === 'bigint') out[k] = Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
    else if (v instanceof Date) out[k] = isoTime(v.getTime());
    else if (Buffer.isBuffer(v)) out[k] = v.toString('base64');
    else out[k] = v;
  }
  return out;
}

export function chunks<T>(list: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < list.length; i += size) out.push(list.slice(i, i + size));
  return out;
}
