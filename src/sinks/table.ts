import { createHash } from 'node:crypto';
import { AbpError, errorMessage } from '../domain/errors.js';
import { fieldKey, fields } from '../wire/exports.js';
import type { ResultLine } from '../wire/views.js';
import { openExternal } from '../store/external.js';
import { isPostgresUrl, redactUrl } from '../store/postgres.js';
import { shownItemId, type Job, type Lines, type SinkReport, type SinkSpec } from './sink.js';

type TableSpec = Extract<SinkSpec, { type: 'table' }>;
type ColumnType = 'integer' | 'double precision' | 'text';

const FIXED: Record<string, ColumnType> = {
  unit_id: 'integer',
  job_id: 'integer',
  item_id: 'text',
  status: 'text',
  attempt: 'integer',
  output: 'text',
  error: 'text',
  cost_usd: 'double precision',
};

/** PostgreSQL keeps 63 bytes of an identifier and drops the rest; every column name fits. */
const MAX_IDENTIFIER = 63;
const HASH_CHARS = 10;
/** A field segment that is its own column name: lower case letters and digits, single underscores inside. */
const EXACT_SEGMENT = /^[a-z0-9]+(?:_[a-z0-9]+)*$/;
/** The column of a structured output that is not an object (a string, a number, a list). */
const ROOT_COLUMN = 'structured_output';
/** A field named like a fixed column goes to output_NAME, so a field named output_NAME cannot. */
const TAKEN_BY_FIXED = new Set(Object.keys(FIXED).map((name) => `output_${name}`));

/**
 * The column for a structured-output field (its path), the same on every run and
 * on both databases, and never the same for two fields:
 *
 * - a path of plain segments (`score`, `shape.upper`) is its own name, joined by
 *   "__" (`score`, `shape__upper`); a field named like a fixed column is
 *   `output_NAME`. Such a name never holds "___".
 * - any other path (`Score`, `a.b` as one key, `1st`, a name past 63 bytes) gets
 *   a readable lower-case base and "___" and 10 hex digits of its key's sha256:
 *   `score___0c1d…`; a long base keeps its first 30 and last 19 characters.
 *   Names differ in their hashes, and stay within 63 bytes.
 */
export function columnName(path: readonly string[]): string {
  if (path.length === 0) return ROOT_COLUMN;
  if (/^[a-z]/.test(path[0]!) && path.every((s) => EXACT_SEGMENT.test(s))) {
    const exact = path.join('__');
    if (Object.hasOwn(FIXED, exact)) return `output_${exact}`;
    if (exact.length <= MAX_IDENTIFIER && exact !== ROOT_COLUMN && !TAKEN_BY_FIXED.has(exact)) return exact;
  }
  const base =
    path
      .map((s) => s.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, ''))
      .filter(Boolean)
      .join('__') || 'field';
  const readable = /^[a-z]/.test(base) ? base : `f_${base}`;
  const room = MAX_IDENTIFIER - HASH_CHARS - 3;
  // Too long: its start and its end, where long names that share a prefix tend to differ.
  const shown = readable.length <= room ? readable : `${readable.slice(0, 30)}_${readable.slice(-(room - 31))}`;
  const hash = createHash('sha256').update(fieldKey(path)).digest('hex').slice(0, HASH_CHARS);
  return `${shown}___${hash}`;
}

function typeOf(value: unknown): ColumnType {
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'double precision';
  if (typeof value === 'boolean') return 'integer';
  return 'text';
}

function cell(value: unknown): unknown {
  if (value === null || value === undefined) return null;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value === 'object') return JSON.stringify(value);
  return value;
}

/**
 * One row per unit, keyed by unit_id and upserted, so a re-run updates rows
 * instead of adding them. Structured output fields become columns.
 */
export async function writeTable(spec: TableSpec, job: Job, lines: Lines): Promise<SinkReport> {
  // First pass: the structured-output columns and their types.
  const columns = new Map<string, ColumnType>();
  const names = new Map<string, string>(); // field key → column
  const owners = new Map<string, string>(); // column → field key
  for await (const line of lines()) {
    if (line.structured_output === null || line.structured_output === undefined) continue;
    for (const { path, value } of fields(line.structured_output)) {
      const key = fieldKey(path);
      let name = names.get(key);
      if (name === undefined) {
        name = columnName(path);
        const owner = owners.get(name);
        if (owner !== undefined) {
          throw new AbpError('invalid_input', `sink.table: fields ${JSON.stringify(owner)} and ${JSON.stringify(key)} would share the column ${name}; rename one of them`);
        }
        names.set(key, name);
        owners.set(name, key);
      }
      const type = typeOf(value);
      const seen = columns.get(name);
      columns.set(name, seen === undefined || seen === type ? type : seen === 'text' || type === 'text' ? 'text' : 'double precision');
    }
  }
  // The report and messages name the database without its password.
  const shown = isPostgresUrl(spec.connection_string) ? redactUrl(spec.connection_string) : spec.connection_string;
  const external = await openExternal(spec.connection_string);
  const { db } = external;
  try {
    const tables = await db.introspection.getTables();
    const existing = tables.find((t) => t.name === spec.table);
    const wanted = { ...FIXED, ...Object.fromEntries(columns) };
    if (!existing) {
      if (!spec.create) {
        throw new AbpError('invalid_input', `sink.table: table ${spec.table} does not exist in ${shown}; pass create: true to create it`);
      }
      let create = db.schema.createTable(spec.table).ifNotExists();
      for (const [name, type] of Object.entries(wanted)) {
        create = create.addColumn(name, type, (c) => (name === 'unit_id' ? c.primaryKey() : c));
      }
      await create.execute();
    } else {
      const have = new Set(existing.columns.map((c) => c.name));
      for (const [name, type] of Object.entries(wanted)) {
        if (have.has(name)) continue;
        if (!spec.create) throw new AbpError('invalid_input', `sink.table: ${spec.table} has no column ${name}; add it, or pass create: true`);
        await db.schema.alterTable(spec.table).addColumn(name, type).execute();
      }
    }
    // One transaction: a re-run replaces the rows it wrote, and a failure leaves the table as it was.
    const written = await db.transaction().execute(async (trx) => {
      let count = 0;
      for await (const line of lines()) {
        const row = rowFor(line, job.job_id, names);
        const { unit_id: _id, ...rest } = row;
        try {
          await trx
            .insertInto(spec.table)
            .values(row)
            .onConflict((oc) => oc.column('unit_id').doUpdateSet(rest))
            .execute();
        } catch (err) {
          throw new AbpError('invalid_input', `sink.table: unit ${line.unit_id} (item ${JSON.stringify(shownItemId(line.item_id))}) could not be written to ${spec.table}: ${errorMessage(err)}; nothing was written`, { cause: err });
        }
        count++;
      }
      return count;
    });
    return { sink: 'table', target: `${shown}#${spec.table}`, written, unchanged: 0, skipped: 0, failed: 0, failures: [] };
  } finally {
    await external.close();
  }
}

function rowFor(line: ResultLine, jobId: number, names: Map<string, string>): Record<string, unknown> {
  const row: Record<string, unknown> = {
    unit_id: line.unit_id,
    job_id: jobId,
    item_id: line.item_id,
    status: line.status,
    attempt: line.attempt,
    output: line.output,
    error: line.error,
    cost_usd: line.cost_usd,
  };
  if (line.structured_output !== null && line.structured_output !== undefined) {
    for (const { path, value } of fields(line.structured_output)) row[names.get(fieldKey(path)) ?? columnName(path)] = cell(value);
  }
  return row;
}
