import { sql } from 'kysely';
import { UNIT_STATES, type UnitState } from '../domain/states.js';
import type { EventStore } from './event-store.js';
import { budgetPauses, budgetRoom, ONLINE_AFTER_BATCH } from '../domain/job-rules.js';
import type { JobStore, Page } from './job-store.js';
import type { JobRow, UnitRow } from './schema.js';
import type { Db, Transactions } from './tx.js';
import { applyUnitMove } from './unit-moves.js';

/** A running unit, as a literal: the partial index work_units_running is used only then (migration 007). */
const RUNNING = sql<boolean>`"status" = 'RUNNING'`;

/** What running a claimed unit needs of its row: the claim returns only these columns. */
export const CLAIMED_COLUMNS = ['id', 'job_id', 'attempt', 'failures', 'payload', 'kind', 'error_kind', 'error', 'output', 'reserved_usd', 'session_id'] as const;
export type ClaimedUnit = Pick<UnitRow, (typeof CLAIMED_COLUMNS)[number]>;

/** The ids of a job's units that may run now: PENDING, and past any backoff. */
function runnableUnits(t: Db, jobId: number, now: number) {
  return t.selectFrom('work_units').select('id').where('job_id', '=', jobId).where('status', '=', 'PENDING').where('available_at', '<=', now);
}

/**
 * A claim for a provider batch (the share of the online price its requests
 * cost), or of a batch job's units that its batch gave back past the deadline,
 * which run online.
 */
export type BatchClaim = { priceFactor: number } | { afterDeadline: true };

/** A page of units: past a unit id (`after`, keyset) or, for small offsets, after skipping `offset`. */
export interface UnitPage {
  limit: number;
  offset?: number;
  after?: number;
}

/** Units by state, and by kind: 'item' leaves out the synthesis unit. */
export interface UnitFilter {
  status?: UnitState[];
  kind?: 'item' | 'synthesis';
}

/** A running unit with the id of its newest conversation event: the dashboard's live view. */
export interface UnitActivity {
  unit_id: number;
  item_id: string;
  attempt: number;
  started_at: number | null;
  event_id: number | null;
}

/**
 * Units in the executor's hands: claims within a job's max_workers and budget,
 * leases and their renewal, the reclaim of expired ones, and unit reads.
 * (Outcomes are unit-outcomes.ts; bulk moves by a job move are JobStore.moveUnitsIn.)
 */
export class UnitStore {
  private readonly db: Db;

  constructor(
    private readonly core: Transactions,
    private readonly jobs: JobStore,
    private readonly events: EventStore,
  ) {
    this.db = core.db;
  }

  /**
   * Claims up to `want` runnable units of one job, within the job's cluster-wide
   * `max_workers` (its running counter). A TESTING job only ever hands out its test unit.
   */
  async claimUnits(jobId: number, owner: string, want: number, leaseMs: number, forBatch?: BatchClaim): Promise<{ job: JobRow; units: ClaimedUnit[] }> {
    if (this.core.pg && !forBatch) {
      const claimed = await this.claimJobLockLast(jobId, owner, want, leaseMs);
      if (claimed) return claimed;
    }
    return this.core.tx(async (t) => {
      // The job row lock makes the running counter, and so max_workers, exact across executors.
      const job = await this.core.lockJob(t, jobId);
      if (job.status !== 'RUNNING' && job.status !== 'TESTING') return { job, units: [] };
      // A claim for a provider batch is not bounded by max_workers (the provider runs the requests),
      // and reserves each unit at the batch price.
      const { take, expected, exhausted } =
        forBatch && 'priceFactor' in forBatch
          ? budgetRoom({ ...job, running: job.running + job.submitted }, want, await this.batchMeanCost(t, job, forBatch.priceFactor))
          : budgetRoom(job, Math.min(want, job.max_workers - job.running));
      if (budgetPauses(job, exhausted)) {
        // Spent plus reserved would pass the cap: stop claiming and say why.
        await this.jobs.moveJobIn(t, job, 'pause', exhausted);
        return { job: await this.jobs.requireJob(jobId, t), units: [] };
      }
      if (take <= 0) return { job, units: [] };
      const now = Date.now();
      let candidates = runnableUnits(t, jobId, now);
      if (job.status === 'TESTING') candidates = candidates.where('id', '=', job.test_unit_id ?? -1);
      // A batch takes what was not given back past its deadline; the online claim of a batch job takes only that.
      if (forBatch && 'priceFactor' in forBatch) candidates = candidates.where((eb) => eb.or([eb('error_kind', 'is', null), eb('error_kind', '<>', ONLINE_AFTER_BATCH)]));
      else if (forBatch) candidates = candidates.where('error_kind', '=', ONLINE_AFTER_BATCH);
      // One statement; on PostgreSQL rows another transaction holds are skipped, not waited on.
      const among = this.core.pg ? candidates.orderBy('id').limit(take).forUpdate().skipLocked() : candidates.orderBy('id').limit(take);
      const { rows: units, deltas } = await applyUnitMove(
        t,
        'claim',
        { jobId, among },
        {
          attempt: sql<number>`attempt + 1`,
          lease_owner: owner,
          lease_expires_at: now + leaseMs,
          started_at: now,
          worker_pid: null,
          reserved_usd: expected,
        },
        // Not every column: a row's every column, made into an object, cost a third of a claim.
        CLAIMED_COLUMNS,
      );
      if (units.length > 0) {
        const reserve = expected > 0 ? { reserved_usd: sql`reserved_usd + ${expected * units.length}` } : {};
        await this.jobs.bump(t, jobId, deltas, reserve);
      }
      return { job, units };
    });
  }

  /**
   * PostgreSQL only, the common claim (a RUNNING job without a budget, online):
   * the job's row is locked last, by its counters' update, not first. Every
   * outcome and every claim of a job updates that one row, so with many executors
   * its lock is the queue they all wait in (pg_stat_activity: Lock:tuple and
   * Lock:transactionid on jobs); held from the first statement, a claim kept it
   * for four round trips, now two (the update, the commit), as an outcome does.
   * `max_workers` stays exact: the room comes from a read without the lock, and
   * the updated row, locked, is checked; if the job left RUNNING, gained a budget
   * or would pass max_workers, the claim is rolled back and undefined says to take
   * the locked path. A claim that finds no unit, or no room, never locks the row.
   */
  private async claimJobLockLast(jobId: number, owner: string, want: number, leaseMs: number): Promise<{ job: JobRow; units: ClaimedUnit[] } | undefined> {
    const job = await this.jobs.requireJob(jobId);
    if (job.status !== 'RUNNING' || job.max_cost_usd !== null) return undefined;
    const take = Math.min(want, job.max_workers - job.running);
    if (take <= 0) return { job, units: [] };
    const raced = new Error('claim raced a change of its job');
    try {
      return await this.core.tx(async (t) => {
        const now = Date.now();
        const among = runnableUnits(t, jobId, now).orderBy('id').limit(take).forUpdate().skipLocked();
        const set = { attempt: sql<number>`attempt + 1`, lease_owner: owner, lease_expires_at: now + leaseMs, started_at: now, worker_pid: null, reserved_usd: 0 };
        const { rows: units, deltas } = await applyUnitMove(t, 'claim', { jobId, among }, set, CLAIMED_COLUMNS);
        if (units.length === 0) return { job, units };
        const after = await this.jobs.bump(t, jobId, deltas);
        if (after.status !== 'RUNNING' || after.max_cost_usd !== null || after.running > after.max_workers) throw raced;
        return { job, units };
      });
    } catch (err) {
      if (err === raced) return undefined;
      throw err;
    }
  }

  /**
   * The expected cost of one unit of a batch job at the batch price: the mean of
   * what its units cost, with the test unit (the one unit that ran online) counted
   * at the batch price too. Undefined when no unit has a cost yet.
   */
  private async batchMeanCost(t: Db, job: JobRow, priceFactor: number): Promise<number | undefined> {
    if (job.costed_units === 0) return undefined;
    let online = 0;
    if (job.test_unit_id !== null) {
      const test = await t.selectFrom('work_units').select(['cost_usd', 'batch_id']).where('id', '=', job.test_unit_id).executeTakeFirst();
      if (test && test.batch_id === null) online = test.cost_usd ?? 0;
    }
    return Math.max(0, job.cost_usd - online * (1 - priceFactor)) / job.costed_units;
  }

  /** The attempts of a job's units this owner still holds (RUNNING under its lease), by unit id. */
  async heldAttempts(jobId: number, owner: string): Promise<Map<number, number>> {
    const rows = await this.db.selectFrom('work_units').select(['id', 'attempt']).where(RUNNING).where('lease_owner', '=', owner).where('job_id', '=', jobId).execute();
    return new Map(rows.map((r) => [r.id, r.attempt]));
  }

  /**
   * Extends the leases of the units this executor still runs, and no others (returns
   * how many it still holds): a unit
   * whose outcome it gave up on keeps its old lease, which expires, and the unit is
   * reclaimed (it is not held RUNNING by a live executor's heartbeat for good).
   */
  async extendLeases(owner: string, leaseMs: number, unitIds: readonly number[]): Promise<number> {
    let n = 0;
    for (let i = 0; i < unitIds.length; i += 500) {
      const result = await this.db
        .updateTable('work_units')
        .set({ lease_expires_at: Date.now() + leaseMs })
        .where('lease_owner', '=', owner)
        .where(RUNNING)
        .where('id', 'in', unitIds.slice(i, i + 500))
        .executeTakeFirst();
      n += Number(result.numUpdatedRows);
    }
    return n;
  }

  /**
   * Units whose lease expired (their executor died or hung) go back to PENDING,
   * spending one retry, or to FAILED when none are left. Returns them so that the
   * caller can reap process groups left behind on this host.
   */
  async reclaimExpired(now: number): Promise<UnitRow[]> {
    // Every executor asks on every pass; most of the time there is nothing, and then no transaction.
    const any = await this.db
      .selectFrom('work_units')
      .select('id')
      .where(RUNNING)
      .where('lease_expires_at', '<', now)
      .limit(1)
      .executeTakeFirst();
    if (!any) return [];
    return this.core.tx(async (t) => {
      const expired = await t
        .selectFrom('work_units')
        .selectAll()
        .where(RUNNING)
        .where('lease_expires_at', '<', now)
        .orderBy('job_id')
        .limit(500)
        .execute();
      const jobs = new Map<number, JobRow>();
      const reclaimed: UnitRow[] = [];
      for (const unit of expired) {
        // Jobs are locked in id order (the units are sorted by job), before their units.
        const job = jobs.get(unit.job_id) ?? (await this.core.lockJob(t, unit.job_id));
        jobs.set(job.id, job);
        const failures = unit.failures + 1;
        const next: UnitState = failures > job.max_retries ? 'FAILED' : 'PENDING';
        const { moved, deltas } = await applyUnitMove(
          t,
          next === 'FAILED' ? 'fail' : 'release',
          { jobId: unit.job_id, unitId: unit.id, attempt: unit.attempt },
          {
            failures,
            lease_owner: null,
            lease_expires_at: null,
            worker_pid: null,
            error: `lease expired: executor ${unit.lease_owner} stopped answering during attempt ${unit.attempt}`,
            error_kind: 'retryable',
            finished_at: next === 'FAILED' ? now : null,
            reserved_usd: 0,
          },
        );
        // Another executor reclaimed it, or its outcome landed, since the read above.
        if (moved === 0) continue;
        reclaimed.push(unit);
        if (next === 'PENDING') await this.core.notifyWork(t, unit.job_id);
        await this.jobs.bump(t, unit.job_id, deltas, unit.reserved_usd ? { reserved_usd: sql`reserved_usd - ${unit.reserved_usd}` } : {});
        await this.events.write(t, unit.job_id, 'unit', { unit_id: unit.id, attempt: unit.attempt, status: next, error: 'lease expired' });
      }
      for (const jobId of jobs.keys()) await this.jobs.finishIfDone(t, jobId);
      return reclaimed;
    });
  }

  async getUnit(id: number): Promise<UnitRow | undefined> {
    return this.db.selectFrom('work_units').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async firstUnit(jobId: number): Promise<UnitRow | undefined> {
    return this.db.selectFrom('work_units').selectAll().where('job_id', '=', jobId).orderBy('id').limit(1).executeTakeFirst();
  }

  /**
   * One page of a job's units in id order. With `after` (a unit id) the page
   * starts past it (keyset paging: a few index seeks, wherever the page is in
   * the job); with `offset` it skips that many matching rows first, which walks
   * them, so it suits only small offsets.
   */
  async listUnits(jobId: number, filter: UnitFilter, page: UnitPage): Promise<UnitRow[]> {
    if (page.after !== undefined) return this.unitsAfter(jobId, filter, page.after, page.limit);
    let q = this.db.selectFrom('work_units').selectAll().where('job_id', '=', jobId);
    if (filter.status?.length) q = q.where('status', 'in', filter.status);
    if (filter.kind) q = q.where('kind', '=', filter.kind);
    return q.orderBy('id').limit(page.limit).offset(page.offset ?? 0).execute();
  }

  /**
   * Up to `limit` units of one state with id > `after`, in id order: one ordered
   * stretch of work_units_claim (job_id, status, id), on both databases. Without
   * the state, `job_id = ? AND id > ? ORDER BY id` has no index in id order, and
   * each page read every unit of the job past `after` and sorted them (SQLite
   * always; PostgreSQL while the table has no statistics, as after a bulk insert).
   */
  private stateAfter(jobId: number, status: UnitState, kind: UnitFilter['kind'], after: number, limit: number) {
    let q = this.db.selectFrom('work_units').selectAll().where('job_id', '=', jobId).where('status', '=', status);
    if (kind) q = q.where('kind', '=', kind);
    return q.where('id', '>', after).orderBy('id').limit(limit);
  }

  /**
   * Up to `limit` units with id > `after`, in id order (keyset paging). Each
   * state the filter takes (all of them without one) is its own stretch of the
   * claim index (stateAfter); the stretches are read in one statement (UNION
   * ALL), so from one snapshot: a unit moving between states meanwhile is in
   * exactly one of them, never in two or none.
   */
  async unitsAfter(jobId: number, filter: UnitFilter, after: number, limit: number): Promise<UnitRow[]> {
    const states = filter.status?.length ? [...new Set(filter.status)] : [...UNIT_STATES];
    if (states.length === 1) return this.stateAfter(jobId, states[0] as UnitState, filter.kind, after, limit).execute();
    const parts = states.map((status) => this.db.selectFrom(this.stateAfter(jobId, status, filter.kind, after, limit).as('s')).selectAll());
    const union = parts.slice(1).reduce((u, part) => u.unionAll(part), parts[0] as (typeof parts)[number]);
    return this.db.selectFrom(union.as('u')).selectAll().orderBy('id').limit(limit).execute() as Promise<UnitRow[]>;
  }

  /**
   * Every unit of a job in id order, a page at a time so memory stays flat:
   * keyset pages (unitsAfter), so ids only rise and each unit is yielded at
   * most once, and every unit that stays in the filter is yielded.
   */
  async *iterateUnits(jobId: number, filter: UnitFilter, pageSize: number): AsyncGenerator<UnitRow> {
    let after = 0;
    for (;;) {
      const rows = await this.unitsAfter(jobId, filter, after, pageSize);
      for (const row of rows) yield row;
      if (rows.length < pageSize) return;
      after = Number((rows.at(-1) as UnitRow).id);
    }
  }

  async unitDurations(ids: number[]): Promise<{ id: number; duration_ms: number | null }[]> {
    if (ids.length === 0) return [];
    return this.db.selectFrom('work_units').select(['id', 'duration_ms']).where('id', 'in', ids).execute();
  }

  /** When each finished unit of a job ended, and what it cost: the dashboard's charts. */
  async unitFinishes(jobId: number): Promise<{ finished_at: number | null; status: UnitState; cost_usd: number | null }[]> {
    return this.db
      .selectFrom('work_units')
      .select(['finished_at', 'status', 'cost_usd'])
      .where('job_id', '=', jobId)
      .where('finished_at', 'is not', null)
      .orderBy('finished_at')
      .execute();
  }

  /**
   * A job's RUNNING units, each with the id of its newest conversation event
   * (null before the first). The units come from work_units_claim (job_id,
   * status, id); each newest event is one probe of unit_events_unit (unit_id, id).
   */
  async runningUnitsActivity(jobId: number): Promise<UnitActivity[]> {
    return this.db
      .selectFrom('work_units')
      .select(['work_units.id as unit_id', 'work_units.item_id', 'work_units.attempt', 'work_units.started_at'])
      .select((eb) =>
        eb.selectFrom('unit_events').select('unit_events.id').whereRef('unit_events.unit_id', '=', 'work_units.id').orderBy('unit_events.id', 'desc').limit(1).as('event_id'),
      )
      .where('work_units.job_id', '=', jobId)
      .where(RUNNING)
      .orderBy('work_units.id')
      .execute();
  }
}
