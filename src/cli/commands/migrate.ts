import { resolveConfig } from '../../config.js';
import { migrateStore } from '../../open-store.js';
import type { Command } from '../command.js';

/**
 * For operators: bring the database (SQLite file or PostgreSQL) to the latest
 * schema before starting executors, e.g. with ABP_AUTO_MIGRATE=0 everywhere else.
 * Safe to run from several hosts at once: migrations take a database-wide lock.
 */
export const migrate: Command = {
  usage: 'abp migrate [--db PATH_OR_URL] [--json]',
  options: {},
  async run(ctx) {
    const env = { ...process.env };
    if (typeof ctx.values.home === 'string') env.ABP_HOME = ctx.values.home;
    if (typeof ctx.values.db === 'string') env.ABP_DB = ctx.values.db;
    const config = resolveConfig(env);
    const status = await migrateStore(config);
    const width = Math.max(...status.migrations.map((m) => m.name.length));
    const human = [
      `database ${status.database}: ${status.applied.length === 0 ? 'up to date' : `applied ${status.applied.join(', ')}`}`,
      ...status.migrations.map((m) => `  ${m.name.padEnd(width)}  ${m.executed_at ?? 'pending'}`),
    ].join('\n');
    ctx.print(human, status);
  },
};
