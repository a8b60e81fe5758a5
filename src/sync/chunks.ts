import { z } from 'zod';
import type { UnitDraft } from '../store/repository.js';
import { OPS, SIDES, type Op, type Side } from './pair-state.js';
import type { StageRow } from './planner.js';

/** The payload of one sync work unit: the keys of one chunk of writes of one kind to one side. */
export const ChunkPayload = z.strictObject({
  _id: z.string(),
  chunk: z.int().min(0),
  side: z.enum(SIDES),
  op: z.enum(OPS),
  keys: z.array(z.string()).min(1),
});
export type ChunkPayload = z.infer<typeof ChunkPayload>;

/**
 * One unit per chunk of writes, in plan order (adds, updates, removes), each
 * chunk one kind of write to one side. `chunkSize` may differ per side (the
 * per-provider override). The first unit is the job's test unit.
 */
export function chunkUnits(stage: readonly StageRow[], chunkSize: Record<Side, number>): UnitDraft[] {
  const units: UnitDraft[] = [];
  let current: ChunkPayload | undefined;
  for (const row of stage) {
    if (row.op === null || row.side === null) continue;
    const size = chunkSize[row.side];
    if (!current || current.side !== row.side || current.op !== row.op || current.keys.length >= size) {
      if (current) units.push(draft(current));
      current = { _id: '', chunk: units.length, side: row.side, op: row.op as Op, keys: [] };
    }
    current.keys.push(row.key);
  }
  if (current) units.push(draft(current));
  return units;
}

function draft(chunk: ChunkPayload): UnitDraft {
  const first = chunk.keys[0] as string;
  const id = `${chunk.op} ${chunk.side} ${first}${chunk.keys.length > 1 ? ` +${chunk.keys.length - 1}` : ''}`;
  return { item_id: id, payload: JSON.stringify({ ...chunk, _id: id }) };
}
