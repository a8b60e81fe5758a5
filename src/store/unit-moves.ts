import { CompiledQuery, sql, type Expression } from 'kysely';
import { AbpError } from '../domain/errors.js';
import { UNIT_MOVES, type UnitMove, type UnitState } from '../domain/states.js';
import type { UnitRow } from './schema.js';
import { bulkChunks } from './bulk.js';
import { isPostgres, type Db } from './tx.js';

/*
 * The one way a unit's status changes. Every move (a claim, an attempt's
 * outcome, a lease's reclaim, a person's cancel, retry or redo) is named in the
 * unit state table (UNIT_MOVES), and applyUnitMove writes it with the table's
 * `from` states in its WHERE and its `to` state in its SET, and returns how the
 * job's counters change; applyFencedMoves writes one move of many fenced units
 * at once (an executor's batch of outcomes), and moveDeltas says how their
 * counters change. The caller moves them with JobStore.bump in the same
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

/**
 * The columns a prepared move may set (the fenced outcomes'), each a bit of the
 * move's shape, with its PostgreSQL type: a bulk move's VALUES rows are cast to
 * them, since PostgreSQL types a VALUES list by its parameters, not by the table.
 */
const PREPARED_TYPES = {
  failures: 'integer', available_at: 'bigint', finished_at: 'bigint', lease_owner: 'text', lease_expires_at: 'bigint', worker_pid: 'integer',
  reserved_usd: 'double precision', prompt: 'text', output: 'text', structured_output: 'text', error: 'text', error_kind: 'text',
  exit_code: 'integer', stderr_tail: 'text', cost_usd: 'double precision', input_tokens: 'bigint', output_tokens: 'bigint', usage: 'text',
  session_id: 'text', duration_ms: 'bigint', batch_id: 'integer', cache_key: 'text', cached_from: 'integer',
} as const satisfies { [K in keyof UnitMoveSet]?: string };
const PREPARED_COLUMNS = Object.keys(PREPARED_TYPES) as (keyof typeof PREPARED_TYPES)[];
const PREPARED_BIT = new Map<string, number>(PREPARED_COLUMNS.map((c, i) => [c, 1 << i]));

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
  for (const from of rule.from) {
    let n: number;
    if (returning) {
      const got = await query(t, move, from, where, set).returning(returning as never).execute();
      rows.push(...got);
      n = got.length;
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

/** The shape of what a bulk move sets: its columns as bits of PREPARED_COLUMNS. Plain values only. */
function shapeOf(unitId: number, set: UnitMoveSet): number {
  let shape = 0;
  for (const c in set) {
    const v = set[c as keyof UnitMoveSet];
    if (v === undefined) continue;
    const bit = PREPARED_BIT.get(c);
    if (bit === undefined) throw new AbpError('store_error', `a bulk unit move cannot set the column ${JSON.stringify(c)}`);
    if (v !== null && typeof v === 'object') throw new AbpError('store_error', `unit ${unitId}: a bulk unit move sets plain values only (${c})`);
    shape |= bit;
  }
  return shape;
}

/** One unit of a bulk fenced move: its fence (id, attempt, lease owner, job) and what the move sets. */
export interface FencedMove {
  where: Required<Pick<UnitMoveWhere, 'jobId' | 'unitId' | 'attempt' | 'leaseOwner'>>;
  set: UnitMoveSet;
}

/** Units per bulk statement, at most (bulkChunks): well under either database's limit on parameters. */
const BULK_ROWS = 256;

/**
 * The same fenced move of many units (an executor's batch of outcomes), one
 * statement per shape of what they set and per chunk (bulkChunks), instead of one a unit:
 * the statement's own cost (building, binding, a round trip on PostgreSQL) was
 * most of an outcome's. Each unit stays fenced on its own: only a row still
 * RUNNING at that attempt under that owner moves. The move must start from one
 * state (succeed, fail, release). Says, per unit, whether it moved; the caller
 * adds the counters' change (moveDeltas) in the same transaction.
 */
export async function applyFencedMoves(t: Db, move: UnitMove, units: readonly FencedMove[]): Promise<boolean[]> {
  const rule = UNIT_MOVES[move];
  const [from] = rule.from;
  if (rule.from.length !== 1 || from === undefined) throw new AbpError('store_error', `the unit move ${move} starts from several states; it has no bulk form`);
  const moved = new Array<boolean>(units.length).fill(false);
  const byShape = new Map<number, number[]>();
  units.forEach((u, i) => {
    const shape = shapeOf(u.where.unitId, u.set);
    let group = byShape.get(shape);
    if (!group) byShape.set(shape, (group = []));
    group.push(i);
  });
  const pg = isPostgres(t);
  for (const [shape, group] of byShape) {
    const columns = PREPARED_COLUMNS.filter((_, i) => shape & (1 << i));
    let at = 0;
    for (const size of bulkChunks(group.length, BULK_ROWS)) {
      const rows = group.slice(at, (at += size));
      const values: unknown[] = [];
      for (const i of rows) {
        const { where, set } = units[i] as FencedMove;
        values.push(where.unitId, where.attempt, where.leaseOwner, where.jobId);
        for (const c of columns) values.push(set[c]);
      }
      const result = await t.executeQuery<{ id: number; attempt: number }>(CompiledQuery.raw(bulkText(pg, move, from, shape, columns, rows.length), values));
      const done = new Set(result.rows.map((r) => `${r.id}:${r.attempt}`));
      for (const i of rows) {
        const { where } = units[i] as FencedMove;
        // A row moves once: a second move of the same attempt in the batch finds it moved already.
        moved[i] = done.delete(`${where.unitId}:${where.attempt}`);
      }
    }
  }
  return moved;
}

/** Bulk move text by dialect, move, shape and row count (a power of two: bulkChunks). */
const bulkTexts = new Map<string, string>();

function bulkText(pg: boolean, move: UnitMove, from: UnitState, shape: number, columns: readonly (keyof typeof PREPARED_TYPES)[], rows: number): string {
  const key = `${pg ? 'pg' : 'sqlite'}|${move}|${shape}|${rows}`;
  let text = bulkTexts.get(key);
  if (text !== undefined) return text;
  // The VALUES columns: the fence (k0 id, k1 attempt, k2 owner, k3 job), then what the move sets, in order.
  const names = ['k0', 'k1', 'k2', 'k3', ...columns.map((_, i) => `s${i}`)];
  const types = ['integer', 'integer', 'text', 'integer', ...columns.map((c) => PREPARED_TYPES[c])];
  const tuples: string[] = [];
  for (let r = 0, n = 0; r < rows; r++) tuples.push(`(${types.map((type) => (pg ? `$${++n}::${type}` : '?')).join(', ')})`);
  const assignments = [`"status" = '${UNIT_MOVES[move].to}'`, ...columns.map((c, i) => `"${c}" = v.s${i}`)];
  // A named WITH list, not `(values …) as v(…)`: SQLite has no column list on a FROM alias.
  text =
    `with v(${names.join(', ')}) as (values ${tuples.join(', ')}) update "work_units" set ${assignments.join(', ')} from v ` +
    `where "work_units"."id" = v.k0 and "work_units"."attempt" = v.k1 and "work_units"."lease_owner" = v.k2 and "work_units"."job_id" = v.k3 and "work_units"."status" = '${from}' ` +
    `returning "work_units"."id" as "id", "work_units"."attempt" as "attempt"`;
  bulkTexts.set(key, text);
  return text;
}
