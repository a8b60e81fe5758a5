import { CompiledQuery, sql } from 'kysely';
import { AbpError, jobNotFound } from '../domain/errors.js';
import { assertJobMove, counterColumn, UNIT_STATES, type JobMove, type JobState, type UnitMove, type UnitState } from '../domain/states.js';
import type { EventStore } from './event-store.js';
import type { JobRow, NewJob } from './schema.js';
import type { Db, Transactions } from './tx.js';
import { applyUnitMove, type UnitMoveSet } from './unit-moves.js';
import { countsHardFailures, endOfWork, UNRESOLVED_FAILURE } from '../domain/job-rules.js';

/** A job's unit counters, by column. */
export type Counts = Record<'pending' | 'running' | 'submitted' | 'succeeded' | 'failed' | 'cancelled', number>;

/** Items for one job, already serialised, as the enumeration streams them. */
export interface UnitDraft {
  item_id: string;
  payload: string;
  /** 'item' unless said: the synthesis unit is the only other kind. */
  kind?: 'item' | 'synthesis';
}

export interface Page {
  limit: number;
  offset: number;
}

/** The status_reason of a CREATED job whose code waits for a person's approval. */
export const PENDING_APPROVAL = 'pending_approval';

/** The status_reason of a job cancelled because a person refused its code: final, it can never be approved. */
export const CODE_REFUSED = 'code_refused';

/** An event recorded together with a job's creation. */
export interface JobEventDraft {
  type: string;
  data: unknown;
}

/** What a job move may set on the job's row besides its state. */
export type JobPatch = Partial<Pick<JobRow, 'test_unit_id' | 'resume_at' | 'approved_by' | 'env_needs'>>;

/**
 * Units per INSERT statement. Each statement's text is built once per size and its
 * parameters are one flat array refilled in place (see addUnits): a batch held in
 * JS outlives the young generation's scavenges, so a smaller one promotes less
 * garbage into the old generation (peak RSS), while 100 rows still amortise the
 * statement's cost.
 */
const INSERT_BATCH = 100;
/** SQLite's page cache, in KiB, while a job's units are inserted (see withSmallCache). */
const CREATE_CACHE_KIB = 2048;
/** Parameters of one unit in the INSERT: job_id, seq, item_id, payload, kind. */
const UNIT_PARAMS = 5;

/**
 * Job rows: creation with their units, reads, edits, moves through the state
 * table, the unit counters every unit move keeps in step, and a job's end
 * (finishIfDone). Every unit move changes the job's counters in the same
 * transaction, so a status read is one row.
 */
export class JobStore {
  private readonly db: Db;

  constructor(
    private readonly core: Transactions,
    private readonly events: EventStore,
  ) {
    this.db = core.db;
  }

  /**
   * Inserts the job and all its units in one transaction. If the item stream
   * throws partway, nothing is left behind.
   */
  async createJob(
    job: Omit<NewJob, 'created_at' | 'updated_at' | 'status'>,
    units: AsyncIterable<UnitDraft>,
    finalEvents: () => JobEventDraft[],
  ): Promise<JobRow> {
    return this.core.tx(async (t) => {
      const id = await this.insertJob(t, job, units, finalEvents, { empty: 'refuse' });
      return this.requireJob(id, t);
    });
  }

  /**
   * The one way a job comes to be, inside `t`: its row (CREATED), its units
   * streamed in (addUnits), its `status` event and then `finalEvents`. Batch
   * creation and sync runs call it; `empty: 'allow'` lets a job have no units (a
   * sync pair already in step, or a job whose code waits for approval).
   */
  async insertJob(
    t: Db,
    job: Omit<NewJob, 'created_at' | 'updated_at' | 'status'>,
    units: AsyncIterable<UnitDraft> | Iterable<UnitDraft>,
    finalEvents: () => JobEventDraft[],
    options: { empty: 'refuse' | 'allow' },
  ): Promise<number> {
    const now = Date.now();
    const { id } = await t
      .insertInto('jobs')
      .values({ ...job, status: 'CREATED', created_at: now, updated_at: now })
      .returning('id')
      .executeTakeFirstOrThrow();
    const total = await this.withSmallCache(t, () => this.addUnits(t, id, 0, units));
    if (total === 0 && options.empty === 'refuse') throw new AbpError('enumeration_failed', 'the enumeration produced no items; no job was created');
    await this.events.write(t, id, 'status', { status: 'CREATED', ...(job.status_reason ? { reason: job.status_reason } : {}), total });
    for (const e of finalEvents()) await this.events.write(t, id, e.type, e.data);
    return id;
  }

  /**
   * Adds units to a job, PENDING, a thousand per statement, numbered from `seq`;
   * the job's total and pending counters rise with them. Returns how many.
   */
  private async addUnits(t: Db, jobId: number, seq: number, units: AsyncIterable<UnitDraft> | Iterable<UnitDraft>): Promise<number> {
    const first = seq;
    // A precompiled multi-row INSERT run with a flat parameter array: Kysely's builder
    // made and compiled a tree of a thousand row nodes per statement, which cost more
    // than SQLite's insert itself. The SQL text is the same for every full batch, so
    // the store's statement cache prepares it once. (Kysely freezes the parameters it
    // is given, so each statement gets its own array.)
    let params: unknown[] = new Array(INSERT_BATCH * UNIT_PARAMS);
    let rows = 0;
    const flush = async () => {
      const values = rows === INSERT_BATCH ? params : params.slice(0, rows * UNIT_PARAMS);
      params = new Array(INSERT_BATCH * UNIT_PARAMS);
      await t.executeQuery(CompiledQuery.raw(this.unitInsertSql(rows), values));
      rows = 0;
    };
    for await (const unit of units) {
      const at = rows * UNIT_PARAMS;
      params[at] = jobId;
      params[at + 1] = seq++;
      params[at + 2] = unit.item_id;
      params[at + 3] = unit.payload;
      params[at + 4] = unit.kind ?? 'item';
      if (++rows === INSERT_BATCH) await flush();
    }
    if (rows > 0) await flush();
    const added = seq - first;
    if (added > 0) await this.bump(t, jobId, { PENDING: added }, { total: sql`total + ${added}` });
    return added;
  }

  private readonly unitInserts = new Map<number, string>();

  /** `insert into work_units … values (…), (…)` for `rows` PENDING units, in the database's placeholders. */
  private unitInsertSql(rows: number): string {
    let text = this.unitInserts.get(rows);
    if (text === undefined) {
      const tuples: string[] = [];
      for (let r = 0, n = 0; r < rows; r++) {
        const p = Array.from({ length: UNIT_PARAMS }, () => (this.core.pg ? `$${++n}` : '?'));
        tuples.push(`(${p[0]}, ${p[1]}, ${p[2]}, ${p[3]}, 'PENDING', ${p[4]})`);
      }
      text = `insert into work_units (job_id, seq, item_id, payload, status, kind) values ${tuples.join(', ')}`;
      if (rows === INSERT_BATCH || this.unitInserts.size < 8) this.unitInserts.set(rows, text);
    }
    return text;
  }

  /**
   * Runs a bulk insert with SQLite's page cache held to CREATE_CACHE_KIB, then gives
   * the connection its own size back. better-sqlite3 builds SQLite with a 16 MB cache,
   * and one big transaction fills all of it with dirty pages; appended rows and their
   * index entries need only the right edge of each B-tree, and past the cap SQLite
   * spills dirty pages to the WAL, inside the same transaction (cache_spill).
   * PostgreSQL keeps its buffers in the server: nothing to do.
   */
  private async withSmallCache<T>(t: Db, fn: () => Promise<T>): Promise<T> {
    if (this.core.pg) return fn();
    const row = (await sql<{ cache_size: number }>`pragma cache_size`.execute(t)).rows[0];
    const own = Number(row?.cache_size ?? -CREATE_CACHE_KIB);
    // A size in pages (positive) or KiB (negative): only ever made smaller here.
    if (own >= 0 || own < -CREATE_CACHE_KIB) await sql.raw(`pragma cache_size = ${-CREATE_CACHE_KIB}`).execute(t);
    try {
      return await fn();
    } finally {
      await sql.raw(`pragma cache_size = ${Math.trunc(own)}`).execute(t);
    }
  }

  /** Whether a person has approved code with exactly this sha256. */
  async isCodeApproved(sha256: string): Promise<boolean> {
    const row = await this.db.selectFrom('code_approvals').select('id').where('code_sha256', '=', sha256).limit(1).executeTakeFirst();
    return row !== undefined;
  }

  /**
   * A job whose items come from code nobody has approved yet: CREATED, status_reason
   * `pending_approval`, no units. It cannot start until fillPendingJob gives it units.
   */
  async createPendingJob(job: Omit<NewJob, 'created_at' | 'updated_at' | 'status' | 'status_reason'>): Promise<JobRow> {
    return this.core.tx(async (t) => {
      const id = await this.insertJob(t, { ...job, status_reason: PENDING_APPROVAL }, [], () => [], { empty: 'allow' });
      return this.requireJob(id, t);
    });
  }

  /**
   * Records the approval of a pending job's code and inserts its units, in one
   * transaction: if the enumeration fails, neither the approval nor any unit stays.
   */
  async fillPendingJob(
    id: number,
    approval: { code_sha256: string; approved_by: string },
    units: AsyncIterable<UnitDraft>,
    finalEvents: () => JobEventDraft[],
  ): Promise<JobRow> {
    return this.core.tx(async (t) => {
      const job = await this.core.lockJob(t, id);
      if (job.status !== 'CREATED' || job.status_reason !== PENDING_APPROVAL) {
        throw new AbpError('conflict', `job ${id} is ${job.status}${job.status_reason ? ` (${job.status_reason})` : ''}; only a job pending approval can be approved`);
      }
      const now = Date.now();
      await t.insertInto('code_approvals').values({ ...approval, job_id: id, created_at: now }).execute();
      const seq = await this.addUnits(t, id, 0, units);
      if (seq === 0) throw new AbpError('enumeration_failed', 'the enumeration produced no items; the job stays pending approval');
      await t.updateTable('jobs').set({ status_reason: null, updated_at: now }).where('id', '=', id).execute();
      await this.events.write(t, id, 'code_approved', { code_sha256: approval.code_sha256, approved_by: approval.approved_by, total: seq });
      for (const e of finalEvents()) await this.events.write(t, id, e.type, e.data);
      return this.requireJob(id, t);
    });
  }

  /**
   * A person refused a pending job's code: the job is cancelled (status_reason
   * `code_refused`) and the refusal recorded as an event, in one transaction. A
   * cancelled job never runs and never waits for approval again, so the refusal holds.
   */
  async refusePendingJob(id: number, refusal: { code_sha256: string; refused_by: string }): Promise<JobRow> {
    return this.core.tx(async (t) => {
      const job = await this.core.lockJob(t, id);
      if (job.status !== 'CREATED' || job.status_reason !== PENDING_APPROVAL) {
        throw new AbpError('conflict', `job ${id} is ${job.status}${job.status_reason ? ` (${job.status_reason})` : ''}; only a job pending approval can be refused`);
      }
      await this.moveJobIn(t, job, 'cancel', CODE_REFUSED, async (tx) => {
        await this.events.write(tx, id, 'code_refused', refusal);
      });
      return this.requireJob(id, t);
    });
  }

  async getJob(id: number): Promise<JobRow | undefined> {
    return this.db.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async requireJob(id: number, t: Db = this.db): Promise<JobRow> {
    const job = await t.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirst();
    if (!job) throw jobNotFound(id);
    return job;
  }

  async listJobs(filter: { status?: JobState[] }, page: Page): Promise<JobRow[]> {
    let q = this.db.selectFrom('jobs').selectAll();
    if (filter.status?.length) q = q.where('status', 'in', filter.status);
    return q.orderBy('id', 'desc').limit(page.limit).offset(page.offset).execute();
  }

  async countJobsByStatus(): Promise<Partial<Record<JobState, number>>> {
    const rows = await this.db
      .selectFrom('jobs')
      .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('status')
      .execute();
    return Object.fromEntries(rows.map((r) => [r.status, Number(r.n)]));
  }

  /** Jobs an executor should look at: those that may have units to run. */
  async activeJobs(): Promise<JobRow[]> {
    return this.db.selectFrom('jobs').selectAll().where('status', 'in', ['RUNNING', 'TESTING', 'PAUSED']).execute();
  }

  async updateJobFields(
    id: number,
    allowed: JobState[],
    fields: Partial<Pick<JobRow, 'prompt_template' | 'user_intent' | 'name' | 'max_cost_usd' | 'auto_resume' | 'approval_asked'>>,
  ): Promise<JobRow> {
    return this.core.tx(async (t) => {
      const job = await this.core.lockJob(t, id);
      if (!allowed.includes(job.status)) {
        throw new AbpError('conflict', `job ${id} is ${job.status}; only a ${allowed.join(' or ')} job can be edited`);
      }
      await t
        .updateTable('jobs')
        .set({ ...fields, updated_at: Date.now() })
        .where('id', '=', id)
        .execute();
      await this.events.write(t, id, 'updated', { fields: Object.keys(fields) });
      return this.requireJob(id, t);
    });
  }

  /** Records the environment variables a job needs its executor to have (JSON list of names), for a job that has not ended. */
  async setEnvNeeds(id: number, envNeeds: string): Promise<void> {
    await this.db
      .updateTable('jobs')
      .set({ env_needs: envNeeds })
      .where('id', '=', id)
      .where('status', 'in', ['CREATED', 'TESTING', 'RUNNING', 'PAUSED'])
      .execute();
  }

  /**
   * Moves a job by name through the state table, with side effects on its units
   * in the same transaction. Returns the job as it is after the move.
   */
  async moveJob(
    id: number,
    move: JobMove,
    options: { reason?: string | null; patch?: JobPatch; effects?: (t: Db, job: JobRow) => Promise<void> },
  ): Promise<JobRow> {
    return this.core.tx(async (t) => {
      const job = await this.core.lockJob(t, id);
      await this.moveJobIn(t, job, move, options.reason ?? null, options.effects, options.patch);
      return this.requireJob(id, t);
    });
  }

  /** A job move inside a transaction that has read (and locked) the job. */
  async moveJobIn(
    t: Db,
    job: JobRow,
    move: JobMove,
    reason: string | null,
    effects?: (t: Db, job: JobRow) => Promise<void>,
    patch: JobPatch = {},
  ): Promise<void> {
    const to = assertJobMove(job.id, job.status, move);
    const now = Date.now();
    const terminal = to === 'COMPLETED' || to === 'FAILED' || to === 'CANCELLED';
    await t
      .updateTable('jobs')
      .set({
        status: to,
        status_reason: reason,
        updated_at: now,
        ...(to === 'RUNNING' && job.started_at === null ? { started_at: now } : {}),
        ...(to === 'TESTING' && job.started_at === null ? { started_at: now } : {}),
        ...(terminal ? { finished_at: now } : { finished_at: null }),
        ...patch,
      })
      .where('id', '=', job.id)
      .execute();
    if (effects) await effects(t, job);
    if (to === 'RUNNING' || to === 'TESTING') await this.core.notifyWork(t, job.id);
    await this.events.write(t, job.id, 'status', { status: to, from: job.status, move, reason, ...(patch.approved_by ? { approved_by: patch.approved_by } : {}) });
  }

  /** Moves every unit of a job in a `from` state of the move (or the one unit named); returns how many moved. */
  async moveUnitsIn(t: Db, jobId: number, move: UnitMove, set: UnitMoveSet, onlyUnitId?: number): Promise<number> {
    const { to, moved, deltas } = await applyUnitMove(t, move, { jobId, ...(onlyUnitId !== undefined ? { unitId: onlyUnitId } : {}) }, set);
    if (moved > 0) {
      if (to === 'PENDING') await this.core.notifyWork(t, jobId);
      await this.bump(t, jobId, deltas);
    }
    return moved;
  }

  /** Counts a job's units by state with a real COUNT(*), the ground truth the counters must match. */
  async countsIn(t: Db, jobId: number): Promise<Counts> {
    const rows = await t
      .selectFrom('work_units')
      .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
      .where('job_id', '=', jobId)
      .groupBy('status')
      .execute();
    const counts: Counts = { pending: 0, running: 0, submitted: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const row of rows) counts[counterColumn(row.status)] = Number(row.n);
    return counts;
  }

  /** Moves a job's counters by deltas; returns the job as it is after. */
  async bump(t: Db, jobId: number, deltas: Partial<Record<UnitState, number>>, extra: Record<string, unknown> = {}): Promise<JobRow> {
    const set: Record<string, unknown> = { updated_at: Date.now(), ...extra };
    for (const state of UNIT_STATES) {
      const d = deltas[state];
      if (d) {
        const col = counterColumn(state);
        set[col] = sql`${sql.ref(col)} + ${d}`;
      }
    }
    return t
      .updateTable('jobs')
      .set(set as never)
      .where('id', '=', jobId)
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  /**
   * Drops a job's synthesis unit so that a fresh one runs when the job's units are
   * done again (a re-done unit changed what it would gather). The job keeps the old
   * result until the new synthesis replaces it.
   */
  async dropSynthesisIn(t: Db, job: JobRow): Promise<void> {
    if (job.synthesis_unit_id === null) return;
    await t.deleteFrom('unit_events').where('unit_id', '=', job.synthesis_unit_id).execute();
    const gone = await t.deleteFrom('work_units').where('id', '=', job.synthesis_unit_id).returning('status').executeTakeFirst();
    await this.bump(t, job.id, gone ? { [gone.status]: -1 } : {}, { synthesis_unit_id: null, total: sql`total - ${gone ? 1 : 0}` });
    await this.events.write(t, job.id, 'synthesis_dropped', { unit_id: job.synthesis_unit_id });
  }

  /**
   * Asks the job rules (domain/job-rules.ts endOfWork) whether a job has run out
   * of work, and applies the answer: its synthesis unit, or its final move.
   * Counts the failed units whose kind is not `unresolved` only when the rules
   * read it (countsHardFailures). Returns the job as it is after, or undefined
   * when nothing changed.
   */
  async finishIfDone(t: Db, jobId: number): Promise<JobRow | undefined> {
    const job = await this.core.lockJob(t, jobId);
    const synthesis =
      job.synthesis_unit_id === null || job.status !== 'RUNNING'
        ? undefined
        : await t.selectFrom('work_units').select(['status', 'output', 'error']).where('id', '=', job.synthesis_unit_id).executeTakeFirst();
    const end = endOfWork(countsHardFailures(job) ? { ...job, failed_hard: await this.countHardFailures(t, jobId) } : job, synthesis);
    if (end.kind === 'not_yet') return undefined;
    if (end.kind === 'synthesis') {
      await this.addUnits(t, jobId, job.total, [{ item_id: '_synthesis', payload: '{}', kind: 'synthesis' }]);
      const unit = await t.selectFrom('work_units').select('id').where('job_id', '=', jobId).where('kind', '=', 'synthesis').executeTakeFirstOrThrow();
      await t.updateTable('jobs').set({ synthesis_unit_id: unit.id }).where('id', '=', jobId).execute();
      await this.events.write(t, jobId, 'synthesis', { unit_id: unit.id, failed_units: job.failed });
      await this.core.notifyWork(t, jobId);
      return this.requireJob(jobId, t);
    }
    if (end.result !== undefined) await t.updateTable('jobs').set({ result: end.result }).where('id', '=', jobId).execute();
    await this.moveJobIn(t, job, end.move, end.reason);
    return this.requireJob(jobId, t);
  }

  /** The job's FAILED units whose failure kind is not `unresolved` (endOfWork's `failed_hard`). */
  private async countHardFailures(t: Db, jobId: number): Promise<number> {
    const row = await t
      .selectFrom('work_units')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('job_id', '=', jobId)
      .where('status', '=', 'FAILED')
      .where((eb) => eb.or([eb('error_kind', 'is', null), eb('error_kind', '!=', UNRESOLVED_FAILURE)]))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }
}
