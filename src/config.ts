import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { AbpError } from './domain/errors.js';

/** Settings resolved once, from defaults < environment < flags, and passed down frozen. */
export interface AbpConfig {
  /** Where the database, logs and work directories live. */
  readonly home: string;
  /** A SQLite file path (the default) or a postgres:// URL. */
  readonly db: string;
  readonly skipTest: boolean;
  /** Units one executor runs at once, across all jobs. */
  readonly maxWorkers: number;
  readonly leaseMs: number;
  readonly heartbeatMs: number;
  /** An executor whose heartbeat is older than this is taken for dead (three missed heartbeats). */
  readonly executorStaleMs: number;
  readonly pollMs: number;
  /** How often an open provider batch is polled (ABP_BATCH_POLL_SECONDS). */
  readonly batchPollMs: number;
  readonly idleExitMs: number;
  readonly retryBaseMs: number;
  readonly retryMaxMs: number;
  readonly shutdownGraceMs: number;
  readonly busyTimeoutMs: number;
  /** PostgreSQL only: connections in this process's pool. */
  readonly pgPoolSize: number;
  /** Apply pending migrations on open; off means operators run `abp migrate`. */
  readonly autoMigrate: boolean;
  /** The `max_retries` of a new job whose spec gives none. */
  readonly defaultMaxRetries: number;
  /** Where `abp serve` listens unless --port says otherwise. */
  readonly httpPort: number;
}

type Env = Record<string, string | undefined>;

function number(env: Env, name: string, fallback: number, min = 0): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) {
    throw new AbpError('invalid_input', `${name}: expected a number >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** number() for settings that must be whole and bounded: a port, a count of retries. */
function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new AbpError('invalid_input', `${name}: expected an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/**
 * The variable in effect of a setting with two names: the original ABP's name is
 * an alias of abp's own, which wins when both are set. Errors then name the one
 * that was read.
 */
function aliased(env: Env, name: string, alias: string): string {
  const set = (key: string) => (env[key] ?? '').trim() !== '';
  return !set(name) && set(alias) ? alias : name;
}

export function truthy(raw: string | undefined): boolean {
  return raw !== undefined && ['1', 'true', 'yes', 'on'].includes(raw.trim().toLowerCase());
}

export function resolveConfig(env: Env = process.env, overrides: Partial<AbpConfig> = {}): AbpConfig {
  const home = resolve(env.ABP_HOME || env.ABP_STORAGE_PATH || join(homedir(), '.abp'));
  const db = env.ABP_DB || join(home, 'abp.db');
  const leaseMs = number(env, 'ABP_LEASE_SECONDS', 30, 1) * 1000;
  return Object.freeze({
    home,
    db,
    skipTest: truthy(env.ABP_SKIP_TEST),
    maxWorkers: Math.floor(number(env, 'ABP_MAX_WORKERS', 16, 1)),
    leaseMs,
    heartbeatMs: Math.max(200, Math.floor(leaseMs / 3)),
    executorStaleMs: 3 * Math.max(200, Math.floor(leaseMs / 3)),
    pollMs: number(env, 'ABP_POLL_MS', 200, 10),
    batchPollMs: number(env, 'ABP_BATCH_POLL_SECONDS', 30, 0.05) * 1000,
    idleExitMs: number(env, 'ABP_EXECUTOR_IDLE_SECONDS', 30, 0) * 1000,
    retryBaseMs: number(env, 'ABP_RETRY_BASE_MS', 1000, 0),
    retryMaxMs: number(env, 'ABP_RETRY_MAX_MS', 60_000, 0),
    shutdownGraceMs: number(env, 'ABP_SHUTDOWN_GRACE_SECONDS', 10, 0) * 1000,
    busyTimeoutMs: number(env, 'ABP_BUSY_TIMEOUT_MS', 30_000, 0),
    // Two at least: migrations hold one connection for their advisory lock while running on another.
    pgPoolSize: Math.floor(number(env, 'ABP_PG_POOL_SIZE', 10, 2)),
    autoMigrate: env.ABP_AUTO_MIGRATE === undefined || env.ABP_AUTO_MIGRATE === '' || truthy(env.ABP_AUTO_MIGRATE),
    // The bounds of the JobSpec's own max_retries, so that the default is always a valid spec value.
    defaultMaxRetries: integer(env, 'ABP_MAX_RETRIES', 3, 0, 100),
    httpPort: integer(env, aliased(env, 'ABP_HTTP_PORT', 'ABP_DASHBOARD_PORT'), 7070, 0, 65535),
    ...overrides,
  });
}
