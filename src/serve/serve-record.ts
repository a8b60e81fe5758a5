import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { AbpConfig } from '../config.js';
import { AbpError } from '../domain/errors.js';
import { CLI_ENTRY } from '../executor/launcher.js';
import type { Orchestrator } from '../orchestrator/orchestrator.js';
import { processAlive } from '../util/process-group.js';
import { isoTime } from '../domain/iso-time.js';

/**
 * `abp serve` writes its address to $ABP_HOME/serve.json, so that `abp dashboard`,
 * `abp serve stop` and the MCP `dashboard_url` tool (other processes on the same
 * home and database) can find it.
 */
export interface ServeRecord {
  url: string;
  pid: number;
  started_at: string;
}

const file = (home: string) => join(home, 'serve.json');

export function writeServeRecord(home: string, url: string): void {
  const record: ServeRecord = { url, pid: process.pid, started_at: isoTime() };
  writeFileSync(file(home), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
}

/** Removes the record if it is this process's own (a newer server may have replaced it). */
export function removeServeRecord(home: string): void {
  const record = readRecord(home);
  if (record?.pid === process.pid) rmSync(file(home), { force: true });
}

function readRecord(home: string): ServeRecord | undefined {
  if (!existsSync(file(home))) return undefined;
  try {
    const parsed = JSON.parse(readFileSync(file(home), 'utf8')) as ServeRecord;
    return typeof parsed.url === 'string' && Number.isInteger(parsed.pid) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** The running server's record, or undefined when none runs (a record left by a dead server is ignored). */
export function runningServer(home: string): ServeRecord | undefined {
  const record = readRecord(home);
  return record && processAlive(record.pid) ? record : undefined;
}

/** A one-time dashboard link for the server running on this home. */
export async function dashboardLink(orchestrator: Orchestrator, home: string, baseUrl?: string) {
  const server = baseUrl ? { url: baseUrl } : runningServer(home);
  if (!server) {
    throw new AbpError('conflict', `no abp serve is running for ${home}; start one with \`abp serve\` (it prints a dashboard link itself)`, { details: { home } });
  }
  const { token, expires_at } = await orchestrator.monitor.mintDashboardToken(server.url);
  return {
    url: `${server.url}/login?token=${token}`,
    dashboard: `${server.url}/`,
    expires_at,
    note: 'The link works once, within 15 minutes: it exchanges the token for a browser session cookie.',
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Linux: what /proc says of a process, or undefined where there is no /proc. */
function procInfo(pid: number): { argv: string[]; zombie: boolean; startedMs: number | undefined } | undefined {
  if (!existsSync('/proc/self/stat')) return undefined;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    // Fields after the command name's closing parenthesis: state is the first, starttime (clock ticks after boot) the 20th.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\)\s*/s, '').split(/\s+/);
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
    const ticks = Number(fields[19]);
    // USER_HZ is 100 on every Linux abp runs on.
    const startedMs = Number.isFinite(btime) && Number.isFinite(ticks) ? (btime + ticks / 100) * 1000 : undefined;
    return { argv, zombie: fields[0] === 'Z', startedMs };
  } catch {
    return { argv: [], zombie: true, startedMs: undefined }; // gone between the checks
  }
}

/** Whether the process still runs (a zombie that nobody reaped yet has stopped). */
function running(pid: number): boolean {
  return processAlive(pid) && procInfo(pid)?.zombie !== true;
}

/**
 * Why the recorded pid is not the `abp serve` that wrote the record, or undefined
 * when it is: it runs, its command line is a `serve`, and it started before the
 * record was written (a pid reused by a later process did not).
 */
function notTheServer(record: ServeRecord): string | undefined {
  if (!running(record.pid)) return `process ${record.pid} is not running`;
  const proc = procInfo(record.pid);
  let argv = proc?.argv;
  if (!proc) {
    try {
      argv = execFileSync('ps', ['-o', 'args=', '-p', String(record.pid)], { encoding: 'utf8' }).trim().split(/\s+/);
    } catch {
      argv = undefined; // no ps: the pid and the live process are all there is to go on
    }
  }
  if (argv && !argv.includes('serve')) return `process ${record.pid} is not an abp serve (${argv.join(' ').slice(0, 120)})`;
  const recorded = Date.parse(record.started_at);
  if (proc?.startedMs !== undefined && Number.isFinite(recorded) && proc.startedMs > recorded + 2000) {
    return `process ${record.pid} started after the record was written, so it is another process with a reused pid`;
  }
  return undefined;
}

/** How to stop the server of `home`, as one command line. */
export function stopCommand(home: string): string {
  const quoted = /^[\w@%+=:,./-]+$/.test(home) ? home : `'${home.replace(/'/g, "'\\''")}'`;
  return `abp serve stop --home ${quoted}`;
}

export interface StopResult {
  stopped: boolean;
  pid?: number;
  url?: string;
  message: string;
}

/**
 * Stops the server recorded for `home`: SIGTERM to its pid, after checking that
 * the pid is that server, then waits (bounded) until it has exited. `abp serve`
 * drains on SIGTERM: it removes its record and closes its connections.
 */
export async function stopServer(home: string, waitMs = 15_000): Promise<StopResult> {
  const record = readRecord(home);
  if (!record || !running(record.pid)) {
    if (record) rmSync(file(home), { force: true }); // left by a server that died without removing it
    return { stopped: false, message: `no abp serve is running for ${home}; nothing to stop` };
  }
  const why = notTheServer(record);
  if (why) {
    throw new AbpError('conflict', `${file(home)} names pid ${record.pid}, but ${why}; it was not signalled. Delete ${file(home)} if no abp serve runs for ${home}`, {
      details: { home, pid: record.pid },
    });
  }
  process.kill(record.pid, 'SIGTERM');
  const deadline = Date.now() + waitMs;
  while (running(record.pid)) {
    if (Date.now() > deadline) {
      throw new AbpError('conflict', `abp serve (pid ${record.pid}) did not stop within ${Math.round(waitMs / 1000)} s of SIGTERM; \`kill -KILL ${record.pid}\` ends it at once`, {
        details: { home, pid: record.pid },
      });
    }
    await sleep(50);
  }
  return { stopped: true, pid: record.pid, url: record.url, message: `stopped abp serve (pid ${record.pid}) on ${record.url}` };
}

/** Whether something accepts connections on host:port. */
function listening(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** What a log file gained after `from` (its size before), at most its last 2,000 characters. */
function logSince(log: string, from: number): string {
  try {
    const size = statSync(log).size;
    const start = Math.max(from, size - 2000);
    const buf = Buffer.alloc(size - start);
    const fd = openSync(log, 'r');
    try {
      readSync(fd, buf, 0, buf.length, start);
    } finally {
      closeSync(fd);
    }
    return buf.toString('utf8').trim();
  } catch {
    return '';
  }
}

export interface EnsuredServer {
  record: ServeRecord;
  /** Whether this call started it. */
  started: boolean;
  /** Its log, when this call started it. */
  log?: string;
}

const LOOPBACK = '127.0.0.1';

/**
 * The server running for this home, or a new one: `abp serve` on loopback at the
 * configured port, detached in its own session so that it outlives the caller,
 * logging to $ABP_HOME/logs/serve.log. Ready once it has written its record.
 */
export async function ensureServer(config: Pick<AbpConfig, 'home' | 'db' | 'httpPort'>, readyMs = 30_000): Promise<EnsuredServer> {
  const live = runningServer(config.home);
  if (live) return { record: live, started: false };
  const port = config.httpPort;
  const taken = () =>
    new AbpError(
      'conflict',
      `port ${port} on ${LOOPBACK} is taken by another program (no abp serve of ${config.home} is recorded on it), so abp serve cannot start there; set ABP_HTTP_PORT to a free port in the environment of abp, or stop what holds ${port}`,
      { details: { home: config.home, port } },
    );
  if (port !== 0 && (await listening(LOOPBACK, port))) throw taken();
  const logDir = join(config.home, 'logs');
  mkdirSync(logDir, { recursive: true });
  const log = join(logDir, 'serve.log');
  const fd = openSync(log, 'a');
  const from = statSync(log).size;
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let child;
  try {
    child = spawn(process.execPath, [CLI_ENTRY, 'serve', '--host', LOOPBACK, '--port', String(port)], {
      detached: true, // its own session: it outlives the MCP server that started it
      stdio: ['ignore', fd, fd],
      // The server keeps the caller's ABP_API_KEY if it has one; without it, it uses (or creates) $ABP_HOME/api-key.
      env: { ...process.env, ABP_HOME: config.home, ABP_DB: config.db },
    });
  } finally {
    closeSync(fd);
  }
  child.once('exit', (code, signal) => (exited = { code, signal }));
  child.once('error', () => (exited ??= { code: null, signal: null }));
  child.unref();
  const pid = child.pid as number;
  const deadline = Date.now() + readyMs;
  for (;;) {
    const record = runningServer(config.home);
    if (record?.pid === pid) return { record, started: true, log };
    if (exited) {
      // Another caller may have started one at the same moment: use it.
      if (record) return { record, started: false };
      const said = logSince(log, from);
      if (/EADDRINUSE/.test(said)) throw taken();
      throw new AbpError('internal', `abp serve exited (${exited.signal ?? `code ${exited.code}`}) before it was ready: ${said.split('\n').slice(-5).join(' | ') || 'no output'} (log: ${log})`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGTERM');
      throw new AbpError('internal', `abp serve did not get ready within ${Math.round(readyMs / 1000)} s; it was stopped (log: ${log})`);
    }
    await sleep(50);
  }
}
