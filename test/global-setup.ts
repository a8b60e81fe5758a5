import type { TestProject } from 'vitest/node';
import { startPostgres, type PostgresServer } from './helpers/postgres.js';

/**
 * One PostgreSQL server for the whole test run. Tests read its admin URL from
 * ABP_TEST_PG_URL (also inherited by CLI processes they spawn) or from
 * `inject('pgUrl')`, and make a fresh database per test with createTestDatabase.
 */
let server: PostgresServer | undefined;

export async function setup(project: TestProject): Promise<void> {
  server = await startPostgres();
  process.env.ABP_TEST_PG_URL = server.url;
  project.provide('pgUrl', server.url);
}

export async function teardown(): Promise<void> {
  server?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
  }
}
