import type { Provider, ProviderFactory } from '../../contracts/provider.js';
import { assertNever } from '../../domain/errors.js';
import type { ProviderConfig } from '../../domain/sync-pair.js';
import { csvProvider } from './csv.js';
import { dirProvider } from './dir.js';
import { jsonProvider } from './json.js';
import { jsonlProvider } from './jsonl.js';
import { postgresProvider } from './postgres.js';
import { sqliteProvider } from './sqlite.js';

/** Every provider type. Adding one is a new file here, a config schema in domain/sync-pair.ts, and one case below. */
export const providers: readonly ProviderFactory<any>[] = [dirProvider, jsonlProvider, jsonProvider, csvProvider, sqliteProvider, postgresProvider];

/** Opens a provider from its parsed config. */
export function openProvider(config: ProviderConfig): Provider {
  switch (config.type) {
    case 'dir':
      return dirProvider.open(config);
    case 'jsonl':
      return jsonlProvider.open(config);
    case 'json':
      return jsonProvider.open(config);
    case 'csv':
      return csvProvider.open(config);
    case 'sqlite':
      return sqliteProvider.open(config);
    case 'postgres':
      return postgresProvider.open(config);
    default:
      return assertNever(config, 'provider type');
  }
}

/** Whether writes rewrite one whole file: such a side takes one chunk at a time. */
export function wholeFile(config: ProviderConfig): boolean {
  return config.type === 'jsonl' || config.type === 'json' || config.type === 'csv';
}
