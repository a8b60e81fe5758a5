/**
 * The names of the store's migrations, in order, apart from their bodies (in
 * migrations.ts, which loads Kysely): a read that only needs to know whether a
 * database is up to date (quick-read.ts) loads this alone. migrations.ts keys its
 * table by this type, so the compiler refuses the two lists if they differ.
 */
export const MIGRATION_NAMES = [
  '001-initial',
  '002-code-approvals',
  '003-sync',
  '004-spending-and-synthesis',
  '005-dashboard-tokens',
  '006-shared-cool-downs',
  '007-running-units-index',
  '008-approvals',
  '009-mcp-tasks',
  '010-agent-access',
  '011-unit-stops',
  '012-executor-env',
  '013-sync-checkpoints',
  '014-spending-less',
] as const;

export type MigrationName = (typeof MIGRATION_NAMES)[number];

export const LATEST_MIGRATION: MigrationName = MIGRATION_NAMES[MIGRATION_NAMES.length - 1] as MigrationName;

/** Whether a database has run exactly the migrations this build knows (not fewer, not a newer abp's). */
export function migrationsMatch(done: readonly string[]): boolean {
  return done.length === MIGRATION_NAMES.length && MIGRATION_NAMES.every((name) => done.includes(name));
}
