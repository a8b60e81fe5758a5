import { createReadStream } from 'node:fs';
import { resolve } from 'node:path';
import { pipeline } from 'node:stream';
import { CsvError, parse } from 'csv-parse';
import { z } from 'zod';
import type { Enumerator, Item } from '../src/contracts/enumerator.js';
import { AbpError, errorMessage } from '../src/domain/errors.js';
import { encodingField, NODE_ENCODINGS, utf8Check } from './encoding.js';
import { requireFile } from './fs-checks.js';

const config = z.strictObject({
  file_path: z.string().min(1).describe('The CSV file to read.'),
  delimiter: z.string().min(1).max(4).default(',').describe('The field separator.'),
  quote: z.string().length(1).default('"').describe('The quote character.'),
  escape: z.string().length(1).default('"').describe('The escape character inside quoted fields.'),
  has_header: z.boolean().default(true).describe('Whether the first row names the columns.'),
  columns: z.array(z.string().min(1)).min(1).optional().describe('Column names, for a file without a header (or to replace it).'),
  id_column: z.string().min(1).optional().describe('The column whose value identifies each row; default: the row number.'),
  encoding: encodingField,
  skip_empty_lines: z.boolean().default(true).describe('Skip blank lines instead of treating them as rows.'),
  comment: z.string().length(1).optional().describe('Lines starting with this character are comments.'),
  relax_column_count: z.boolean().default(false).describe('Accept rows whose column count differs from the header.'),
  relax_quotes: z
    .boolean()
    .default(true)
    .describe('Keep a quote inside an unquoted field as text (37.8"N), as most CSV readers do; false makes it an error.'),
  on_error: z
    .enum(['fail', 'skip'])
    .default('fail')
    .describe('A malformed row fails the enumeration (naming its line), or is skipped and recorded on the job as skipped.'),
  limit: z.int().positive().optional().describe('Stop after this many rows.'),
});
type CsvConfig = z.infer<typeof config>;

/** A csv-parse error as a sentence that names the line and says what to do. */
function describeCsvError(err: CsvError, path: string): string {
  const line = (err as CsvError & { lines?: number }).lines;
  const where = `csv ${path}: line ${line ?? '?'}`;
  switch (err.code) {
    case 'CSV_RECORD_INCONSISTENT_FIELDS_LENGTH':
    case 'CSV_RECORD_INCONSISTENT_COLUMNS': {
      const record = (err as CsvError & { record?: unknown[] }).record;
      const got = Array.isArray(record) ? record.length : '?';
      return `${where}: inconsistent columns: expected ${expectedColumns(err)}, got ${got}; set relax_column_count: true to accept ragged rows, or on_error: "skip"`;
    }
    default:
      return `${where}: malformed row: ${err.message.replace(/\s*(at|on) line \d+\.?$/, '')}`;
  }
}

function expectedColumns(err: CsvError): string {
  const match = /(?:columns length is|expect) (\d+)/i.exec(err.message);
  return match ? `${match[1]} columns` : 'the header’s column count';
}

export const csvEnumerator: Enumerator<CsvConfig> = {
  type: 'csv',
  description: 'One item per CSV row, streamed: the row’s columns plus _row_index (1-based) and _id.',
  promptTemplate: 'generic',
  configSchema: config,
  async *enumerate(cfg, ctx) {
    const path = resolve(cfg.file_path);
    await requireFile('enumerator_config.file_path', path);
    const header = cfg.columns ?? (cfg.has_header ? true : undefined);
    const parser = parse({
      columns: header ?? false,
      delimiter: cfg.delimiter,
      quote: cfg.quote,
      escape: cfg.escape,
      encoding: NODE_ENCODINGS[cfg.encoding],
      bom: true,
      skip_empty_lines: cfg.skip_empty_lines,
      relax_column_count: cfg.relax_column_count,
      relax_quotes: cfg.relax_quotes,
      skip_records_with_error: cfg.on_error === 'skip',
      on_skip: (err: CsvError | undefined) => {
        if (!err) return;
        const line = (err as CsvError & { lines?: number }).lines;
        ctx.onSkip?.({ ...(line === undefined ? {} : { line }), reason: describeCsvError(err, path) });
      },
      ...(cfg.comment ? { comment: cfg.comment } : {}),
      from_line: cfg.columns && cfg.has_header ? 2 : 1,
    });
    const source = createReadStream(path, { signal: ctx.signal });
    // csv-parse decodes the bytes itself (and honours a byte order mark), so only the UTF-8 check goes before it.
    const check = utf8Check(cfg.encoding, `csv ${path}:`);
    pipeline([source, ...(check ? [check] : []), parser], () => undefined);
    let index = 0;
    try {
      for await (const record of parser as AsyncIterable<unknown>) {
        index++;
        const row: Item = Array.isArray(record)
          ? Object.fromEntries(record.map((v, i) => [`column_${i + 1}`, v]))
          : { ...(record as Record<string, unknown>) };
        // Own columns only: `in` would also find toString and constructor on every row.
        if (cfg.id_column !== undefined && !Object.hasOwn(row, cfg.id_column)) {
          throw new AbpError(
            'invalid_input',
            `enumerator_config.id_column: ${JSON.stringify(cfg.id_column)} is not a column of ${path} (columns: ${Object.keys(row).join(', ')})`,
          );
        }
        const id = cfg.id_column === undefined ? index : row[cfg.id_column];
        row._row_index = index;
        row._id = typeof id === 'string' || typeof id === 'number' ? id : index;
        yield row;
        if (cfg.limit !== undefined && index >= cfg.limit) break;
      }
    } catch (err) {
      if (err instanceof AbpError) throw err;
      if (err instanceof CsvError) throw new AbpError('enumeration_failed', describeCsvError(err, path), { cause: err });
      throw new AbpError('enumeration_failed', `csv ${path}: ${errorMessage(err)}`, { cause: err });
    } finally {
      source.destroy();
      parser.destroy();
    }
  },
};
