import { z } from 'zod';
import type { jobDetail, ResultLine } from '../wire/views.js';

/** Where results are written back. Every sink is idempotent: a re-run rewrites, never duplicates. */
export const SinkSpec = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('dir'),
    path: z.string().min(1).describe('A folder; one file per succeeded unit, named from its item.'),
  }),
  z.strictObject({
    type: z.literal('table'),
    connection_string: z.string().min(1).describe('A SQLite file path (or sqlite:PATH), or a postgres:// URL.'),
    table: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a table name: letters, digits and _')
      // PostgreSQL cuts longer names to 63 bytes, so the table found on a re-run would not be the one named.
      .max(63, 'a table name of at most 63 characters')
      .describe('The table: one row per unit.'),
    create: z.boolean().default(false).describe('Create the table when it does not exist.'),
  }),
  z.strictObject({
    type: z.literal('jsonl'),
    path: z.string().min(1).describe('A JSON Lines file, rewritten whole (atomically) on every run.'),
  }),
]);
export type SinkSpec = z.infer<typeof SinkSpec>;

export type Job = ReturnType<typeof jobDetail>;
export type Lines = () => AsyncIterable<ResultLine>;

/** One unit whose result the sink could not write, and why. */
export interface SinkFailure {
  unit_id: number;
  item_id: string;
  reason: string;
}

/** How many failures a report lists; `failed` counts them all. */
export const MAX_LISTED_FAILURES = 100;

/**
 * What a sink did. written + unchanged + skipped + failed is every unit it read:
 * `written` were written now, `unchanged` already held the same result (a re-run),
 * `skipped` have nothing to write (a dir sink writes succeeded units only), and
 * `failed` could not be written; `failures` lists the first MAX_LISTED_FAILURES.
 */
export interface SinkReport {
  sink: string;
  target: string;
  written: number;
  unchanged: number;
  skipped: number;
  failed: number;
  failures: SinkFailure[];
}

/** Item ids can be long (up to an item's size): a report shows the first 500 characters. */
export function shownItemId(id: string): string {
  return id.length > 500 ? `${id.slice(0, 500)}…` : id;
}
