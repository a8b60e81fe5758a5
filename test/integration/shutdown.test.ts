import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { execa, type ResultPromise } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, groupAlive, ROOT, Sandbox, sleep } from '../helpers/cli.js';
import { call, KEY, slowJob, SseClient, startServe } from '../helpers/serve.js';

/*
 * Graceful shutdown of every long-running process: `abp executor` (foreground and
 * the detached one `abp start` launches), `abp mcp` and `abp serve`. Each gets a
 * real signal and must exit 0 within BOUND_MS, leaving no lease behind; a restart
 * then finishes the job with no unit lost and none run twice.
 */
const BOUND_MS = 15_000;

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox({ ABP_LEASE_SECONDS: '30' });
});
afterEach(async () => {
  await sb.cleanup();
});

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function lines(path: string): string[] {
  return existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean) : [];
}

/**
 * A foreground executor, once it has registered: `abp start` then finds it alive
 * and launches no detached executor of its own.
 */
async function foreground(env: Record<string, string> = {}): Promise<{ proc: ResultPromise }> {
  const proc = execa(process.execPath, [CLI, 'executor', '--idle-seconds', '0'], { env: { ...sb.env, ...env }, reject: false, cwd: ROOT });
  await until('the executor to register', async () => proc.exitCode !== null || (await sb.query('select id from executors where pid = ?', proc.pid)).length === 1);
  // Wrapped: an async function returning the process itself would wait for it to exit.
  return { proc };
}

/** Sends `signal` and waits for the exit; returns the result and how long it took. */
async function stopWith(proc: ResultPromise, signal: NodeJS.Signals) {
  const t0 = Date.now();
  proc.kill(signal);
  const result = await proc;
  return { result, ms: Date.now() - t0 };
}

/**
 * A shell job over ids u1..uN. Each run appends "ID start PID" and, unless killed,
 * "ID end PID" to runs.log. An item's first run takes `firstSeconds`, later runs
 * `laterSeconds`, so a job can outlast the grace period once and then finish.
 */
async function createJob(n: number, firstSeconds: number, laterSeconds: number, maxWorkers: number): Promise<number> {
  const file = sb.path('items.csv');
  writeFileSync(file, ['id', ...Array.from({ length: n }, (_, i) => `u${i + 1}`)].join('\n') + '\n');
  mkdirSync(sb.path('marks'), { recursive: true });
  const log = sb.path('runs.log');
  const script = [
    `echo "$1 start $$" >> ${log}`,
    `if [ -e ${sb.path('marks')}/$1 ]; then sleep ${laterSeconds}; else touch ${sb.path('marks')}/$1; sleep ${firstSeconds}; fi`,
    `echo "$1 end $$" >> ${log}`,
    'printf "done-%s" "$1"',
  ].join('\n');
  const job = await sb.ok([
    'create', '--name', 'shutdown', '--intent', 'outlive a signal', '--enumerator', 'csv', '-e', `file_path=${file}`, '-e', 'id_column=id',
    '--worker', 'shell', '-w', 'command=sh', '-w', `args:=${JSON.stringify(['-c', script, 'sh', '{{item.id}}'])}`,
    '--max-workers', String(maxWorkers), '--max-retries', '0', '--timeout', '120',
  ]);
  return job.job_id as number;
}

const starts = (log: string[]) => log.filter((l) => l.includes(' start ')).map((l) => l.split(' ')[0] as string);
const ends = (log: string[]) => log.filter((l) => l.includes(' end ')).map((l) => l.split(' ')[0] as string);

async function noLeases(job: number): Promise<void> {
  expect(await sb.query('select id from work_units where job_id = ? and (status = ? or lease_owner is not null or worker_pid is not null)', job, 'RUNNING')).toEqual([]);
  expect(await sb.query('select id from executors')).toEqual([]);
  const status = await sb.status(job);
  expect(status.counts).toEqual(await sb.counts(job));
}

/** Restarts an executor and checks that the job completes with every unit succeeded, each by exactly one finished run. */
async function restartCompletes(job: number, n: number): Promise<void> {
  const { proc: again } = await foreground();
  const done = await sb.waitFor(job, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
  await stopWith(again, 'SIGTERM');
  expect(done.status).toBe('COMPLETED');
  expect(done.counts).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: n, failed: 0, cancelled: 0 });
  const results = await sb.results(job);
  expect(results.map((r) => r.output).sort()).toEqual(Array.from({ length: n }, (_, i) => `done-u${i + 1}`).sort());
  const finished = ends(lines(sb.path('runs.log')));
  for (let i = 1; i <= n; i++) expect(finished.filter((id) => id === `u${i}`), `u${i}`).toHaveLength(1);
  await noLeases(job);
}

describe.each(['SIGTERM', 'SIGINT'] as const)('abp executor on %s', (signal) => {
  it('stops claiming, lets running units finish within the grace period, exits 0 and releases everything; a restart completes the job', async () => {
    const n = 16;
    const job = await createJob(n, 1, 1, 4);
    const { proc: exec } = await foreground({ ABP_SHUTDOWN_GRACE_SECONDS: '20' });
    await sb.ok(['start', String(job), '--skip-test']);
    const log = sb.path('runs.log');
    // Mid-job: some units started, some still to go.
    await until('four units to start', async () => starts(lines(log)).length >= 4);
    const { result, ms } = await stopWith(exec, signal);
    expect(result.exitCode, String(result.stderr)).toBe(0);
    expect(ms).toBeLessThan(BOUND_MS);
    expect(String(result.stderr)).toContain(`${signal} received; draining`);

    // Every run that had started was allowed to finish, and recorded; nothing new was claimed.
    const afterStop = lines(log);
    expect(ends(afterStop).sort()).toEqual(starts(afterStop).sort());
    const s = await sb.status(job);
    expect(s.counts.succeeded).toBe(starts(afterStop).length);
    expect(s.counts.pending).toBe(n - starts(afterStop).length);
    expect(s.counts.pending).toBeGreaterThan(0);
    await noLeases(job);

    await restartCompletes(job, n);
    expect(starts(lines(log))).toHaveLength(n);
  });
});

describe('abp executor: units that outlast the grace period', () => {
  it('are stopped and given back unspent, their process groups are killed, and a restart completes them', async () => {
    const job = await createJob(3, 120, 0, 3);
    const { proc: exec } = await foreground({ ABP_SHUTDOWN_GRACE_SECONDS: '1' });
    await sb.ok(['start', String(job), '--skip-test']);
    const log = sb.path('runs.log');
    await until('all three units to run', async () => starts(lines(log)).length === 3);
    const pids = await until('the worker pids to be recorded', async () => {
      const rows = await sb.query<{ worker_pid: number | null }>('select worker_pid from work_units where job_id = ? and status = ?', job, 'RUNNING');
      return rows.length === 3 && rows.every((r) => r.worker_pid !== null) ? rows.map((r) => r.worker_pid as number) : undefined;
    });

    for (const pid of pids) expect(groupAlive(pid)).toBe(true);

    const { result, ms } = await stopWith(exec, 'SIGTERM');
    expect(result.exitCode, String(result.stderr)).toBe(0);
    expect(ms).toBeLessThan(BOUND_MS);
    // Killed; a process that just died may stay a zombie for a moment until whoever adopted it reaps it.
    for (const pid of pids) await until(`process group ${pid} to go`, async () => !groupAlive(pid), 5000);
    const units = await sb.query<{ status: string; failures: number; error_kind: string }>('select status, failures, error_kind from work_units where job_id = ?', job);
    // Given back, not failed: max_retries is 0, so a spent attempt would have failed the unit.
    expect(units).toEqual(Array.from({ length: 3 }, () => ({ status: 'PENDING', failures: 0, error_kind: 'shutdown' })));
    expect(ends(lines(log))).toEqual([]);
    await noLeases(job);

    await restartCompletes(job, 3);
  });

  it('a second signal stops them at once instead of waiting out the grace period', async () => {
    const job = await createJob(2, 120, 0, 2);
    const { proc: exec } = await foreground({ ABP_SHUTDOWN_GRACE_SECONDS: '600' });
    let stderr = '';
    exec.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    await sb.ok(['start', String(job), '--skip-test']);
    await until('both units to run', async () => starts(lines(sb.path('runs.log'))).length === 2);
    const t0 = Date.now();
    exec.kill('SIGTERM');
    await until('the drain to begin', async () => stderr.includes('draining'));
    exec.kill('SIGTERM');
    const result = await exec;
    expect(result.exitCode, stderr).toBe(0);
    expect(Date.now() - t0).toBeLessThan(BOUND_MS);
    expect(stderr).toContain('received again; stopping the running units now');
    expect((await sb.counts(job)).pending).toBe(2);
    await noLeases(job);
    await restartCompletes(job, 2);
  });
});

describe('the detached executor abp start launches', () => {
  it('drains on SIGTERM, unregisters and exits; abp start launches a new one that completes the job', async () => {
    const n = 8;
    const job = await createJob(n, 1, 1, 2);
    const started = await sb.ok(['start', String(job), '--skip-test']);
    expect(started.executor.started).toBe(true);
    const pid = started.executor.pid as number;
    await until('the detached executor to register', async () => (await sb.query('select pid from executors where pid = ?', pid)).length === 1);
    await until('two units to start', async () => starts(lines(sb.path('runs.log'))).length >= 2);
    const t0 = Date.now();
    process.kill(pid, 'SIGTERM');
    await until('the detached executor to exit', async () => !alive(pid), BOUND_MS);
    expect(Date.now() - t0).toBeLessThan(BOUND_MS);
    const log = readFileSync(sb.path('logs', 'executor.log'), 'utf8');
    expect(log).toContain('SIGTERM received; draining');
    expect(log).toMatch(/executor \S+: stopped/);
    const runs = lines(sb.path('runs.log'));
    expect(ends(runs).sort()).toEqual(starts(runs).sort());
    await noLeases(job);

    const again = await sb.ok(['start', String(job)]);
    expect(again.executor.started).toBe(true);
    const done = await sb.waitFor(job, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
    expect(done.counts).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: n, failed: 0, cancelled: 0 });
    for (let i = 1; i <= n; i++) expect(starts(lines(sb.path('runs.log'))).filter((id) => id === `u${i}`), `u${i}`).toHaveLength(1);
  });
});

describe.each(['SIGTERM', 'SIGINT'] as const)('abp mcp (stdio) on %s', (signal) => {
  it('closes the session and exits 0, with its client still connected', async () => {
    const proc = execa(process.execPath, [CLI, 'mcp'], { env: sb.env, reject: false, cwd: ROOT, stdin: 'pipe' });
    let stdout = '';
    let stderr = '';
    proc.stdout?.on('data', (c: Buffer) => (stdout += c.toString()));
    proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
    await until('the server to listen', async () => stderr.includes('serving on stdio'));
    proc.stdin?.write(`${JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'shutdown-test', version: '1' } } })}\n`);
    await until('the initialize answer', async () => stdout.includes('"id":1'));
    // stdin stays open: only the signal can end it.
    const { result, ms } = await stopWith(proc, signal);
    expect(result.exitCode, stderr).toBe(0);
    expect(ms).toBeLessThan(BOUND_MS);
  });
});

describe.each(['SIGTERM', 'SIGINT'] as const)('abp serve on %s', (signal) => {
  it('closes event streams and MCP sessions, stops listening and exits 0; the job carries on', async () => {
    const csv = sb.path('rows.csv');
    writeFileSync(csv, 'id,text\na,alpha\nb,beta\nc,gamma\nd,delta\n');
    const served = await startServe(sb);
    const created = await call(served.url, '/jobs', { method: 'POST', body: slowJob(csv, { sleepSeconds: 1, maxWorkers: 1 }) });
    expect(created.status, created.text).toBe(201);
    const job = created.json.job_id as number;
    const sse = await new SseClient(served.url, `/jobs/${job}/events`).open();
    await sse.until((c) => c.events.some((e) => e.event === 'hello'));
    const mcp = new Client({ name: 'shutdown-test', version: '1' });
    await mcp.connect(new StreamableHTTPClientTransport(new URL(`${served.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${KEY}` } } }));
    expect((await mcp.listTools()).tools.length).toBeGreaterThan(0);
    await sb.ok(['start', String(job), '--skip-test']);

    const { result, ms } = await stopWith(served.proc, signal);
    expect(result.exitCode, served.stderr()).toBe(0);
    expect(ms).toBeLessThan(BOUND_MS);
    expect(served.stderr()).toContain(`abp serve: ${signal} received; shutting down`);
    await until('the event stream to end', async () => sse.ended, 5000);
    expect(existsSync(sb.path('serve.json'))).toBe(false);
    await expect(fetch(`${served.url}/health`)).rejects.toThrow();
    await mcp.close().catch(() => undefined);

    // The server never ran units: the detached executor finishes the job on its own.
    const done = await sb.waitFor(job, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
    expect(done.counts).toMatchObject({ succeeded: 4, failed: 0 });
  });
});

/** Whether a process runs; a zombie (exited, not yet reaped by whoever adopted it) does not. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
