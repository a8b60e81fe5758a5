import type { Db } from './tx.js';

/** A succeeded unit's answer, as stored: what a cache hit copies onto the unit it answers. */
export interface CachedResponse {
  /** The unit the answer comes from (the hit's `cached_from`). */
  unit_id: number;
  output: string;
  /** JSON text, as the column holds it (null when the job had no output_schema). */
  structured_output: string | null;
}

/**
 * The response cache's reads: a SUCCEEDED unit of any job whose request had the
 * same key. Both queries go through work_units_cache (cache_key, where not null).
 */
export class CacheStore {
  constructor(private readonly db: Db) {}

  async cachedResponse(cacheKey: string): Promise<CachedResponse | undefined> {
    // An answer that was asked for (cached_from null) first, so that hits point at a
    // unit that paid for it; a copy serves when its source is gone or runs again.
    return (await this.find(cacheKey, true)) ?? (await this.find(cacheKey, false));
  }

  private async find(cacheKey: string, original: boolean): Promise<CachedResponse | undefined> {
    let q = this.db
      .selectFrom('work_units')
      .select(['id', 'output', 'structured_output'])
      .where('cache_key', 'is not', null)
      .where('cache_key', '=', cacheKey)
      .where('status', '=', 'SUCCEEDED');
    if (original) q = q.where('cached_from', 'is', null);
    const row = await q.orderBy('id').limit(1).executeTakeFirst();
    if (!row || row.output === null) return undefined;
    return { unit_id: row.id, output: row.output, structured_output: row.structured_output };
  }
}
