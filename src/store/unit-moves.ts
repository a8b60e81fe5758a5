import { UNIT_MOVES, type UnitMove, type UnitState } from '../domain/states.js';
import type { UnitRow } from './schema.js';
import type { Db } from './tx.js';

/** Which units a move applies to: every unit of a job in a `from` state, or one of them. */
export interface UnitMoveWhere {
  jobId: number;
  unitId?: number;
}

/** What a unit move may set on the rows it moves besides their state. */
export type UnitMoveSet = Partial<Omit<UnitRow, 'id' | 'job_id' | 'status'>>;

export interface UnitMoveResult {
  /** The state the units moved to. */
  to: UnitState;
  /** How many units moved. */
  moved: number;
  /**
   * How the job's counters change, when the count of moved rows says it: a move
   * from one state. A move from several states (cancel, reset, redo) cannot split
   * its count between them, so this is null and the caller counts the job's units.
   */
  deltas: Partial<Record<UnitState, number>> | null;
}

/**
 * Moves units by name through the unit state table (`UNIT_MOVES`) in one UPDATE
 * inside `t`. It does not touch the job's row: the caller moves the counters, in
 * the same transaction.
 */
export async function applyUnitMove(t: Db, move: UnitMove, where: UnitMoveWhere, set: UnitMoveSet = {}): Promise<UnitMoveResult> {
  const rule = UNIT_MOVES[move];
  let q = t
    .updateTable('work_units')
    .set({ ...set, status: rule.to })
    .where('job_id', '=', where.jobId)
    .where('status', 'in', [...rule.from]);
  if (where.unitId !== undefined) q = q.where('id', '=', where.unitId);
  const result = await q.executeTakeFirst();
  const moved = Number(result.numUpdatedRows);
  return { to: rule.to, moved, deltas: countDeltas(rule.from, rule.to, moved) };
}

function countDeltas(from: readonly UnitState[], to: UnitState, moved: number): Partial<Record<UnitState, number>> | null {
  if (moved === 0) return {};
  const [only] = from;
  if (from.length !== 1 || only === undefined) return null;
  return only === to ? {} : { [only]: -moved, [to]: moved };
}
