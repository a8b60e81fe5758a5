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
    table: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a table name: letters, digits and _').describe('The table: one row per unit.'),
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

export interface SinkReport {
  sink: string;
  written: number;
  skipped: number;
  target: string;
}
