import { existsSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect, type Migration } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import { MIGRATION_NAMES } from '../../src/store/migration-names.js';
import { migrationProvider } from '../../src/store/migrations.js';
import { openQuickReader } from '../../src/store/quick-read.js';
import { Sandbox } from '../helpers/cli.js';

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

async function createJob(rows: number): Promise<number> {
  const csv = sb.path(`rows-${rows}.csv`);
  writeFileSync(csv, ['id,text', ...Array.from({ length: rows }, (_, i) => `r${i + 1},hello ${i + 1}`)].join('\n') + '\n');
  const job = await sb.ok(['create', '--name', `job of ${rows}`, '--intent', 'echo', '--enumerator', 'csv', '-e', `file_path=${csv}`, '--worker', 'shell', '-w', 'command=echo', '-w', 'args:=["{{item.id}}"]']);
  return job.job_id as number;
}

/** A SQLite store that has run only the first `n` migrations, as an older abp left it. */
async function migratedTo(path: string, n: number): Promise<void> {
  const all = await migrationProvider.getMigrations();
  const some = Object.fromEntries(Object.entries(all).sort(([a], [b]) => a.localeCompare(b)).slice(0, n)) as Record<string, Migration>;
  const db = new Kysely<unknown>({ dialect: new SqliteDialect({ database: new Database(path) }) });
  try {
    const { error } = await new Migrator({ db, provider: { getMigrations: async () => some } }).migrateToLatest();
    expect(error).toBeUndefined();
  } finally {
    await db.destroy();
  }
}

describe('abp status and abp list: the quick read path', () => {
  // Eleven CLI processes and a job run: beside stress-ng on PostgreSQL it took over a minute.
  it('prints exactly what the orchestrator returns in-process, for jobs in several states and every list filter', { timeout: 180_000 }, async () => {
    const created = await createJob(3);
    const cancelled = await createJob(2);
    await sb.ok(['cancel', String(cancelled)]);
    const completed = await createJob(4);
    await sb.ok(['start', String(completed), '--skip-test']);
    await sb.waitFor(completed, (s) => s.status === 'COMPLETED');

    const app: App = await createApp(resolveConfig(sb.env));
    try {
      for (const id of [created, cancelled, completed]) {
        const r = await sb.cli(['status', String(id), '--json']);
        expect(r.exitCode, r.stderr).toBe(0);
        // The printed JSON, byte for byte (the helper drops the final newline, as execa does).
        expect(r.stdout).toBe(JSON.stringify(await app.orchestrator.status(id), null, 2));
      }
      for (const [flags, filter, page] of [
        [[], {}, { limit: 50, offset: 0 }],
        [['--status', 'CANCELLED,COMPLETED'], { status: ['CANCELLED', 'COMPLETED'] }, { limit: 50, offset: 0 }],
        [['--limit', '1', '--offset', '1'], {}, { limit: 1, offset: 1 }],
        [['--status', 'RUNNING'], { status: ['RUNNING'] }, { limit: 50, offset: 0 }],
      ] as const) {
        const r = await sb.cli(['list', ...flags, '--json']);
        expect(r.exitCode, r.stderr).toBe(0);
        const expected = await app.orchestrator.listJobs({ status: 'status' in filter ? [...filter.status] : undefined }, page);
        expect(r.stdout, flags.join(' ')).toBe(JSON.stringify(expected, null, 2));
      }
      expect(JSON.parse((await sb.cli(['list', '--json'])).stdout)).toHaveLength(3);
    } finally {
      await app.close();
    }
    const missing = await sb.cli(['status', '99', '--json']);
    expect(missing.exitCode).toBe(1);
    expect(missing.json).toEqual({ error: { code: 'not_found', message: 'job 99 does not exist' } });
  });

  it('serves only an up-to-date SQLite file, read-only; anything else is left to the full store', async () => {
    expect(Object.keys(await migrationProvider.getMigrations()).sort()).toEqual([...MIGRATION_NAMES]);
    const current = sb.path('current.db');
    await migratedTo(current, MIGRATION_NAMES.length);
    const reader = openQuickReader(current, 1000);
    expect(reader).toBeDefined();
    await expect(reader?.requireJob(1)).rejects.toThrow('job 1 does not exist');
    await reader?.close();

    const behind = sb.path('behind.db');
    await migratedTo(behind, 3);
    expect(openQuickReader(behind, 1000)).toBeUndefined();
    expect(openQuickReader(`sqlite:${sb.path('absent.db')}`, 1000)).toBeUndefined();
    expect(existsSync(sb.path('absent.db'))).toBe(false);
    expect(openQuickReader('postgres://nobody@127.0.0.1:1/none', 1000)).toBeUndefined();
  });

  it('falls back to the full store on a database behind on migrations: it migrates, or refuses when auto-migrate is off', async () => {
    const db = sb.path('old.db');
    await migratedTo(db, 3);
    const refused = await sb.cli(['list', '--json'], { ABP_DB: db, ABP_AUTO_MIGRATE: '0' });
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(`needs migrations ${MIGRATION_NAMES.slice(3).join(', ')}; run abp migrate`);

    const listed = await sb.cli(['list', '--json'], { ABP_DB: db });
    expect(listed.exitCode, listed.stderr).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([]);
    const sqlite = new Database(db, { readonly: true });
    try {
      expect(sqlite.prepare('select name from kysely_migration order by name').pluck().all()).toEqual([...MIGRATION_NAMES]);
    } finally {
      sqlite.close();
    }
  });
});
