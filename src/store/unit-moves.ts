import { CompiledQuery, sql, type Expression } from 'kysely';
import { AbpError } from '../domain/errors.js';
import { UNIT_MOVES, type UnitMove, type UnitState } from '../domain/states.js';
import type { UnitRow } from './schema.js';
import { isPostgres, type Db } from './tx.js';

/*
 * The one way a unit's status changes. Every move (a claim, an attempt's
 * outcome, a lease's reclaim, a person's cancel, retry or redo) is named in the
 * unit state table (UNIT_MOVES), and applyUnitMove writes it with the table's
 * `from` states in its WHERE and its `to` state in its SET, and returns how the
 * job's counters change. The caller moves them with JobStore.bump in the same
 * transaction; nothing else writes a unit's status.
 */

/** Which units a move applies to, beside the move's `from` states: a job's, and optionally one of them. */
export interface UnitMoveWhere {
  jobId: number;
  unitId?: number;
  /** Fencing: only this attempt of the unit… */
  attempt?: number;
  /** …and only while this owner's lease holds it. */
  leaseOwner?: string;
  /** …or only while this provider batch holds it (a SUBMITTED unit has no lease). */
  batchId?: number;
  /** Only the units whose ids this subquery selects (a claim's candidates). */
  among?: Expression<{ id: number }>;
}

/** What a move may set on the rows it moves besides their status: values, or SQL expressions on the row. */
export type UnitMoveSet = { [K in keyof Omit<UnitRow, 'id' | 'job_id' | 'status'>]?: UnitRow[K] | Expression<unknown> };

export interface UnitMoveResult<R = never> {
  /** The state the units moved to. */
  to: UnitState;
  /** How many units moved. */
  moved: number;
  /** How the job's counters change: exact, one UPDATE per `from` state. */
  deltas: Partial<Record<UnitState, number>>;
  /** The moved rows' `returning` columns. */
  rows: R[];
}

/** The columns a prepared move may set (the fenced outcome's), each a bit of the move's shape. */
const PREPARED_COLUMNS = [
  'failures', 'available_at', 'finished_at', 'lease_owner', 'lease_expires_at', 'worker_pid', 'reserved_usd',
  'prompt', 'output', 'structured_output', 'error', 'error_kind', 'exit_code', 'stderr_tail',
  'cost_usd', 'input_tokens', 'output_tokens', 'usage', 'session_id', 'duration_ms', 'batch_id',
  'cache_key', 'cached_from',
] as const;
const PREPARED_BIT = new Map<string, number>(PREPARED_COLUMNS.map((c, i) => [c, 1 << i]));

/** Prepared SQL text by dialect, move, from-state and the shape of what it sets. */
const prepared = new Map<string, string>();

/**
 * Moves units by name through the unit state table in `t`. It does not touch
 * the job's row: the caller applies `deltas` to the counters in the same transaction.
 */
export async function applyUnitMove(t: Db, move: UnitMove, where: UnitMoveWhere, set?: UnitMoveSet): Promise<UnitMoveResult>;
export async function applyUnitMove<C extends keyof UnitRow>(
  t: Db,
  move: UnitMove,
  where: UnitMoveWhere,
  set: UnitMoveSet,
  returning: readonly C[],
): Promise<UnitMoveResult<Pick<UnitRow, C>>>;
export async function applyUnitMove(t: Db, move: UnitMove, where: UnitMoveWhere, set: UnitMoveSet = {}, returning?: readonly (keyof UnitRow)[]): Promise<UnitMoveResult<unknown>> {
  const rule = UNIT_MOVES[move];
  const deltas: Partial<Record<UnitState, number>> = {};
  const rows: unknown[] = [];
  let moved = 0;
  const shape = returning ? null : fencedShape(where, set);
  for (const from of rule.from) {
    let n: number;
    if (returning) {
      const got = await query(t, move, from, where, set).returning(returning as never).execute();
      rows.push(...got);
      n = got.length;
    } else if (shape !== null) {
      n = await fencedOne(t, move, from, where, set, shape);
    } else {
      n = Number((await query(t, move, from, where, set).executeTakeFirst()).numUpdatedRows);
    }
    if (n === 0 || from === rule.to) {
      moved += n;
      continue;
    }
    moved += n;
    deltas[from] = (deltas[from] ?? 0) - n;
    deltas[rule.to] = (deltas[rule.to] ?? 0) + n;
  }
  return { to: rule.to, moved, deltas, rows };
}

/** The counters' change for `n` units moved by a one-state move (a batch of outcomes adds them up). */
export function moveDeltas(move: UnitMove, n: number): Partial<Record<UnitState, number>> {
  const rule = UNIT_MOVES[move];
  const [from] = rule.from;
  if (rule.from.length !== 1 || from === undefined) throw new AbpError('store_error', `the unit move ${move} starts from several states; its counters come from applyUnitMove`);
  return from === rule.to || n === 0 ? {} : { [from]: -n, [rule.to]: n };
}

function query(t: Db, move: UnitMove, from: UnitState, where: UnitMoveWhere, set: UnitMoveSet) {
  let q = t
    .updateTable('work_units')
    .set({ ...set, status: UNIT_MOVES[move].to } as never)
    .where('job_id', '=', where.jobId)
    .where('status', '=', from);
  if (where.unitId !== undefined) q = q.where('id', '=', where.unitId);
  if (where.attempt !== undefined) q = q.where('attempt', '=', where.attempt);
  if (where.leaseOwner !== undefined) q = q.where('lease_owner', '=', where.leaseOwner);
  if (where.batchId !== undefined) q = q.where('batch_id', '=', where.batchId);
  if (where.among !== undefined) {
    // PostgreSQL: ARRAY(…) makes the candidates an InitPlan, chosen once. As `IN (…)` beside the
    // state filter the planner may run the subquery again for each row, and with LIMIT … SKIP LOCKED
    // every run picks the next unlocked rows: a claim of one unit took them all.
    q = isPostgres(t) ? q.where(sql<boolean>`"id" = any(array(${where.among}))`) : q.where('id', 'in', where.among as never);
  }
  return q;
}

/**
 * One fenced unit (id, attempt, owner) with plain values: the executor's hot
 * path, prepared once per shape. The shape is the set of columns the move sets,
 * as bits of PREPARED_COLUMNS; null when the move is not such a one.
 */
function fencedShape(where: UnitMoveWhere, set: UnitMoveSet): number | null {
  if (where.unitId === undefined || where.attempt === undefined || where.leaseOwner === undefined || where.among !== undefined || where.batchId !== undefined) return null;
  let shape = 0;
  let unknown: string | undefined;
  for (const c in set) {
    const v = set[c as keyof UnitMoveSet];
    if (v === undefined) continue;
    if (v !== null && typeof v === 'object') return null;
    const bit = PREPARED_BIT.get(c);
    if (bit === undefined) unknown ??= c;
    else shape |= bit;
  }
  if (unknown !== undefined) throw new AbpError('store_error', `a unit move cannot set the column ${JSON.stringify(unknown)}`);
  return shape;
}

/**
 * The fenced move as prepared text. On the executor's hot path building the
 * statement with Kysely cost more than running it, so the text is built once per
 * dialect, move and shape (a handful in all) and only the values change.
 */
async function fencedOne(t: Db, move: UnitMove, from: UnitState, where: UnitMoveWhere, set: UnitMoveSet, shape: number): Promise<number> {
  const pg = isPostgres(t);
  const key = `${pg ? 'pg' : 'sqlite'}|${move}|${from}|${shape}`;
  const values: unknown[] = [];
  for (let i = 0; i < PREPARED_COLUMNS.length; i++) if (shape & (1 << i)) values.push(set[PREPARED_COLUMNS[i] as keyof UnitMoveSet]);
  let text = prepared.get(key);
  if (text === undefined) {
    let n = 0;
    const p = (): string => (pg ? `$${++n}` : '?');
    const columns = PREPARED_COLUMNS.filter((_, i) => shape & (1 << i));
    const assignments = [`"status" = '${UNIT_MOVES[move].to}'`, ...columns.map((c) => `"${c}" = ${p()}`)];
    text = `update "work_units" set ${assignments.join(', ')} where "id" = ${p()} and "attempt" = ${p()} and "lease_owner" = ${p()} and "job_id" = ${p()} and "status" = '${from}'`;
    prepared.set(key, text);
  }
  values.push(where.unitId, where.attempt, where.leaseOwner, where.jobId);
  const result = await t.executeQuery(CompiledQuery.raw(text, values));
  return Number(result.numAffectedRows ?? 0);
}
