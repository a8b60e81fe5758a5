import type { TestProject } from 'vitest/node';
import { startPostgres, type PostgresServer } from './helpers/postgres.js';

/**
 * One PostgreSQL server for the whole test run, shared by both projects (sqlite
 * and postgres each run this setup; the first starts the server, the last
 * teardown stops it). Tests read its admin URL from ABP_TEST_PG_URL (also
 * inherited by CLI processes they spawn) or from `inject('pgUrl')`, and make a
 * fresh database per test with createTestDatabase.
 */
let server: Promise<PostgresServer> | undefined;
let users = 0;

export async function setup(project: TestProject): Promise<void> {
  users++;
  server ??= startPostgres();
  const { url } = await server;
  process.env.ABP_TEST_PG_URL = url;
  project.provide('pgUrl', url);
}

export async function teardown(): Promise<void> {
  if (--users > 0 || !server) return;
  const s = server;
  server = undefined;
  (await s).stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
  }
}
