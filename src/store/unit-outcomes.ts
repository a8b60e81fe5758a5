import { CompiledQuery, sql } from 'kysely';
import { AbpError } from '../domain/errors.js';
import type { UnitState } from '../domain/states.js';
import type { EventStore, NewEvent } from './event-store.js';
import type { JobStore } from './job-store.js';
import type { UnitEventRow, UnitRow } from './schema.js';
import type { Db, Transactions } from './tx.js';

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

/** What an outcome write needs of the claimed unit: its fencing token and its reservation. */
export type OutcomeUnit = Pick<UnitRow, 'id' | 'job_id' | 'attempt' | 'reserved_usd'>;

/** One outcome of a batch: the attempt, the owner its lease names, and what to write. */
export interface OutcomeEntry {
  unit: OutcomeUnit;
  owner: string;
  write: OutcomeWrite;
}

/** The pid of a unit's process, written once the attempt has started it. */
export interface WorkerPid {
  unit_id: number;
  attempt: number;
  pid: number;
}

/** The columns an OutcomeWrite may set besides status, failures and available_at. */
const OUTCOME_COLUMNS: ReadonlySet<string> = new Set([
  'prompt', 'output', 'structured_output', 'error', 'error_kind', 'exit_code', 'stderr_tail',
  'cost_usd', 'input_tokens', 'output_tokens', 'usage', 'session_id', 'duration_ms',
] satisfies (keyof OutcomeWrite)[]);

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

/**
 * What the executor writes about a running attempt: the pid of its process, its
 * conversation events, and its outcome, fenced by the attempt number and the
 * lease owner so that an attempt that lost its lease never overwrites a newer one.
 */
export class UnitOutcomes {
  /** fencedOutcome's SQL text by the outcome's shape. */
  private readonly outcomeSql = new Map<string, string>();

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
    await this.events.writeUnitEvents(t, unitEvents);
    const now = Date.now();
    const written: boolean[] = [];
    const tallies = new Map<number, OutcomeTally>();
    const events: NewEvent[] = [];
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
    await this.events.writeRows(t, events);
    for (const [jobId, tally] of [...tallies].sort(([a], [b]) => a - b)) {
      // A unit handed back for now (not after a backoff) can run elsewhere at once.
      if (tally.handedBack) await this.core.notifyWork(t, jobId);
      const job = await this.jobs.bump(t, jobId, tally.deltas, tally.extra());
      if (job.status === 'RUNNING' && job.pending === 0 && job.running === 0) await this.jobs.finishIfDone(t, jobId);
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
      const p = (): string => (this.core.pg ? `$${++n}` : '?');
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
}
