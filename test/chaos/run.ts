/**
 * The long chaos run: `npm run chaos -- --minutes 10 [--backend sqlite|postgres] [--seed N]
 * [--executors 3] [--units 1500] [--poison] [--keep]`. It builds first, creates jobs of thousands of
 * units for the given time while it kills executors and locks the database, then
 * checks the invariants (see harness.ts and docs/chaos.md), prints a summary and
 * exits 1 if any was broken. PostgreSQL gets a throwaway server of its own.
 *
 * --poison: poisoned-worker mode (harness.ts, PoisonOptions). Beside the shell and
 * http-llm jobs come agent-cli and claude jobs whose agent (poison-agent.sh) emits
 * garbage for a share of the items, and the shell job's items get poisons too.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';
import { runChaos, summary } from './harness.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    backend: { type: 'string', default: 'sqlite' },
    seed: { type: 'string' },
    executors: { type: 'string', default: '3' },
    units: { type: 'string', default: '1500' },
    poison: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const minutes = Number(values.minutes);
const units = Number(values.units);
const executors = Number(values.executors);
if (!(minutes > 0) || !(units >= 10) || !(executors >= 1 && executors <= 3) || !['sqlite', 'postgres'].includes(String(values.backend))) {
  process.stderr.write('usage: npm run chaos -- [--minutes N (> 0)] [--backend sqlite|postgres] [--seed N] [--executors 1-3] [--units N (>= 10)] [--poison] [--keep]\n');
  process.exit(2);
}
const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed);
const home = mkdtempSync(join(tmpdir(), 'abp-chaos-'));
let server: PostgresServer | undefined;
let db = join(home, 'abp.db');
if (values.backend === 'postgres') {
  server = await startPostgres();
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  await client.query('CREATE DATABASE abp_chaos');
  await client.end();
  db = server.url.replace(/\/postgres$/, '/abp_chaos');
}
const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
log(`chaos${values.poison ? ' (poisoned workers)' : ''}: ${minutes} min on ${values.backend}, seed ${seed}, up to ${executors} executors, home ${home}`);
let ok = false;
try {
  const report = await runChaos({
    home,
    db,
    durationMs: minutes * 60_000,
    jobs: 'continuous',
    shellUnits: units,
    httpUnits: Math.max(10, Math.round(units / 3)),
    ...(values.poison
      ? {
          kinds: ['shell', 'http', 'agent', 'claude'] as const,
          agentUnits: Math.max(10, Math.round(units / 2)),
          claudeUnits: Math.max(10, Math.round(units / 3)),
          poison: {
            floodEvents: 150_000,
            longLineBytes: 40_000_000,
            hugeLineBytes: 256 * 1024 * 1024,
            maxOutputBytes: 64 * 1024 * 1024,
            // Room for a flood or a 40 MB line on a loaded host; the escapee outlives the timeout.
            timeoutSeconds: 20,
            escapeSeconds: 25,
            everyPoisonFirst: true,
          },
        }
      : {}),
    maxExecutors: executors,
    actionEveryMs: 2500,
    leaseSeconds: 4,
    settleMs: 10 * 60_000,
    seed,
    log,
  });
  writeFileSync(join(home, 'chaos-report.json'), JSON.stringify(report, null, 2));
  process.stdout.write(`${summary(report)}\n`);
  ok = report.ok;
} finally {
  server?.stop();
  if (values.keep || !ok) log(`kept ${home} (run logs in runs/, executor logs in chaos-logs/)`);
  else rmSync(home, { recursive: true, force: true });
}
process.exit(ok ? 0 : 1);
