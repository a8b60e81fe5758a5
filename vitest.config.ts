import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Starts one PostgreSQL server for the run (needs `apt-get install postgresql`).
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Integration tests spawn executors and subprocesses; two cores share them.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
