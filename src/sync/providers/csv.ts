import { parse } from 'csv-parse/sync';
import type { z } from 'zod';
import type { ProviderFactory, ProviderRecord } from '../../contracts/provider.js';
import { AbpError, errorMessage } from '../../domain/errors.js';
import type { CsvProviderConfig } from '../../domain/sync-pair.js';
import { keyOf } from './records.js';
import { wholeFileProvider, type RecordFileFormat } from './whole-file.js';

type Config = z.infer<typeof CsvProviderConfig>;

/*
 * No CSV-injection neutralising here, unlike the results export (src/wire/exports.ts):
 * this file is the user's own data, read back by the next sync. A leading quote
 * added to `=1+1` would be read back as `'=1+1`, a change the next run would sync
 * again (and again), and it would corrupt a value the user wrote on purpose.
 */
function cell(value: unknown): string {
  if (value === null || value === undefined) return '';
  const text = typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\r\n]/.test(text) || text !== text.trim() ? `"${text.replace(/"/g, '""')}"` : text;
}

/** A CSV file with a header row, keyed by id_column. Every value is text, as in the file. */
export const csvProvider: ProviderFactory<Config> = {
  type: 'csv',
  description: 'A CSV file with a header row; key = id_column.',
  open: (cfg) => wholeFileProvider(cfg, csvFormat(cfg)),
};

/** How the file is read and written; also built in the snapshot thread (snapshot-thread.ts). */
export function csvFormat(cfg: Config): RecordFileFormat {
  return {
    parse(text, path, visit) {
      let rows: Record<string, string>[];
      try {
        rows = parse(text, { columns: true, bom: true, skip_empty_lines: true }) as Record<string, string>[];
      } catch (err) {
        throw new AbpError('enumeration_failed', `${path}: not valid CSV: ${errorMessage(err)}`);
      }
      const columns = rows[0] ? Object.keys(rows[0]) : [];
      if (rows.length > 0 && !columns.includes(cfg.id_column)) {
        throw new AbpError('invalid_input', `${path}: id_column ${JSON.stringify(cfg.id_column)} is not a column (columns: ${columns.join(', ')}); name the key column with id_column`);
      }
      rows.forEach((record, i) => visit(keyOf(record, cfg.id_column, () => `${path} row ${i + 2}`), record as ProviderRecord));
    },
    serialise(records) {
      // The union of every record's columns, in first-seen order, so no field is dropped.
      const columns: string[] = [];
      const seen = new Set<string>();
      for (const r of records) for (const k of Object.keys(r)) if (!seen.has(k)) (seen.add(k), columns.push(k));
      if (columns.length === 0) return '';
      const lines = [columns.map(cell).join(','), ...records.map((r) => columns.map((c) => cell(r[c])).join(','))];
      return `${lines.join('\n')}\n`;
    },
  };
}
