/**
 * The long chaos run: `npm run chaos -- --minutes 10 [--backend sqlite|postgres] [--seed N]
 * [--executors 3] [--units 1500] [--keep]`. It builds first, creates jobs of thousands of
 * units for the given time while it kills executors and locks the database, then
 * checks the invariants (see harness.ts and docs/chaos.md), prints a summary and
 * exits 1 if any was broken. PostgreSQL gets a throwaway server of its own.
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
    keep: { type: 'boolean', default: false },
  },
});
const minutes = Number(values.minutes);
const units = Number(values.units);
const executors = Number(values.executors);
if (!(minutes > 0) || !(units >= 10) || !(executors >= 1 && executors <= 3) || !['sqlite', 'postgres'].includes(String(values.backend))) {
  process.stderr.write('usage: npm run chaos -- [--minutes N (> 0)] [--backend sqlite|postgres] [--seed N] [--executors 1-3] [--units N (>= 10)] [--keep]\n');
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
log(`chaos: ${minutes} min on ${values.backend}, seed ${seed}, up to ${executors} executors, home ${home}`);
let ok = false;
try {
  const report = await runChaos({
    home,
    db,
    durationMs: minutes * 60_000,
    jobs: 'continuous',
    shellUnits: units,
    httpUnits: Math.max(10, Math.round(units / 3)),
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
