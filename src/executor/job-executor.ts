import { autoResumeDue, autoResumeReason, outOfWork, waitsForAutoResume } from '../domain/job-rules.js';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { JobType } from '../contracts/job-type.js';
import type { Registry } from '../contracts/registry.js';
import type { Worker } from '../contracts/worker.js';
import { errorMessage } from '../domain/errors.js';
import type { AbpConfig } from '../config.js';
import type { PromptSynthesizer } from './prompt-synthesizer.js';
import type { Repository } from '../store/repository.js';
import type { ExecutorRow, JobRow, UnitRow } from '../store/schema.js';
import { killGroup, processAlive } from '../util/process-group.js';
import { envNamesOf, missingFrom, storedNeeds } from './launcher.js';
import { BatchRunner } from './batch-runner.js';
import { WorkerPool } from './worker-pool.js';
import { logLine } from '../util/log-line.js';
import { isoTime } from '../domain/iso-time.js';

/** How long a busy executor's passes reuse its last read of the active jobs (see recentSurvey). */
const SURVEY_REUSE_MS = 100;

export interface JobExecutorDeps {
  repo: Repository;
  workers: Registry<Worker<any>>;
  synthesizer: PromptSynthesizer;
  config: AbpConfig;
  version: string;
  /** Each job type's end (jobs.type → JobType): settled in the periodic pass, whatever ended the job. */
  jobTypes: readonly JobType[];
  log?: (message: string) => void;
  /** The launch slot this executor was started for (FleetStore.claimLaunch): its first registration replaces it. */
  launchSlot?: string;
  /** Called after each pass that found work (`abp executor` releases the optimizing compiler at the first). */
  onWork?: () => void;
}

/**
 * The background process that claims and runs units until nothing is left.
 * Several may share one database: claims are atomic, leases expire, and any
 * executor reclaims expired units.
 */
export class JobExecutor {
  readonly id = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
  private readonly pool: WorkerPool;
  /** Units of jobs that run through a provider's batch API, and every open batch's polling. */
  private readonly batches: BatchRunner;
  private readonly log: (message: string) => void;
  private stopping = false;
  private hurry = false;
  private loop: Promise<void> | undefined;
  private lastHeartbeat = 0;
  private lastReclaim = 0;
  private lastPrune = 0;
  private startedAt = 0;
  private rotation = 0;
  /** When the active jobs were last read, and which had units to claim (see recentSurvey). */
  private lastSurvey: { at: number; claimable: JobRow[] } | undefined;
  /** The names (never the values) of the variables this executor was started with: jobs may need some of them. */
  private readonly envNames = JSON.stringify(envNamesOf(process.env));
  /** Jobs this executor leaves to others, by the env_needs text it judged, with what it lacks. */
  private readonly lacks = new Map<number, { needs: string; missing: string[] }>();
  /** Each job's `unit_stops` as this executor last looked: a change means a person stopped a unit. */
  private readonly seenStops = new Map<number, number>();
  /** The last error each job type's settling gave, so that a failure repeating every pass is logged once. */
  private readonly settleErrors = new Map<string, string>();

  constructor(private readonly deps: JobExecutorDeps) {
    this.log = deps.log ?? ((m) => logLine(`${isoTime()} executor ${this.id}: ${m}`));
    this.pool = new WorkerPool({ ...deps, owner: this.id, log: this.log }, deps.config.maxWorkers);
    this.batches = new BatchRunner({ ...deps, owner: this.id, log: this.log, cache: this.pool.cache, configs: this.pool.configs });
  }

  /** Runs until idle for `idleExitMs` (0 = never), or until stop() is called. */
  run(): Promise<void> {
    this.loop ??= this.runLoop();
    return this.loop;
  }

  /**
   * Stops claiming, lets running units finish within the grace period, then
   * aborts the rest and gives their leases back. Idempotent.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.pool.wakeNow();
    await this.loop;
  }

  /** stop() without the grace period: running units are stopped and given back now. */
  async stopNow(): Promise<void> {
    this.stopping = true;
    this.hurry = true;
    this.pool.abortAll('shutdown');
    await this.stop();
  }

  private async runLoop(): Promise<void> {
    const { repo, config } = this.deps;
    const now = Date.now();
    this.startedAt = now;
    await repo.registerExecutor(this.registration(now), this.deps.launchSlot);
    this.lastHeartbeat = now;
    this.log(`started (max ${config.maxWorkers} units at once, lease ${config.leaseMs} ms)`);
    // Work appearing anywhere in the cluster (PostgreSQL NOTIFY) ends the wait early; polling stays the fallback.
    const unlisten = await repo.onWork(() => this.pool.wakeNow());
    let idleSince: number | undefined;
    let failures = 0;
    try {
      while (!this.stopping) {
        let busy: boolean;
        try {
          busy = await this.tick();
          if (failures > 0) this.log(`database reachable again after ${failures} failed passes`);
          failures = 0;
        } catch (err) {
          // The database may be locked or unreachable: claim nothing, keep the running
          // units (their outcomes wait in the pool), and try again, backing off.
          failures++;
          if (failures <= 3 || failures % 20 === 0) this.log(`tick failed (${failures}): ${errorMessage(err)}`);
          busy = true;
          if (!this.stopping) await this.pool.waitForChange(Math.min(config.pollMs * 2 ** failures, 5000));
        }
        if (busy) {
          idleSince = undefined;
          this.deps.onWork?.();
        } else {
          idleSince ??= Date.now();
          if (config.idleExitMs > 0 && Date.now() - idleSince >= config.idleExitMs) {
            if (await this.leaveIfStillIdle()) {
              this.log(`idle for ${config.idleExitMs} ms; exiting`);
              break;
            }
            idleSince = undefined;
          }
        }
        if (!this.stopping) await this.pool.waitForChange(config.pollMs);
      }
    } finally {
      await unlisten();
      await this.shutdown();
    }
  }

  /**
   * Leaves the executors table, then looks for work once more. A job started
   * meanwhile either found this executor gone (and launched another) or is seen
   * now, in which case this executor registers again and stays. Without the
   * second look, a job started in the moment before exit would wait on nobody.
   */
  private async leaveIfStillIdle(): Promise<boolean> {
    const { repo } = this.deps;
    try {
      await repo.unregisterExecutor(this.id);
      if (!(await this.survey(Date.now())).work) return true;
    } catch {
      // The database is unreachable: stay, and let the loop's backoff handle it.
    }
    await repo.registerExecutor(this.registration(Date.now())).catch(() => undefined);
    this.lastHeartbeat = Date.now();
    return false;
  }

  private registration(now: number): ExecutorRow {
    return { id: this.id, hostname: hostname(), pid: process.pid, version: this.deps.version, started_at: this.startedAt, heartbeat_at: now, env_names: this.envNames };
  }

  private async shutdown(): Promise<void> {
    const { repo, config } = this.deps;
    await this.batches.close(this.hurry ? 0 : config.shutdownGraceMs);
    if (this.pool.size > 0) {
      this.log(`stopping: waiting up to ${config.shutdownGraceMs} ms for ${this.pool.size} running units`);
      const drained = !this.hurry && (await this.pool.drain(config.shutdownGraceMs));
      if (!drained) {
        this.pool.abortAll('shutdown');
        await this.pool.drain(5000);
      }
    }
    // The last outcomes may have ended a job since the last pass.
    await this.settleEnded();
    // Thread pools (the function worker) would otherwise keep the process alive.
    await Promise.all(this.deps.workers.list().map((w) => w.close?.().catch(() => undefined)));
    await repo.unregisterExecutor(this.id).catch(() => undefined);
    // Attempts that outlived the drain write nothing to the store, which closes next.
    if (this.pool.size > 0) this.log(`${this.pool.size} units did not end when stopped; they are left to their leases`);
    this.pool.close();
    this.log('stopped');
  }

  /** One pass: heartbeat, reclaim, react to job changes, claim. Returns whether there is work. */
  private async tick(): Promise<boolean> {
    const { repo, config } = this.deps;
    const now = Date.now();
    if (now - this.lastHeartbeat >= config.heartbeatMs) {
      // A row pruned while this executor was cut off (a long stall) comes back.
      if (!(await repo.heartbeat(this.id))) await repo.registerExecutor(this.registration(now));
      await repo.extendLeases(this.id, config.leaseMs, this.pool.unitIds());
      this.lastHeartbeat = now;
      if (now - this.lastPrune >= config.leaseMs) {
        // Killed executors never unregister: their rows go once they are stale
        // for three leases (their units were reclaimed long before).
        await repo.pruneExecutors(3 * config.leaseMs);
        this.lastPrune = now;
      }
    }
    // Expired leases are rare; looking for them once a second (or per heartbeat, if
    // sooner) is enough, and keeps a busy executor's passes to what claiming needs.
    if (now - this.lastReclaim >= Math.min(config.heartbeatMs, 1000)) {
      this.reap(await repo.reclaimExpired(now));
      this.lastReclaim = now;
      // Jobs that ended (here, in another executor, or by a person's move) get their type's end.
      await this.settleEnded();
    }

    const recent = this.recentSurvey(now);
    const { work: units, claimable } = recent ?? (await this.survey(now));
    // Open provider batches keep an executor alive to poll them, whichever job they belong to.
    const work = (await this.batches.pass(now)) || units;
    if (!recent) {
      this.lastSurvey = { at: now, claimable };
      // Rate limits other executors hit hold this one back as well.
      if (!this.stopping && claimable.length > 0) for (const [workerType, until] of await repo.activeCoolDowns()) this.pool.coolDowns.adopt(workerType, until);
    }
    if (this.stopping || claimable.length === 0) return work;

    // Round-robin the starting job so that one large job cannot starve the others.
    this.rotation = (this.rotation + 1) % claimable.length;
    const ordered = [...claimable.slice(this.rotation), ...claimable.slice(0, this.rotation)];
    for (const job of ordered) {
      const batched = this.batches.handles(job);
      if (batched) {
        this.batches.submit(job);
        // Units a batch gave back past the job's deadline run here, online.
        if (!this.batches.runsLateUnitsOnline(job)) continue;
      }
      const free = this.pool.free();
      if (free <= 0) break;
      // A worker type cooling down after a rate limit gets no new claims until it ends.
      if (this.pool.coolDowns.remainingMs(job.worker_type) > 0) continue;
      const { job: fresh, units } = await repo.claimUnits(job.id, this.id, free, config.leaseMs, batched ? { afterDeadline: true } : undefined);
      for (const unit of units) this.pool.start(unit, fresh);
      // A job with no unit left to give (a TESTING job gives only its test unit), or that stopped
      // running, is not claimed from again until the next survey.
      const spent = fresh.status !== 'RUNNING' || fresh.pending <= units.length;
      if (spent && this.lastSurvey) this.lastSurvey.claimable = this.lastSurvey.claimable.filter((j) => j !== job);
    }
    return work;
  }

  /**
   * The last survey, while it is fresh and units are running: a busy executor
   * passes again each time a slot frees, and reading the active jobs (and the
   * shared cool-downs) for every unit cost more than the claim. A claim reads its
   * job's row again under the lock, so a job paused or cancelled meanwhile gives no
   * units; its running units are aborted by the next survey, at most
   * SURVEY_REUSE_MS later.
   */
  private recentSurvey(now: number): { work: boolean; claimable: JobRow[] } | undefined {
    const last = this.lastSurvey;
    if (!last || this.pool.size === 0 || now - last.at >= SURVEY_REUSE_MS) return undefined;
    return { work: true, claimable: last.claimable };
  }

  /**
   * Reads the active jobs: aborts units of jobs that left the active states,
   * finishes jobs with nothing left, resumes quota pauses that are due, and
   * says whether there is work and which jobs have units to claim.
   */
  private async survey(now: number): Promise<{ work: boolean; claimable: JobRow[] }> {
    const { repo } = this.deps;
    const jobs = await repo.activeJobs();
    const byId = new Map(jobs.map((j) => [j.id, j]));
    for (const jobId of this.pool.runningJobIds()) {
      const job = byId.get(jobId);
      // A job that left the active states (cancelled) takes its running units with it.
      if (!job) this.pool.abortJob(jobId);
      else if (this.seenStops.get(jobId) !== job.unit_stops) {
        // A person stopped a unit of this job somewhere: stop the attempts this executor no longer holds.
        this.pool.abortStopped(jobId, await repo.heldAttempts(jobId, this.id));
        this.seenStops.set(jobId, job.unit_stops);
      }
    }
    for (const jobId of this.seenStops.keys()) if (!byId.has(jobId)) this.seenStops.delete(jobId);
    for (const jobId of this.lacks.keys()) if (!byId.has(jobId)) this.lacks.delete(jobId);

    let work = this.pool.size > 0;
    const claimable: JobRow[] = [];
    for (const job of jobs) {
      if (job.status === 'RUNNING') {
        if (outOfWork(job)) {
          await repo.finishJobIfDone(job.id);
          continue;
        }
        // A job that needs a variable this executor lacks is not its work: another runs it.
        if (this.lacksNeedsOf(job)) continue;
        work = true;
        if (job.pending > 0) claimable.push(job);
      } else if (waitsForAutoResume(job)) {
        // A quota pause that the user allowed to end by itself: stay alive until the reset.
        work = true;
        if (autoResumeDue(job, now)) await repo.moveJob(job.id, 'resume', { reason: autoResumeReason(job), patch: { resume_at: null } }).catch(() => undefined);
      } else if (job.status === 'TESTING' && job.test_unit_id !== null && !this.lacksNeedsOf(job)) {
        const test = await repo.getUnit(job.test_unit_id);
        if (test && (test.status === 'PENDING' || test.status === 'RUNNING')) {
          work = true;
          if (test.status === 'PENDING') claimable.push(job);
        }
      }
    }
    return { work, claimable };
  }

  /**
   * Whether the job needs a variable (jobs.env_needs) this executor was started
   * without. Its units would fail (a missing key is auth_failed), so they are
   * left to an executor that has it, which `abp start` launches; said once per job.
   */
  private lacksNeedsOf(job: JobRow): boolean {
    if (!job.env_needs) return false;
    let judged = this.lacks.get(job.id);
    if (judged?.needs !== job.env_needs) {
      judged = { needs: job.env_needs, missing: missingFrom({ env_names: this.envNames }, storedNeeds(job)) };
      this.lacks.set(job.id, judged);
      if (judged.missing.length > 0) this.log(`job ${job.id} needs ${judged.missing.join(', ')}, which this executor was started without: leaving its units to another executor`);
    }
    return judged.missing.length > 0;
  }

  /**
   * Asks each job type to settle its jobs that ended and are not settled yet
   * (a sync run's pair state). Idempotent across executors; a failure is logged
   * and tried again on the next pass, and never fails the pass.
   */
  private async settleEnded(): Promise<void> {
    for (const jobType of this.deps.jobTypes) {
      if (!jobType.settleEnded) continue;
      try {
        const settled = await jobType.settleEnded();
        if (settled.length > 0) this.log(`settled the end of ${jobType.type} jobs ${settled.join(', ')}`);
        this.settleErrors.delete(jobType.type);
      } catch (err) {
        const message = errorMessage(err);
        if (this.settleErrors.get(jobType.type) !== message) this.log(`settling ended ${jobType.type} jobs failed: ${message}`);
        this.settleErrors.set(jobType.type, message);
      }
    }
  }

  /**
   * Kills process groups that a dead executor on this host left behind, so an
   * expired unit's old attempt cannot keep running beside its retry.
   */
  private reap(expired: UnitRow[]): void {
    const host = hostname();
    for (const unit of expired) {
      const [ownerHost, ownerPid] = (unit.lease_owner ?? '').split(':');
      if (ownerHost !== host || unit.worker_pid === null) continue;
      if (ownerPid && processAlive(Number(ownerPid))) continue;
      if (killGroup(unit.worker_pid, 'SIGKILL')) this.log(`reaped process group ${unit.worker_pid} of unit ${unit.id}`);
    }
  }
}
