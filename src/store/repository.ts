import { CompiledQuery, sql, type Kysely } from 'kysely';
import { AbpError, jobNotFound } from '../domain/errors.js';
import {
  assertJobMove,
  counterColumn,
  UNIT_MOVES,
  UNIT_STATES,
  type JobMove,
  type JobState,
  type UnitMove,
  type UnitState,
} from '../domain/states.js';
import { WORK_CHANNEL } from './postgres.js';
import type { Database, EventRow, ExecutorRow, JobRow, NewJob, UnitEventRow, UnitRow } from './schema.js';

/** A database handle, possibly inside a transaction. Opaque outside store/. */
export type Db = Kysely<Database>;
type Counts = Record<'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled', number>;

/** Items for one job, already serialised, as the enumeration streams them. */
export interface UnitDraft {
  item_id: string;
  payload: string;
}

/** What the executor writes when an attempt ends. */
export interface OutcomeWrite {
  next: Extract<UnitState, 'SUCCEEDED' | 'FAILED' | 'PENDING' | 'CANCELLED'>;
  /** Whether this attempt spent one of the unit's retries. */
  spent: boolean;
  available_at?: number;
  prompt?: string | null;
  output?: string | null;
  structured_output?: string | null;
  error?: string | null;
  error_kind?: string | null;
  exit_code?: number | null;
  stderr_tail?: string | null;
  cost_usd?: number | null;
  input_tokens?: number | null;
  output_tokens?: number | null;
  usage?: string | null;
  session_id?: string | null;
  duration_ms?: number | null;
}

/** The columns an OutcomeWrite may set besides status, failures and available_at. */
const OUTCOME_COLUMNS: ReadonlySet<string> = new Set([
  'prompt', 'output', 'structured_output', 'error', 'error_kind', 'exit_code', 'stderr_tail',
  'cost_usd', 'input_tokens', 'output_tokens', 'usage', 'session_id', 'duration_ms',
] satisfies (keyof OutcomeWrite)[]);

/** Units by state, and by kind: 'item' leaves out the synthesis unit. */
export interface UnitFilter {
  status?: UnitState[];
  kind?: 'item' | 'synthesis';
}

export interface Page {
  limit: number;
  offset: number;
}

const INSERT_BATCH = 1000;

/** What a batch of written outcomes changes on one job's row. */
class OutcomeTally {
  readonly deltas: Partial<Record<UnitState, number>> = {};
  handedBack = false;
  private reserved = 0;
  private costed = 0;
  private unitMs = 0;
  private cost = 0;
  private inputTokens = 0;
  private outputTokens = 0;

  add(unit: OutcomeUnit, w: OutcomeWrite, now: number): void {
    this.deltas.RUNNING = (this.deltas.RUNNING ?? 0) - 1;
    this.deltas[w.next] = (this.deltas[w.next] ?? 0) + 1;
    if (w.next === 'PENDING' && (w.available_at ?? 0) <= now) this.handedBack = true;
    // The claim that this fenced write belongs to reserved it (it came back with the claimed row).
    this.reserved += unit.reserved_usd ?? 0;
    if (w.cost_usd !== undefined && w.cost_usd !== null) this.costed++;
    if (w.duration_ms && w.next !== 'PENDING') this.unitMs += w.duration_ms;
    this.cost += w.cost_usd ?? 0;
    this.inputTokens += w.input_tokens ?? 0;
    this.outputTokens += w.output_tokens ?? 0;
  }

  /** Column updates beside the state counters, only for what changed. */
  extra(): Record<string, unknown> {
    const extra: Record<string, unknown> = {};
    if (this.reserved) extra.reserved_usd = sql`reserved_usd - ${this.reserved}`;
    if (this.costed) extra.costed_units = sql`costed_units + ${this.costed}`;
    if (this.unitMs) extra.unit_ms_total = sql`unit_ms_total + ${this.unitMs}`;
    if (this.cost) extra.cost_usd = sql`cost_usd + ${this.cost}`;
    if (this.inputTokens) extra.input_tokens = sql`input_tokens + ${this.inputTokens}`;
    if (this.outputTokens) extra.output_tokens = sql`output_tokens + ${this.outputTokens}`;
    return extra;
  }
}

/** What an outcome write needs of the claimed unit: its fencing token and its reservation. */
export type OutcomeUnit = Pick<UnitRow, 'id' | 'job_id' | 'attempt' | 'reserved_usd'>;

/** A running unit, as a literal: the partial index work_units_running is used only then (migration 007). */
const RUNNING = sql<boolean>`"status" = 'RUNNING'`;

/** What running a claimed unit needs of its row: the claim returns only these columns. */
export const CLAIMED_COLUMNS = ['id', 'job_id', 'attempt', 'failures', 'payload', 'kind', 'error_kind', 'error', 'output', 'reserved_usd'] as const;
export type ClaimedUnit = Pick<UnitRow, (typeof CLAIMED_COLUMNS)[number]>;

/** The status_reason of a CREATED job whose code waits for a person's approval. */
export const PENDING_APPROVAL = 'pending_approval';

/** An event recorded together with a job's creation. */
export interface JobEventDraft {
  type: string;
  data: unknown;
}

/** What differs between the two databases, below the repository. */
export interface StoreBackend {
  readonly kind: 'sqlite' | 'postgres';
  /** Calls `onWork` when another process signals runnable units; resolves to an unsubscribe. */
  listen(onWork: (jobId: number) => void): Promise<() => Promise<void>>;
  /** Runs `fn` while holding a database-wide lock (migrations). */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
}

const SQLITE: StoreBackend = { kind: 'sqlite', listen: async () => async () => undefined, exclusive: (fn) => fn() };

/** PostgreSQL's deadlock_detected and serialization_failure: the transaction may simply run again. */
const RETRYABLE_TX = new Set(['40P01', '40001']);

/**
 * The only place with SQL. Every unit move changes the job's counters in the same
 * transaction, so a status read is one row.
 *
 * On PostgreSQL, claims and job moves lock the job row first (lockJob): that makes
 * the running counter, and so max_workers, exact across executors. Outcome writes,
 * the hot path, update their unit first and the job's counters last, so the job
 * row stays locked only briefly. The rare deadlock of an outcome write with a job
 * move that touches the same units (pause, cancel) is detected by the server, and
 * tx() runs the losing transaction again.
 */
export class Repository {
  private closed = false;
  private readonly pg: boolean;
  /** fencedOutcome's SQL text by the outcome's shape. */
  private readonly outcomeSql = new Map<string, string>();

  constructor(
    private readonly db: Db,
    private readonly backend: StoreBackend = SQLITE,
  ) {
    this.pg = backend.kind === 'postgres';
  }

  /** Which database this is, for messages only; code paths must not branch on it outside store/. */
  get dialect(): StoreBackend['kind'] {
    return this.backend.kind;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.db.destroy();
  }

  /**
   * Calls `onWork` when a job gets runnable units somewhere in the cluster
   * (PostgreSQL LISTEN/NOTIFY). On SQLite it never fires: executors poll.
   * Resolves to an idempotent unsubscribe.
   */
  async onWork(onWork: (jobId: number) => void): Promise<() => Promise<void>> {
    return this.backend.listen(onWork);
  }

  /** Tells listening executors that `jobId` has runnable units, once the transaction commits. */
  private async notifyWork(t: Db, jobId: number): Promise<void> {
    if (this.pg) await sql`select pg_notify(${WORK_CHANNEL}, ${String(jobId)})`.execute(t);
  }

  /** Reads a job inside a transaction, locking its row on PostgreSQL (see the class comment). */
  private async lockJob(t: Db, id: number): Promise<JobRow> {
    let q = t.selectFrom('jobs').selectAll().where('id', '=', id);
    if (this.pg) q = q.forUpdate();
    const job = await q.executeTakeFirst();
    if (!job) throw jobNotFound(id);
    return job;
  }

  /**
   * A write transaction. SQLite takes the write lock up front (BEGIN IMMEDIATE), so
   * concurrent executors wait on busy_timeout instead of failing on lock upgrade.
   * PostgreSQL runs a READ COMMITTED transaction with row locks (lockJob), and runs
   * it again if the server picked it as a deadlock victim.
   */
  async tx<T>(fn: (t: Db) => Promise<T>): Promise<T> {
    if (this.pg) {
      for (let attempt = 1; ; attempt++) {
        try {
          return await this.db.transaction().execute(fn);
        } catch (err) {
          if (attempt >= 5 || !RETRYABLE_TX.has((err as { code?: string }).code ?? '')) throw err;
          await new Promise((r) => setTimeout(r, 10 * attempt + Math.random() * 20));
        }
      }
    }
    return this.db.connection().execute(async (conn) => {
      await sql`begin immediate`.execute(conn);
      try {
        const result = await fn(conn);
        await sql`commit`.execute(conn);
        return result;
      } catch (err) {
        await sql`rollback`.execute(conn).catch(() => undefined);
        throw err;
      }
    });
  }

  // ---- jobs -------------------------------------------------------------

  /**
   * Inserts the job and all its units in one transaction. If the item stream
   * throws partway, nothing is left behind.
   */
  async createJob(
    job: Omit<NewJob, 'created_at' | 'updated_at' | 'status'>,
    units: AsyncIterable<UnitDraft>,
    /** Events to record with the job, read once every unit is in (e.g. rows the enumerator skipped). */
    finalEvents: () => JobEventDraft[] = () => [],
  ): Promise<JobRow> {
    return this.tx(async (t) => {
      const now = Date.now();
      const { id } = await t
        .insertInto('jobs')
        .values({ ...job, status: 'CREATED', created_at: now, updated_at: now })
        .returning('id')
        .executeTakeFirstOrThrow();
      let seq = 0;
      let batch: { job_id: number; seq: number; item_id: string; payload: string; status: UnitState }[] = [];
      const flush = async () => {
        if (batch.length === 0) return;
        await t.insertInto('work_units').values(batch).execute();
        batch = [];
      };
      for await (const unit of units) {
        batch.push({ job_id: id, seq: seq++, item_id: unit.item_id, payload: unit.payload, status: 'PENDING' });
        if (batch.length >= INSERT_BATCH) await flush();
      }
      await flush();
      if (seq === 0) {
        throw new AbpError('enumeration_failed', 'the enumeration produced no items; no job was created');
      }
      await t.updateTable('jobs').set({ total: seq, pending: seq }).where('id', '=', id).execute();
      await this.event(t, id, 'status', { status: 'CREATED', total: seq });
      for (const e of finalEvents()) await this.event(t, id, e.type, e.data);
      return t.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    });
  }

  // ---- code approvals (user code such as the dynamic enumerator's) ------------

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
    return this.tx(async (t) => {
      const now = Date.now();
      const { id } = await t
        .insertInto('jobs')
        .values({ ...job, status: 'CREATED', status_reason: PENDING_APPROVAL, created_at: now, updated_at: now })
        .returning('id')
        .executeTakeFirstOrThrow();
      await this.event(t, id, 'status', { status: 'CREATED', reason: PENDING_APPROVAL, total: 0 });
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
    finalEvents: () => JobEventDraft[] = () => [],
  ): Promise<JobRow> {
    return this.tx(async (t) => {
      const job = await this.lockJob(t, id);
      if (job.status !== 'CREATED' || job.status_reason !== PENDING_APPROVAL) {
        throw new AbpError('conflict', `job ${id} is ${job.status}${job.status_reason ? ` (${job.status_reason})` : ''}; only a job pending approval can be approved`);
      }
      const now = Date.now();
      await t.insertInto('code_approvals').values({ ...approval, job_id: id, created_at: now }).execute();
      let seq = 0;
      let batch: { job_id: number; seq: number; item_id: string; payload: string; status: UnitState }[] = [];
      for await (const unit of units) {
        batch.push({ job_id: id, seq: seq++, item_id: unit.item_id, payload: unit.payload, status: 'PENDING' });
        if (batch.length >= INSERT_BATCH) {
          await t.insertInto('work_units').values(batch).execute();
          batch = [];
        }
      }
      if (batch.length > 0) await t.insertInto('work_units').values(batch).execute();
      if (seq === 0) throw new AbpError('enumeration_failed', 'the enumeration produced no items; the job stays pending approval');
      await t.updateTable('jobs').set({ total: seq, pending: seq, status_reason: null, updated_at: now }).where('id', '=', id).execute();
      await this.event(t, id, 'code_approved', { code_sha256: approval.code_sha256, approved_by: approval.approved_by, total: seq });
      for (const e of finalEvents()) await this.event(t, id, e.type, e.data);
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
    return this.tx(async (t) => {
      const job = await this.lockJob(t, id);
      if (!allowed.includes(job.status)) {
        throw new AbpError('conflict', `job ${id} is ${job.status}; only a ${allowed.join(' or ')} job can be edited`);
      }
      await t
        .updateTable('jobs')
        .set({ ...fields, updated_at: Date.now() })
        .where('id', '=', id)
        .execute();
      await this.event(t, id, 'updated', { fields: Object.keys(fields) });
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
    options: {
      reason?: string | null;
      patch?: Partial<Pick<JobRow, 'test_unit_id' | 'resume_at' | 'approved_by' | 'env_needs'>>;
      effects?: (t: Db, job: JobRow) => Promise<void>;
    } = {},
  ): Promise<JobRow> {
    return this.tx(async (t) => {
      const job = await this.lockJob(t, id);
      await this.moveJobIn(t, job, move, options.reason ?? null, options.effects, options.patch);
      return this.requireJob(id, t);
    });
  }

  private async moveJobIn(
    t: Db,
    job: JobRow,
    move: JobMove,
    reason: string | null,
    effects?: (t: Db, job: JobRow) => Promise<void>,
    patch: Partial<Pick<JobRow, 'test_unit_id' | 'resume_at' | 'approved_by' | 'env_needs'>> = {},
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
    if (to === 'RUNNING' || to === 'TESTING') await this.notifyWork(t, job.id);
    await this.event(t, job.id, 'status', { status: to, from: job.status, move, reason, ...(patch.approved_by ? { approved_by: patch.approved_by } : {}) });
  }

  // ---- units: bulk moves used by job moves ----------------------------------

  /** Moves every unit of a job that is in a `from` state of the move; returns how many moved. */
  async moveUnitsIn(
    t: Db,
    jobId: number,
    move: UnitMove,
    set: Partial<Omit<UnitRow, 'id' | 'job_id' | 'status'>> = {},
    onlyUnitId?: number,
  ): Promise<number> {
    const rule = UNIT_MOVES[move];
    let q = t
      .updateTable('work_units')
      .set({ ...set, status: rule.to })
      .where('job_id', '=', jobId)
      .where('status', 'in', [...rule.from]);
    if (onlyUnitId !== undefined) q = q.where('id', '=', onlyUnitId);
    const result = await q.executeTakeFirst();
    const moved = Number(result.numUpdatedRows);
    if (moved > 0) {
      if (rule.to === 'PENDING') await this.notifyWork(t, jobId);
      const after = await this.countsIn(t, jobId);
      await t
        .updateTable('jobs')
        .set({ ...after, updated_at: Date.now() })
        .where('id', '=', jobId)
        .execute();
    }
    return moved;
  }

  /** Counts units by state with a real COUNT(*), the ground truth the counters must match. */
  async countUnits(jobId: number): Promise<Counts> {
    return this.countsIn(this.db, jobId);
  }

  private async countsIn(t: Db, jobId: number): Promise<Counts> {
    const rows = await t
      .selectFrom('work_units')
      .select(['status', (eb) => eb.fn.countAll<number>().as('n')])
      .where('job_id', '=', jobId)
      .groupBy('status')
      .execute();
    const counts: Counts = { pending: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
    for (const row of rows) counts[counterColumn(row.status)] = Number(row.n);
    return counts;
  }

  /** Moves a job's counters by deltas; returns the job as it is after. */
  private async bump(t: Db, jobId: number, deltas: Partial<Record<UnitState, number>>, extra: Record<string, unknown> = {}): Promise<JobRow> {
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

  // ---- units: the executor's path ---------------------------------------------

  /**
   * Claims up to `want` runnable units of one job, within the job's cluster-wide
   * `max_workers` (its running counter). A TESTING job only ever hands out its test unit.
   */
  async claimUnits(jobId: number, owner: string, want: number, leaseMs: number): Promise<{ job: JobRow; units: ClaimedUnit[] }> {
    return this.tx(async (t) => {
      // The job row lock makes the running counter, and so max_workers, exact across executors.
      const job = await this.lockJob(t, jobId);
      if (job.status !== 'RUNNING' && job.status !== 'TESTING') return { job, units: [] };
      const { take, expected, exhausted } = budgetRoom(job, Math.min(want, job.max_workers - job.running));
      if (exhausted && job.status === 'RUNNING' && job.pending > 0) {
        // Spent plus reserved would pass the cap: stop claiming and say why.
        await this.moveJobIn(t, job, 'pause', exhausted);
        return { job: await this.requireJob(jobId, t), units: [] };
      }
      const room = take;
      if (room <= 0) return { job, units: [] };
      const now = Date.now();
      let candidates = t
        .selectFrom('work_units')
        .select('id')
        .where('job_id', '=', jobId)
        .where('status', '=', 'PENDING')
        .where('available_at', '<=', now);
      if (job.status === 'TESTING') candidates = candidates.where('id', '=', job.test_unit_id ?? -1);
      const units = await t
        .updateTable('work_units')
        .set({
          status: 'RUNNING',
          attempt: sql`attempt + 1`,
          lease_owner: owner,
          lease_expires_at: now + leaseMs,
          started_at: now,
          worker_pid: null,
          reserved_usd: expected,
        })
        // One statement; on PostgreSQL rows another transaction holds are skipped, not waited on.
        .where('id', 'in', this.pg ? candidates.orderBy('id').limit(room).forUpdate().skipLocked() : candidates.orderBy('id').limit(room))
        // Not returningAll: a row's every column, made into an object, cost a third of a claim.
        .returning(CLAIMED_COLUMNS)
        .execute();
      if (units.length > 0) {
        const reserve = expected > 0 ? { reserved_usd: sql`reserved_usd + ${expected * units.length}` } : {};
        await this.bump(t, jobId, { PENDING: -units.length, RUNNING: units.length }, reserve);
      }
      return { job, units };
    });
  }

  /**
   * Writes an attempt's outcome, fenced by the attempt number and the lease owner:
   * an attempt that lost its lease can never overwrite a newer one. Returns false
   * when the write was fenced out.
   */
  async recordOutcome(unit: OutcomeUnit, owner: string, w: OutcomeWrite): Promise<boolean> {
    const [written] = await this.recordOutcomes([{ unit, owner, write: w }]);
    return written === true;
  }

  /**
   * Several outcomes (with the pids of units just started and the conversation
   * events of running ones) in one transaction: an
   * executor finishing many short units pays for one commit, and one counter
   * update per job, not one each. Each outcome is fenced on its own; the result
   * says which were written.
   */
  async recordOutcomes(
    outcomes: { unit: OutcomeUnit; owner: string; write: OutcomeWrite }[],
    pids: { unit_id: number; attempt: number; pid: number }[] = [],
    unitEvents: Omit<UnitEventRow, 'id'>[] = [],
  ): Promise<boolean[]> {
    return this.tx((t) => this.recordOutcomesIn(t, outcomes, pids, unitEvents));
  }

  private async recordOutcomesIn(
    t: Db,
    outcomes: { unit: OutcomeUnit; owner: string; write: OutcomeWrite }[],
    pids: { unit_id: number; attempt: number; pid: number }[],
    unitEvents: Omit<UnitEventRow, 'id'>[],
  ): Promise<boolean[]> {
    for (const p of pids) await this.setWorkerPid(p.unit_id, p.attempt, p.pid, t);
    for (let i = 0; i < unitEvents.length; i += 500) await t.insertInto('unit_events').values(unitEvents.slice(i, i + 500)).execute();
    const now = Date.now();
    const written: boolean[] = [];
    const tallies = new Map<number, OutcomeTally>();
    const events: { job_id: number; type: string; data: string; created_at: number }[] = [];
    // Every unit row first, without the job rows' locks, so that concurrent
    // outcomes of one job serialise only on the counters' update at the end.
    for (const { unit, owner, write: w } of outcomes) {
      const ok = await this.fencedOutcome(t, unit, owner, w, now);
      written.push(ok);
      if (!ok) continue;
      let tally = tallies.get(unit.job_id);
      if (!tally) tallies.set(unit.job_id, (tally = new OutcomeTally()));
      tally.add(unit, w, now);
      events.push({
        job_id: unit.job_id,
        type: 'unit',
        created_at: now,
        data: JSON.stringify({
          unit_id: unit.id,
          attempt: unit.attempt,
          status: w.next,
          ...(w.error ? { error: w.error.slice(0, 500), error_kind: w.error_kind } : {}),
        }),
      });
    }
    for (let i = 0; i < events.length; i += 500) await t.insertInto('events').values(events.slice(i, i + 500)).execute();
    for (const [jobId, tally] of [...tallies].sort(([a], [b]) => a - b)) {
      // A unit handed back for now (not after a backoff) can run elsewhere at once.
      if (tally.handedBack) await this.notifyWork(t, jobId);
      const job = await this.bump(t, jobId, tally.deltas, tally.extra());
      if (job.status === 'RUNNING' && job.pending === 0 && job.running === 0) await this.finishIfDone(t, jobId);
    }
    return written;
  }

  /**
   * A person stops one running attempt: its outcome is written here, fenced like
   * the executor's own (which is then refused), and the job's `unit_stops` rises so
   * that the executor holding the unit sees the change on its next pass and kills
   * the unit's processes. False when the attempt ended first.
   */
  async stopUnit(unit: OutcomeUnit & { lease_owner: string | null }, write: OutcomeWrite): Promise<boolean> {
    if (unit.lease_owner === null) return false;
    const owner = unit.lease_owner;
    return this.tx(async (t) => {
      const [written] = await this.recordOutcomesIn(t, [{ unit, owner, write }], [], []);
      if (written) await t.updateTable('jobs').set({ unit_stops: sql`unit_stops + 1` } as never).where('id', '=', unit.job_id).execute();
      return written === true;
    });
  }

  /** The attempts of a job's units this owner still holds (RUNNING under its lease), by unit id. */
  async heldAttempts(jobId: number, owner: string): Promise<Map<number, number>> {
    const rows = await this.db.selectFrom('work_units').select(['id', 'attempt']).where(RUNNING).where('lease_owner', '=', owner).where('job_id', '=', jobId).execute();
    return new Map(rows.map((r) => [r.id, r.attempt]));
  }

  /**
   * Drops a job's synthesis unit so that a fresh one runs when the job's units are
   * done again (a re-done unit changed what it would gather). The job keeps the old
   * result until the new synthesis replaces it.
   */
  async dropSynthesisIn(t: Db, job: JobRow): Promise<void> {
    if (job.synthesis_unit_id === null) return;
    await t.deleteFrom('unit_events').where('unit_id', '=', job.synthesis_unit_id).execute();
    await t.deleteFrom('work_units').where('id', '=', job.synthesis_unit_id).execute();
    await t.updateTable('jobs').set({ synthesis_unit_id: null, total: sql`total - 1`, ...(await this.countsIn(t, job.id)) } as never).where('id', '=', job.id).execute();
    await this.event(t, job.id, 'synthesis_dropped', { unit_id: job.synthesis_unit_id });
  }

  /**
   * The unit row of one outcome, fenced by attempt and lease owner; false if fenced out.
   * This runs once per unit on the executor's hot path, where building the query with
   * Kysely cost more than running it: the SQL text is built once per shape (the set of
   * fields an outcome carries, a handful in all) and only the values change.
   */
  private async fencedOutcome(t: Db, unit: OutcomeUnit, owner: string, w: OutcomeWrite, now: number): Promise<boolean> {
    const { next, spent, available_at } = w;
    const columns: (keyof OutcomeWrite)[] = [];
    for (const c in w) if (c !== 'next' && c !== 'spent' && c !== 'available_at' && w[c as keyof OutcomeWrite] !== undefined) columns.push(c as keyof OutcomeWrite);
    const shape = columns.join(',');
    let text = this.outcomeSql.get(shape);
    if (text === undefined) {
      for (const c of columns) if (!OUTCOME_COLUMNS.has(c)) throw new AbpError('store_error', `an outcome cannot set the column ${JSON.stringify(c)}`);
      let n = 0;
      const p = (): string => (this.pg ? `$${++n}` : '?');
      const set = [
        `"status" = ${p()}`,
        `"failures" = "failures" + ${p()}`,
        `"available_at" = ${p()}`,
        `"finished_at" = ${p()}`,
        '"lease_owner" = null',
        '"lease_expires_at" = null',
        '"worker_pid" = null',
        '"reserved_usd" = 0',
        ...columns.map((c) => `"${c}" = ${p()}`),
      ];
      text = `update "work_units" set ${set.join(', ')} where "id" = ${p()} and "attempt" = ${p()} and "status" = 'RUNNING' and "lease_owner" = ${p()}`;
      this.outcomeSql.set(shape, text);
    }
    const values = [next, spent ? 1 : 0, available_at ?? 0, next === 'PENDING' ? null : now, ...columns.map((c) => w[c]), unit.id, unit.attempt, owner];
    const result = await t.executeQuery(CompiledQuery.raw(text, values));
    return Number(result.numAffectedRows ?? 0) > 0;
  }

  /**
   * A RUNNING job with nothing pending or running ends COMPLETED, or FAILED if any
   * unit failed. A job with a post_processing_prompt first gets one synthesis unit
   * (when every unit succeeded, or with allow_partial); its outcome decides the end.
   */
  async finishIfDone(t: Db, jobId: number): Promise<JobRow | undefined> {
    const job = await this.lockJob(t, jobId);
    if (job.status !== 'RUNNING' || job.pending > 0 || job.running > 0) return undefined;
    if (job.post_processing_prompt !== null) {
      if (job.synthesis_unit_id === null) {
        if (job.failed === 0 || job.allow_partial) {
          const unit = await t
            .insertInto('work_units')
            .values({ job_id: jobId, seq: job.total, item_id: '_synthesis', payload: '{}', status: 'PENDING', kind: 'synthesis' })
            .returning('id')
            .executeTakeFirstOrThrow();
          await t
            .updateTable('jobs')
            .set({ synthesis_unit_id: unit.id, total: sql`total + 1`, pending: sql`pending + 1`, updated_at: Date.now() } as never)
            .where('id', '=', jobId)
            .execute();
          await this.event(t, jobId, 'synthesis', { unit_id: unit.id, failed_units: job.failed });
          await this.notifyWork(t, jobId);
          return this.requireJob(jobId, t);
        }
      } else {
        const synthesis = await t.selectFrom('work_units').selectAll().where('id', '=', job.synthesis_unit_id).executeTakeFirstOrThrow();
        if (synthesis.status === 'SUCCEEDED') {
          await t.updateTable('jobs').set({ result: synthesis.output }).where('id', '=', jobId).execute();
          const partial = job.failed > 0 ? `partial: ${job.failed} of ${job.total - 1} units failed` : null;
          await this.moveJobIn(t, job, 'complete', partial);
        } else {
          await this.moveJobIn(t, job, 'fail', `synthesis_failed: ${synthesis.error ?? synthesis.status}`);
        }
        return this.requireJob(jobId, t);
      }
    }
    if (job.failed > 0) {
      await this.moveJobIn(t, job, 'fail', `units_failed: ${job.failed} of ${job.total} units failed`);
    } else {
      await this.moveJobIn(t, job, 'complete', null);
    }
    return this.requireJob(jobId, t);
  }

  async finishJobIfDone(jobId: number): Promise<JobRow | undefined> {
    return this.tx((t) => this.finishIfDone(t, jobId));
  }

  /** Extends the leases of this owner's running units; returns how many it still holds. */
  async extendLeases(owner: string, leaseMs: number): Promise<number> {
    const result = await this.db
      .updateTable('work_units')
      .set({ lease_expires_at: Date.now() + leaseMs })
      .where('lease_owner', '=', owner)
      .where(RUNNING)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async setWorkerPid(unitId: number, attempt: number, pid: number, t: Db = this.db): Promise<void> {
    await t
      .updateTable('work_units')
      .set({ worker_pid: pid })
      .where('id', '=', unitId)
      .where('attempt', '=', attempt)
      .where('status', '=', 'RUNNING')
      .execute();
  }

  /**
   * Units whose lease expired (their executor died or hung) go back to PENDING,
   * spending one retry, or to FAILED when none are left. Returns them so that the
   * caller can reap process groups left behind on this host.
   */
  async reclaimExpired(now = Date.now()): Promise<UnitRow[]> {
    // Every executor asks on every pass; most of the time there is nothing, and then no transaction.
    const any = await this.db
      .selectFrom('work_units')
      .select('id')
      .where(RUNNING)
      .where('lease_expires_at', '<', now)
      .limit(1)
      .executeTakeFirst();
    if (!any) return [];
    return this.tx(async (t) => {
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
        const job = jobs.get(unit.job_id) ?? (await this.lockJob(t, unit.job_id));
        jobs.set(job.id, job);
        const failures = unit.failures + 1;
        const next: UnitState = failures > job.max_retries ? 'FAILED' : 'PENDING';
        const moved = await t
          .updateTable('work_units')
          .set({
            status: next,
            failures,
            lease_owner: null,
            lease_expires_at: null,
            worker_pid: null,
            error: `lease expired: executor ${unit.lease_owner} stopped answering during attempt ${unit.attempt}`,
            error_kind: 'retryable',
            finished_at: next === 'FAILED' ? now : null,
            reserved_usd: 0,
          })
          .where('id', '=', unit.id)
          .where('attempt', '=', unit.attempt)
          .where('status', '=', 'RUNNING')
          .executeTakeFirst();
        // Another executor reclaimed it, or its outcome landed, since the read above.
        if (Number(moved.numUpdatedRows) === 0) continue;
        reclaimed.push(unit);
        if (next === 'PENDING') await this.notifyWork(t, unit.job_id);
        await this.bump(
          t,
          unit.job_id,
          { RUNNING: -1, [next]: 1 },
          unit.reserved_usd ? { reserved_usd: sql`reserved_usd - ${unit.reserved_usd}` } : {},
        );
        await this.event(t, unit.job_id, 'unit', { unit_id: unit.id, attempt: unit.attempt, status: next, error: 'lease expired' });
      }
      for (const jobId of jobs.keys()) await this.finishIfDone(t, jobId);
      return reclaimed;
    });
  }

  async getUnit(id: number): Promise<UnitRow | undefined> {
    return this.db.selectFrom('work_units').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async firstUnit(jobId: number): Promise<UnitRow | undefined> {
    return this.db.selectFrom('work_units').selectAll().where('job_id', '=', jobId).orderBy('id').limit(1).executeTakeFirst();
  }

  async listUnits(jobId: number, filter: UnitFilter, page: Page): Promise<UnitRow[]> {
    let q = this.db.selectFrom('work_units').selectAll().where('job_id', '=', jobId);
    if (filter.status?.length) q = q.where('status', 'in', filter.status);
    if (filter.kind) q = q.where('kind', '=', filter.kind);
    return q.orderBy('id').limit(page.limit).offset(page.offset).execute();
  }

  /** Every unit of a job in id order, read a page at a time so memory stays flat. */
  async *iterateUnits(jobId: number, filter: UnitFilter = {}, pageSize = 1000): AsyncGenerator<UnitRow> {
    let after = 0;
    for (;;) {
      let q = this.db.selectFrom('work_units').selectAll().where('job_id', '=', jobId).where('id', '>', after);
      if (filter.status?.length) q = q.where('status', 'in', filter.status);
      if (filter.kind) q = q.where('kind', '=', filter.kind);
      const rows = await q.orderBy('id').limit(pageSize).execute();
      for (const row of rows) yield row;
      if (rows.length < pageSize) return;
      after = (rows.at(-1) as UnitRow).id;
    }
  }

  // ---- conversations and events ---------------------------------------------

  async unitEvents(unitId: number): Promise<UnitEventRow[]> {
    return this.db.selectFrom('unit_events').selectAll().where('unit_id', '=', unitId).orderBy('id').execute();
  }

  async appendEvent(jobId: number | null, type: string, data: unknown): Promise<void> {
    await this.event(this.db, jobId, type, data);
  }

  private async event(t: Db, jobId: number | null, type: string, data: unknown): Promise<void> {
    await t
      .insertInto('events')
      .values({ job_id: jobId, type, data: JSON.stringify(data), created_at: Date.now() })
      .execute();
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

  // ---- rate-limit cool-downs, shared by every executor ------------------------

  /** Holds `workerType` back on every executor until `until` (never shortens a longer one). */
  async shareCoolDown(workerType: string, until: number): Promise<void> {
    const now = Date.now();
    await this.db
      .insertInto('cool_downs')
      .values({ worker_type: workerType, until, updated_at: now })
      .onConflict((oc) =>
        oc
          .column('worker_type')
          .doUpdateSet({ until, updated_at: now })
          .where('cool_downs.until', '<', until),
      )
      .execute();
  }

  /** Cool-downs still running, by worker type: epoch ms when each ends. */
  async activeCoolDowns(now = Date.now()): Promise<Map<string, number>> {
    const rows = await this.db.selectFrom('cool_downs').select(['worker_type', 'until']).where('until', '>', now).execute();
    return new Map(rows.map((r) => [r.worker_type, r.until]));
  }

  // ---- executors ------------------------------------------------------------

  async registerExecutor(row: ExecutorRow): Promise<void> {
    await this.db.insertInto('executors').values(row).execute();
  }

  /** Returns false when the executor has no row (it was pruned as stale). */
  async heartbeat(id: string): Promise<boolean> {
    const result = await this.db.updateTable('executors').set({ heartbeat_at: Date.now() }).where('id', '=', id).executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async unregisterExecutor(id: string): Promise<void> {
    await this.db.deleteFrom('executors').where('id', '=', id).execute();
  }

  /** Executors whose heartbeat is fresher than `staleMs`. Liveness is the heartbeat, never a bare PID. */
  async liveExecutors(staleMs: number): Promise<ExecutorRow[]> {
    return this.db
      .selectFrom('executors')
      .selectAll()
      .where('heartbeat_at', '>=', Date.now() - staleMs)
      .execute();
  }

  async pruneExecutors(staleMs: number): Promise<void> {
    await this.db
      .deleteFrom('executors')
      .where('heartbeat_at', '<', Date.now() - staleMs)
      .execute();
  }

  // ---- the HTTP front end: events, readiness, metrics, dashboard links --------

  /** Appends an event and returns its seq (for checkpoints, whose callers want the id). */
  async recordEvent(jobId: number, type: string, data: unknown): Promise<EventRow> {
    return this.db
      .insertInto('events')
      .values({ job_id: jobId, type, data: JSON.stringify(data), created_at: Date.now() })
      .returningAll()
      .executeTakeFirstOrThrow();
  }

  /** Events of every job after a seq, optionally of some types only: the metrics tail. */
  async eventsAfter(afterSeq: number, types: string[], limit: number): Promise<EventRow[]> {
    let q = this.db.selectFrom('events').selectAll().where('seq', '>', afterSeq);
    if (types.length > 0) q = q.where('type', 'in', types);
    return q.orderBy('seq').limit(limit).execute();
  }

  async unitDurations(ids: number[]): Promise<{ id: number; duration_ms: number | null }[]> {
    if (ids.length === 0) return [];
    return this.db.selectFrom('work_units').select(['id', 'duration_ms']).where('id', 'in', ids).execute();
  }

  /** Unit counters, cost and tokens summed over every job: one aggregate over the jobs table. */
  async totals(): Promise<Counts & { cost_usd: number; input_tokens: number; output_tokens: number }> {
    const row = await this.db
      .selectFrom('jobs')
      .select((eb) => [
        eb.fn.sum<number>('pending').as('pending'),
        eb.fn.sum<number>('running').as('running'),
        eb.fn.sum<number>('succeeded').as('succeeded'),
        eb.fn.sum<number>('failed').as('failed'),
        eb.fn.sum<number>('cancelled').as('cancelled'),
        eb.fn.sum<number>('cost_usd').as('cost_usd'),
        eb.fn.sum<number>('input_tokens').as('input_tokens'),
        eb.fn.sum<number>('output_tokens').as('output_tokens'),
      ])
      .executeTakeFirst();
    const n = (v: unknown) => Number(v ?? 0);
    return {
      pending: n(row?.pending),
      running: n(row?.running),
      succeeded: n(row?.succeeded),
      failed: n(row?.failed),
      cancelled: n(row?.cancelled),
      cost_usd: n(row?.cost_usd),
      input_tokens: n(row?.input_tokens),
      output_tokens: n(row?.output_tokens),
    };
  }

  /** Every registered executor, fresh or stale (the heartbeat age is the metric). */
  async executors(): Promise<ExecutorRow[]> {
    return this.db.selectFrom('executors').selectAll().execute();
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

  /** The names of the migrations this database has run; a failed query means it is unreachable. */
  async executedMigrations(): Promise<string[]> {
    const rows = await this.db
      .withTables<{ kysely_migration: { name: string } }>()
      .selectFrom('kysely_migration')
      .select('name')
      .execute();
    return rows.map((r) => r.name);
  }

  async insertDashboardToken(tokenSha256: string, expiresAt: number): Promise<void> {
    await this.db.insertInto('dashboard_tokens').values({ token_sha256: tokenSha256, created_at: Date.now(), expires_at: expiresAt, used_at: null }).execute();
  }

  /** Spends a one-time token: true for exactly one caller, and only before it expires. */
  async consumeDashboardToken(tokenSha256: string, now = Date.now()): Promise<boolean> {
    const result = await this.db
      .updateTable('dashboard_tokens')
      .set({ used_at: now })
      .where('token_sha256', '=', tokenSha256)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    // Spent and expired tokens are useless; dropping them keeps the table small.
    await this.db.deleteFrom('dashboard_tokens').where('expires_at', '<', now - 24 * 3600 * 1000).execute();
    return Number(result.numUpdatedRows) === 1;
  }

  // ---- live activity (dashboard) ----

  /**
   * A job's RUNNING units, each with the id of its newest conversation event
   * (null before the first). The units come from work_units_claim (job_id,
   * status, id); each newest event is one probe of unit_events_unit (unit_id, id).
   */
  async runningUnitsActivity(jobId: number): Promise<{ unit_id: number; item_id: string; attempt: number; started_at: number | null; event_id: number | null }[]> {
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

  /** A unit's newest conversation events up to and including `uptoId`, newest first. */
  async unitEventsTail(unitId: number, uptoId: number, limit: number): Promise<UnitEventRow[]> {
    return this.db.selectFrom('unit_events').selectAll().where('unit_id', '=', unitId).where('id', '<=', uptoId).orderBy('id', 'desc').limit(limit).execute();
  }

  /** The seq of a job's newest event (0 when it has none), through events_job (job_id, seq). */
  async lastEventSeq(jobId: number): Promise<number> {
    const row = await this.db.selectFrom('events').select((eb) => eb.fn.max('seq').as('seq')).where('job_id', '=', jobId).executeTakeFirst();
    return row?.seq === null || row?.seq === undefined ? 0 : Number(row.seq);
  }
}

/**
 * How many units a job may claim within its budget. Each claim reserves the
 * expected cost of a unit: the running mean of the units that reported one (at
 * first, the test unit's). With no cost known yet, one unit at a time probes it.
 */
export function budgetRoom(job: JobRow, room: number): { take: number; expected: number; exhausted: string | null } {
  if (job.max_cost_usd === null || room <= 0) return { take: Math.max(0, room), expected: 0, exhausted: null };
  const expected = job.costed_units > 0 ? job.cost_usd / job.costed_units : 0;
  const left = job.max_cost_usd - job.cost_usd - job.reserved_usd;
  const why = `budget_exhausted: spent $${job.cost_usd.toFixed(4)} + reserved $${job.reserved_usd.toFixed(4)} of max_cost_usd $${job.max_cost_usd}; raise the budget, then resume`;
  if (left <= 0) return { take: 0, expected, exhausted: why };
  if (expected === 0) return { take: job.running > 0 ? 0 : Math.min(room, 1), expected, exhausted: null };
  const fits = Math.floor(left / expected + 1e-9);
  if (fits <= 0) return { take: 0, expected, exhausted: why };
  return { take: Math.min(room, fits), expected, exhausted: null };
}
