import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/**
 * A throwaway PostgreSQL server for the test run: initdb + pg_ctl in a temp data
 * directory, listening on a free loopback port with trust auth. One server per
 * run (started by the vitest globalSetup); each test takes a fresh database from
 * it with `createTestDatabase`, so tests never see each other's tables.
 */
export interface PostgresServer {
  /** postgres://postgres@127.0.0.1:PORT/postgres — the admin database. */
  url: string;
  port: number;
  dataDir: string;
  stop(): void;
}

const PG_ROOT = '/usr/lib/postgresql';

/** The newest installed server's bin directory, or a clear instruction to install it. */
export function postgresBinDir(): string {
  const versions = existsSync(PG_ROOT)
    ? readdirSync(PG_ROOT)
        .filter((v) => existsSync(join(PG_ROOT, v, 'bin', 'initdb')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  const newest = versions[0];
  if (newest === undefined) {
    throw new Error(
      `PostgreSQL server binaries not found under ${PG_ROOT}/*/bin. The test suite starts its own PostgreSQL server; install it with: sudo apt-get install -y postgresql`,
    );
  }
  return join(PG_ROOT, newest, 'bin');
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** PostgreSQL refuses to run as root, so as root the binaries run as the `postgres` user. */
function runner(): { wrap: (cmd: string, args: string[]) => [string, string[]]; uid?: number; gid?: number } {
  if (userInfo().uid !== 0) return { wrap: (cmd, args) => [cmd, args] };
  const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
  return { wrap: (cmd, args) => ['runuser', ['-u', 'postgres', '--', cmd, ...args]], uid, gid };
}

export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBinDir();
  const run = runner();
  const dataDir = mkdtempSync(join(tmpdir(), 'abp-pg-'));
  if (run.uid !== undefined && run.gid !== undefined) chownSync(dataDir, run.uid, run.gid);
  const exec = (cmd: string, args: string[]) => {
    const [file, argv] = run.wrap(join(bin, cmd), args);
    try {
      execFileSync(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], cwd: dataDir });
    } catch (err) {
      const e = err as { stderr?: Buffer; stdout?: Buffer; message: string };
      const log = existsSync(join(dataDir, 'server.log')) ? readFileSync(join(dataDir, 'server.log'), 'utf8') : '';
      throw new Error(`${cmd} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}${log}`);
    }
  };
  const pgdata = join(dataDir, 'data');
  exec('initdb', ['-D', pgdata, '-U', 'postgres', '--auth=trust', '--no-sync', '--encoding=UTF8', '--locale=C']);
  // Two servers may race for one free port; retry with a new one.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    try {
      exec('pg_ctl', [
        'start', '-w', '-t', '30', '-D', pgdata, '-l', join(dataDir, 'server.log'),
        // Room for many executors' pools at once (the distributed test runs four, beside other tests).
        '-o', `-p ${port} -h 127.0.0.1 -k ${dataDir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400`,
      ]);
    } catch (err) {
      if (attempt < 3) continue;
      throw err;
    }
    let stopped = false;
    return {
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      port,
      dataDir,
      stop() {
        if (stopped) return;
        stopped = true;
        try {
          exec('pg_ctl', ['stop', '-D', pgdata, '-m', 'immediate', '-w']);
        } finally {
          rmSync(dataDir, { recursive: true, force: true });
        }
      },
    };
  }
}

/** The admin URL the globalSetup published, or a message that says why there is none. */
export function testPostgresUrl(): string {
  const url = process.env.ABP_TEST_PG_URL;
  if (!url) throw new Error('ABP_TEST_PG_URL is not set: the vitest globalSetup (test/global-setup.ts) starts PostgreSQL and sets it');
  return url;
}

/**
 * Which database abp's own store uses in this test run: the vitest project
 * `postgres` sets ABP_TEST_DB=postgres, and then every Sandbox (and every test
 * that opens the store in-process) gets a fresh PostgreSQL database instead of a
 * SQLite file.
 */
export const TEST_BACKEND: 'sqlite' | 'postgres' = process.env.ABP_TEST_DB === 'postgres' ? 'postgres' : 'sqlite';

function newDatabaseName(): string {
  return `abp_test_${process.pid}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
}

function databaseUrl(adminUrl: string, name: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * createTestDatabase for synchronous callers (the Sandbox constructor), through
 * psql: one CREATE DATABASE, a few tens of milliseconds.
 */
export function createTestDatabaseSync(adminUrl = testPostgresUrl()): string {
  const name = newDatabaseName();
  try {
    execFileSync(join(postgresBinDir(), 'psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', adminUrl, '-c', `CREATE DATABASE ${name}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as { stderr?: Buffer; message: string };
    throw new Error(`CREATE DATABASE ${name} failed: ${e.message}
${e.stderr ?? ''}`);
  }
  return databaseUrl(adminUrl, name);
}

/** Drops a test database, closing whatever connections executors left open. */
export async function dropTestDatabase(url: string, adminUrl = testPostgresUrl()): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  if (!/^abp_test_\w+$/.test(name)) throw new Error(`refusing to drop ${name}: not a test database`);
  await pgExec(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

/** int8 (COUNT, bigint columns) and numeric (SUM) as JS numbers, as abp's own store reads them. */
const numberTypes = {
  getTypeParser(oid: number, format?: string) {
    if (oid === 20 || oid === 1700) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format as 'text');
  },
} as pg.CustomTypesConfig;

/** One query with `?` placeholders (SQLite style, as tests write them) against a database URL. */
export async function queryPostgres<T>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  let n = 0;
  const client = new pg.Client({ connectionString: url, types: numberTypes });
  await client.connect();
  try {
    const result = await client.query(text.replace(/\?/g, () => `$${++n}`), params);
    return result.rows as T[];
  } finally {
    await client.end();
  }
}

/** A fresh, empty database on the test server; returns its URL. */
export async function createTestDatabase(adminUrl = testPostgresUrl()): Promise<string> {
  const name = newDatabaseName();
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Runs SQL (setup statements) against a database URL. */
export async function pgExec(url: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}
