import type { JobMove, JobState, UnitMove, UnitState } from '../domain/states.js';
import { BatchStore } from './batch-store.js';
import { EventStore } from './event-store.js';
import { FleetStore, type Totals } from './fleet-store.js';
import { JobStore, type Counts, type JobEventDraft, type JobPatch, type Page, type UnitDraft } from './job-store.js';
import { CacheStore, type CachedResponse } from './cache-store.js';
import type { BatchRow, EventRow, ExecutorRow, JobRow, NewJob, UnitEventRow, UnitRow } from './schema.js';
import { SQLITE, Transactions, type Db, type StoreBackend } from './tx.js';
import { UnitOutcomes, type OutcomeEntry, type OutcomeUnit, type OutcomeWrite } from './unit-outcomes.js';
import type { UnitMoveSet } from './unit-moves.js';
import { UnitStore, type BatchClaim, type ClaimedUnit, type UnitActivity, type UnitFilter, type UnitPage } from './unit-store.js';

export type { Db, StoreBackend } from './tx.js';
export { CODE_REFUSED, PENDING_APPROVAL, type JobEventDraft, type Page, type UnitDraft } from './job-store.js';
export { CLAIMED_COLUMNS, type ClaimedUnit, type UnitFilter, type UnitPage } from './unit-store.js';
export type { OutcomeEntry, OutcomeUnit, OutcomeWrite } from './unit-outcomes.js';
export type { HeldUnit } from './batch-store.js';
export type { CachedResponse } from './cache-store.js';

/**
 * The only place with SQL, as one object every caller uses. It delegates to the
 * store's modules, one per aggregate around the shared transaction primitive
 * (tx.ts): jobs and their counters (job-store.ts), claims, leases and unit reads
 * (unit-store.ts), fenced outcomes (unit-outcomes.ts), the event logs
 * (event-store.ts), and executors, cool-downs and fleet reads (fleet-store.ts).
 * Every unit move changes the job's counters in the same transaction, so a status
 * read is one row; the locking order is described in tx.ts.
 */
export class Repository {
  private readonly core: Transactions;
  private readonly events: EventStore;
  private readonly jobs: JobStore;
  private readonly units: UnitStore;
  private readonly outcomes: UnitOutcomes;
  private readonly fleet: FleetStore;
  /** Provider batches (llm_batches): the ledger the executor's BatchRunner keeps. */
  readonly batches: BatchStore;

  constructor(db: Db, backend: StoreBackend = SQLITE) {
    this.core = new Transactions(db, backend);
    this.events = new EventStore(db);
    this.jobs = new JobStore(this.core, this.events);
    this.units = new UnitStore(this.core, this.jobs, this.events);
    this.outcomes = new UnitOutcomes(this.core, this.jobs, this.events);
    this.fleet = new FleetStore(this.core);
    this.batches = new BatchStore(this.core, this.jobs, this.events);
  }

  /** Which database this is, for messages only; code paths must not branch on it outside store/. */
  get dialect(): StoreBackend['kind'] {
    return this.core.backend.kind;
  }

  async close(): Promise<void> {
    return this.core.close();
  }

  /** A job's open provider batches, newest first, and how many ended (JobReader). */
  async jobBatches(jobId: number): Promise<{ open: BatchRow[]; ended: number }> {
    return this.batches.ofJob(jobId);
  }

  /**
   * Calls `onWork` when a job gets runnable units somewhere in the cluster
   * (PostgreSQL LISTEN/NOTIFY). On SQLite it never fires: executors poll.
   * Resolves to an idempotent unsubscribe.
   */
  async onWork(onWork: (jobId: number) => void): Promise<() => Promise<void>> {
    return this.core.backend.listen(onWork);
  }

  /** A write transaction (BEGIN IMMEDIATE on SQLite; retried on a PostgreSQL deadlock). */
  async tx<T>(fn: (t: Db) => Promise<T>): Promise<T> {
    return this.core.tx(fn);
  }

  // ---- jobs -------------------------------------------------------------

  /** Inserts the job and all its units in one transaction; a throwing item stream leaves nothing. */
  async createJob(
    job: Omit<NewJob, 'created_at' | 'updated_at' | 'status'>,
    units: AsyncIterable<UnitDraft>,
    /** Events to record with the job, read once every unit is in (e.g. rows the enumerator skipped). */
    finalEvents: () => JobEventDraft[] = () => [],
  ): Promise<JobRow> {
    return this.jobs.createJob(job, units, finalEvents);
  }

  /**
   * The one way a job comes to be, inside a transaction `t` the caller holds (a
   * sync run adds its own rows beside it): the row, its units, its events.
   * Returns the new job's id.
   */
  async insertJobIn(
    t: Db,
    job: Omit<NewJob, 'created_at' | 'updated_at' | 'status'>,
    units: AsyncIterable<UnitDraft> | Iterable<UnitDraft>,
    events: JobEventDraft[],
    options: { empty: 'refuse' | 'allow' },
  ): Promise<number> {
    return this.jobs.insertJob(t, job, units, () => events, options);
  }

  /** Whether a person has approved code with exactly this sha256. */
  async isCodeApproved(sha256: string): Promise<boolean> {
    return this.jobs.isCodeApproved(sha256);
  }

  /** A CREATED job with no units whose code waits for approval (status_reason `pending_approval`). */
  async createPendingJob(job: Omit<NewJob, 'created_at' | 'updated_at' | 'status' | 'status_reason'>): Promise<JobRow> {
    return this.jobs.createPendingJob(job);
  }

  /** Records the approval of a pending job's code and inserts its units, in one transaction. */
  async fillPendingJob(
    id: number,
    approval: { code_sha256: string; approved_by: string },
    units: AsyncIterable<UnitDraft>,
    finalEvents: () => JobEventDraft[] = () => [],
  ): Promise<JobRow> {
    return this.jobs.fillPendingJob(id, approval, units, finalEvents);
  }

  /** Cancels a pending job whose code a person refused, recording the refusal, in one transaction. */
  async refusePendingJob(id: number, refusal: { code_sha256: string; refused_by: string }): Promise<JobRow> {
    return this.jobs.refusePendingJob(id, refusal);
  }

  async getJob(id: number): Promise<JobRow | undefined> {
    return this.jobs.getJob(id);
  }

  async requireJob(id: number, t?: Db): Promise<JobRow> {
    return this.jobs.requireJob(id, t);
  }

  async listJobs(filter: { status?: JobState[] }, page: Page): Promise<JobRow[]> {
    return this.jobs.listJobs(filter, page);
  }

  async countJobsByStatus(): Promise<Partial<Record<JobState, number>>> {
    return this.jobs.countJobsByStatus();
  }

  /** Jobs an executor should look at: those that may have units to run. */
  async activeJobs(): Promise<JobRow[]> {
    return this.jobs.activeJobs();
  }

  async updateJobFields(
    id: number,
    allowed: JobState[],
    fields: Partial<Pick<JobRow, 'prompt_template' | 'user_intent' | 'name' | 'max_cost_usd' | 'auto_resume' | 'approval_asked'>>,
  ): Promise<JobRow> {
    return this.jobs.updateJobFields(id, allowed, fields);
  }

  /** Records the environment variables a job needs its executor to have (JSON list of names), for a job that has not ended. */
  async setEnvNeeds(id: number, envNeeds: string): Promise<void> {
    return this.jobs.setEnvNeeds(id, envNeeds);
  }

  /** Moves a job through the state table, with `effects` on its units in the same transaction. */
  async moveJob(
    id: number,
    move: JobMove,
    options: { reason?: string | null; patch?: JobPatch; effects?: (t: Db, job: JobRow) => Promise<void> } = {},
  ): Promise<JobRow> {
    return this.jobs.moveJob(id, move, options);
  }

  /** Moves every unit of a job that is in a `from` state of the move; returns how many moved. */
  async moveUnitsIn(t: Db, jobId: number, move: UnitMove, set: UnitMoveSet = {}, onlyUnitId?: number): Promise<number> {
    return this.jobs.moveUnitsIn(t, jobId, move, set, onlyUnitId);
  }

  /** Counts units by state with a real COUNT(*), the ground truth the counters must match. */
  async countUnits(jobId: number): Promise<Counts> {
    return this.jobs.countsIn(this.core.db, jobId);
  }

  /** Drops a job's synthesis unit so that a fresh one runs when its units are done again. */
  async dropSynthesisIn(t: Db, job: JobRow): Promise<void> {
    return this.jobs.dropSynthesisIn(t, job);
  }

  /** Ends a RUNNING job with nothing pending or running (after its synthesis unit, if it has one). */
  async finishIfDone(t: Db, jobId: number): Promise<JobRow | undefined> {
    return this.jobs.finishIfDone(t, jobId);
  }

  async finishJobIfDone(jobId: number): Promise<JobRow | undefined> {
    return this.core.tx((t) => this.jobs.finishIfDone(t, jobId));
  }

  // ---- units: the executor's path ---------------------------------------------

  /** Claims up to `want` runnable units of one job, within its cluster-wide max_workers and budget. */
  /** Claims runnable units; `forBatch` claims for a provider batch (no max_workers bound; reserved at the batch price). */
  async claimUnits(jobId: number, owner: string, want: number, leaseMs: number, forBatch?: BatchClaim): Promise<{ job: JobRow; units: ClaimedUnit[] }> {
    return this.units.claimUnits(jobId, owner, want, leaseMs, forBatch);
  }

  /** Writes an attempt's outcome, fenced by attempt and lease owner; false when fenced out. */
  async recordOutcome(unit: OutcomeUnit, owner: string, w: OutcomeWrite): Promise<boolean> {
    const [written] = await this.recordOutcomes([{ unit, owner, write: w }]);
    return written === true;
  }

  /** Several outcomes, pids and conversation events in one transaction; says which outcomes were written. */
  async recordOutcomes(
    outcomes: OutcomeEntry[],
    pids: { unit_id: number; attempt: number; pid: number }[] = [],
    unitEvents: Omit<UnitEventRow, 'id'>[] = [],
  ): Promise<boolean[]> {
    return this.outcomes.recordOutcomes(outcomes, pids, unitEvents);
  }

  /** A person stops one running attempt through the fenced outcome write; false when it ended first. */
  async stopUnit(unit: OutcomeUnit & { lease_owner: string | null }, write: OutcomeWrite): Promise<boolean> {
    return this.outcomes.stopUnit(unit, write);
  }

  /** The attempts of a job's units this owner still holds (RUNNING under its lease), by unit id. */
  async heldAttempts(jobId: number, owner: string): Promise<Map<number, number>> {
    return this.units.heldAttempts(jobId, owner);
  }

  /** Extends the leases of this owner's running units; returns how many it still holds. */
  async extendLeases(owner: string, leaseMs: number, unitIds: readonly number[]): Promise<number> {
    return this.units.extendLeases(owner, leaseMs, unitIds);
  }

  async setWorkerPid(unitId: number, attempt: number, pid: number, t: Db = this.core.db): Promise<void> {
    return this.outcomes.setWorkerPid(unitId, attempt, pid, t);
  }

  /** Units whose lease expired go back to PENDING (spending a retry) or to FAILED; returns them. */
  async reclaimExpired(now = Date.now()): Promise<UnitRow[]> {
    return this.units.reclaimExpired(now);
  }

  async getUnit(id: number): Promise<UnitRow | undefined> {
    return this.units.getUnit(id);
  }

  async firstUnit(jobId: number): Promise<UnitRow | undefined> {
    return this.units.firstUnit(jobId);
  }

  /** A page of a job's units: `after` a unit id (keyset, any depth) or `offset` (small offsets). */
  async listUnits(jobId: number, filter: UnitFilter, page: UnitPage): Promise<UnitRow[]> {
    return this.units.listUnits(jobId, filter, page);
  }

  /** Every unit of a job in id order, read a page at a time so memory stays flat. */
  iterateUnits(jobId: number, filter: UnitFilter = {}, pageSize = 1000): AsyncGenerator<UnitRow> {
    return this.units.iterateUnits(jobId, filter, pageSize);
  }

  // ---- conversations and events ---------------------------------------------

  async unitEvents(unitId: number): Promise<UnitEventRow[]> {
    return this.events.unitEvents(unitId);
  }

  async appendEvent(jobId: number | null, type: string, data: unknown): Promise<void> {
    return this.events.write(this.core.db, jobId, type, data);
  }

  /** Appends an event and returns its seq (for checkpoints, whose callers want the id). */
  async recordEvent(jobId: number, type: string, data: unknown): Promise<EventRow> {
    return this.events.writeReturning(this.core.db, jobId, type, data);
  }

  async listEvents(jobId: number, afterSeq: number, limit: number): Promise<EventRow[]> {
    return this.events.listEvents(jobId, afterSeq, limit);
  }

  /** Events of every job after a seq, optionally of some types only: the metrics tail. */
  async eventsAfter(afterSeq: number, types: string[], limit: number): Promise<EventRow[]> {
    return this.events.eventsAfter(afterSeq, types, limit);
  }

  // ---- rate-limit cool-downs and executors ------------------------------------

  /** Holds `workerType` back on every executor until `until` (never shortens a longer one). */
  async shareCoolDown(workerType: string, until: number): Promise<void> {
    return this.fleet.shareCoolDown(workerType, until);
  }

  /** Cool-downs still running, by worker type: epoch ms when each ends. */
  async activeCoolDowns(now = Date.now()): Promise<Map<string, number>> {
    return this.fleet.activeCoolDowns(now);
  }

  /** Registers an executor; `slot`: the launch slot it was started for, which it replaces. */
  async registerExecutor(row: ExecutorRow, slot?: string): Promise<void> {
    return this.fleet.registerExecutor(row, slot);
  }

  /** Decides on and records the launch of an executor, atomically across processes: see FleetStore.claimLaunch. */
  async claimLaunch(staleMs: number, launch: (live: ExecutorRow[]) => ExecutorRow | undefined): Promise<ExecutorRow | undefined> {
    return this.fleet.claimLaunch(staleMs, launch);
  }

  /** Returns false when the executor has no row (it was pruned as stale). */
  async heartbeat(id: string): Promise<boolean> {
    return this.fleet.heartbeat(id);
  }

  async unregisterExecutor(id: string): Promise<void> {
    return this.fleet.unregisterExecutor(id);
  }

  /** Executors whose heartbeat is fresher than `staleMs`. Liveness is the heartbeat, never a bare PID. */
  async liveExecutors(staleMs: number): Promise<ExecutorRow[]> {
    return this.fleet.liveExecutors(staleMs);
  }

  async pruneExecutors(staleMs: number): Promise<void> {
    return this.fleet.pruneExecutors(staleMs);
  }

  // ---- the HTTP front end: readiness, metrics, dashboard links, live activity ----

  async unitDurations(ids: number[]): Promise<{ id: number; duration_ms: number | null }[]> {
    return this.units.unitDurations(ids);
  }

  /** Unit counters, cost and tokens summed over every job: one aggregate over the jobs table. */
  async totals(): Promise<Totals> {
    return this.fleet.totals();
  }

  /** Every registered executor, fresh or stale (the heartbeat age is the metric). */
  async executors(): Promise<ExecutorRow[]> {
    return this.fleet.executors();
  }

  /** When each finished unit of a job ended, and what it cost: the dashboard's charts. */
  async unitFinishes(jobId: number): Promise<{ finished_at: number | null; status: UnitState; cost_usd: number | null }[]> {
    return this.units.unitFinishes(jobId);
  }

  /** The names of the migrations this database has run; a failed query means it is unreachable. */
  async executedMigrations(): Promise<string[]> {
    return this.fleet.executedMigrations();
  }

  async insertDashboardToken(tokenSha256: string, expiresAt: number): Promise<void> {
    return this.fleet.insertDashboardToken(tokenSha256, expiresAt);
  }

  /** Spends a one-time token: true for exactly one caller, and only before it expires. */
  async consumeDashboardToken(tokenSha256: string, now = Date.now()): Promise<boolean> {
    return this.fleet.consumeDashboardToken(tokenSha256, now);
  }

  /** A job's RUNNING units, each with the id of its newest conversation event (null before the first). */
  async runningUnitsActivity(jobId: number): Promise<UnitActivity[]> {
    return this.units.runningUnitsActivity(jobId);
  }

  /** A unit's newest conversation events up to and including `uptoId`, newest first. */
  async unitEventsTail(unitId: number, uptoId: number, limit: number): Promise<UnitEventRow[]> {
    return this.events.unitEventsTail(unitId, uptoId, limit);
  }

  /** The seq of a job's newest event (0 when it has none), through events_job (job_id, seq). */
  async lastEventSeq(jobId: number): Promise<number> {
    return this.events.lastEventSeq(jobId);
  }

  // ---- the response cache (src/executor/response-cache.ts) ----------------------

  private cacheStore: CacheStore | undefined;

  /**
   * A SUCCEEDED unit of any job whose request had this cache key, one that was
   * asked for (not itself a cache hit) preferred; undefined when there is none.
   */
  async cachedResponse(cacheKey: string): Promise<CachedResponse | undefined> {
    this.cacheStore ??= new CacheStore(this.core.db);
    return this.cacheStore.cachedResponse(cacheKey);
  }
}
