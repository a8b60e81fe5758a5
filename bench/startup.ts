/**
 * Start-up, as a user (or a script, or an MCP host) meets it: whole `abp`
 * processes, each against `node -e 0` measured in the same run, interleaved so
 * that drift on a shared machine touches both sides alike.
 *
 * Peak RSS is each child's own high-water mark (VmHWM of /proc/self/status, the
 * same figure create-job.js reports), read at exit by the reporter of
 * process-report.ts, preloaded with -r; both sides carry it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI_ENTRY } from '../src/executor/launcher.js';
import { median, spread, type BenchRow } from './table.js';
import { readReport, writeReporter } from './process-report.js';

const RUNS = Number(process.env.ABP_BENCH_STARTUP_RUNS ?? 10);
const CREATE_ROWS = 100_000;
const CREATE_JOB = fileURLToPath(new URL('./create-job.js', import.meta.url));
/** The long-lived processes (an executor, `abp mcp`): fewer runs, each idles this long before it is ended. */
const IDLE_RUNS = Number(process.env.ABP_BENCH_IDLE_RUNS ?? 5);
const IDLE_SECONDS = Number(process.env.ABP_BENCH_IDLE_SECONDS ?? 3);


interface Run {
  ms: number;
  mb: number;
}

/** One whole process, `node -r report-rss.cjs ...args`: wall time from spawn to exit, and its peak RSS. */
function processRun(args: string[], env: NodeJS.ProcessEnv, scratch: string): Run {
  const rssFile = join(scratch, 'rss');
  rmSync(rssFile, { force: true });
  const started = performance.now();
  const r = spawnSync(process.execPath, ['-r', join(scratch, 'report-rss.cjs'), ...args], { env: { ...env, ABP_BENCH_RSS_FILE: rssFile }, encoding: 'utf8' });
  const ms = performance.now() - started;
  if (r.status !== 0) throw new Error(`bench: node ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms, mb: readReport(rssFile).mb };
}

/** Milliseconds from spawning `abp mcp` to its answer to `initialize` on stdout. */
function mcpInitialize(env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, [CLI_ENTRY, 'mcp'], { env, stdio: ['pipe', 'pipe', 'ignore'] });
    let out = '';
    let answered: number | undefined;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      if (answered === undefined && out.includes('"id":1')) {
        answered = performance.now() - started;
        child.stdin.end();
      }
    });
    child.on('error', reject);
    child.on('close', (code) => (answered === undefined ? reject(new Error(`bench: abp mcp exited ${code} before answering initialize: ${out}`)) : resolve(answered)));
    const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '0' } } };
    child.stdin.write(`${JSON.stringify(initialize)}\n`);
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A long-lived `node -r report-rss.cjs CLI ...args`, whose peak RSS is read once it has exited. */
function startLong(args: string[], env: NodeJS.ProcessEnv, scratch: string, stdio: 'ignore' | 'pipe'): { child: ChildProcess; peakMb: () => Promise<number> } {
  const rssFile = join(scratch, 'rss');
  rmSync(rssFile, { force: true });
  const child = spawn(process.execPath, ['-r', join(scratch, 'report-rss.cjs'), CLI_ENTRY, ...args], { env: { ...env, ABP_BENCH_RSS_FILE: rssFile }, stdio: [stdio, stdio, 'ignore'] });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return { child, peakMb: async () => (await exited, readReport(rssFile).mb) };
}

/** The RSS a process holds now (VmRSS), in MB: what stays after the peak. */
function rssNowMb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
}

interface IdleRun {
  mb: number;
  /** VmRSS at the end of the idle time, before SIGTERM. */
  nowMb: number;
}

/**
 * `abp executor --idle-seconds 0` in its own store, idle for IDLE_SECONDS, then
 * SIGTERM; with `job`, it first runs a small job of function units and one of
 * shell units (piscina threads and fork servers start, and may stay).
 */
async function idleExecutor(env: NodeJS.ProcessEnv, scratch: string, job: { csv: string; fn: string } | null): Promise<IdleRun> {
  const home = mkdtempSync(join(scratch, 'exec-'));
  const own = { ...env, ABP_HOME: home, ABP_DB: join(home, 'abp.db') };
  const cli = (...args: string[]) => {
    const r = spawnSync(process.execPath, [CLI_ENTRY, ...args], { env: own, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`bench: abp ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
    return r.stdout.trim();
  };
  // The store exists before the executor starts: it is measured idle, not migrating.
  cli('migrate');
  const { child, peakMb } = startLong(['executor', '--idle-seconds', '0'], own, scratch, 'ignore');
  try {
    if (job) {
      // Started after the executor: it is live, so `abp start` launches no other.
      await sleep(500);
      const common = ['--intent', 'bench', '--enumerator', 'csv', '-e', `file_path=${job.csv}`, '-q'];
      const ids = [
        cli('create', '--name', 'fn', ...common, '--worker', 'function', '-w', `module=${job.fn}`),
        cli('create', '--name', 'sh', ...common, '--worker', 'shell', '-w', 'command=echo', '-w', 'args:=["{{item.n}}"]'),
      ];
      for (const id of ids) cli('start', id, '--skip-test');
      const deadline = Date.now() + 60_000;
      while (ids.some((id) => JSON.parse(cli('status', id, '--json')).status !== 'COMPLETED')) {
        if (Date.now() > deadline) throw new Error('bench: the idle executor did not complete its job within a minute');
        await sleep(200);
      }
    }
    await sleep(IDLE_SECONDS * 1000);
    const nowMb = rssNowMb(child.pid as number);
    child.kill('SIGTERM');
    return { mb: await peakMb(), nowMb };
  } finally {
    child.kill('SIGKILL');
    rmSync(home, { recursive: true, force: true });
  }
}

/** `abp mcp` after initialize, tools/list and a get_job_status, idle for IDLE_SECONDS, then stdin closed. */
async function idleMcp(env: NodeJS.ProcessEnv, scratch: string, job: string): Promise<IdleRun> {
  const { child, peakMb } = startLong(['mcp'], env, scratch, 'pipe');
  const answers = new Map<number, (m: unknown) => void>();
  let buffered = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const message = JSON.parse(buffered.slice(0, nl)) as { id?: number };
      buffered = buffered.slice(nl + 1);
      if (message.id !== undefined) answers.get(message.id)?.(message);
    }
  });
  const send = (message: object) => child.stdin?.write(`${JSON.stringify({ jsonrpc: '2.0', ...message })}\n`);
  const call = (id: number, method: string, params: object) =>
    new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`bench: abp mcp did not answer ${method}`)), 30_000);
      answers.set(id, (m) => (clearTimeout(timer), resolve(m)));
      send({ id, method, params });
    });
  try {
    await call(1, 'initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '0' } });
    send({ method: 'notifications/initialized' });
    await call(2, 'tools/list', {});
    const status = JSON.stringify(await call(3, 'tools/call', { name: 'get_job_status', arguments: { job_id: Number(job) } }));
    if (!status.includes('"status"')) throw new Error(`bench: get_job_status answered ${status.slice(0, 300)}`);
    await sleep(IDLE_SECONDS * 1000);
    const nowMb = rssNowMb(child.pid as number);
    child.stdin?.end();
    return { mb: await peakMb(), nowMb };
  } finally {
    child.kill('SIGKILL');
  }
}

function idleRow(what: string, measure: string, runs: IdleRun[], bare: Run[]): BenchRow {
  const mbs = runs.map((r) => r.mb);
  const ratios = mbs.map((m, i) => m / (bare[i] as Run).mb);
  return {
    what,
    measure: `${measure}; peak RSS (VmHWM) of the whole process, read at its exit`,
    figure: `peak RSS ${spread(mbs, 1, ' MB')}; RSS at the end of the idle time ${spread(runs.map((r) => r.nowMb), 1, ' MB')}`,
    anchor: `node -e 0, peak RSS: ${spread(mb(bare), 1, ' MB')}`,
    ratio: median(ratios),
    ratio_note: `peak RSS ÷ node -e 0 (${spread(ratios, 2, '×')})`,
    target: '≤ 60 MB',
    raw: { mb: mbs, now_mb: runs.map((r) => r.nowMb), node_mb: mb(bare) },
  };
}

const ms = (runs: Run[]) => runs.map((r) => r.ms);
const mb = (runs: Run[]) => runs.map((r) => r.mb);

function cliRow(what: string, runs: Run[], bare: Run[]): BenchRow {
  const ratios = runs.map((r, i) => r.ms / (bare[i] as Run).ms);
  return {
    what,
    measure: 'wall time spawn → exit and peak RSS of the whole process, a job in the store',
    figure: `${spread(ms(runs), 0, ' ms')}, peak RSS ${spread(mb(runs), 0, ' MB')}`,
    anchor: `node -e 0: ${spread(ms(bare), 0, ' ms')}, peak RSS ${spread(mb(bare), 0, ' MB')}`,
    ratio: median(ratios),
    ratio_note: `wall ÷ node -e 0 (${spread(ratios, 2, '×')})`,
    target: '≤ 150 ms, ≤ 60 MB',
    raw: { ms: ms(runs), mb: mb(runs), node_ms: ms(bare), node_mb: mb(bare) },
  };
}

export async function run(): Promise<BenchRow[]> {
  const scratch = mkdtempSync(join(tmpdir(), 'abp-bench-startup-'));
  try {
    writeReporter(scratch);
    const home = join(scratch, 'home');
    // As a default Node install starts: NODE_EXTRA_CA_CERTS makes every node process parse a CA
    // bundle before it runs a line (~40 ms here). A machine that sets it is measured as well.
    const { NODE_EXTRA_CA_CERTS: extraCa, ...inherited } = process.env;
    const env = { ...inherited, ABP_HOME: home, ABP_DB: join(home, 'abp.db') };
    const withCa = extraCa ? { ...env, NODE_EXTRA_CA_CERTS: extraCa } : null;
    const csv = join(scratch, 'rows.csv');
    const lines = ['id,title,body'];
    for (let i = 1; i <= CREATE_ROWS; i++) lines.push(`${i},Title ${i},"Some body text for row ${i}, with a comma"`);
    writeFileSync(csv, `${lines.join('\n')}\n`);
    const createArgs = ['create', '--name', 'bench', '--intent', 'bench', '--enumerator', 'csv', '-e', `file_path=${csv}`, '--worker', 'shell', '-w', 'command=true', '-q'];
    const first = spawnSync(process.execPath, [CLI_ENTRY, ...createArgs], { env, encoding: 'utf8' });
    if (first.status !== 0) throw new Error(`bench: abp create exited ${first.status}: ${first.stderr}`);
    const job = first.stdout.trim();

    const bare: Run[] = [];
    const status: Run[] = [];
    const list: Run[] = [];
    const mcp: number[] = [];
    const create: Run[] = [];
    const raw: Run[] = [];
    const caBare: Run[] = [];
    const caStatus: Run[] = [];
    for (let i = 0; i < RUNS; i++) {
      bare.push(processRun(['-e', '0'], env, scratch));
      status.push(processRun([CLI_ENTRY, 'status', job, '--json'], env, scratch));
      if (withCa) {
        caBare.push(processRun(['-e', '0'], withCa, scratch));
        caStatus.push(processRun([CLI_ENTRY, 'status', job, '--json'], withCa, scratch));
      }
      list.push(processRun([CLI_ENTRY, 'list', '--json'], env, scratch));
      mcp.push(await mcpInitialize(env));
      // Job creation: each side writes a fresh database.
      const fresh = join(scratch, `create-${i}`);
      create.push(processRun([CLI_ENTRY, ...createArgs], { ...env, ABP_HOME: fresh, ABP_DB: join(fresh, 'abp.db') }, scratch));
      raw.push(processRun([CREATE_JOB, 'raw', csv, join(scratch, `raw-${i}.db`)], env, scratch));
      rmSync(fresh, { recursive: true, force: true });
      rmSync(join(scratch, `raw-${i}.db`), { force: true });
    }
    // The long-lived processes, idle: fewer runs (each lasts seconds), each beside its own node -e 0.
    const fn = join(scratch, 'double.mjs');
    writeFileSync(fn, 'export default (unit) => String(Number(unit.item.n) * 2);\n');
    const smallCsv = join(scratch, 'small.csv');
    writeFileSync(smallCsv, `n\n${Array.from({ length: 20 }, (_, i) => i + 1).join('\n')}\n`);
    const idleBare: Run[] = [];
    const idleExec: IdleRun[] = [];
    const afterJob: IdleRun[] = [];
    const idleMcpRuns: IdleRun[] = [];
    for (let i = 0; i < IDLE_RUNS; i++) {
      idleBare.push(processRun(['-e', '0'], env, scratch));
      idleExec.push(await idleExecutor(env, scratch, null));
      afterJob.push(await idleExecutor(env, scratch, { csv: smallCsv, fn }));
      idleMcpRuns.push(await idleMcp(env, scratch, job));
    }
    const mcpRatios = mcp.map((m, i) => m / (bare[i] as Run).ms);
    const createRatios = create.map((c, i) => c.ms / (raw[i] as Run).ms);
    const statusRow = cliRow('`abp status JOB --json`', status, bare);
    if (withCa) {
      statusRow.measure += `; this machine sets NODE_EXTRA_CA_CERTS, without which every process here was run: with it, status ${spread(ms(caStatus), 0, ' ms')} and node -e 0 ${spread(ms(caBare), 0, ' ms')}`;
      statusRow.raw = { ...(statusRow.raw as object), extra_ca_ms: ms(caStatus), extra_ca_node_ms: ms(caBare) };
    }
    return [
      statusRow,
      cliRow('`abp list --json`', list, bare),
      {
        what: '`abp mcp`, first answer',
        measure: 'spawn → the answer to `initialize` on stdout',
        figure: spread(mcp, 0, ' ms'),
        anchor: `node -e 0, spawn → exit: ${spread(ms(bare), 0, ' ms')}`,
        ratio: median(mcpRatios),
        ratio_note: `÷ node -e 0 (${spread(mcpRatios, 2, '×')})`,
        target: '≤ 300 ms',
        raw: { ms: mcp, node_ms: ms(bare) },
      },
      {
        what: `\`abp create\`, ${CREATE_ROWS.toLocaleString('en')} CSV rows, whole process`,
        measure: 'wall time spawn → exit and peak RSS, a fresh database each run',
        figure: `${spread(ms(create).map((x) => x / 1000), 2, ' s')}, peak RSS ${median(mb(create)).toFixed(0)} MB`,
        anchor: `raw better-sqlite3 script, same CSV parse, one transaction, whole process: ${spread(ms(raw).map((x) => x / 1000), 2, ' s')}, peak RSS ${median(mb(raw)).toFixed(0)} MB`,
        ratio: median(createRatios),
        ratio_note: `abp ÷ raw (${spread(createRatios, 2, '×')})`,
        target: '≤ 1.5×',
        raw: { abp_ms: ms(create), raw_ms: ms(raw), abp_rss_mb: mb(create), raw_rss_mb: mb(raw) },
      },
      idleRow('idle executor', `\`abp executor --idle-seconds 0\` on a migrated, empty store, idle ${IDLE_SECONDS} s, then SIGTERM`, idleExec, idleBare),
      idleRow(
        'idle executor after a job',
        `the same, after it ran 20 function units (piscina threads) and 20 shell units (fork servers) and idled ${IDLE_SECONDS} s: the peak is the job's`,
        afterJob,
        idleBare,
      ),
      idleRow('`abp mcp` idle', `initialize, notifications/initialized, tools/list and a get_job_status, idle ${IDLE_SECONDS} s, then stdin closed`, idleMcpRuns, idleBare),
    ];
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
