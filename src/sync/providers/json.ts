import type { z } from 'zod';
import type { ProviderFactory, ProviderRecord } from '../../contracts/provider.js';
import { AbpError, errorMessage } from '../../domain/errors.js';
import type { JsonProviderConfig } from '../../domain/sync-pair.js';
import { keyOf } from './records.js';
import { wholeFileProvider, type RecordFileFormat } from './whole-file.js';

type Config = z.infer<typeof JsonProviderConfig>;

/** A JSON file holding one array of objects, keyed by id_field. */
export const jsonProvider: ProviderFactory<Config> = {
  type: 'json',
  description: 'A JSON file with an array of objects; key = id_field.',
  open: (cfg) => wholeFileProvider(cfg, jsonFormat(cfg)),
};

/** How the file is read and written; also built in the snapshot thread (snapshot-thread.ts). */
export function jsonFormat(cfg: Config): RecordFileFormat {
  return {
    parse(text, path, visit) {
      let value: unknown;
      try {
        value = text.trim() === '' ? [] : JSON.parse(text);
      } catch (err) {
        throw new AbpError('enumeration_failed', `${path}: not valid JSON: ${errorMessage(err)}`);
      }
      if (!Array.isArray(value)) throw new AbpError('enumeration_failed', `${path}: expected a JSON array of objects`);
      value.forEach((v, i) => {
        if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new AbpError('enumeration_failed', `${path}[${i}]: expected an object`);
        const record = v as ProviderRecord;
        visit(keyOf(record, cfg.id_field, () => `${path}[${i}]`), record);
      });
    },
    serialise: (records) => `${JSON.stringify(records, null, 2)}\n`,
  };
}
