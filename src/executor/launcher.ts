import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync, closeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { AbpConfig } from '../config.js';
import type { Worker } from '../contracts/worker.js';
import { PACKAGE_ROOT } from '../package-root.js';
import type { Repository } from '../store/repository.js';
import type { ExecutorRow, JobRow } from '../store/schema.js';
import { envRefNames } from '../domain/env-refs.js';

export const CLI_ENTRY = join(PACKAGE_ROOT, 'dist', 'cli', 'main.js');

/**
 * The variable that tells a launched executor which launch slot it stands in
 * for (FleetStore.claimLaunch); the executor takes it out of its environment
 * before anything else reads it.
 */
export const LAUNCH_SLOT_ENV = 'ABP_LAUNCH_SLOT';

type Env = Record<string, string | undefined>;

/** A live executor that lacks variables a job needs. */
export interface LackingExecutor {
  executor: string;
  pid: number;
  /** The variables it was started without; null: an executor too old to say which it has. */
  missing: string[] | null;
}

export interface LaunchResult {
  started: boolean;
  pid?: number;
  log?: string;
  /** Live executors passed over because they lack a variable the job needs (a fresh one was started instead). */
  lacking?: LackingExecutor[];
  /** For people: which executor lacked which variable, and what was done about it. */
  note?: string;
}

const isSet = (env: Env, name: string) => (env[name] ?? '') !== '';

/**
 * The environment variables a job needs its executor to have: the {{env.NAME}}
 * references in its worker_config and the variables its worker reads by itself,
 * of those set where the job is started (`env`, the starter's environment). A
 * variable the starter lacks as well is no need: the worker may log in another
 * way. `parsedConfig` is the config after its schema (undefined: it does not
 * parse, and only the references count). Names only, sorted; never values.
 */
export function envNeeds(worker: Pick<Worker<any>, 'envNames'>, rawConfig: unknown, parsedConfig: unknown, env: Env = process.env): string[] {
  const own = parsedConfig === undefined ? [] : (worker.envNames?.(parsedConfig) ?? []);
  const names = new Set([...envRefNames(rawConfig), ...own]);
  return [...names].filter((name) => isSet(env, name)).sort();
}

/**
 * What a stored job needs, from its worker and its worker_config (JSON): the
 * config's own fields count only when it parses (an old job's may not).
 */
export function jobEnvNeeds(worker: Pick<Worker<any>, 'envNames' | 'configSchema'>, workerConfig: string, env: Env = process.env): string[] {
  const raw = JSON.parse(workerConfig) as unknown;
  const parsed = worker.configSchema.safeParse(raw);
  return envNeeds(worker, raw, parsed.success ? parsed.data : undefined, env);
}

/** The variables a job was started needing (jobs.env_needs), for keeping it served later. */
export function storedNeeds(job: Pick<JobRow, 'env_needs'>): string[] {
  if (!job.env_needs) return [];
  try {
    const names = JSON.parse(job.env_needs) as unknown;
    return Array.isArray(names) ? names.map(String) : [];
  } catch {
    return [];
  }
}

/** The names of the variables set (non-empty) in an environment, sorted: what an executor registers. */
export function envNamesOf(env: Env = process.env): string[] {
  return Object.keys(env)
    .filter((name) => isSet(env, name))
    .sort();
}

/** The needs an executor lacks; null env_names (an older executor) lacks them all. */
export function missingFrom(executor: Pick<ExecutorRow, 'env_names'>, needs: readonly string[]): string[] {
  if (needs.length === 0) return [];
  let has: unknown;
  try {
    has = executor.env_names === null ? null : JSON.parse(executor.env_names);
  } catch {
    has = null;
  }
  if (!Array.isArray(has)) return [...needs];
  const names = new Set(has);
  return needs.filter((name) => !names.has(name));
}

/**
 * Starts a detached executor when none that can serve the job is alive: one
 * with a fresh heartbeat in the executors table (never a bare PID) and every
 * variable the job needs. A fresh executor inherits this process's environment,
 * which has them; the others keep serving other jobs and exit when idle.
 *
 * The decision is one transaction across every process on the database
 * (FleetStore.claimLaunch): the launch is claimed with a slot row that stands
 * for the new executor until it registers, so any number of `abp start`s, MCP
 * servers and HTTP servers deciding at once launch one executor, on SQLite and
 * on PostgreSQL. Liveness is the fleet's, not this host's: on a shared
 * PostgreSQL a live executor on any host that has the job's variables serves
 * it, and executors started by hand (`abp executor`) are never held back.
 */
export class Launcher {
  constructor(
    private readonly repo: Repository,
    private readonly config: AbpConfig,
    private readonly version = 'unknown',
  ) {}

  async ensureExecutor(needs: readonly string[] = []): Promise<LaunchResult> {
    // A fresh executor gets this process's environment: it helps only if that has every need.
    const unmet = needs.filter((name) => !isSet(process.env, name));
    // What the claim saw, and the launch it made: the callback runs in the claim's transaction,
    // again if PostgreSQL retries that, and must start one process at most.
    const seen = { served: false, lacking: [] as LackingExecutor[], launched: undefined as { result: LaunchResult; slot: ExecutorRow } | undefined };
    await this.repo.claimLaunch(this.config.executorStaleMs, (live) => {
      seen.lacking = [];
      seen.served = false;
      for (const e of live) {
        const missing = missingFrom(e, needs);
        if (missing.length === 0) {
          seen.served = true;
          return undefined;
        }
        seen.lacking.push({ executor: e.id, pid: e.pid, missing: e.env_names === null ? null : missing });
      }
      if (unmet.length > 0) return undefined;
      seen.launched ??= this.launch();
      return seen.launched.slot;
    });
    const { lacking } = seen;
    if (seen.served && !seen.launched) return { started: false };
    if (!seen.launched) {
      return {
        started: false,
        lacking,
        note: `no live executor has ${unmet.join(', ')}, which this job needs, and this process lacks ${unmet.length > 1 ? 'them' : 'it'} too: start the job again from a shell that has ${unmet.length > 1 ? 'them' : 'it'} (or that logs in another way)`,
      };
    }
    const launched = seen.launched.result;
    if (lacking.length === 0) return launched;
    const which = lacking
      .map((l) => `executor ${l.executor} (pid ${l.pid}) ${l.missing ? `was started without ${l.missing.join(', ')}` : 'is from an older abp and does not say which variables it has'}`)
      .join('; ');
    const note =
      `${which}, which this job needs, so it leaves the job's units to another executor: ` +
      `a fresh executor (pid ${launched.pid}), started with this environment, runs them; the old one keeps serving other jobs and exits when idle.`;
    return { ...launched, lacking, note };
  }

  /**
   * Starts a detached executor, and returns the launch slot that stands for it
   * until it registers: its pid, a fresh heartbeat, and the names of the
   * variables it gets. The slot's id reaches it as ABP_LAUNCH_SLOT.
   */
  private launch(): { result: LaunchResult; slot: ExecutorRow } {
    // abp's own HTTP key stays with the server: executors and their workers never need it.
    const env: Record<string, string | undefined> = { ...process.env, ABP_API_KEY: undefined, ABP_HOME: this.config.home, ABP_DB: this.config.db };
    delete env[LAUNCH_SLOT_ENV];
    const id = `launch:${hostname()}:${randomBytes(6).toString('hex')}`;
    const logDir = join(this.config.home, 'logs');
    mkdirSync(logDir, { recursive: true });
    const log = join(logDir, 'executor.log');
    const fd = openSync(log, 'a');
    let pid: number | undefined;
    try {
      const child = spawn(process.execPath, [CLI_ENTRY, 'executor'], {
        detached: true, // its own session: it outlives the CLI, the MCP server or the terminal
        stdio: ['ignore', fd, fd],
        env: { ...env, [LAUNCH_SLOT_ENV]: id },
      });
      // A spawn that fails (no such file, no more processes) says so in an 'error' event and has no pid.
      child.once('error', () => undefined);
      child.unref();
      pid = child.pid;
    } finally {
      closeSync(fd);
    }
    if (pid === undefined) throw new Error(`could not start an executor (${process.execPath} ${CLI_ENTRY} executor)`);
    const now = Date.now();
    const slot: ExecutorRow = { id, hostname: hostname(), pid, version: this.version, started_at: now, heartbeat_at: now, env_names: JSON.stringify(envNamesOf(env)) };
    return { result: { started: true, pid, log }, slot };
  }
}
