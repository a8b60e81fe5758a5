/**
 * The chaos harness: real `abp executor` processes run jobs whose workers fail,
 * hang, crash, flood their output, answer garbage or get rate limited, while the
 * harness SIGKILLs and restarts executors, stops some with SIGTERM, and locks the
 * database from another process. At the end it checks the invariants below and
 * returns a report. docs/chaos.md describes it for people; this comment is the
 * precise definition the checks implement.
 *
 * Fault plans. Every item carries its plan (fault kind, how many times), drawn
 * from a seeded PRNG, so the expected final status of each unit is known before
 * it runs. The first `times` runs of an item that get as far as deciding inject
 * the fault; later runs answer. Runs are counted by the item's own run log (shell)
 * or by the mock API (http-llm), never by the attempt number, because an executor
 * kill also uses attempts.
 *
 * Expected outcome. Let R be max_retries, k the number of spending faults in the
 * plan (every kind but the 429s, which abp must not count) and L the number of
 * times the unit's lease expired (its executor was killed mid-run; each expiry
 * spends a retry). A plan whose fault never ends (`times` = ALWAYS), or a permanent
 * one (stdout beyond max_output_bytes), must end FAILED. Any other plan must end
 * SUCCEEDED when k + L ≤ R; when k + L > R the kills may have used its retries up,
 * so FAILED is allowed too (counted as `chaos_failed`).
 *
 * A unit ran twice (a duplicate) when any of these holds:
 *   1. the events table records a SUCCEEDED outcome for it more than once (or once
 *      for a unit that ended FAILED);
 *   2. it is SUCCEEDED but its recorded output is not the answer of exactly one
 *      run of this unit under the final attempt (shell: the run's pid and attempt
 *      are in the answer; http-llm: a nonce the mock put in that one reply);
 *   3. a run started after the run whose outcome was recorded (shell: an attempt
 *      number above the final one; http-llm: a request that arrived later), i.e.
 *      it was claimed again after its final outcome;
 *   4. two runs share one attempt (one claim ran the worker twice);
 *   5. two runs of the unit were alive at the same time: their lifetimes overlap.
 *      A shell run lives from its `start` record to its last `ok`/`fault` record or
 *      the last time the harness saw it in /proc (sampled), whichever is later; an
 *      http-llm request lives from its arrival to the close of its response. Ends
 *      are never overestimated, so an overlap found is real.
 * A successful run whose outcome was not recorded (its executor died before it
 * could write it, or its timeout fired first) and that was then run again is a
 * `redone` run: that is at-least-once execution, allowed, and reported. It must
 * be explained by a recorded non-success outcome or lease expiry of its attempt,
 * else it counts as a duplicate.
 *
 * A unit is lost when an item has no unit, or a unit is not SUCCEEDED or FAILED
 * once everything has settled.
 *
 * At the end also: each job's counters equal a COUNT(*) of its units by status and
 * its status is COMPLETED or FAILED accordingly; no unit holds a lease, a worker
 * pid or a reservation; the executors table is empty once every executor stopped
 * (rows of killed executors are pruned by the live ones); every executor stopped
 * with SIGTERM exited 0, and none exited without the harness killing or stopping it
 * (a crash); every FAILED unit says why; no worker process (tagged with
 * ABP_CHAOS_RUN in its environment) is left alive; and SQLite's integrity_check says ok.
 *
 * Poisoned mode (options.poison, `npm run chaos -- --poison`). Agent-cli (codex JSONL)
 * and claude (stream-json) jobs run poison-agent.sh as their agent, and the shell job's
 * plans get poisons from worker.sh; the items whose plan is `none` are healthy and must
 * end exactly as above. A poison whose run still answers (COERCED: bad ids, numbers and
 * costs, NUL bytes, bytes that are not UTF-8, floods, long lines, deep JSON, fields whose
 * String() throws) spends no retry (a run of it that timed out counts like a lease expiry:
 * the host was too loaded to read its flood or long line in time): the unit must SUCCEED,
 * and its stored values are checked (poisonedValues): U+FFFD for NUL and bad bytes, null
 * for every id, count and cost out of range, 10,000 events and the cut for a flood, the
 * cut said in the stderr tail for a long line; a healthy run's session, tokens and cost
 * kept exactly. A hugeline
 * must end FAILED for its size; the other poisons fail their runs and spend retries like
 * any fault. A claude job's cost must lie between the sum of its units' costs and what its
 * runs can have cost ($0.01 for each healthy answer): no run is counted twice, and no
 * poisoned cost at all. An escape leaves a process outside its unit's process group on
 * purpose (ABP_CHAOS_ESCAPEE): it is counted apart, not as an orphan or an attempt.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { CLI_ENTRY } from '../../src/executor/launcher.js';
import { PACKAGE_ROOT } from '../../src/package-root.js';
import { processAlive } from '../../src/util/process-group.js';
import { queryPostgres } from '../helpers/postgres.js';
import { prng } from '../helpers/prng.js';

const run = promisify(execFile);
const WORKER_SH = join(PACKAGE_ROOT, 'test', 'chaos', 'worker.sh');
const POISON_SH = join(PACKAGE_ROOT, 'test', 'chaos', 'poison-agent.sh');
const LOCKER = join(PACKAGE_ROOT, 'test', 'chaos', 'locker.mjs');
/** `times` of a fault that never stops. */
export const ALWAYS = 99;
const MAX_RETRIES = 4;
const MAX_OUTPUT_BYTES = 4_000_000;
const OUTPUT_SCHEMA = { type: 'object', required: ['item'], properties: { item: { type: 'string' } } };

export interface ChaosOptions {
  /** ABP_HOME for every process; the run logs and CSVs go there too. */
  home: string;
  /** The database: a SQLite path or a postgres:// URL. */
  db: string;
  /** How long chaos is injected. */
  durationMs: number;
  /** once: one job of each kind; continuous: new jobs keep coming until the duration ends. */
  jobs: 'once' | 'continuous';
  /** The kinds of job to run; default shell and http. Poisoned runs add agent and claude. */
  kinds?: JobKind[];
  shellUnits: number;
  httpUnits: number;
  /** Units of each agent-cli job (a fake codex, poisoned or healthy per item). */
  agentUnits?: number;
  /** Units of each claude job (a fake Claude Code, poisoned or healthy per item). */
  claudeUnits?: number;
  /** Poisoned-worker mode: workers that emit what the store and the executor must survive (see PoisonOptions). */
  poison?: PoisonOptions;
  /** Executors alive at once: 1 to this. */
  maxExecutors: number;
  /** Mean pause between two chaos actions. */
  actionEveryMs: number;
  leaseSeconds: number;
  /** How long the calm phase may take for every job to end. */
  settleMs: number;
  seed: number;
  log: (line: string) => void;
}

/**
 * Poisoned-worker mode. A share of the units get workers that emit garbage: values
 * no store binds (an object session id, NaN, negative and huge token counts and
 * costs, NUL bytes, bytes that are not UTF-8, lone surrogates), lines of tens or
 * hundreds of MB, floods of events, JSON nested 100,000 deep, events whose fields
 * throw when made into strings, output that never ends, a child that escapes its
 * process group. Shell units get some of them from worker.sh; agent-cli (codex
 * JSONL) and claude (stream-json) jobs run poison-agent.sh as their agent.
 */
export interface PoisonOptions {
  /** Events in a `flood` (past the 10,000 one attempt's conversation keeps). */
  floodEvents: number;
  /** Bytes of a `longline` (past the 16 MiB one line is kept to, below maxOutputBytes). */
  longLineBytes: number;
  /** Bytes a `hugeline` tries to write without a newline (past maxOutputBytes). */
  hugeLineBytes: number;
  /** max_output_bytes of the agent and claude jobs. */
  maxOutputBytes: number;
  /** timeout_seconds of the agent and claude jobs. */
  timeoutSeconds: number;
  /** How long an `escape` child holds its unit's stdout open. */
  escapeSeconds: number;
  /** The first items of each job take every poison of its kind in turn, so that a short run has them all. */
  everyPoisonFirst: boolean;
}

export type JobKind = 'shell' | 'http' | 'agent' | 'claude';

export interface ChaosReport {
  ok: boolean;
  backend: 'sqlite' | 'postgres';
  seed: number;
  wall_ms: number;
  chaos_ms: number;
  jobs: number;
  units: number;
  succeeded: number;
  failed: number;
  executor_starts: number;
  executor_kills: number;
  executor_terms: number;
  /** Executors that exited without the harness killing or stopping them (a crash). */
  executor_crashes: number;
  /** The slowest SIGTERM → exit of an executor. */
  slowest_term_ms: number;
  db_locks: number;
  db_lock_ms: number;
  /** Faults injected, by kind: shell runs that faulted, mock replies that faulted. */
  faults: Record<string, number>;
  /** Worker runs (shell) plus API requests (http-llm). */
  runs: number;
  lease_expiries: number;
  redone: number;
  chaos_failed: number;
  duplicates: number;
  lost: number;
  /** Units not SUCCEEDED or FAILED once everything settled (counted in `lost` too). */
  stuck: number;
  wrong_outcomes: number;
  /** Units whose plan is a poison; `poison_checks` the coerced values checked on them. */
  poisoned: number;
  poison_checks: number;
  /** Processes that left their unit's process group (the `escape` poison), and those alive at the end. */
  escapees: number;
  escapees_left: number;
  counter_mismatches: number;
  leftover_leases: number;
  executor_rows: number;
  bad_exits: number;
  orphans: number;
  integrity: string;
  /** The first few problems, in words. */
  violations: string[];
}

interface Plan {
  fault: string;
  times: number;
}

interface JobInfo {
  id: number;
  kind: JobKind;
  plans: Map<string, Plan>;
}

type PlanTable = [number, string, number | 'k'][];

/** Cumulative weights → one fault plan. */
function pick(r: () => number, table: PlanTable): Plan {
  const x = r();
  const k = 1 + Math.floor(r() * 2);
  let acc = 0;
  for (const [weight, fault, times] of table) {
    acc += weight;
    if (x < acc) return { fault, times: times === 'k' ? k : times };
  }
  return { fault: 'none', times: 0 };
}

const SHELL_PLANS: PlanTable = [
  [0.1, 'fail', 'k'],
  [0.03, 'fail', ALWAYS],
  [0.05, 'hang', 1],
  [0.01, 'hang', ALWAYS],
  [0.08, 'crash', 'k'],
  [0.02, 'crash', ALWAYS],
  [0.08, 'garbage', 'k'],
  [0.02, 'garbage', ALWAYS],
  [0.03, 'bigout', 0],
  [0.02, 'hugeout', ALWAYS],
];

const HTTP_PLANS: PlanTable = [
  [0.12, 'r429', 'k'],
  [0.1, 'e500', 'k'],
  [0.03, 'e500', ALWAYS],
  [0.08, 'garbage', 'k'],
  [0.05, 'slow', 1],
  [0.05, 'slowok', 0],
  [0.08, 'badjson', 'k'],
  [0.02, 'badjson', ALWAYS],
];

/** Poisons for shell units (worker.sh), added to SHELL_PLANS in poisoned mode. */
const SHELL_POISON: PlanTable = [
  [0.04, 'nul', ALWAYS],
  [0.04, 'badutf8', ALWAYS],
  [0.03, 'trickle', 'k'],
  [0.01, 'trickle', ALWAYS],
];

/** The agent-cli job's plans (poison-agent.sh, codex JSONL); the rest of the items are healthy. */
const AGENT_PLANS: PlanTable = [
  [0.05, 'badnums', ALWAYS],
  [0.04, 'nul', ALWAYS],
  [0.04, 'badutf8', ALWAYS],
  [0.03, 'flood', ALWAYS],
  [0.02, 'longline', ALWAYS],
  [0.02, 'hugeline', ALWAYS],
  [0.03, 'deep', ALWAYS],
  [0.03, 'deepanswer', 'k'],
  [0.04, 'proto', ALWAYS],
  [0.04, 'trickle', 'k'],
  [0.01, 'trickle', ALWAYS],
  [0.02, 'escape', 1],
];

/** The claude job's plans (poison-agent.sh, stream-json). */
const CLAUDE_PLANS: PlanTable = [
  [0.08, 'badcost', ALWAYS],
  [0.04, 'nul', ALWAYS],
  [0.04, 'badutf8', ALWAYS],
  [0.03, 'flood', ALWAYS],
  [0.02, 'longline', ALWAYS],
  [0.02, 'hugeline', ALWAYS],
  [0.03, 'deep', ALWAYS],
  [0.03, 'deepanswer', 'k'],
  [0.04, 'proto', ALWAYS],
  [0.04, 'trickle', 'k'],
  [0.02, 'escape', 1],
];

/** Poisons whose run still answers: the unit must SUCCEED, with the bad values coerced or left out. */
const COERCED = new Set(['badnums', 'badcost', 'nul', 'badutf8', 'flood', 'longline', 'deep', 'proto']);

/** Faults that spend a retry when they happen (a 429 must not, nor a poison that still answers). */
function spending(plan: Plan): number {
  if (plan.fault === 'r429' || plan.fault === 'bigout' || plan.fault === 'slowok' || plan.fault === 'none' || COERCED.has(plan.fault)) return 0;
  return plan.times;
}

/** Whether the plan alone ends the unit FAILED. */
function plannedFailure(plan: Plan): boolean {
  return plan.fault === 'hugeout' || plan.fault === 'hugeline' || (plan.times >= ALWAYS && spending(plan) > 0);
}

/** Whether the plan is a poison (poisoned mode's own faults). */
function poisonPlan(kind: JobKind, plan: Plan): boolean {
  if (kind === 'agent' || kind === 'claude') return plan.fault !== 'none';
  return kind === 'shell' && SHELL_POISON.some(([, fault]) => fault === plan.fault);
}

// ---- the mock LLM API --------------------------------------------------------

interface MockRequest {
  item: string;
  arrived: number;
  ended: number;
  fault: string | null;
  /** The nonce of a good answer that was written out completely. */
  nonce: string | null;
}

/**
 * An OpenAI-compatible Chat Completions mock on loopback whose answers follow each
 * item's plan: 429 (with Retry-After), 500, a malformed body, a reply slower than
 * the unit timeout, an answer that breaks the output schema, or a good answer
 * with a fresh nonce. Each request is kept with its lifetime.
 */
class MockApi {
  readonly requests: MockRequest[] = [];
  readonly faults = new Map<string, number>();
  private readonly served = new Map<string, number>();
  private server: Server | undefined;
  private readonly open = new Set<ServerResponse>();
  plans = new Map<string, Plan>();
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.method !== 'POST' || !req.url?.startsWith('/v1/chat/completions')) {
          res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}');
          return;
        }
        let prompt = '';
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          prompt = String(body.messages?.find((m: { role: string }) => m.role === 'user')?.content ?? '');
        } catch {
          // an empty prompt names no item
        }
        const item = /^chaos item=(\S+)/.exec(prompt)?.[1] ?? '?';
        const record: MockRequest = { item, arrived: Date.now(), ended: 0, fault: null, nonce: null };
        this.requests.push(record);
        this.open.add(res);
        res.on('close', () => {
          record.ended = Date.now();
          this.open.delete(res);
        });
        this.answer(item, record, res);
      });
    });
    this.server.keepAliveTimeout = 1000;
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private answer(item: string, record: MockRequest, res: ServerResponse): void {
    const plan = this.plans.get(item) ?? { fault: 'none', times: 0 };
    const served = this.served.get(item) ?? 0;
    const faulting = served < plan.times;
    if (faulting) {
      this.served.set(item, served + 1);
      record.fault = plan.fault;
      this.faults.set(plan.fault, (this.faults.get(plan.fault) ?? 0) + 1);
    }
    const good = () => {
      const nonce = randomBytes(6).toString('hex');
      const content = JSON.stringify({ item, nonce });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: `chatcmpl-${nonce}`,
          object: 'chat.completion',
          created: Math.floor(Date.now() / 1000),
          model: 'chaos-mock',
          choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 20, completion_tokens: 10, total_tokens: 30 },
        }),
        () => {
          record.nonce = nonce;
        },
      );
    };
    const error = (status: number, message: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify({ error: { message, type: status === 429 ? 'rate_limit_error' : 'server_error', code: null } }));
    };
    if (!faulting) {
      if (plan.fault === 'slowok') setTimeout(good, 300);
      else good();
      return;
    }
    switch (plan.fault) {
      case 'r429':
        error(429, 'rate limited by the chaos mock', { 'retry-after-ms': '150' });
        return;
      case 'e500':
        error(500, 'the chaos mock broke');
        return;
      case 'garbage':
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('<html>502 bad gateway, but with status 200');
        return;
      case 'slow':
        // Past the unit timeout: the worker must give up, and its socket closes.
        setTimeout(good, 10_000).unref();
        return;
      case 'badjson': {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'chatcmpl-bad', object: 'chat.completion', created: 0, model: 'chaos-mock', choices: [{ index: 0, message: { role: 'assistant', content: 'No JSON from me today.' }, finish_reason: 'stop' }], usage: { prompt_tokens: 20, completion_tokens: 5, total_tokens: 25 } }));
        return;
      }
      default:
        good();
    }
  }

  async close(): Promise<void> {
    for (const res of this.open) res.destroy();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

// ---- executors, the locker, the /proc watcher ------------------------------------

interface ExecutorProc {
  label: string;
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exited: boolean;
  /** SIGTERM sent: it is draining, and no longer a target. */
  stopping: boolean;
  /** It logged that it started (it registered and handles signals). */
  running: boolean;
}

interface Sighting {
  first: number;
  last: number;
}

/**
 * Samples /proc for processes whose environment carries this run's marker
 * (ABP_CHAOS_RUN), and remembers when each unit attempt was last seen alive.
 * A process that also carries ABP_CHAOS_ESCAPEE left its unit's process group on
 * purpose (setsid, the `escape` poison): abp cannot reach it through the group,
 * so it is counted apart, not as an attempt of its unit or an orphan.
 */
class ProcWatcher {
  readonly seen = new Map<string, Sighting>();
  /** Samples at which two attempts of one unit were alive at once. */
  readonly concurrent: string[] = [];
  /** Every escapee seen alive. */
  readonly escapees = new Set<number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly marker: string) {}

  start(everyMs: number): void {
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Live tagged processes: pid → unit and attempt, and whether it is an escapee. */
  scan(): Map<number, { unit: string; attempt: string; escapee: boolean }> {
    const found = new Map<number, { unit: string; attempt: string; escapee: boolean }>();
    let pids: string[];
    try {
      pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
    } catch {
      return found;
    }
    const tag = `ABP_CHAOS_RUN=${this.marker}`;
    for (const pid of pids) {
      let env: string;
      try {
        env = readFileSync(`/proc/${pid}/environ`, 'latin1');
      } catch {
        continue;
      }
      if (!env.includes(tag)) continue;
      const vars = env.split('\0');
      if (!vars.includes(tag)) continue;
      const unit = vars.find((v) => v.startsWith('ABP_CHAOS_UNIT='))?.slice(15) ?? '?';
      const attempt = vars.find((v) => v.startsWith('ABP_CHAOS_ATTEMPT='))?.slice(18) ?? '?';
      // A zombie has exited; its parent just has not reaped it yet.
      try {
        if (/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'latin1'))) continue;
      } catch {
        continue;
      }
      found.set(Number(pid), { unit, attempt, escapee: vars.includes('ABP_CHAOS_ESCAPEE=1') });
    }
    return found;
  }

  private sample(): void {
    const now = Date.now();
    const attempts = new Map<string, Set<string>>();
    for (const [pid, { unit, attempt, escapee }] of this.scan()) {
      if (escapee) {
        this.escapees.add(pid);
        continue;
      }
      const key = `${unit}#${attempt}`;
      const s = this.seen.get(key);
      if (s) s.last = now;
      else this.seen.set(key, { first: now, last: now });
      const set = attempts.get(unit) ?? new Set<string>();
      set.add(attempt);
      attempts.set(unit, set);
    }
    for (const [unit, set] of attempts) if (set.size > 1) this.concurrent.push(`${unit}: attempts ${[...set].join(', ')} alive together at ${now}`);
  }
}

/** One line of a shell unit's run log, parsed. */
interface ShellRun {
  attempt: number;
  pid: number;
  start: number;
  end: number;
  ok: boolean;
  faults: string[];
}

function readRuns(file: string): ShellRun[] {
  const runs = new Map<string, ShellRun>();
  if (!existsSync(file)) return [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [what, attempt, pid, ms, kind] = line.split(' ');
    if (!what || attempt === undefined || pid === undefined || ms === undefined) continue;
    const key = `${attempt}:${pid}`;
    let r = runs.get(key);
    if (!r) {
      r = { attempt: Number(attempt), pid: Number(pid), start: Number(ms), end: Number(ms), ok: false, faults: [] };
      runs.set(key, r);
    }
    if (what === 'start') r.start = Number(ms);
    r.end = Math.max(r.end, Number(ms));
    if (what === 'ok') r.ok = true;
    if (what === 'fault') r.faults.push(kind ?? '?');
  }
  return [...runs.values()];
}

// ---- the harness ---------------------------------------------------------------

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const began = Date.now();
  const backend = /^postgres(ql)?:\/\//.test(o.db) ? 'postgres' : 'sqlite';
  const marker = randomBytes(6).toString('hex');
  const runsDir = join(o.home, 'runs');
  const logsDir = join(o.home, 'chaos-logs');
  mkdirSync(runsDir, { recursive: true });
  mkdirSync(logsDir, { recursive: true });
  const random = prng(o.seed);
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    ABP_HOME: o.home,
    ABP_DB: o.db,
    ABP_LEASE_SECONDS: String(o.leaseSeconds),
    ABP_POLL_MS: '100',
    ABP_RETRY_BASE_MS: '100',
    ABP_RETRY_MAX_MS: '1000',
    ABP_SHUTDOWN_GRACE_SECONDS: '1',
    ABP_MAX_WORKERS: '6',
    ABP_EXECUTOR_IDLE_SECONDS: '5',
    ABP_SKIP_TEST: '1',
  };
  delete env.ABP_DEBUG;

  const query = async <T>(text: string, ...params: unknown[]): Promise<T[]> => {
    if (backend === 'postgres') return queryPostgres<T>(o.db, text, params);
    const db = new Database(o.db, { readonly: true, fileMustExist: true });
    try {
      db.pragma('busy_timeout = 30000');
      return db.prepare(text).all(...params) as T[];
    } finally {
      db.close();
    }
  };
  const cli = async (args: string[]): Promise<any> => {
    const { stdout } = await run(process.execPath, [CLI_ENTRY, ...args, '--json'], { env, cwd: PACKAGE_ROOT, maxBuffer: 64 * 1024 * 1024, timeout: 600_000 });
    return JSON.parse(stdout);
  };

  const stats = { starts: 0, kills: 0, terms: 0, slowestTerm: 0, locks: 0, lockMs: 0, lockErrors: 0, badExits: [] as string[], crashes: [] as string[] };
  const mock = new MockApi();
  await mock.start();
  const watcher = new ProcWatcher(marker);
  watcher.start(400);

  // The migrations run once here, not raced by the first executors.
  await run(process.execPath, [CLI_ENTRY, 'migrate', '--json'], { env, cwd: PACKAGE_ROOT });

  // The locker: a separate process that takes the whole database on request.
  const locker = spawn(process.execPath, [LOCKER, o.db], { cwd: PACKAGE_ROOT, env, stdio: ['pipe', 'pipe', 'inherit'] });
  const lockerLines = createInterface({ input: locker.stdout as NodeJS.ReadableStream });
  const lockReplies: ((line: string) => void)[] = [];
  lockerLines.on('line', (line) => lockReplies.shift()?.(line));
  const lockDb = (ms: number, table: string) =>
    new Promise<string>((resolve) => {
      lockReplies.push(resolve);
      locker.stdin?.write(`lock ${ms} ${table}\n`);
    });

  const executors: ExecutorProc[] = [];
  let labels = 0;
  const startExecutor = (): ExecutorProc => {
    const label = `e${++labels}`;
    const out = createWriteStream(join(logsDir, `${label}.log`));
    const child = spawn(process.execPath, [CLI_ENTRY, 'executor', '--idle-seconds', '0'], { env, cwd: PACKAGE_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    const proc: ExecutorProc = {
      label,
      child,
      exited: false,
      stopping: false,
      running: false,
      exit: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
    };
    void proc.exit.then(({ code, signal }) => {
      proc.exited = true;
      // Every exit the harness did not ask for (a SIGKILL or SIGTERM it sent) is a crash.
      if (!proc.stopping) {
        const logged = existsSync(join(logsDir, `${label}.log`)) ? readFileSync(join(logsDir, `${label}.log`), 'utf8') : '';
        // What killed it: the error Node printed, and where.
        const error = /^\w*Error\b.*(\n\s+at .*){0,3}/m.exec(logged)?.[0] ?? logged.slice(-400);
        stats.crashes.push(`executor ${label} exited ${code ?? signal} by itself: ${error}`);
      }
    });
    // Until Node has loaded abp, a SIGTERM kills the default way: only a running executor gets one.
    child.stderr?.on('data', (chunk: Buffer) => {
      if (!proc.running && chunk.toString().includes(': started (')) proc.running = true;
    });
    executors.push(proc);
    stats.starts++;
    return proc;
  };
  const alive = () => executors.filter((e) => !e.exited && !e.stopping && e.child.exitCode === null && e.child.signalCode === null);
  const terminate = async (e: ExecutorProc): Promise<void> => {
    e.stopping = true;
    stats.terms++;
    const t0 = Date.now();
    e.child.kill('SIGTERM');
    const bound = setTimeout(() => e.child.kill('SIGKILL'), 30_000);
    const { code, signal } = await e.exit;
    clearTimeout(bound);
    const took = Date.now() - t0;
    stats.slowestTerm = Math.max(stats.slowestTerm, took);
    if (code !== 0) stats.badExits.push(`executor ${e.label} exited ${code ?? signal} after SIGTERM (${took} ms)`);
  };

  const kinds: JobKind[] = o.kinds ?? ['shell', 'http'];
  const poison = o.poison;
  if (!poison && kinds.some((k) => k === 'agent' || k === 'claude')) throw new Error('agent and claude jobs run only in poisoned mode (options.poison)');
  /** Each kind's plans; in poisoned mode the shell's get the poisons too. */
  const tables: Record<JobKind, PlanTable> = {
    shell: poison ? [...SHELL_PLANS, ...SHELL_POISON] : SHELL_PLANS,
    http: HTTP_PLANS,
    agent: AGENT_PLANS,
    claude: CLAUDE_PLANS,
  };
  /** The plans every job of a kind starts with, one of each poison, when everyPoisonFirst. */
  const firstPlans = (kind: JobKind): Plan[] =>
    poison?.everyPoisonFirst ? (kind === 'shell' ? SHELL_POISON : kind === 'http' ? [] : tables[kind]).map(([, fault, times]) => ({ fault, times: times === 'k' ? 1 : times })) : [];
  const unitsOf: Record<JobKind, number> = { shell: o.shellUnits, http: o.httpUnits, agent: o.agentUnits ?? 0, claude: o.claudeUnits ?? 0 };
  const prefix: Record<JobKind, string> = { shell: 's', http: 'h', agent: 'a', claude: 'c' };
  // The poisoned agents start through wrappers that carry the run's marker, its run log folder and
  // the poison sizes; a claude unit's attempt is the name of its working directory.
  const wrapper = (style: 'codex' | 'claude'): string => {
    const file = join(o.home, `poison-${style}`);
    const vars = {
      ABP_CHAOS_RUN: marker,
      POISON_RUNS: runsDir,
      POISON_FLOOD: poison?.floodEvents,
      POISON_LONGLINE: poison?.longLineBytes,
      POISON_HUGELINE: poison?.hugeLineBytes,
      POISON_ESCAPE: poison?.escapeSeconds,
    };
    const exports = Object.entries(vars).map(([k, v]) => `export ${k}='${String(v)}'`);
    writeFileSync(file, `#!/bin/sh\n${exports.join('\n')}\nexec sh '${POISON_SH}' ${style} "$@"\n`, { mode: 0o755 });
    return file;
  };
  const claudeCwd = join(o.home, 'claude-cwd');
  if (kinds.includes('claude')) for (let a = 1; a <= 200; a++) mkdirSync(join(claudeCwd, String(a)), { recursive: true });
  const agents = poison ? { codex: wrapper('codex'), claude: wrapper('claude') } : undefined;

  const jobs: JobInfo[] = [];
  let jobSeq = 0;
  const createJob = async (kind: JobKind): Promise<JobInfo> => {
    const n = ++jobSeq;
    const count = unitsOf[kind];
    const plans = new Map<string, Plan>();
    const rows = ['id,fault,times'];
    const first = firstPlans(kind);
    for (let i = 1; i <= count; i++) {
      const id = `${prefix[kind]}${n}-${i}`;
      const plan = first[i - 1] ?? pick(random, tables[kind]);
      plans.set(id, plan);
      rows.push(`${id},${plan.fault},${plan.times}`);
    }
    const csv = join(o.home, `job-${n}.csv`);
    writeFileSync(csv, `${rows.join('\n')}\n`);
    const common = {
      name: `chaos ${kind} ${n}`,
      user_intent: 'Survive the chaos.',
      enumerator_type: 'csv',
      enumerator_config: { file_path: csv, id_column: 'id' },
      max_retries: MAX_RETRIES,
      output_schema: OUTPUT_SCHEMA,
    };
    // The poisoned agents' jobs: the prompt names the item and its plan (a claude unit reads them there).
    const agentJob = {
      ...common,
      prompt_template: 'chaos item={{item.id}} fault={{item.fault}} times={{item.times}}\n{{output_instructions}}',
      max_workers: 8,
      timeout_seconds: poison?.timeoutSeconds ?? 10,
    };
    const specs: Record<JobKind, () => object> = {
      shell: () => ({
        ...common,
        worker_type: 'shell',
        worker_config: {
          command: 'sh',
          args: [WORKER_SH, runsDir, '{{item.id}}', '{{unit.attempt}}', '{{item.fault}}', '{{item.times}}'],
          env: { ABP_CHAOS_RUN: marker, ABP_CHAOS_UNIT: '{{item.id}}', ABP_CHAOS_ATTEMPT: '{{unit.attempt}}' },
          max_output_bytes: MAX_OUTPUT_BYTES,
        },
        max_workers: 10,
        timeout_seconds: 3,
      }),
      http: () => ({
        ...common,
        worker_type: 'http-llm',
        worker_config: { api: 'openai', base_url: `${mock.url}/v1`, model: 'chaos-mock', api_key_env: null, max_tokens: 64 },
        prompt_template: 'chaos item={{item.id}} fault={{item.fault}}\n{{output_instructions}}',
        max_workers: 8,
        timeout_seconds: 2,
      }),
      agent: () => ({
        ...agentJob,
        worker_type: 'agent-cli',
        worker_config: {
          preset: 'codex',
          command: agents?.codex,
          args: ['{{item.id}}', '{{unit.attempt}}', '{{item.fault}}', '{{item.times}}'],
          env: { ABP_CHAOS_UNIT: '{{item.id}}', ABP_CHAOS_ATTEMPT: '{{unit.attempt}}' },
          max_output_bytes: poison?.maxOutputBytes,
        },
      }),
      claude: () => ({
        ...agentJob,
        worker_type: 'claude',
        worker_config: { command: agents?.claude, cwd: join(claudeCwd, '{{unit.attempt}}'), max_output_bytes: poison?.maxOutputBytes },
      }),
    };
    const spec = specs[kind]();
    const specFile = join(o.home, `job-${n}.json`);
    writeFileSync(specFile, JSON.stringify(spec));
    for (const [id, plan] of plans) if (kind === 'http') mock.plans.set(id, plan);
    const created = await cli(['create', '--spec', specFile]);
    const info: JobInfo = { id: created.job_id as number, kind, plans };
    jobs.push(info);
    await cli(['start', String(info.id), '--skip-test']);
    o.log(`job ${info.id}: ${kind}, ${count} units`);
    return info;
  };
  const unfinished = async (): Promise<number> => {
    const rows = await query<{ n: number }>("select count(*) n from jobs where status not in ('COMPLETED', 'FAILED', 'CANCELLED')");
    return Number(rows[0]?.n ?? 0);
  };

  // A harness that throws (a CLI call failed) leaves nothing running behind it.
  const abandon = async () => {
    watcher.stop();
    for (const e of executors) e.child.kill('SIGKILL');
    for (const pid of watcher.scan().keys()) killQuietly(pid);
    locker.kill('SIGKILL');
    await mock.close();
  };
  try {
    return await chaosAndCheck();
  } catch (err) {
    await abandon();
    throw err;
  }

  async function chaosAndCheck(): Promise<ChaosReport> {
    // ---- chaos -------------------------------------------------------------------
    for (let i = 0, n = 1 + Math.floor(random() * o.maxExecutors); i < n; i++) startExecutor();
    for (const kind of kinds) await createJob(kind);

    const chaosEnd = Date.now() + o.durationMs;
    let actions = 0;
    const pending: Promise<unknown>[] = [];
    let lastReport = Date.now();
    while (Date.now() < chaosEnd) {
      if (o.jobs === 'once' && (await unfinished()) === 0) break;
      if (o.jobs === 'continuous' && (await unfinished()) < 2) await createJob(kinds[jobSeq % kinds.length] as JobKind);
      await sleep(o.actionEveryMs / 2 + random() * o.actionEveryMs);
      // The first two actions are a database lock and a kill, so that even a short run has both.
      const roll = actions === 0 ? 0.7 : actions === 1 ? 0 : random();
      actions++;
      const live = alive();
      if (roll < 0.4 && live.length > 0) {
        // SIGKILL one executor, and start a replacement after a moment.
        const victim = live[Math.floor(random() * live.length)] as ExecutorProc;
        victim.stopping = true;
        victim.child.kill('SIGKILL');
        stats.kills++;
        const wait = random() * 1500;
        pending.push(sleep(wait).then(() => alive().length < o.maxExecutors && startExecutor()));
      } else if (roll < 0.5 && live.some((e) => e.running)) {
        // SIGTERM one: it must drain, give its units back and exit 0.
        const started = live.filter((e) => e.running);
        const victim = started[Math.floor(random() * started.length)] as ExecutorProc;
        pending.push(terminate(victim).then(() => alive().length < o.maxExecutors && startExecutor()));
      } else if (roll < 0.9) {
        const ms = 100 + Math.floor(random() * 500);
        const table = random() < 0.7 ? 'work_units' : 'jobs';
        pending.push(
          lockDb(ms, table).then((reply) => {
            if (reply.startsWith('locked')) {
              stats.locks++;
              stats.lockMs += ms;
            } else {
              stats.lockErrors++;
              o.log(`locker: ${reply}`);
            }
          }),
        );
      } else if (live.length < o.maxExecutors) {
        startExecutor();
      }
      if (alive().length === 0 && random() < 0.5) startExecutor();
      if (Date.now() - lastReport > 30_000) {
        lastReport = Date.now();
        const totals = await query<{ s: number; f: number; t: number }>('select sum(succeeded) s, sum(failed) f, sum(total) t from jobs');
        o.log(`${Math.round((Date.now() - began) / 1000)} s: ${totals[0]?.s ?? 0} succeeded, ${totals[0]?.f ?? 0} failed of ${totals[0]?.t ?? 0}; kills ${stats.kills}, terms ${stats.terms}, locks ${stats.locks}, executors alive ${alive().length}`);
      }
    }
    const chaosMs = Date.now() - began;
    await Promise.all(pending);

    // ---- calm: let every job end -------------------------------------------------------
    o.log(`chaos over after ${Math.round(chaosMs / 1000)} s; settling`);
    if (alive().length === 0) startExecutor();
    const settleBy = Date.now() + o.settleMs;
    while ((await unfinished()) > 0 && Date.now() < settleBy) {
      // An executor that crashed (counted) is replaced, so that its units still end.
      if (alive().length === 0) startExecutor();
      await sleep(250);
    }
    // Killed executors' rows go once they are stale; the live executors prune them.
    const pruneBy = Date.now() + 10 * o.leaseSeconds * 1000;
    for (;;) {
      const rows = await query<{ pid: number }>('select pid from executors');
      if (rows.every((r) => processAlive(r.pid)) || Date.now() > pruneBy) break;
      await sleep(250);
    }
    // Executors `abp start` launched by itself (when it found none alive) are stopped too.
    const detached = (await query<{ pid: number }>('select pid from executors')).map((r) => r.pid).filter((pid) => !executors.some((e) => e.child.pid === pid) && processAlive(pid));
    for (const pid of detached) process.kill(pid, 'SIGTERM');
    for (const deadline = Date.now() + 30_000; alive().some((e) => !e.running) && Date.now() < deadline; ) await sleep(100);
    await Promise.all(alive().map((e) => terminate(e)));
    for (const deadline = Date.now() + 30_000; detached.some(processAlive) && Date.now() < deadline; ) await sleep(200);
    for (const pid of detached.filter(processAlive)) stats.badExits.push(`detached executor ${pid} did not exit within 30 s of SIGTERM`);
    watcher.stop();
    // Workers die with their unit; give the last ones a moment to be reaped. Escapees are apart:
    // they left their process group on purpose, and live as long as they chose.
    const workers = () => new Map([...watcher.scan()].filter(([, w]) => !w.escapee));
    let orphans = workers();
    for (const deadline = Date.now() + 5000; orphans.size > 0 && Date.now() < deadline; orphans = workers()) await sleep(200);
    for (const pid of orphans.keys()) killQuietly(pid);
    const escapeesLeft = [...watcher.scan()].filter(([, w]) => w.escapee).map(([pid]) => pid);
    for (const pid of escapeesLeft) killQuietly(pid);
    locker.stdin?.end();
    await new Promise((r) => locker.once('exit', r));
    await mock.close();

    // ---- the invariants ------------------------------------------------------------------
    const violations: string[] = [];
    const problem = (text: string) => {
      if (violations.length < 40) violations.push(text);
    };
    const report: ChaosReport = {
      ok: false,
      backend,
      seed: o.seed,
      wall_ms: 0,
      chaos_ms: chaosMs,
      jobs: jobs.length,
      units: 0,
      succeeded: 0,
      failed: 0,
      executor_starts: stats.starts,
      executor_kills: stats.kills,
      executor_terms: stats.terms,
      executor_crashes: stats.crashes.length,
      slowest_term_ms: stats.slowestTerm,
      db_locks: stats.locks,
      db_lock_ms: stats.lockMs,
      faults: {},
      runs: 0,
      lease_expiries: 0,
      redone: 0,
      chaos_failed: 0,
      duplicates: 0,
      lost: 0,
      stuck: 0,
      wrong_outcomes: 0,
      poisoned: 0,
      poison_checks: 0,
      escapees: watcher.escapees.size,
      escapees_left: escapeesLeft.length,
      counter_mismatches: 0,
      leftover_leases: 0,
      executor_rows: 0,
      bad_exits: stats.badExits.length,
      orphans: orphans.size,
      integrity: 'n/a',
      violations,
    };
    for (const text of stats.badExits) problem(text);
    for (const text of stats.crashes) problem(text);
    for (const [pid, w] of orphans) problem(`orphan worker process ${pid} (unit ${w.unit}, attempt ${w.attempt}) outlived every executor`);
    for (const [kind, n] of mock.faults) report.faults[`http ${kind}`] = n;
    const duplicated = new Set<string>();

    for (const job of jobs) {
      const units = await query<UnitCheckRow>(
        'select id, item_id, status, attempt, failures, output, structured_output, error, error_kind, lease_owner, lease_expires_at, worker_pid, reserved_usd, cost_usd, session_id, usage, input_tokens, output_tokens, stderr_tail from work_units where job_id = ? order by id',
        job.id,
      );
      const events = await query<{ data: string }>("select data from events where job_id = ? and type = 'unit'", job.id);
      const byUnit = new Map<number, { status: string; attempt: number; error?: string; error_kind?: string }[]>();
      for (const e of events) {
        const d = JSON.parse(e.data) as { unit_id: number; status: string; attempt: number; error?: string; error_kind?: string };
        const list = byUnit.get(d.unit_id) ?? [];
        list.push(d);
        byUnit.set(d.unit_id, list);
      }
      const seenItems = new Set<string>();
      /** A claude job's spending: what its units recorded, and the most its runs could have cost. */
      const spend = { recorded: 0, ceiling: 0 };
      for (const u of units) {
        report.units++;
        seenItems.add(u.item_id);
        const plan = job.plans.get(u.item_id);
        const tag = `job ${job.id} unit ${u.id} (${u.item_id}, ${plan ? `${plan.fault}×${plan.times}` : 'no plan'})`;
        if (!plan) {
          problem(`${tag}: not an item of the job's CSV`);
          continue;
        }
        const ev = byUnit.get(u.id) ?? [];
        const expiries = ev.filter((e) => e.error === 'lease expired');
        report.lease_expiries += expiries.length;
        const poisoned = poisonPlan(job.kind, plan);
        if (poisoned) report.poisoned++;
        if (u.status === 'SUCCEEDED') report.succeeded++;
        else if (u.status === 'FAILED') report.failed++;
        else {
          report.lost++;
          report.stuck++;
          problem(`${tag}: lost, it ended ${u.status}`);
          continue;
        }
        // Every failure says why.
        if (u.status === 'FAILED' && !u.error?.trim()) {
          report.wrong_outcomes++;
          problem(`${tag}: FAILED without a reason`);
        }
        if (u.lease_owner !== null || u.lease_expires_at !== null || u.worker_pid !== null || Number(u.reserved_usd) !== 0) {
          report.leftover_leases++;
          problem(`${tag}: still holds a lease (${u.lease_owner}, pid ${u.worker_pid})`);
        }
        // The expected outcome. A poison that answers does so at once: when its run timed out, the
        // host was too loaded to read its flood or its long line in time, and the chaos spent that retry.
        const mustFail = plannedFailure(plan);
        const slow = COERCED.has(plan.fault) ? ev.filter((e) => e.error_kind === 'timeout').length : 0;
        const mayFail = spending(plan) + expiries.length + slow > MAX_RETRIES;
        if (mustFail && u.status !== 'FAILED') {
          report.wrong_outcomes++;
          problem(`${tag}: planned to fail, but ${u.status}`);
        } else if (!mustFail && u.status === 'FAILED') {
          if (mayFail) report.chaos_failed++;
          else {
            report.wrong_outcomes++;
            problem(`${tag}: planned to succeed (${spending(plan)} spending faults, ${expiries.length} lease expiries, ${slow} slow runs, ${MAX_RETRIES} retries), but FAILED: ${u.error_kind}: ${String(u.error).slice(0, 200)}`);
          }
        }
        // Duplicates, rule 1: recorded successes.
        const recorded = ev.filter((e) => e.status === 'SUCCEEDED');
        const dup = (why: string) => {
          duplicated.add(u.item_id);
          problem(`${tag}: ran twice: ${why}`);
        };
        if (recorded.length !== (u.status === 'SUCCEEDED' ? 1 : 0)) {
          dup(`${recorded.length} SUCCEEDED outcomes recorded`);
          continue;
        }
        const explained = (attempt: number) => ev.some((e) => e.attempt === attempt && e.status !== 'SUCCEEDED');
        if (job.kind !== 'http') {
          const runs = readRuns(join(runsDir, u.item_id)).sort((a, b) => a.start - b.start);
          report.runs += runs.length;
          for (const r of runs) for (const f of r.faults) report.faults[`${job.kind} ${f}`] = (report.faults[`${job.kind} ${f}`] ?? 0) + 1;
          if (plan.fault === 'bigout') report.faults['shell bigout'] = (report.faults['shell bigout'] ?? 0) + runs.length;
          // Rule 4: one run per attempt.
          const perAttempt = new Map<number, number>();
          for (const r of runs) perAttempt.set(r.attempt, (perAttempt.get(r.attempt) ?? 0) + 1);
          const twice = [...perAttempt].find(([, n]) => n > 1);
          if (twice) {
            dup(`attempt ${twice[0]} ran ${twice[1]} times`);
            continue;
          }
          // Rule 3: nothing ran after the final attempt.
          const later = runs.find((r) => r.attempt > u.attempt);
          if (later) {
            dup(`attempt ${later.attempt} ran after the final attempt ${u.attempt}`);
            continue;
          }
          // Rule 5: no two lifetimes overlap.
          const overlap = overlapping(runs.map((r) => ({ start: r.start, end: Math.max(r.end, watcher.seen.get(`${u.item_id}#${r.attempt}`)?.last ?? 0), label: `attempt ${r.attempt} (pid ${r.pid})` })));
          if (overlap) {
            dup(overlap);
            continue;
          }
          // Rule 2: the recorded answer is the final attempt's run.
          if (u.status === 'SUCCEEDED') {
            const answer = JSON.parse(u.structured_output ?? 'null') as { item?: string; attempt?: number; pid?: number } | null;
            const mine = runs.filter((r) => r.ok && r.attempt === answer?.attempt && r.pid === answer?.pid);
            if (answer?.item !== u.item_id || answer.attempt !== u.attempt || mine.length !== 1) {
              dup(`its recorded answer ${u.structured_output} is not the answer of exactly one run of attempt ${u.attempt}`);
              continue;
            }
          }
          for (const r of runs) {
            if (!r.ok || (u.status === 'SUCCEEDED' && r.attempt === u.attempt)) continue;
            if (explained(r.attempt)) report.redone++;
            else dup(`attempt ${r.attempt} answered but no outcome or lease expiry of that attempt is recorded`);
          }
          // What a poisoned run's values became in the store.
          const final = runs.find((r) => r.ok && r.attempt === u.attempt);
          const wrong = await poisonedValues(job.kind, plan, u, final !== undefined && final.faults.length > 0, query);
          report.poison_checks += wrong.checked;
          for (const w of wrong.problems) {
            report.wrong_outcomes++;
            problem(`${tag}: ${w}`);
          }
          if (job.kind === 'claude') {
            spend.recorded += Number(u.cost_usd ?? 0);
            // Every run that answered healthily said $0.01; a badcost run's cost must not count.
            spend.ceiling += 0.01 * runs.filter((r) => r.ok && !r.faults.includes('badcost')).length;
          }
        } else {
          const requests = mock.requests.filter((r) => r.item === u.item_id).sort((a, b) => a.arrived - b.arrived);
          report.runs += requests.length;
          const overlap = overlapping(requests.map((r, i) => ({ start: r.arrived, end: r.ended || Date.now(), label: `request ${i + 1}` })));
          if (overlap) {
            dup(overlap);
            continue;
          }
          if (u.status === 'SUCCEEDED') {
            const answer = JSON.parse(u.structured_output ?? 'null') as { item?: string; nonce?: string } | null;
            const mine = requests.filter((r) => r.nonce !== null && r.nonce === answer?.nonce);
            if (answer?.item !== u.item_id || mine.length !== 1) {
              dup(`its recorded answer ${u.structured_output} is not the answer to exactly one request`);
              continue;
            }
            const final = mine[0] as MockRequest;
            const after = requests.filter((r) => r.arrived > final.arrived);
            if (after.length > 0) {
              dup(`${after.length} requests arrived after the one whose answer was recorded`);
              continue;
            }
            report.redone += requests.filter((r) => r.nonce !== null && r !== final).length;
          }
        }
      }
      const plansMissing = [...job.plans.keys()].filter((id) => !seenItems.has(id));
      if (plansMissing.length > 0) {
        report.lost += plansMissing.length;
        problem(`job ${job.id}: ${plansMissing.length} items have no unit (e.g. ${plansMissing.slice(0, 3).join(', ')})`);
      }
      // Counters and the job's own status.
      const [row] = await query<Record<string, unknown>>('select status, total, pending, running, submitted, succeeded, failed, cancelled, reserved_usd, cost_usd from jobs where id = ?', job.id);
      if (job.kind === 'claude') {
        // Money: the job counts every recorded unit's cost, and no run's cost twice (nor a poisoned one).
        const cost = Number(row?.cost_usd);
        report.poison_checks++;
        if (!(cost >= spend.recorded - 1e-9 && cost <= spend.ceiling + 1e-9)) {
          report.wrong_outcomes++;
          problem(`job ${job.id}: cost_usd ${cost}, but its units recorded $${spend.recorded.toFixed(2)} and its runs can have cost at most $${spend.ceiling.toFixed(2)}`);
        }
      }
      const counts = { pending: 0, running: 0, submitted: 0, succeeded: 0, failed: 0, cancelled: 0 } as Record<string, number>;
      for (const u of units) counts[u.status.toLowerCase()] = (counts[u.status.toLowerCase()] ?? 0) + 1;
      for (const key of Object.keys(counts)) {
        if (Number(row?.[key]) !== counts[key]) {
          report.counter_mismatches++;
          problem(`job ${job.id}: counter ${key} is ${row?.[key]}, COUNT(*) says ${counts[key]}`);
        }
      }
      if (Number(row?.total) !== units.length) problem(`job ${job.id}: total ${row?.total} but ${units.length} units`);
      const expected = counts.failed === 0 ? 'COMPLETED' : 'FAILED';
      if (row?.status !== expected) {
        report.lost += row?.status === 'RUNNING' ? 1 : 0;
        problem(`job ${job.id}: status ${row?.status}, expected ${expected} (${counts.succeeded} succeeded, ${counts.failed} failed)`);
      }
      if (Number(row?.reserved_usd) !== 0) problem(`job ${job.id}: reserved_usd ${row?.reserved_usd} left after the end`);
    }
    // Rule 5 again, from the /proc samples: two attempts of one unit alive in one sample.
    for (const c of watcher.concurrent) {
      duplicated.add(c.split(':')[0] as string);
      problem(`ran twice: seen in /proc: ${c}`);
    }
    report.duplicates = duplicated.size;

    const rows = await query<{ id: string; pid: number; heartbeat_at: number }>('select id, pid, heartbeat_at from executors');
    report.executor_rows = rows.length;
    for (const r of rows) problem(`executors table still lists ${r.id} (heartbeat ${Date.now() - Number(r.heartbeat_at)} ms ago)`);
    if (backend === 'sqlite') {
      const [check] = await query<{ integrity_check: string }>('pragma integrity_check');
      report.integrity = check?.integrity_check ?? '?';
      if (report.integrity !== 'ok') problem(`integrity_check: ${report.integrity}`);
    }
    report.wall_ms = Date.now() - began;
    report.ok = violations.length === 0;
    return report;
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
}

interface UnitCheckRow {
  cost_usd: number | null;
  session_id: string | null;
  usage: string | null;
  input_tokens: number | null;
  output_tokens: number | null;
  stderr_tail: string | null;
  id: number;
  item_id: string;
  status: string;
  attempt: number;
  failures: number;
  output: string | null;
  structured_output: string | null;
  error: string | null;
  error_kind: string | null;
  lease_owner: string | null;
  lease_expires_at: number | null;
  worker_pid: number | null;
  reserved_usd: number;
}

/**
 * What a unit's poisoned values must have become: a NUL byte U+FFFD, bytes that are
 * not UTF-8 U+FFFD, numbers out of range and ids that are not ids left out (null),
 * a flood cut at 10,000 events with the cut recorded, a long line cut and said so,
 * a hugeline's unit failed for its output's size. A healthy run's values are kept
 * exactly. `faulted`: the run whose answer was recorded injected the plan's fault.
 */
async function poisonedValues(
  kind: JobKind,
  plan: Plan,
  u: UnitCheckRow,
  faulted: boolean,
  query: <T>(text: string, ...params: unknown[]) => Promise<T[]>,
): Promise<{ checked: number; problems: string[] }> {
  const problems: string[] = [];
  let checked = 0;
  const expect = (ok: boolean, what: string) => {
    checked++;
    if (!ok) problems.push(what);
  };
  if (u.status === 'FAILED') {
    // For its size, at once and for good; or, when the chaos killed its executors or a loaded host
    // kept it from reaching the limit in time, by its retries running out.
    const bySize = /max_output_bytes/.test(u.error ?? '') && u.error_kind === 'permanent';
    const byChaos = u.error_kind === 'timeout' || /^lease expired/.test(u.error ?? '');
    if (plan.fault === 'hugeline') expect(bySize || byChaos, `a hugeline failed with ${u.error_kind}: ${u.error}`);
    return { checked, problems };
  }
  const output = u.output ?? '';
  expect(!output.includes('\u0000'), 'a NUL byte reached the stored output');
  if (faulted && (plan.fault === 'nul' || plan.fault === 'badutf8')) expect(output.includes('\uFFFD'), `its ${plan.fault} answer is stored without U+FFFD: ${JSON.stringify(output.slice(0, 120))}`);
  const meta = JSON.stringify({ cost_usd: u.cost_usd, session_id: u.session_id, input_tokens: u.input_tokens, output_tokens: u.output_tokens, usage: u.usage });
  if (kind === 'agent') {
    const id = `th-${u.item_id}-${u.attempt}`;
    if (faulted && plan.fault === 'badnums') expect(u.session_id === null && u.usage === null && u.input_tokens === null && u.output_tokens === null, `its bad ids and token counts were not left out: ${meta}`);
    else expect(u.session_id === id && Number(u.input_tokens) === 200 && Number(u.output_tokens) === 40, `a healthy run's session and tokens were not kept: ${meta}`);
  }
  if (kind === 'claude') {
    const id = `sess-${u.item_id}-${u.attempt}`;
    if (faulted && plan.fault === 'badcost') expect(u.cost_usd === null && u.session_id === null && u.usage === null && u.input_tokens === null, `its bad cost, session id and usage were not left out: ${meta}`);
    else expect(Number(u.cost_usd) === 0.01 && u.session_id === id && Number(u.input_tokens) === 120 && Number(u.output_tokens) === 30, `a healthy run's cost, session and tokens were not kept: ${meta}`);
  }
  if (faulted && plan.fault === 'flood') {
    const rows = await query<{ kind: string; n: number }>("select case when kind = 'events_cut' then 'cut' else 'kept' end kind, count(*) n from unit_events where unit_id = ? and attempt = ? group by 1", u.id, u.attempt);
    const n = Object.fromEntries(rows.map((r) => [r.kind, Number(r.n)]));
    expect(n.kept === 10_000 && n.cut === 1, `its flood is stored as ${JSON.stringify(n)} events, not 10,000 and the cut`);
  }
  if (faulted && plan.fault === 'longline') expect(/lines? (was|were) cut at/.test(u.stderr_tail ?? ''), `its long line's cut is not in the stderr tail: ${JSON.stringify((u.stderr_tail ?? '').slice(-200))}`);
  return { checked, problems };
}

/** The first pair of lifetimes that overlap, in words, or undefined. Sorted by start. */
function overlapping(lives: { start: number; end: number; label: string }[]): string | undefined {
  const sorted = [...lives].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted.slice(0, i).reduce((a, b) => (b.end > a.end ? b : a));
    const cur = sorted[i] as (typeof sorted)[number];
    if (cur.start < prev.end) return `${prev.label} (${prev.start}–${prev.end}) and ${cur.label} (${cur.start}–${cur.end}) were alive at the same time`;
  }
  return undefined;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The report as the lines the script and the test print. */
export function summary(r: ChaosReport): string {
  const faults = Object.entries(r.faults)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, n]) => `${k} ${n}`)
    .join(', ');
  return [
    `chaos ${r.ok ? 'PASSED' : 'FAILED'} (${r.backend}, seed ${r.seed})`,
    `  wall time        ${(r.wall_ms / 1000).toFixed(1)} s (chaos ${(r.chaos_ms / 1000).toFixed(1)} s)`,
    `  units            ${r.units} in ${r.jobs} jobs: ${r.succeeded} succeeded, ${r.failed} failed (${r.chaos_failed} of them by lease losses or a loaded host)`,
    `  worker runs      ${r.runs} (redone after a lost outcome: ${r.redone}; lease expiries: ${r.lease_expiries})`,
    `  executors        ${r.executor_starts} started, ${r.executor_kills} SIGKILLed, ${r.executor_terms} SIGTERMed (slowest exit ${r.slowest_term_ms} ms, bad exits ${r.bad_exits}, crashes ${r.executor_crashes})`,
    `  database locks   ${r.db_locks} (${(r.db_lock_ms / 1000).toFixed(1)} s held in all)`,
    `  faults injected  ${faults}`,
    ...(r.poisoned > 0 ? [`  poisoned units   ${r.poisoned} (${r.poison_checks} coerced values checked; escapees ${r.escapees}, alive at the end ${r.escapees_left})`] : []),
    `  duplicates ${r.duplicates}, lost ${r.lost} (stuck ${r.stuck}), wrong outcomes ${r.wrong_outcomes}, counter mismatches ${r.counter_mismatches}, leftover leases ${r.leftover_leases}, executor rows ${r.executor_rows}, orphans ${r.orphans}, integrity ${r.integrity}`,
    ...r.violations.map((v) => `  ! ${v}`),
  ].join('\n');
}
