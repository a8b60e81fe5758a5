import type { AbpConfig } from './config.js';
import type { MigrationStatus } from './store/database.js';
import { openQuickReader, type JobReader } from './store/quick-read.js';
import type { Repository } from './store/repository.js';

/*
 * The store as the CLI opens it without the app. Front ends never import
 * src/store: what they read comes from the composition root (src/app.ts) or,
 * for the reads below and `abp migrate`, from here, which like it only chooses and opens.
 * It loads only for `abp status`, `abp list`, `abp migrate` and `abp mcp`.
 */

/**
 * Job rows for `abp status` and `abp list`: plain SQL on an up-to-date SQLite
 * file (src/store/quick-read.ts), so neither Kysely nor the composition root
 * loads; anything else opens the whole store, which migrates or refuses with
 * its own explanation.
 */
export async function openJobReader(config: AbpConfig): Promise<JobReader> {
  return openQuickJobReader(config) ?? (await openStore(config));
}

/**
 * The quick reader alone, or undefined where it cannot serve (PostgreSQL, no
 * file yet, a schema behind or ahead): `abp mcp` then asks the app instead of
 * opening a second store beside it.
 */
export function openQuickJobReader(config: AbpConfig): JobReader | undefined {
  return openQuickReader(config.db, config.busyTimeoutMs);
}

export type { JobReader };

/** The whole store (Kysely over SQLite or PostgreSQL), as the app and the reads above open it. */
export async function openStore(config: AbpConfig): Promise<Repository> {
  const { openRepository } = await import('./store/database.js');
  return openRepository({ db: config.db, busyTimeoutMs: config.busyTimeoutMs, pgPoolSize: config.pgPoolSize, autoMigrate: config.autoMigrate });
}

/** `abp migrate`: the database (SQLite file or PostgreSQL) brought to the latest schema. */
export async function migrateStore(config: AbpConfig): Promise<MigrationStatus> {
  const { migrateDatabase } = await import('./store/database.js');
  return migrateDatabase({ db: config.db, busyTimeoutMs: config.busyTimeoutMs, pgPoolSize: config.pgPoolSize });
}
