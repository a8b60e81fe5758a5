import type { Checkpoint, SideRead, Snapshot } from '../../contracts/provider.js';

/**
 * The checkpoint of a table (sqlite and postgres providers): the newest value of
 * its updated_at column and its row count. Rows whose updated_at is at or after
 * the checkpoint's are read again (at, not only after: rows written later in the
 * same tick share the value); every other row is taken as the pair's baselines
 * have it. A count that shrank means rows were deleted, which only a full read
 * can name. The sync run checks the count against what it composes, so a
 * deletion beside newer inserts is caught there; a deletion beside an insert or
 * change that left updated_at behind the checkpoint is not (the documented limit).
 */

/** What one consistent read of the table says, over rows that have a key. */
export interface TableStats {
  count: number;
  /** Rows with a non-null updated_at. */
  stamped: number;
  /** The newest updated_at, as the database returns it (number or text); null for an empty table. */
  max: number | string | null;
}

/** The provider's reads, all within one transaction of its database. */
export interface TableReads {
  stats(): Promise<TableStats>;
  /** Rows whose updated_at is at or after `max` (every row when it is null). */
  newer(max: number | string | null): Promise<Snapshot>;
  all(): Promise<Snapshot>;
}

interface TableCheckpoint {
  column: string;
  max: number | string | null;
  count: number;
}

function stored(since: Checkpoint | null, column: string): TableCheckpoint | null {
  if (!since || since.column !== column || typeof since.count !== 'number') return null;
  const max = since.max;
  return max === null || typeof max === 'number' || typeof max === 'string' ? { column, max, count: since.count } : null;
}

export async function tableReadSince(column: string | undefined, since: Checkpoint | null, reads: TableReads): Promise<SideRead> {
  if (!column) return { kind: 'full', snapshot: await reads.all(), checkpoint: null, why: 'no updated_at_column' };
  const stats = await reads.stats();
  if (stats.stamped < stats.count) {
    return { kind: 'full', snapshot: await reads.all(), checkpoint: null, why: `${stats.count - stats.stamped} rows have no ${column}` };
  }
  const checkpoint: TableCheckpoint = { column, max: stats.max, count: stats.count };
  const prev = stored(since, column);
  if (!prev) return { kind: 'full', snapshot: await reads.all(), checkpoint: { ...checkpoint }, why: 'no checkpoint' };
  if (stats.count < prev.count) {
    return { kind: 'full', snapshot: await reads.all(), checkpoint: { ...checkpoint }, why: `the row count shrank from ${prev.count} to ${stats.count}` };
  }
  const changed = await reads.newer(prev.max);
  return { kind: 'delta', changed, removed: [], items: stats.count, checkpoint: { ...checkpoint }, note: `${changed.size} of ${stats.count} rows read (${column} at or after the checkpoint's)` };
}
