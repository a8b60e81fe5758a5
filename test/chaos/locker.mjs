// The chaos harness's database locker: a separate process that, on each line
// `lock MS [TABLE]` on stdin, takes the database for MS milliseconds and answers
// `locked MS WAITED` (or `error MESSAGE`) on stdout.
//   SQLite:     BEGIN EXCLUSIVE (no other writer gets in; readers still read the WAL)
//   PostgreSQL: LOCK TABLE TABLE IN ACCESS EXCLUSIVE MODE (nobody reads or writes it). One
//               table at a time: holding one lock while waiting for another could deadlock
//               with abp's own transactions, and the server would end ours.
//
//   node locker.mjs DB
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import pg from 'pg';

const target = process.argv[2];
if (!target) {
  process.stderr.write('usage: node locker.mjs SQLITE_PATH|POSTGRES_URL\n');
  process.exit(2);
}
const postgres = /^postgres(ql)?:\/\//.test(target);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let lockOnce;
let close;
if (postgres) {
  const client = new pg.Client({ connectionString: target, application_name: 'abp-chaos-locker' });
  await client.connect();
  lockOnce = async (ms, table) => {
    if (table !== 'jobs' && table !== 'work_units') throw new Error(`cannot lock ${table}`);
    await client.query('BEGIN');
    try {
      await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      await sleep(ms);
    } finally {
      await client.query('COMMIT');
    }
  };
  close = () => client.end();
} else {
  const db = new Database(target.replace(/^sqlite:(\/\/)?/, ''));
  db.pragma('busy_timeout = 30000');
  lockOnce = async (ms) => {
    db.exec('BEGIN EXCLUSIVE');
    try {
      await sleep(ms);
    } finally {
      db.exec('COMMIT');
    }
  };
  close = async () => db.close();
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const [verb, arg, table = 'work_units'] = line.trim().split(/\s+/);
  if (verb !== 'lock') continue;
  const ms = Number(arg);
  const asked = Date.now();
  try {
    await lockOnce(ms, table);
    process.stdout.write(`locked ${ms} ${Date.now() - asked - ms}\n`);
  } catch (err) {
    process.stdout.write(`error ${String(err?.message ?? err).replace(/\n/g, ' ')}\n`);
  }
}
await close();
