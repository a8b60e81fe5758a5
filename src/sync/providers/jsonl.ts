import type { ProviderFactory, ProviderRecord } from '../../contracts/provider.js';
import type { JsonlProviderConfig } from '../../domain/sync-pair.js';
import { AbpError, errorMessage } from '../../domain/errors.js';
import { keyOf } from './records.js';
import { wholeFileProvider, type RecordFileFormat } from './whole-file.js';
import type { z } from 'zod';

type Config = z.infer<typeof JsonlProviderConfig>;

/** JSON Lines: one object per line, keyed by id_field. Blank lines are ignored. */
export const jsonlProvider: ProviderFactory<Config> = {
  type: 'jsonl',
  description: 'A JSON Lines file; key = id_field.',
  open: (cfg) => wholeFileProvider(cfg, jsonlFormat(cfg)),
};

/** How the file is read and written; also built in the snapshot thread (snapshot-thread.ts). */
export function jsonlFormat(cfg: Config): RecordFileFormat {
  return {
    lineBased: true,
    parse(text, path, visit, firstLine = 0) {
      let line = firstLine;
      for (let start = 0; start < text.length; ) {
        let end = text.indexOf('\n', start);
        if (end < 0) end = text.length;
        const raw = text.slice(start, end);
        start = end + 1;
        line++;
        if (raw.trim() === '') continue;
        let value: unknown;
        try {
          value = JSON.parse(raw);
        } catch (err) {
          throw new AbpError('enumeration_failed', `${path}:${line}: not valid JSON: ${errorMessage(err)}`);
        }
        if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new AbpError('enumeration_failed', `${path}:${line}: expected a JSON object`);
        const record = value as ProviderRecord;
        visit(keyOf(record, cfg.id_field, () => `${path}:${line}`), record);
      }
    },
    serialise: (records) => records.map((r) => `${JSON.stringify(r)}\n`).join(''),
  };
}
