import { CompiledQuery, type Insertable } from 'kysely';
import type { EventRow, EventsTable, UnitEventRow } from './schema.js';
import { bulkChunks } from './bulk.js';
import { isPostgres, type Db } from './tx.js';

/** A row of the job event log as written. */
export type NewEvent = Insertable<EventsTable>;

/** Rows per INSERT when events are written in bulk (at most; see bulkChunks). */
const EVENT_BATCH = 512;

/**
 * The job event log (`events`) and the units' conversation events
 * (`unit_events`). Every row of `events` is written through `insert`, or in
 * bulk through `writeRows`, whichever transaction or caller it comes from.
 */
export class EventStore {
  /** Bulk INSERT text by dialect and row count (a power of two: bulkChunks). */
  private readonly bulkText = new Map<string, string>();

  constructor(private readonly db: Db) {}

  /** The write path of the event log's single events (bulk rows: writeRows). */
  private insert(t: Db, rows: NewEvent | NewEvent[]) {
    return t.insertInto('events').values(rows);
  }

  /** Records one event inside `t` (or on its own, outside a transaction). */
  async write(t: Db, jobId: number | null, type: string, data: unknown): Promise<void> {
    await this.insert(t, { job_id: jobId, type, data: JSON.stringify(data), created_at: Date.now() }).execute();
  }

  /** Records one event and returns its row (with its seq). */
  async writeReturning(t: Db, jobId: number, type: string, data: unknown): Promise<EventRow> {
    return this.insert(t, { job_id: jobId, type, data: JSON.stringify(data), created_at: Date.now() })
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  /**
   * Records events already made into rows, a few hundred per statement: the
   * executor's outcome batches. The statement's text is built once per dialect and
   * row count, not by the query builder per batch, which on that hot path cost more
   * than the insert.
   */
  async writeRows(t: Db, rows: NewEvent[]): Promise<void> {
    const pg = isPostgres(t);
    let at = 0;
    for (const size of bulkChunks(rows.length, EVENT_BATCH)) {
      const values: unknown[] = [];
      for (const r of rows.slice(at, (at += size))) values.push(r.job_id ?? null, r.type, r.created_at, r.data);
      await t.executeQuery(CompiledQuery.raw(this.bulkInsert(pg, size), values));
    }
  }

  private bulkInsert(pg: boolean, rows: number): string {
    const key = `${pg ? 'pg' : 'sqlite'}|${rows}`;
    let text = this.bulkText.get(key);
    if (text === undefined) {
      const tuples: string[] = [];
      for (let r = 0, n = 0; r < rows; r++) tuples.push(pg ? `($${++n}, $${++n}, $${++n}, $${++n})` : '(?, ?, ?, ?)');
      text = `insert into "events" ("job_id", "type", "created_at", "data") values ${tuples.join(', ')}`;
      this.bulkText.set(key, text);
    }
    return text;
  }

  /** Records units' conversation events, a few hundred per statement. */
  async writeUnitEvents(t: Db, rows: Omit<UnitEventRow, 'id'>[]): Promise<void> {
    for (let i = 0; i < rows.length; i += EVENT_BATCH) await t.insertInto('unit_events').values(rows.slice(i, i + EVENT_BATCH)).execute();
  }

  async listEvents(jobId: number, afterSeq: number, limit: number): Promise<EventRow[]> {
    return this.db
      .selectFrom('events')
      .selectAll()
      .where('job_id', '=', jobId)
      .where('seq', '>', afterSeq)
      .orderBy('seq')
      .limit(limit)
      .execute();
  }

  /** Events of every job after a seq, optionally of some types only: the metrics tail. */
  async eventsAfter(afterSeq: number, types: string[], limit: number): Promise<EventRow[]> {
    let q = this.db.selectFrom('events').selectAll().where('seq', '>', afterSeq);
    if (types.length > 0) q = q.where('type', 'in', types);
    return q.orderBy('seq').limit(limit).execute();
  }

  /** The seq of a job's newest event (0 when it has none), through events_job (job_id, seq). */
  async lastEventSeq(jobId: number): Promise<number> {
    const row = await this.db.selectFrom('events').select((eb) => eb.fn.max('seq').as('seq')).where('job_id', '=', jobId).executeTakeFirst();
    return row?.seq === null || row?.seq === undefined ? 0 : Number(row.seq);
  }

  async unitEvents(unitId: number): Promise<UnitEventRow[]> {
    return this.db.selectFrom('unit_events').selectAll().where('unit_id', '=', unitId).orderBy('id').execute();
  }

  /** A unit's newest conversation events up to and including `uptoId`, newest first. */
  async unitEventsTail(unitId: number, uptoId: number, limit: number): Promise<UnitEventRow[]> {
    return this.db.selectFrom('unit_events').selectAll().where('unit_id', '=', unitId).where('id', '<=', uptoId).orderBy('id', 'desc').limit(limit).execute();
  }
}
