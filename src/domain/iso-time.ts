const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/**
 * An instant (epoch milliseconds) as ISO 8601 UTC text, exactly what
 * Date.prototype.toISOString writes, built from the UTC fields. Node 20's V8
 * formats toISOString through its local time-zone machinery, and the first call
 * loads ICU's time-zone names: ~1 MB of RSS that an idle executor kept for its
 * "started" log line and `abp mcp` for a job's timestamps. Years outside
 * 0000–9999 (and invalid instants) are left to toISOString.
 */
export function isoTime(ms: number = Date.now()): string {
  const d = new Date(ms);
  const year = d.getUTCFullYear();
  if (!(year >= 0 && year <= 9999)) return d.toISOString();
  return `${pad(year, 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}T${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}Z`;
}

/** isoTime of a stored instant (a number, or PostgreSQL's bigint as text), null for none. */
export function isoTimeOrNull(ms: number | string | null): string | null {
  return ms === null ? null : isoTime(Number(ms));
}
