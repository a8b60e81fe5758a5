import { createHash, randomBytes } from 'node:crypto';
import type { AbpConfig } from '../config.js';
import { errorMessage } from '../domain/errors.js';
import { LATEST_MIGRATION, MIGRATION_NAMES } from '../store/migration-names.js';
import type { Repository } from '../store/repository.js';
import type { EventRow } from '../store/schema.js';
import { parseJson } from '../wire/views.js';
import { isoTime } from '../domain/iso-time.js';

const iso = (ms: number) => isoTime(Number(ms));

/** One row of the events table as front ends see it. */
export function eventView(row: EventRow) {
  return { seq: Number(row.seq), job_id: row.job_id, type: row.type, data: parseJson(row.data), at: iso(row.created_at) };
}
export type EventView = ReturnType<typeof eventView>;

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
/** What dashboard_tokens stores of a token: bound to the server it was made for. */
const tokenHash = (server: string, token: string) => sha256(`${server}\n${token}`);

/** How long a one-time dashboard link stays valid. */
export const DASHBOARD_TOKEN_TTL_MS = 15 * 60 * 1000;

/**
 * What the HTTP front end reads besides jobs and units: the event log,
 * checkpoints, readiness, metric inputs and one-time dashboard links. Kept out
 * of the Orchestrator class so that file stays about job control.
 */
export class Monitor {
  constructor(
    private readonly repo: Repository,
    private readonly config: AbpConfig,
  ) {}

  /** A job's events after `afterSeq`, oldest first. */
  async events(jobId: number, afterSeq: number, limit: number): Promise<EventView[]> {
    return (await this.repo.listEvents(jobId, afterSeq, limit)).map(eventView);
  }

  /** The state of the whole installation: live executors and jobs by status. */
  async overview() {
    const { repo, config } = this;
    const executors = await repo.liveExecutors(config.executorStaleMs);
    return {
      executors: executors.map((e) => ({ id: e.id, hostname: e.hostname, pid: e.pid, version: e.version, heartbeat_age_ms: Date.now() - Number(e.heartbeat_at) })),
      jobs_by_status: await repo.countJobsByStatus(),
    };
  }

  /** The seq of a job's newest event (0 when it has none): where a stream that asks for "now" starts. */
  async lastEventSeq(jobId: number): Promise<number> {
    return this.repo.lastEventSeq(jobId);
  }

  /** A job's RUNNING units, each with the id of its newest `unit_events` row: what a live view polls. */
  async runningUnitsActivity(jobId: number) {
    return this.repo.runningUnitsActivity(jobId);
  }

  /** A unit's newest conversation events up to and including `uptoId`, newest first. */
  async unitEventsTail(unitId: number, uptoId: number, limit: number) {
    return this.repo.unitEventsTail(unitId, uptoId, limit);
  }

  /** A client's progress checkpoint: one `checkpoint` event on the job. */
  async checkpoint(jobId: number, type: string, data: unknown): Promise<EventView> {
    await this.repo.requireJob(jobId);
    return eventView(await this.repo.recordEvent(jobId, 'checkpoint', { type, data }));
  }

  /** Whether the database answers and has run every migration this build knows. */
  async readiness(): Promise<{ ready: boolean; database: string; migrations: { latest: string; pending: string[] } }> {
    const known = [...MIGRATION_NAMES];
    try {
      const executed = new Set(await this.repo.executedMigrations());
      const pending = known.filter((name) => !executed.has(name));
      return { ready: pending.length === 0, database: 'ok', migrations: { latest: LATEST_MIGRATION, pending } };
    } catch (err) {
      return { ready: false, database: `unreachable: ${errorMessage(err)}`, migrations: { latest: LATEST_MIGRATION, pending: known } };
    }
  }

  /** The gauges a metrics scrape reads from the database: cheap aggregates only. */
  async gauges() {
    const [jobs, totals, executors] = await Promise.all([this.repo.countJobsByStatus(), this.repo.totals(), this.repo.executors()]);
    const now = Date.now();
    return {
      jobs,
      totals,
      executors: executors.map((e) => ({ id: e.id, hostname: e.hostname, heartbeat_age_seconds: Math.max(0, now - Number(e.heartbeat_at)) / 1000 })),
    };
  }

  /**
   * Unit outcomes recorded after `afterSeq`, across every job, with the unit's
   * duration: what the duration histogram and error counters are fed from.
   */
  async unitOutcomesAfter(afterSeq: number, limit = 2000) {
    const rows = await this.repo.eventsAfter(afterSeq, ['unit'], limit);
    const events = rows.map((r) => ({ seq: Number(r.seq), data: parseJson(r.data) as { unit_id?: number; status?: string; error_kind?: string | null } }));
    const finished = events.filter((e) => e.data.status === 'SUCCEEDED' || e.data.status === 'FAILED').map((e) => Number(e.data.unit_id));
    const durations = new Map((await this.repo.unitDurations(finished)).map((u) => [u.id, u.duration_ms === null ? null : Number(u.duration_ms)]));
    return {
      last_seq: events.at(-1)?.seq ?? afterSeq,
      complete: rows.length < limit,
      outcomes: events.map((e) => ({
        status: e.data.status ?? 'unknown',
        error_kind: e.data.error_kind ?? null,
        duration_ms: e.data.unit_id === undefined ? null : (durations.get(Number(e.data.unit_id)) ?? null),
      })),
    };
  }

  /** Units finished and cost spent over time, cumulative, in at most `buckets` steps. */
  async timeline(jobId: number, buckets = 60) {
    const job = await this.repo.requireJob(jobId);
    const rows = await this.repo.unitFinishes(jobId);
    const start = Number(job.started_at ?? rows[0]?.finished_at ?? job.created_at);
    const end = Math.max(start + 1, Number(rows.at(-1)?.finished_at ?? start + 1), job.finished_at === null ? Date.now() : Number(job.finished_at));
    const step = Math.max(1, Math.ceil((end - start) / buckets));
    const points: { at: string; succeeded: number; failed: number; cost_usd: number }[] = [];
    let succeeded = 0;
    let failed = 0;
    let cost = 0;
    let i = 0;
    for (let t = start + step; t < end + step; t += step) {
      for (; i < rows.length && Number(rows[i]?.finished_at) <= t; i++) {
        const row = rows[i] as (typeof rows)[number];
        if (row.status === 'SUCCEEDED') succeeded++;
        else if (row.status === 'FAILED') failed++;
        cost += row.cost_usd ?? 0;
      }
      points.push({ at: iso(Math.min(t, end)), succeeded, failed, cost_usd: Math.round(cost * 1e6) / 1e6 });
    }
    return { job_id: jobId, started_at: iso(start), step_ms: step, points };
  }

  /**
   * A fresh one-time dashboard token for the server at `server` (its URL, as it
   * records it). Only a hash of the two is stored, so the token works on that
   * server alone, though every server on this database reads the same table.
   */
  async mintDashboardToken(server: string, ttlMs = DASHBOARD_TOKEN_TTL_MS): Promise<{ token: string; expires_at: string }> {
    const token = randomBytes(24).toString('base64url');
    const expires = Date.now() + ttlMs;
    await this.repo.insertDashboardToken(tokenHash(server, token), expires);
    return { token, expires_at: iso(expires) };
  }

  /** Spends a one-time token on the server at `server`; a second use, an expired, an unknown or another server's token is refused. */
  async consumeDashboardToken(token: string, server: string): Promise<boolean> {
    if (!/^[A-Za-z0-9_-]{16,128}$/.test(token)) return false;
    return this.repo.consumeDashboardToken(tokenHash(server, token));
  }

  /** Where `abp serve` keeps its address for `abp dashboard` and the MCP server. */
  get home(): string {
    return this.config.home;
  }
}

