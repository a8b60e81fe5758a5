import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Item } from '../contracts/enumerator.js';
import type { Registry } from '../contracts/registry.js';
import type { UnitOutcome, Worker } from '../contracts/worker.js';
import { errorMessage } from '../domain/errors.js';
import type { AbpConfig } from '../config.js';
import type { PromptSynthesizer } from './prompt-synthesizer.js';
import type { ClaimedUnit, Repository } from '../store/repository.js';
import type { JobRow } from '../store/schema.js';
import { CoolDowns } from './cool-downs.js';
import { cachedEvent, cachedWrite, ResponseCache, type CachedResponse } from './response-cache.js';
import { checkOutput } from './output-schema.js';
import { itemPrompt } from './unit-prompt.js';
import { WorkerConfigs } from './worker-configs.js';
import { backoffMs, decide, retryAllowance } from './retry-policy.js';
import { writeManifest } from './synthesis.js';
import { SlidingWindowThrottle } from './throttle.js';
import { checkedOutcome, ConversationLimit } from './worker-boundary.js';
import { WriteBatch } from './write-batch.js';

export interface WorkerPoolDeps {
  repo: Repository;
  workers: Registry<Worker<any>>;
  synthesizer: PromptSynthesizer;
  config: AbpConfig;
  /** This executor's id: the lease owner of every unit the pool runs. */
  owner: string;
  log: (message: string) => void;
}

interface Running {
  unit: ClaimedUnit;
  controller: AbortController;
  done: Promise<void>;
  /** Why a person ended this attempt ('unit stopped', 'job ended'): its outcome was written for it, so the pool's own is refused. */
  endedBy: string | undefined;
  /** Lets units waiting on this unit's identical request look again: called once its outcome is written. */
  releaseCache: (() => void) | undefined;
}

/** One attempt of a unit: a unit stopped and put back to PENDING may be claimed again while its old attempt winds down. */
const key = (unit: ClaimedUnit): string => `${unit.id}:${unit.attempt}`;

/** Runs claimed units concurrently, up to a global capacity, and records their outcomes. */
export class WorkerPool {
  private readonly running = new Map<string, Running>();
  private readonly workDirs = new Set<number>();
  private wake: (() => void) | undefined;
  private woken = false;
  /** The executor has stopped and closes its store: an attempt that ends now writes nothing. */
  private closed = false;
  /** Rate-limit cool-downs per worker type, shared by every job in this executor. */
  readonly coolDowns: CoolDowns;
  /** RPM/TPM limits per worker type, shared by every job in this executor. */
  readonly throttle = new SlidingWindowThrottle();
  /** Outcomes and pids, committed together. */
  private readonly writes: WriteBatch;
  /** Each job's parsed worker_config (shared with the batch runner). */
  readonly configs = new WorkerConfigs();
  /** Answers of earlier identical requests (jobs with `cache` on), and the dedupe of those running at once. */
  readonly cache: ResponseCache;

  constructor(
    private readonly deps: WorkerPoolDeps,
    readonly capacity: number,
  ) {
    const { retryBaseMs, retryMaxMs } = deps.config;
    this.writes = new WriteBatch(deps.repo, deps.owner);
    this.cache = new ResponseCache(deps.repo);
    this.coolDowns = new CoolDowns((strikes) => backoffMs(strikes, { baseMs: retryBaseMs, maxMs: retryMaxMs }));
  }

  get size(): number {
    return this.running.size;
  }

  free(): number {
    return this.capacity - this.running.size;
  }

  /** Resolves when any running unit finishes, or after `ms`. */
  async waitForChange(ms: number): Promise<void> {
    // A wake-up (a work notification) that came while the executor was busy.
    if (this.woken) {
      this.woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wake = undefined;
  }

  /** Ends the current (or, if none, the next) waitForChange at once. */
  wakeNow(): void {
    if (this.wake) this.wake();
    else this.woken = true;
  }

  /** The units this pool is running or still recording: the leases the heartbeat extends. */
  unitIds(): number[] {
    return [...new Set([...this.running.values()].map((r) => r.unit.id))];
  }

  runningJobIds(): Set<number> {
    return new Set([...this.running.values()].map((r) => r.unit.job_id));
  }

  /** Aborts every running unit of a job that left the active states (cancelled, or ended by a person's stop). */
  abortJob(jobId: number): void {
    for (const r of this.running.values()) {
      if (r.unit.job_id !== jobId) continue;
      r.endedBy = 'its job ended';
      r.controller.abort('cancelled');
    }
  }

  abortAll(reason: string): void {
    for (const r of this.running.values()) r.controller.abort(reason);
  }

  /**
   * Aborts the running attempts of a job that this executor no longer holds (a
   * person stopped them): `held` maps each unit it still holds to that attempt.
   */
  abortStopped(jobId: number, held: ReadonlyMap<number, number>): void {
    for (const r of this.running.values()) {
      if (r.unit.job_id !== jobId || held.get(r.unit.id) === r.unit.attempt) continue;
      r.endedBy = 'the unit was stopped';
      r.controller.abort('stopped');
    }
  }

  /**
   * The executor has stopped (its drain is over) and is about to close its store.
   * An attempt still running now (one that did not end when it was stopped: a
   * process that holds its output open) writes no outcome when it ends: its lease
   * expires and the unit runs again, as if the executor had died. Without this it
   * retried against the closed store for a minute, and kept the process alive.
   */
  close(): void {
    this.closed = true;
  }

  /** Waits for running units to finish, up to `ms`; returns whether all did. */
  async drain(ms: number): Promise<boolean> {
    const all = Promise.all([...this.running.values()].map((r) => r.done)).then(() => true);
    const timeout = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms).unref());
    return Promise.race([all, timeout]);
  }

  start(unit: ClaimedUnit, job: JobRow): void {
    const controller = new AbortController();
    const entry: Running = { unit, controller, done: Promise.resolve(), endedBy: undefined, releaseCache: undefined };
    entry.done = this.execute(unit, job, controller, entry)
      .catch((err) => this.deps.log(`unit ${unit.id}: could not record its outcome: ${errorMessage(err)}`))
      .finally(() => {
        entry.releaseCache?.();
        this.running.delete(key(unit));
        // A slot is free: claim again now, even if the executor is mid-pass.
        this.wakeNow();
      });
    this.running.set(key(unit), entry);
  }

  private workDir(job: JobRow): string {
    const dir = join(this.deps.config.home, 'work', `job-${job.id}`);
    if (!this.workDirs.has(job.id)) {
      mkdirSync(dir, { recursive: true });
      this.workDirs.add(job.id);
    }
    return dir;
  }

  private async execute(unit: ClaimedUnit, job: JobRow, controller: AbortController, entry: Running): Promise<void> {
    const { repo, synthesizer, config } = this.deps;
    const outputSchema = job.output_schema ? (JSON.parse(job.output_schema) as Record<string, unknown>) : null;
    let prompt: string | null = null;
    let sharedPrefix = 0;
    let outcome: UnitOutcome;
    let timer: NodeJS.Timeout | undefined;
    let ended = false;
    // The timeout is decided after the event loop's next poll, not in the timer itself: when the
    // loop was held up (a long synchronous write, a starved host), the timer and the unit's exit are
    // both due at once, and timers run first. An exit already waiting is read first, and wins.
    const timeUp = () =>
      setImmediate(() => {
        if (!ended) controller.abort('timeout');
      });
    let started = false;
    const conversation = new ConversationLimit();
    const begun = Date.now();
    let cacheKey: string | null = null;
    let hit: CachedResponse | undefined;
    try {
      const worker = this.deps.workers.get(job.worker_type);
      let item = JSON.parse(unit.payload) as Item;
      if (unit.kind === 'synthesis') {
        // The gather step: every unit's outcome, by file path, plus a summary in the prompt.
        const gathered = await writeManifest(repo, job, this.workDir(job));
        item = { ...gathered };
        prompt = synthesizer.renderSynthesis(job, gathered);
      } else {
        ({ prompt, shared_prefix_chars: sharedPrefix } = itemPrompt(synthesizer, job, unit, item, outputSchema));
      }
      const workerConfig = this.configs.of(worker, job);
      cacheKey = this.cache.keyFor(job, worker, workerConfig, prompt, outputSchema, unit.kind);
      if (cacheKey !== null) {
        try {
          const turn = await this.cache.acquire(cacheKey, controller.signal);
          hit = turn.hit;
          entry.releaseCache = turn.release;
        } catch (err) {
          if (controller.signal.aborted) throw err;
          // The answer may be cached, but a request costs less than a failed unit.
          this.deps.log(`unit ${unit.id}: response cache lookup failed (${errorMessage(err)}); asking the worker`);
        }
      }
      if (hit) {
        // Answered from the cache: no request, so no cool-down, throttle or timeout.
        outcome = { status: 'succeeded', output: hit.output };
      } else {
        // A unit claimed just before its worker type hit a rate limit waits it out, unspent.
        await this.coolDowns.wait(job.worker_type, controller.signal);
        // The timeout covers the work, not the cool-down.
        timer = setTimeout(timeUp, job.timeout_seconds * 1000);
        const returned: unknown = await worker.run(
          {
            unit_id: unit.id,
            job_id: job.id,
            job_name: job.name,
            attempt: unit.attempt,
            item,
            prompt,
            work_dir: this.workDir(job),
            output_schema: outputSchema,
            shared_prefix_chars: sharedPrefix,
            ...(job.max_cost_per_unit_usd !== null ? { max_cost_usd: job.max_cost_per_unit_usd } : {}),
            ...(unit.attempt > 1 ? { previous: { error_kind: unit.error_kind, session_id: unit.session_id } } : {}),
          },
          workerConfig,
          {
            signal: controller.signal,
            onProcess: (pid) => {
              // The timeout covers the process's own run, not its wait to be started (the
              // shell worker's fork server queues spawns under load): it restarts with the
              // first process. Without this, a loaded host timed out units that ran for 10 ms.
              if (!started) {
                started = true;
                clearTimeout(timer);
                if (!controller.signal.aborted) timer = setTimeout(timeUp, job.timeout_seconds * 1000);
              }
              this.writes.pid(unit.id, unit.attempt, pid);
            },
            onEvent: (event) => {
              const row = conversation.take(event);
              if (row) this.writes.event({ unit_id: unit.id, job_id: unit.job_id, attempt: unit.attempt, ...row, created_at: Date.now() });
            },
            throttle: this.throttle,
          },
        );
        const checked = checkedOutcome(returned);
        if (checked.dropped.length > 0) this.deps.log(`unit ${unit.id}: left out of its outcome: ${checked.dropped.join('; ')}`);
        outcome = checked.outcome;
        if (outputSchema && unit.kind !== 'synthesis') outcome = checkOutput(outcome, outputSchema);
      }
    } catch (err) {
      if (controller.signal.aborted) {
        // Aborted while waiting for a cool-down or the throttle: the unit goes back unspent.
        outcome = { status: 'cancelled', error: `stopped (${String(controller.signal.reason)}) before it started` };
      } else {
        // A worker that throws has a bug or hit an infrastructure fault; the attempt is retried.
        outcome = { status: 'failed', kind: 'retryable', error: `worker error: ${errorMessage(err)}` };
      }
    } finally {
      ended = true;
      clearTimeout(timer);
    }
    if (hit && cacheKey !== null) {
      // The source passed the same output_schema (it is in the key): its answer is written as is, never through decide.
      const write = cachedWrite(hit, cacheKey, prompt, Date.now() - begun);
      this.writes.event({ unit_id: unit.id, job_id: unit.job_id, attempt: unit.attempt, ...cachedEvent(hit, cacheKey), created_at: Date.now() });
      await this.writeOutcome(unit, () => this.writes.outcome(unit, write), entry);
      return;
    }
    if (outcome.status === 'failed' && outcome.kind === 'rate_limited') {
      const ms = this.coolDowns.hit(job.worker_type, outcome.retry_after_ms);
      // Every executor on the database holds this worker type back too.
      await repo.shareCoolDown(job.worker_type, Date.now() + ms).catch(() => undefined);
      outcome = { ...outcome, retry_after_ms: ms };
      this.deps.log(`worker type ${job.worker_type} rate limited (unit ${unit.id}): cooling down ${ms} ms`);
      await repo.appendEvent(job.id, 'cool_down', { worker_type: job.worker_type, unit_id: unit.id, ms, error: outcome.error.slice(0, 300) }).catch(() => undefined);
    } else if (outcome.status === 'succeeded') {
      this.coolDowns.recovered(job.worker_type);
    }
    const decision = decide(outcome, unit.failures, {
      // `job` is the row as it was claimed: TESTING means this is the test unit.
      maxRetries: retryAllowance(job),
      baseMs: config.retryBaseMs,
      maxMs: config.retryMaxMs,
    });
    decision.write.prompt = prompt;
    // A fresh answer of a job with the cache on answers later identical requests.
    if (cacheKey !== null && decision.write.next === 'SUCCEEDED') {
      decision.write.cache_key = cacheKey;
      decision.write.cached_from = null;
    }
    const cut = conversation.end();
    if (cut) this.writes.event({ unit_id: unit.id, job_id: unit.job_id, attempt: unit.attempt, ...cut, created_at: Date.now() });
    await this.writeOutcome(unit, () => this.writes.outcome(unit, decision.write), entry);
  }

  /**
   * Writes an outcome, retrying with backoff while the database is unreachable:
   * the unit keeps its slot (so the executor claims nothing new) and its lease is
   * extended again as soon as heartbeats get through. After a lease's worth of
   * trying (and at least a minute) it gives up and lets the lease expire: another
   * executor then runs the unit again, and a late write would be fenced out anyway.
   */
  private async writeOutcome(unit: ClaimedUnit, write: () => Promise<boolean>, entry: Running): Promise<void> {
    const giveUpAt = Date.now() + Math.max(60_000, 4 * this.deps.config.leaseMs);
    for (let attempt = 1; ; attempt++) {
      if (this.closed) {
        this.deps.log(`unit ${unit.id}: attempt ${unit.attempt} ended after its executor stopped; its outcome is not written, its lease will expire and it runs again`);
        return;
      }
      try {
        const written = await write();
        if (!written && entry.endedBy) this.deps.log(`unit ${unit.id}: attempt ${unit.attempt} was stopped by a person (${entry.endedBy}); its processes were ended`);
        else if (!written) this.deps.log(`unit ${unit.id}: attempt ${unit.attempt} lost its lease; its outcome was refused`);
        if (attempt > 1) this.deps.log(`unit ${unit.id}: outcome written after ${attempt} tries`);
        return;
      } catch (err) {
        if (Date.now() >= giveUpAt) {
          this.deps.log(`unit ${unit.id}: giving up on its outcome (${errorMessage(err)}); its lease will expire and it runs again`);
          return;
        }
        const wait = Math.min(100 * 2 ** attempt, 5000);
        if (attempt === 1 || wait === 5000) this.deps.log(`unit ${unit.id}: cannot write its outcome (${errorMessage(err)}); retrying`);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }
}
