import { Buffer } from 'node:buffer';
import { z } from 'zod';
import { AbpError } from '../domain/errors.js';

/**
 * Tool results must fit the host. Claude Code replaces a tool result much over
 * ~25k tokens with a 2 KB preview, and other hosts cut sooner, so a page of units
 * is bounded by bytes as well as by count, and one long field is cut with a
 * marker that says its full length and how to read the rest (read_unit_field).
 */
export const PAGE_BYTES = 20_000;
/** A field longer than this is cut in a page or a unit view. */
export const FIELD_CHARS = 4_000;
/** How much of a field read_unit_field returns at once. */
export const SLICE_CHARS = 16_000;

export const UNIT_FIELDS = ['output', 'error', 'prompt', 'payload', 'structured_output', 'conversation'] as const;
export type UnitField = (typeof UNIT_FIELDS)[number];

function marker(unitId: number, field: UnitField, length: number, shown: number): string {
  return `\n…[cut: ${length} characters in all; read_unit_field ${JSON.stringify({ unit_id: unitId, field, offset: shown })} returns the rest]`;
}

/** A text field, whole or cut with its marker. */
export function cutText(text: string | null, unitId: number, field: UnitField, limit = FIELD_CHARS): string | null {
  if (text === null || text.length <= limit) return text;
  return text.slice(0, limit) + marker(unitId, field, text.length, limit);
}

/** A JSON field (payload, structured output): whole, or its JSON text cut with the marker. */
export function cutValue(value: unknown, unitId: number, field: UnitField, limit = FIELD_CHARS): unknown {
  if (value === null || value === undefined) return value ?? null;
  const text = JSON.stringify(value);
  return text.length <= limit ? value : cutText(text, unitId, field, limit);
}

/**
 * Takes items from the front while their JSON fits the byte budget (at least
 * one, so a page always moves forward).
 */
export function fitPage<T>(items: readonly T[], budget = PAGE_BYTES): T[] {
  const taken: T[] = [];
  let bytes = 200; // the envelope: ids, cursor, result
  for (const item of items) {
    const size = Buffer.byteLength(JSON.stringify(item)) + 1;
    if (taken.length > 0 && bytes + size > budget) break;
    taken.push(item);
    bytes += size;
  }
  return taken;
}

/** The cursor a page hands back: where the next page starts. Opaque to the caller. */
export function cursorAfter(offset: number, taken: number, fetched: number, limit: number): string | null {
  if (taken === fetched && fetched < limit) return null;
  return Buffer.from(JSON.stringify({ o: offset + taken })).toString('base64url');
}

export function offsetOf(cursor: string | undefined, offset: number | undefined): number {
  if (cursor === undefined) return offset ?? 0;
  try {
    const o = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')).o;
    if (Number.isSafeInteger(o) && o >= 0) return o;
  } catch {
    // fall through
  }
  throw new AbpError('invalid_input', `cursor: ${JSON.stringify(cursor.slice(0, 40))} is not a cursor this server gave out; pass the cursor of the previous page as it came`);
}

export const cursorInput = {
  cursor: z.string().optional().describe('The cursor of the previous page, to get the next one.'),
};
export const cursorOutput = z.string().nullable().describe('Pass it back as `cursor` for the next page; null at the end.');
