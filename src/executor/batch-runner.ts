import { randomBytes } from 'node:crypto';
import { BatchApiError, customIdOf, parseCustomId, type BatchApi, type BatchItemResult, type BatchProgress } from '../contracts/batch.js';
import type { Item } from '../contracts/enumerator.js';
import type { Registry } from '../contracts/registry.js';
import type { UnitInput, Worker } from '../contracts/worker.js';
import type { AbpConfig } from '../config.js';
import { errorMessage } from '../domain/errors.js';
import { ONLINE_AFTER_BATCH } from '../domain/job-rules.js';
import type { ClaimedUnit, HeldUnit, OutcomeEntry, OutcomeWrite, Repository } from '../store/repository.js';
import type { BatchRow, JobRow } from '../store/schema.js';
import { checkOutput } from './output-schema.js';
import type { PromptSynthesizer } from './prompt-synthesizer.js';
import { backoffMs, decide, type RetrySettings } from './retry-policy.js';
import { cachedEvent, cachedWrite, type CachedResponse, type ResponseCache } from './response-cache.js';
import { itemPrompt } from './unit-prompt.js';
import type { WorkerConfigs } from './worker-configs.js';
import { checkedOutcome } from './worker-boundary.js';

export interface BatchRunnerDeps {
  repo: Repository;
  workers: Registry<Worker<any>>;
  synthesizer: PromptSynthesizer;
  config: AbpConfig;
  /** This executor's id: it leases the units it claims and the batch rows it works on. */
  owner: string;
  /** The executor's response cache (the pool's), for jobs with `cache` on. */
  cache: ResponseCache;
  /** Each job's parsed worker_config (the pool's). */
  configs: WorkerConfigs;
  log: (message: string) => void;
}

/** Outcomes are written in groups of this many, or this often, while a batch's results stream in. */
const HARVEST_GROUP = 500;
const HARVEST_FLUSH_MS = 250;
/** Units claimed per transaction while a batch is filled. */
const CLAIM_GROUP = 1000;

/**
 * Sends the units of jobs whose worker has a provider batch API (http-llm with
 * `batch: true`) through it, once the job runs (its test unit ran online):
 * claims them, writes the batch row and moves them into it (SUBMITTED) before
 * the post, posts, and records the provider's id. Every executor also polls the
 * open batches that are due, each under the batch row's own lease, and
 * harvests the results of an ended one through the fenced outcome write. The
 * ledger is the store's (src/store/batch-store.ts); the wire format is the
 * worker's (src/contracts/batch.ts).
 */
export class BatchRunner {
  private readonly tasks = new Map<string, Promise<void>>();
  private readonly stop = new AbortController();
  private lastPoll = 0;
  private anyOpen = false;

  constructor(private readonly deps: BatchRunnerDeps) {}

  private get cache(): ResponseCache {
    return this.deps.cache;
  }

  /** Batches being posted or worked on by this executor now. */
  get size(): number {
    return this.tasks.size;
  }

  /**
   * Whether a job's units go to its provider's batch API: a RUNNING job whose
   * worker config asks for it. Its synthesis unit (added once every item unit is
   * done) runs online: its prompt is gathered from the job's outputs when it runs.
   */
  handles(job: JobRow): boolean {
    if (job.status !== 'RUNNING' || job.synthesis_unit_id !== null) return false;
    const worker = this.deps.workers.get(job.worker_type);
    return worker.batch !== undefined && worker.batch.enabled(this.deps.configs.of(worker, job));
  }

  /** Whether a batch job's units may come back to run online (its config sets a deadline). */
  runsLateUnitsOnline(job: JobRow): boolean {
    const worker = this.deps.workers.get(job.worker_type);
    return worker.batch?.onlineAfterMs?.(this.deps.configs.of(worker, job)) !== undefined;
  }

  /** Starts posting a batch of the job's pending units, unless this executor is posting one for it already. */
  submit(job: JobRow): void {
    this.run(`submit:${job.id}`, () => this.post(job));
  }

  /**
   * Takes the open batches that are due for a poll (any executor's, once their
   * lease is free) and works on each in the background. Returns whether any
   * batch is open anywhere, so that an executor stays to poll it.
   */
  async pass(now: number): Promise<boolean> {
    const { repo, config } = this.deps;
    if (now - this.lastPoll >= Math.min(config.batchPollMs, 1000) && !this.stop.signal.aborted) {
      this.lastPoll = now;
      for (const row of await repo.batches.leaseDue(this.deps.owner, now, config.leaseMs, 10)) this.run(`batch:${row.id}`, () => this.work(row));
      this.anyOpen = await repo.batches.anyOpen();
    }
    return this.anyOpen || this.tasks.size > 0;
  }

  /** Stops posting and polling: a post in flight is left to its row's lease (another executor finds it). */
  async close(graceMs: number): Promise<void> {
    this.stop.abort('shutdown');
    const all = Promise.all(this.tasks.values());
    await Promise.race([all, new Promise((r) => setTimeout(r, graceMs).unref())]);
  }

  private run(key: string, task: () => Promise<void>): void {
    if (this.tasks.has(key)) return;
    const done = task()
      .catch((err) => this.deps.log(`${key.replace(':', ' ')}: ${errorMessage(err)}`))
      .finally(() => this.tasks.delete(key));
    this.tasks.set(key, done);
  }

  private retrySettings(job: JobRow): RetrySettings {
    return { maxRetries: job.max_retries, baseMs: this.deps.config.retryBaseMs, maxMs: this.deps.config.retryMaxMs };
  }

  /** Keeps this executor's lease on a batch row while `work` runs. */
  private async leased<T>(batchId: number, work: () => Promise<T>): Promise<T> {
    const { repo, config, owner } = this.deps;
    const timer = setInterval(() => void repo.batches.extendLease(batchId, owner, config.leaseMs).catch(() => undefined), config.heartbeatMs);
    try {
      return await work();
    } finally {
      clearInterval(timer);
    }
  }

  // ---- posting ---------------------------------------------------------------

  private async post(job: JobRow): Promise<void> {
    const { repo, synthesizer, config, owner } = this.deps;
    const worker = this.deps.workers.get(job.worker_type);
    const api = worker.batch as BatchApi<unknown>;
    const cfg = this.deps.configs.of(worker, job);
    const limits = api.limits(cfg);
    const claimed: ClaimedUnit[] = [];
    let fresh = job;
    while (claimed.length < limits.max_requests && !this.stop.signal.aborted) {
      const got = await repo.claimUnits(job.id, owner, Math.min(CLAIM_GROUP, limits.max_requests - claimed.length), config.leaseMs, { priceFactor: api.priceFactor });
      fresh = got.job;
      if (got.units.length === 0) break;
      claimed.push(...got.units);
    }
    if (claimed.length === 0) return;

    const outputSchema = fresh.output_schema ? (JSON.parse(fresh.output_schema) as Record<string, unknown>) : null;
    /** The batch's units; `text` is null for a unit whose identical request another unit of this batch carries. */
    const batch: { id: number; attempt: number; prompt: string; cache_key: string | null; text: string | null }[] = [];
    const leaders = new Set<string>();
    const done: OutcomeEntry[] = [];
    const hits: { unit_id: number; job_id: number; attempt: number; kind: string; data: string; created_at: number }[] = [];
    let bytes = 0;
    for (const unit of claimed) {
      const item = JSON.parse(unit.payload) as Item;
      const { prompt, shared_prefix_chars } = itemPrompt(synthesizer, fresh, unit, item, outputSchema);
      const key = this.cache.keyFor(fresh, worker, cfg, prompt, outputSchema, unit.kind);
      if (key !== null) {
        const hit = leaders.has(key) ? undefined : await this.cache.lookup(key);
        if (hit) {
          // Answered before, in this job or another: no request.
          done.push({ unit, owner, write: cachedWrite(hit, key, prompt, null) });
          hits.push({ unit_id: unit.id, job_id: job.id, attempt: unit.attempt, ...cachedEvent(hit, key), created_at: Date.now() });
          continue;
        }
        if (leaders.has(key)) {
          // The same request is in this batch already: this unit waits in the batch for its answer.
          batch.push({ id: unit.id, attempt: unit.attempt, prompt, cache_key: key, text: null });
          continue;
        }
      }
      const input: UnitInput = { unit_id: unit.id, job_id: job.id, job_name: job.name, attempt: unit.attempt, item, prompt, work_dir: '', output_schema: outputSchema, shared_prefix_chars };
      const text = api.encode(cfg, { custom_id: customIdOf(unit.id, unit.attempt), unit: input });
      const size = Buffer.byteLength(text) + 1;
      if (batch.length > 0 && bytes + size > limits.max_bytes) {
        // Past the byte limit: back unspent, for the next batch.
        done.push({ unit, owner, write: { next: 'PENDING', spent: false } });
        continue;
      }
      bytes += size;
      if (key !== null) leaders.add(key);
      batch.push({ id: unit.id, attempt: unit.attempt, prompt, cache_key: key, text });
    }
    if (done.length > 0) await repo.recordOutcomes(done, [], hits);
    if (batch.length === 0) return;

    const ref = `abp-${job.id}-${randomBytes(8).toString('hex')}`;
    const opened = await repo.batches.open(job.id, api.provider(cfg), ref, owner, config.leaseMs, batch);
    const moved = new Set(opened.moved);
    const texts = batch.filter((b) => moved.has(b.id) && b.text !== null).map((b) => b.text as string);
    if (texts.length === 0) {
      await repo.batches.close(opened.batchId, { error: 'no claimed unit was still held when the batch was written' });
      return;
    }
    const createdAt = Date.now();
    await this.leased(opened.batchId, async () => {
      try {
        const { provider_id } = await api.post(cfg, texts, ref, this.stop.signal);
        await repo.batches.submitted(opened.batchId, provider_id, Date.now() + config.batchPollMs);
        this.deps.log(`job ${job.id}: posted batch ${opened.batchId} (${provider_id}) of ${texts.length} requests`);
      } catch (err) {
        // Stopped mid-post: the provider may have the batch. The row's lease expires and
        // whichever executor takes it looks for the batch by its ref before giving its units back.
        if (this.stop.signal.aborted) return;
        const e = err instanceof BatchApiError ? err : new BatchApiError(errorMessage(err), 'retryable');
        // A post that failed on the way may still have reached the provider: look before giving up.
        if (e.kind === 'retryable') {
          const found = await api.find(cfg, ref, createdAt, this.stop.signal).catch(() => undefined);
          if (found) {
            await repo.batches.submitted(opened.batchId, found, Date.now() + config.batchPollMs);
            return;
          }
        }
        await this.postFailed(job, opened.batchId, e);
      }
    });
  }

  /** The provider refused the post: the units go back unspent; a refusal every unit would meet pauses the job. */
  private async postFailed(job: JobRow, batchId: number, e: BatchApiError): Promise<void> {
    const { repo, config } = this.deps;
    const wait = e.retry_after_ms ?? backoffMs(1, { baseMs: config.retryBaseMs, maxMs: config.retryMaxMs });
    await repo.batches.close(batchId, { error: `posting the batch failed (${e.kind}): ${e.message}`, available_at: Date.now() + wait });
    this.deps.log(`job ${job.id}: posting batch ${batchId} failed (${e.kind}): ${e.message}`);
    if (e.kind === 'rate_limited') {
      await repo.shareCoolDown(job.worker_type, Date.now() + wait).catch(() => undefined);
    } else if (e.kind === 'auth_failed' || e.kind === 'quota_exhausted' || e.kind === 'permanent') {
      const reason = e.kind === 'permanent' ? `batch_refused: ${e.message}` : `${e.kind}: ${e.message}`;
      await repo.moveJob(job.id, 'pause', { reason: reason.slice(0, 500) }).catch(() => undefined);
    }
  }

  // ---- polling and harvesting ----------------------------------------------

  private async work(row: BatchRow): Promise<void> {
    const { repo, config, owner } = this.deps;
    const nextPoll = () => Date.now() + config.batchPollMs;
    await this.leased(row.id, async () => {
      const job = await repo.requireJob(row.job_id);
      const worker = this.deps.workers.get(job.worker_type);
      const api = worker.batch as BatchApi<unknown> | undefined;
      if (!api) {
        await repo.batches.close(row.id, { error: `worker ${job.worker_type} has no batch API` });
        return;
      }
      const cfg = this.deps.configs.of(worker, job);
      const signal = this.stop.signal;
      try {
        const providerId = row.state === 'submitting' ? await this.recover(row, api, cfg) : row.provider_id;
        if (!providerId) return;
        let cancelRequested = row.cancel_requested === 1;
        if (job.status === 'CANCELLED' && !cancelRequested) {
          await api.cancel(cfg, providerId, signal);
          cancelRequested = true;
          this.deps.log(`job ${job.id}: asked the provider to cancel batch ${row.id} (${providerId}); results that still come are recorded`);
        }
        const progress = await api.poll(cfg, providerId, signal);
        if (progress.state === 'processing') {
          // Past the job's deadline: cancel it; what it has not answered runs online.
          const deadline = api.onlineAfterMs?.(cfg);
          const late = deadline !== undefined && !cancelRequested && row.submitted_at !== null && Date.now() - Number(row.submitted_at) >= deadline;
          if (late) {
            await api.cancel(cfg, providerId, signal);
            this.deps.log(`batch ${row.id} (${providerId}) passed its deadline: cancelled; what it did not answer runs online`);
          }
          await repo.batches.polled(row.id, owner, { counts: progress.counts, error: null, cancel_requested: cancelRequested || late, run_online: late }, late ? Date.now() : nextPoll());
          return;
        }
        await this.harvest(row, providerId, job, api, cfg, progress);
      } catch (err) {
        if (signal.aborted) return;
        // The provider could not be reached, or answered oddly: poll again later. What was recorded stays recorded.
        this.deps.log(`batch ${row.id}: ${errorMessage(err)}; trying again at the next poll`);
        await repo.batches.polled(row.id, owner, { error: errorMessage(err).slice(0, 500) }, nextPoll());
      }
    });
  }

  /**
   * A row left `submitting`: its executor died between writing it and recording
   * the provider's id. Where the API names batches (OpenAI's metadata) the batch
   * is found again; otherwise its units run again at new attempts, and results
   * of a batch that did reach the provider are refused by their attempt.
   */
  private async recover(row: BatchRow, api: BatchApi<unknown>, cfg: unknown): Promise<string | null> {
    const { repo } = this.deps;
    const found = await api.find(cfg, row.ref, row.created_at, this.stop.signal);
    if (found) {
      await repo.batches.submitted(row.id, found, Date.now());
      this.deps.log(`batch ${row.id}: found ${found} at the provider by its ref after its poster stopped`);
      return found;
    }
    const why =
      found === null
        ? 'its executor stopped while posting it, and the provider has no batch by its ref: its units run again'
        : `its executor stopped between posting it and recording the provider's id, and ${api.provider(cfg)} keeps no name to find a batch by: its units run again at new attempts, and any results of that batch are refused by their attempt`;
    await repo.batches.close(row.id, { error: why });
    this.deps.log(`batch ${row.id}: ${why}`);
    return null;
  }

  /** Records an ended batch's results, fenced by attempt and batch, then gives back what it held without a result. */
  private async harvest(row: BatchRow, providerId: string, job: JobRow, api: BatchApi<unknown>, cfg: unknown, progress: BatchProgress): Promise<void> {
    const { repo } = this.deps;
    const held = new Map<number, HeldUnit>((await repo.batches.held(row.id)).map((u) => [u.id, u]));
    const outputSchema = job.output_schema ? (JSON.parse(job.output_schema) as Record<string, unknown>) : null;
    let group: OutcomeEntry[] = [];
    let flushedAt = Date.now();
    const flush = async () => {
      flushedAt = Date.now();
      if (group.length === 0) return;
      await repo.recordOutcomes(group);
      group = [];
    };
    let recorded = 0;
    const answers = new Map<string, CachedResponse>();
    try {
      for await (const result of api.results(cfg, providerId, this.stop.signal)) {
        const id = parseCustomId(result.custom_id);
        const unit = id ? held.get(id.unit_id) : undefined;
        // Another attempt's, already recorded, or not abp's: refused.
        if (!id || !unit || unit.attempt !== id.attempt) continue;
        held.delete(unit.id);
        const write = this.resultWrite(result, unit, job, outputSchema, row.run_online === 1);
        if (unit.cache_key !== null && write.next === 'SUCCEEDED') {
          // Answers later identical requests, and the units of this batch that wait for it.
          write.cache_key = unit.cache_key;
          write.cached_from = null;
          answers.set(unit.cache_key, { unit_id: unit.id, output: write.output ?? '', structured_output: write.structured_output ?? null });
        }
        group.push({ unit, owner: { batch: row.id }, write });
        recorded++;
        // A slow stream still shows progress, and a harvest cut short keeps what it recorded.
        if (group.length >= HARVEST_GROUP || Date.now() - flushedAt >= HARVEST_FLUSH_MS) await flush();
      }
      await flush();
      // Units that waited for an identical request's answer take it, at no cost.
      for (const unit of held.values()) {
        const answer = unit.cache_key === null ? undefined : answers.get(unit.cache_key);
        if (!answer || unit.cache_key === null) continue;
        held.delete(unit.id);
        // Its prompt was recorded when it went into the batch.
        group.push({ unit, owner: { batch: row.id }, write: { ...cachedWrite(answer, unit.cache_key, null, null), prompt: undefined } });
      }
      await flush();
    } catch (err) {
      if (!(err instanceof BatchApiError) || err.kind !== 'permanent') throw err;
      // The provider failed the whole batch (it never ran): each unit it held spends a retry.
      await flush();
      const retry = this.retrySettings(job);
      for (const unit of held.values()) group.push({ unit, owner: { batch: row.id }, write: decide({ status: 'failed', kind: 'retryable', error: `the provider failed the batch: ${err.message}` }, unit.failures, retry).write });
      await flush();
    }
    const returned = await repo.batches.close(row.id, { counts: progress.counts, error: null });
    this.deps.log(`batch ${row.id} (${providerId}) ended ${progress.provider_status}: ${recorded} results recorded${returned ? `, ${returned} units given back` : ''}`);
  }

  /** What one result writes: an outcome through the retry policy; an unfinished request runs again unspent. */
  private resultWrite(result: BatchItemResult, unit: HeldUnit, job: JobRow, outputSchema: Record<string, unknown> | null, online: boolean): OutcomeWrite {
    const cancelled = job.status === 'CANCELLED';
    if ('unfinished' in result) {
      const error = `the request was ${result.unfinished === 'expired' ? 'expired by the provider' : 'cancelled'} before it ran${online ? ', past the deadline: it runs online' : ''}`;
      // Past the deadline it runs online (the pool claims it); else in the next batch.
      return cancelled ? { next: 'CANCELLED', spent: false, error } : { next: 'PENDING', spent: false, available_at: 0, error, error_kind: online ? ONLINE_AFTER_BATCH : null };
    }
    let outcome = checkedOutcome(result.outcome).outcome;
    if (outputSchema) outcome = checkOutput(outcome, outputSchema);
    const { write } = decide(outcome, unit.failures, this.retrySettings(job));
    // A cancelled job runs nothing again: its unit ends with what came back.
    if (cancelled && write.next === 'PENDING') return { ...write, next: 'CANCELLED', spent: false, available_at: 0 };
    return write;
  }
}
