import { sql } from 'kysely';
import { onPausingFailure, outOfWork } from '../domain/job-rules.js';
import type { JobState, UnitMove, UnitState } from '../domain/states.js';
import type { EventStore, NewEvent } from './event-store.js';
import type { JobStore } from './job-store.js';
import type { UnitEventRow, UnitRow } from './schema.js';
import type { Db, Transactions } from './tx.js';
import { applyFencedMoves, applyUnitMove, moveDeltas, type FencedMove, type UnitMoveSet } from './unit-moves.js';

/** What the executor writes when an attempt ends. */
export interface OutcomeWrite {
  /** CANCELLED only for a unit in a provider batch whose job was cancelled (harvest_cancel). */
  next: Extract<UnitState, 'SUCCEEDED' | 'FAILED' | 'PENDING' | 'CANCELLED'>;
  /** Whether this attempt spent one of the unit's retries. */
  spent: boolean;
  available_at?: number;
  /**
   * The failure is the worker's, not the unit's (auth, quota): the job pauses in
   * this outcome's transaction, as the job rules say (domain/job-rules.ts).
   */
  pause_job?: { reason: string; resume_at?: number };
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
  /** The response cache's key of the request (a success of a job with `cache` on). */
  cache_key?: string | null;
  /** A cache hit: the unit whose answer this is. */
  cached_from?: number | null;
}

/** What an outcome write needs of the claimed unit: its fencing token, its spent retries and its reservation. */
export type OutcomeUnit = Pick<UnitRow, 'id' | 'job_id' | 'attempt' | 'failures' | 'reserved_usd'>;

/**
 * One outcome of a batch of writes: the attempt, what holds it (the owner its
 * lease names, or the provider batch a SUBMITTED unit waits in), and what to write.
 */
export interface OutcomeEntry {
  unit: OutcomeUnit;
  owner: string | { batch: number };
  write: OutcomeWrite;
}

/** The pid of a unit's process, written once the attempt has started it. */
export interface WorkerPid {
  unit_id: number;
  attempt: number;
  pid: number;
}

/** The unit move an attempt's outcome makes, by the state it leaves the unit in. */
const OUTCOME_MOVE = { SUCCEEDED: 'succeed', FAILED: 'fail', PENDING: 'release' } as const satisfies Record<Exclude<OutcomeWrite['next'], 'CANCELLED'>, UnitMove>;

/** The same for a unit a provider batch holds (SUBMITTED): its result is harvested. */
const HARVEST_MOVE = { SUCCEEDED: 'harvest_succeed', FAILED: 'harvest_fail', PENDING: 'harvest_release', CANCELLED: 'harvest_cancel' } as const satisfies Record<OutcomeWrite['next'], UnitMove>;

/** The columns an OutcomeWrite may set besides status, failures and available_at. */
const OUTCOME_COLUMNS: readonly string[] = ([
  'prompt', 'output', 'structured_output', 'error', 'error_kind', 'exit_code', 'stderr_tail',
  'cost_usd', 'input_tokens', 'output_tokens', 'usage', 'session_id', 'duration_ms',
  'cache_key', 'cached_from',
] satisfies (keyof OutcomeWrite)[]);

/** What a batch of written outcomes changes on one job's row. */
class OutcomeTally {
  readonly deltas: Partial<Record<UnitState, number>> = {};
  handedBack = false;
  /** The first pause an outcome of this batch asks of the job. */
  pause: { reason: string; resume_at?: number } | undefined;
  private reserved = 0;
  private costed = 0;
  private unitMs = 0;
  private cost = 0;
  private inputTokens = 0;
  private outputTokens = 0;

  add(unit: OutcomeUnit, w: OutcomeWrite, deltas: Partial<Record<UnitState, number>>, now: number): void {
    for (const state in deltas) this.deltas[state as UnitState] = (this.deltas[state as UnitState] ?? 0) + (deltas[state as UnitState] ?? 0);
    if (w.pause_job && !this.pause) this.pause = w.pause_job;
    if (w.next === 'PENDING' && (w.available_at ?? 0) <= now) this.handedBack = true;
    // The claim that this fenced write belongs to reserved it (it came back with the claimed row).
    this.reserved += unit.reserved_usd ?? 0;
    // A cache hit costs nothing, but says nothing of what a unit costs: the running mean leaves it out.
    if (w.cost_usd !== undefined && w.cost_usd !== null && !w.cached_from) this.costed++;
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

/**
 * What the executor writes about a running attempt: the pid of its process, its
 * conversation events, and its outcome. The outcome is fenced by the attempt
 * number and the lease owner, the pid and the events by the attempt number (a
 * claim's own), so that an attempt that lost its lease never overwrites a newer
 * one nor adds to it.
 */
export class UnitOutcomes {
  constructor(
    private readonly core: Transactions,
    private readonly jobs: JobStore,
    private readonly events: EventStore,
  ) {}

  /**
   * Several outcomes (with the pids of units just started and the conversation
   * events of running ones) in one transaction: an
   * executor finishing many short units pays for one commit, and one counter
   * update per job, not one each. Each outcome is fenced on its own; the result
   * says which were written.
   */
  async recordOutcomes(outcomes: OutcomeEntry[], pids: WorkerPid[], unitEvents: Omit<UnitEventRow, 'id'>[]): Promise<boolean[]> {
    return this.core.tx((t) => this.recordOutcomesIn(t, outcomes, pids, unitEvents));
  }

  private async recordOutcomesIn(t: Db, outcomes: OutcomeEntry[], pids: WorkerPid[], unitEvents: Omit<UnitEventRow, 'id'>[]): Promise<boolean[]> {
    for (const p of pids) await this.setWorkerPid(p.unit_id, p.attempt, p.pid, t);
    await this.events.writeUnitEvents(t, await this.heldAttemptsOnly(t, unitEvents));
    const now = Date.now();
    const written: boolean[] = [];
    const tallies = new Map<number, OutcomeTally>();
    const events: NewEvent[] = [];
    /** A job's state for its pausing failures in this batch, with the pause they already asked for. */
    const pausing = new Map<number, JobState>();
    // What each outcome writes. A pausing failure (rare) reads its job's state first: the rule depends on it.
    const writes: OutcomeWrite[] = [];
    for (const { unit, write } of outcomes) {
      let w = write;
      if (w.pause_job) {
        const status = pausing.get(unit.job_id) ?? (await this.core.lockJob(t, unit.job_id)).status;
        const rule = onPausingFailure(status);
        if (rule === 'fail_unit') w = { ...w, next: 'FAILED', spent: true, pause_job: undefined };
        pausing.set(unit.job_id, rule === 'pause' ? 'PAUSED' : status);
      }
      writes.push(w);
    }
    // Every unit row next, without the job rows' locks, so that concurrent outcomes of one
    // job serialise only on the counters' update at the end: the leased attempts' in bulk,
    // one statement per move and shape, a provider batch's units one by one.
    const moves = outcomes.map((o, i) => outcomeMove(o, writes[i] as OutcomeWrite));
    const moved = await this.fencedOutcomes(t, outcomes, writes, moves, now);
    outcomes.forEach(({ unit }, i) => {
      const w = writes[i] as OutcomeWrite;
      written.push(moved[i] === true);
      if (!moved[i]) return;
      let tally = tallies.get(unit.job_id);
      if (!tally) tallies.set(unit.job_id, (tally = new OutcomeTally()));
      tally.add(unit, w, moveDeltas(moves[i] as UnitMove, 1), now);
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
    });
    await this.events.writeRows(t, events);
    for (const [jobId, tally] of [...tallies].sort(([a], [b]) => a - b)) {
      // A unit handed back for now (not after a backoff) can run elsewhere at once.
      if (tally.handedBack) await this.core.notifyWork(t, jobId);
      const job = await this.jobs.bump(t, jobId, tally.deltas, tally.extra());
      if (tally.pause && job.status === 'RUNNING') {
        const patch = tally.pause.resume_at !== undefined ? { resume_at: tally.pause.resume_at } : {};
        await this.jobs.moveJobIn(t, job, 'pause', tally.pause.reason, undefined, patch);
      } else if (job.status === 'RUNNING' && outOfWork(job)) await this.jobs.finishIfDone(t, jobId);
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
    return this.core.tx(async (t) => {
      const [written] = await this.recordOutcomesIn(t, [{ unit, owner, write }], [], []);
      if (written) await t.updateTable('jobs').set({ unit_stops: sql`unit_stops + 1` } as never).where('id', '=', unit.job_id).execute();
      return written === true;
    });
  }

  /**
   * The conversation events whose attempt still holds its unit (RUNNING at that
   * attempt), fenced like the pid and the outcome: the attempt number is the
   * fencing token, raised by every claim. An executor that was stopped (SIGSTOP, a
   * paused VM) past its lease and resumed after another executor took the unit
   * over would otherwise append its stale attempt's answer, cost and all, to a
   * conversation that another attempt has ended. A unit's events are queued before
   * its outcome, so in its own batch they land while it is still RUNNING.
   */
  private async heldAttemptsOnly<E extends { unit_id: number; attempt: number }>(t: Db, events: E[]): Promise<E[]> {
    if (events.length === 0) return events;
    const ids = [...new Set(events.map((e) => e.unit_id))];
    const held = new Set<string>();
    for (let i = 0; i < ids.length; i += 500) {
      const rows = await t
        .selectFrom('work_units')
        .select(['id', 'attempt'])
        .where('id', 'in', ids.slice(i, i + 500))
        .where('status', '=', 'RUNNING')
        .execute();
      for (const r of rows) held.add(`${r.id}:${r.attempt}`);
    }
    return events.filter((e) => held.has(`${e.unit_id}:${e.attempt}`));
  }

  async setWorkerPid(unitId: number, attempt: number, pid: number, t: Db): Promise<void> {
    await t
      .updateTable('work_units')
      .set({ worker_pid: pid })
      .where('id', '=', unitId)
      .where('attempt', '=', attempt)
      .where('status', '=', 'RUNNING')
      .execute();
  }

  /**
   * The unit rows of a batch of outcomes (`moves[i]` is outcome i's move), each
   * fenced by its attempt and what holds it: the leased attempts' moves (succeed, fail or release) through
   * applyFencedMoves, a provider batch's units (harvested) one by one through
   * applyUnitMove. Says, per outcome, whether its row moved.
   */
  private async fencedOutcomes(t: Db, outcomes: readonly OutcomeEntry[], writes: readonly OutcomeWrite[], moves: readonly UnitMove[], now: number): Promise<boolean[]> {
    const moved = new Array<boolean>(outcomes.length).fill(false);
    const leased = new Map<UnitMove, { index: number[]; moves: FencedMove[] }>();
    for (let i = 0; i < outcomes.length; i++) {
      const { unit, owner } = outcomes[i] as OutcomeEntry;
      const move = moves[i] as UnitMove;
      const set = outcomeSet(unit, writes[i] as OutcomeWrite, now);
      const fence = { jobId: unit.job_id, unitId: unit.id, attempt: unit.attempt };
      if (typeof owner === 'string') {
        let group = leased.get(move);
        if (!group) leased.set(move, (group = { index: [], moves: [] }));
        group.index.push(i);
        group.moves.push({ where: { ...fence, leaseOwner: owner }, set });
      } else {
        moved[i] = (await applyUnitMove(t, move, { ...fence, batchId: owner.batch }, set)).moved > 0;
      }
    }
    for (const [move, group] of leased) {
      const done = await applyFencedMoves(t, move, group.moves);
      group.index.forEach((i, k) => (moved[i] = done[k] === true));
    }
    return moved;
  }
}

/** The unit move an outcome makes: by the state it leaves the unit in, and by what held it (a lease, or a provider batch). */
function outcomeMove({ unit, owner }: OutcomeEntry, w: OutcomeWrite): UnitMove {
  if (typeof owner !== 'string') return HARVEST_MOVE[w.next];
  // A leased attempt ends SUCCEEDED, FAILED or PENDING; only a batch's unit may end CANCELLED (its job was).
  if (w.next === 'CANCELLED') throw new Error(`unit ${unit.id}: a leased attempt's outcome cannot be CANCELLED`);
  return OUTCOME_MOVE[w.next];
}

/** What an outcome sets on its unit's row besides the status. */
function outcomeSet(unit: OutcomeUnit, w: OutcomeWrite, now: number): UnitMoveSet {
  const set: UnitMoveSet = {
    failures: unit.failures + (w.spent ? 1 : 0),
    available_at: w.available_at ?? 0,
    finished_at: w.next === 'PENDING' ? null : now,
    lease_owner: null,
    lease_expires_at: null,
    worker_pid: null,
    reserved_usd: 0,
  };
  for (const c of OUTCOME_COLUMNS) {
    const v = w[c as keyof OutcomeWrite];
    if (v !== undefined) (set as Record<string, unknown>)[c] = v;
  }
  return set;
}
