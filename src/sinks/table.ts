import { AbpError } from '../domain/errors.js';
import { flatten } from '../wire/exports.js';
import type { ResultLine } from '../wire/views.js';
import { openExternal } from '../store/external.js';
import type { Job, Lines, SinkReport, SinkSpec } from './sink.js';

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

function columnName(key: string): string {
  const name = key.replace(/\./g, '__').replace(/[^A-Za-z0-9_]/g, '_').toLowerCase();
  const safe = /^[a-z_]/.test(name) ? name : `f_${name}`;
  return safe in FIXED ? `output_${safe}` : safe;
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
  for await (const line of lines()) {
    if (line.structured_output === null || line.structured_output === undefined) continue;
    for (const [key, value] of Object.entries(flatten(line.structured_output))) {
      const name = columnName(key);
      const type = typeOf(value);
      const seen = columns.get(name);
      columns.set(name, seen === undefined || seen === type ? type : seen === 'text' || type === 'text' ? 'text' : 'double precision');
    }
  }
  const external = await openExternal(spec.connection_string);
  const { db } = external;
  try {
    const tables = await db.introspection.getTables();
    const existing = tables.find((t) => t.name === spec.table);
    const wanted = { ...FIXED, ...Object.fromEntries(columns) };
    if (!existing) {
      if (!spec.create) {
        throw new AbpError('invalid_input', `sink.table: table ${spec.table} does not exist in ${spec.connection_string}; pass create: true to create it`);
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
        const row = rowFor(line, job.job_id);
        const { unit_id: _id, ...rest } = row;
        await trx
          .insertInto(spec.table)
          .values(row)
          .onConflict((oc) => oc.column('unit_id').doUpdateSet(rest))
          .execute();
        count++;
      }
      return count;
    });
    return { sink: 'table', target: `${spec.connection_string}#${spec.table}`, written, skipped: 0 };
  } finally {
    await external.close();
  }
}

function rowFor(line: ResultLine, jobId: number): Record<string, unknown> {
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
    for (const [key, value] of Object.entries(flatten(line.structured_output))) row[columnName(key)] = cell(value);
  }
  return row;
}
