import { createHash } from 'node:crypto';
import type { JobType } from '../contracts/job-type.js';
import type { Provider, ProviderHealth, Snapshot } from '../contracts/provider.js';
import { AbpError, errorMessage } from '../domain/errors.js';
import type { JobSpec } from '../domain/job-spec.js';
import { isTerminalJob } from '../domain/states.js';
import type { ProviderConfig, SyncPair } from '../domain/sync-pair.js';
import { jobDetail } from '../wire/views.js';
import type { Repository } from '../store/repository.js';
import { SyncStore } from '../store/sync-store.js';
import { chunkUnits } from './chunks.js';
import { commitRun } from './commit.js';
import type { Side } from './pair-state.js';
import { plan, type Plan } from './planner.js';
import type { CheckpointRow } from '../store/sync-store.js';
import { bothAtOnce, readPair, type SideReport } from './side-reads.js';
import { openProvider, wholeFile } from './providers/index.js';

/** The job's prompt is its intent: the sync-apply worker hands it to the transform worker. */
export const SYNC_PROMPT_TEMPLATE = '{{intent}}';
import { SYNC_ENUMERATOR_TYPE as SYNC_ENUMERATOR, SYNC_WORKER_TYPE as SYNC_WORKER } from '../domain/sync-pair.js';
import { isoTime } from '../domain/iso-time.js';

/** Whether a raw spec asks for a sync job (it has a `sync` section). */
export function isSyncSpec(input: unknown): boolean {
  return input !== null && typeof input === 'object' && !Array.isArray(input) && (input as { sync?: unknown }).sync != null;
}

/** A pair's identity: its name, or a hash of where its two sides live (chunk sizes do not count). */
export function pairIdOf(pair: SyncPair): string {
  if (pair.pair) return pair.pair;
  const where = (p: ProviderConfig) => {
    const { apply_chunk_size: _ignored, ...rest } = p;
    return rest;
  };
  const text = JSON.stringify([where(pair.source), where(pair.target)]);
  return `pair-${createHash('sha256').update(text).digest('hex').slice(0, 12)}`;
}

function describe(p: ProviderConfig): string {
  return p.type === 'postgres' ? `postgres ${p.schema}.${p.table}` : p.type === 'sqlite' ? `sqlite ${p.path}#${p.table}` : `${p.type} ${p.path}`;
}

export interface PlanResult {
  pair_id: string;
  health: { source: ProviderHealth; target: ProviderHealth };
  plan: Plan;
  /** How each side was read: whole, or from its checkpoint (null: the target is down). */
  reads: { source: SideReport; target: SideReport | null };
  /** What the reads saw, staged by a real run (built on demand). */
  checkpoints: () => CheckpointRow[];
}

/**
 * The sync job type: health, snapshots, baselines, plan and guardrails at job
 * creation; the pair's state after the job ends. The Orchestrator calls it for
 * a spec with a `sync` section; everything else is the ordinary job flow. As a
 * JobType, its end (onEnded, settleEnded) is reached by the executors' passes
 * and by the Orchestrator's moves that end a job, from any front end.
 */
export class SyncJobs implements JobType {
  readonly type = 'sync';

  /** A spec with a `sync` section. */
  accepts(input: unknown): boolean {
    return isSyncSpec(input);
  }
  readonly store: SyncStore;

  constructor(private readonly repo: Repository) {
    this.store = new SyncStore(repo);
  }

  /**
   * Health-checks both sides, snapshots them and plans against the pair's
   * baselines. Writes nothing, except for a real run (`record`): a `sync_skipped`
   * event when a side's health stops it, `sync_failed` when a snapshot fails. A
   * dry run writes nothing at all.
   */
  async plan(pair: SyncPair, signal: AbortSignal, now = Date.now(), record = true): Promise<PlanResult> {
    const pairId = pairIdOf(pair);
    const source = openProvider(pair.source);
    const target = openProvider(pair.target);
    try {
      const health = { source: await source.health(), target: await target.health() };
      const skip = async (why: string, side: Side) => {
        if (record) await this.store.pairEvent('sync_skipped', { pair: pairId, side, health: health[side], reason: why });
        return new AbpError('conflict', `sync pair ${pairId}: ${why}; nothing was planned or written`, { details: { pair: pairId, side, health: health[side] } });
      };
      for (const side of ['source', 'target'] as const) {
        if (health[side].status === 'auth_failed') throw await skip(`the ${side} (${describe(pair[side])}) refused the credentials (auth_failed): ${health[side].details}`, side);
      }
      if (health.source.status === 'down') throw await skip(`the source (${describe(pair.source)}) is down: ${health.source.details}`, 'source');
      const targetDown = health.target.status === 'down';

      let reads: Awaited<ReturnType<typeof readPair>>;
      try {
        reads = await readPair(this.store, pairId, pair, { source, target: targetDown ? null : target }, signal);
      } catch (err) {
        if (record) await this.store.pairEvent('sync_failed', { pair: pairId, error: errorMessage(err) });
        throw new AbpError('enumeration_failed', `sync pair ${pairId}: ${errorMessage(err)}; no writes, and the baseline is unchanged`, { cause: err });
      }
      const { state, scope } = reads;
      const result = plan({ mode: pair.mode, source: reads.source, target: reads.target, state, options: pair.options, transform: pair.transform !== undefined, now, scope });
      return { pair_id: pairId, health, plan: result, reads: reads.reports, checkpoints: reads.checkpoints };
    } finally {
      await Promise.all([source.close(), target.close()]);
    }
  }

  /**
   * Applies the state of the pair's ended runs, and refuses to plan while a run
   * has not ended: its writes would be planned twice.
   */
  private async settleOpenRuns(pairId: string, strict: boolean): Promise<void> {
    for (const run of await this.store.openRuns(pairId)) {
      if (isTerminalJob(run.status as never)) await commitRun(this.repo, this.store, run.job_id);
      else if (strict) {
        throw new AbpError('conflict', `sync pair ${pairId}: job ${run.job_id} is ${run.status} and has not ended; wait for it, or cancel it, before planning again`, {
          details: { pair: pairId, job_id: run.job_id, status: run.status, next: { action: 'cancel', job_id: run.job_id } },
        });
      }
    }
  }

  /** A dry run (mode=plan, preview): the plan, and not one row written. */
  async preview(spec: JobSpec, options: { signal: AbortSignal }) {
    const { signal } = options;
    const pair = spec.sync as SyncPair;
    const result = await this.plan(pair, signal, Date.now(), false);
    const writes = result.plan.stage.filter((s) => s.op !== null);
    // The same top-level shape as a batch preview, so every front end can show it.
    return {
      name: spec.name,
      enumerator_type: SYNC_ENUMERATOR,
      worker_type: SYNC_WORKER,
      count: writes.length,
      items: writes.slice(0, 5).map((w) => ({ op: w.op, side: w.side, key: w.key })),
      first_prompt: null,
      skipped: null,
      approval: null,
      ...view(spec, result, { dry_run: true }),
    };
  }

  /** Plans and stores the job: one unit per chunk of writes, and the staged state changes. */
  async create(spec: JobSpec, signal: AbortSignal) {
    const pair = spec.sync as SyncPair;
    const pairId = pairIdOf(pair);
    await this.settleOpenRuns(pairId, true);
    const result = await this.plan(pair, signal);
    const { plan: p } = result;
    const units = chunkUnits(p.stage, {
      source: pair.source.apply_chunk_size ?? pair.options.apply_chunk_size,
      target: pair.target.apply_chunk_size ?? pair.options.apply_chunk_size,
    });
    const summary = planSummary(result);
    const job = await this.store.createRun({
      job: {
        type: 'sync',
        name: spec.name,
        user_intent: spec.user_intent,
        enumerator_type: SYNC_ENUMERATOR,
        enumerator_config: JSON.stringify({ pair_id: pairId, mode: pair.mode, source: pair.source, target: pair.target }),
        worker_type: SYNC_WORKER,
        worker_config: JSON.stringify({ pair_id: pairId, pair }),
        // A whole-file side is rewritten per chunk: two chunks at once would lose writes.
        max_workers: wholeFile(pair.source) || wholeFile(pair.target) ? 1 : spec.max_workers,
        max_retries: spec.max_retries,
        timeout_seconds: spec.timeout_seconds,
        output_schema: null,
        max_cost_usd: spec.max_cost_usd ?? null,
        post_processing_prompt: null,
        prompt_template: SYNC_PROMPT_TEMPLATE,
      },
      units,
      pair: { id: pairId, mode: pair.mode, source: JSON.stringify(pair.source), target: JSON.stringify(pair.target) },
      stage: p.stage.map((r) => ({ ...r, phantom: r.phantom ? 1 : 0 })),
      plan: summary,
      // Kept by the commit only if every write is confirmed: a run that holds writes back keeps none.
      checkpoints: p.settles ? result.checkpoints() : null,
      events: [
        { type: 'sync_plan', data: summary },
        ...p.events.map((e) => ({ type: 'sync_guard', data: { pair: pairId, ...e } })),
      ],
    });
    let row = job;
    if (units.length === 0) {
      // Nothing to write: nothing to test or approve. The run ends now and its observations become the baseline.
      await this.repo.moveJob(job.id, 'skip_test', { reason: 'nothing to write' });
      row = (await this.repo.finishJobIfDone(job.id)) ?? (await this.repo.requireJob(job.id));
      await this.onEnded(job.id);
    }
    return { ...jobDetail(row), ...view(spec, result, { dry_run: false }), units: units.length };
  }

  /** Applies an ended run's state and writes its `sync_summary` event; false when it was applied already, or the job has not ended. */
  async commit(jobId: number): Promise<boolean> {
    return commitRun(this.repo, this.store, jobId);
  }

  /** The job ended: the pair's state is saved and the `sync_summary` written, once (commitRun is idempotent). */
  async onEnded(jobId: number): Promise<void> {
    await commitRun(this.repo, this.store, jobId);
  }

  /** Saves the state of every run whose job has ended and is not saved yet (the executors' periodic pass). */
  async settleEnded(): Promise<number[]> {
    const settled: number[] = [];
    let failed: unknown;
    for (const jobId of await this.store.endedOpenRuns()) {
      try {
        if (await commitRun(this.repo, this.store, jobId)) settled.push(jobId);
      } catch (err) {
        // One run that cannot be saved does not hold the others back.
        failed ??= new AbpError('internal', `sync job ${jobId}: saving the pair's state failed: ${errorMessage(err)}`, { cause: err });
      }
    }
    if (failed) throw failed;
    return settled;
  }

  /** The run's closing summary (+adds ~updates −removes unresolved blocked), once its state is saved. */
  async summary(jobId: number): Promise<unknown> {
    const events = await this.repo.listEvents(jobId, 0, 100_000);
    const last = events.filter((e) => e.type === 'sync_summary').at(-1);
    return last ? (JSON.parse(last.data) as unknown) : null;
  }

  /** What a pair remembers: baseline sizes, tombstones, items failing or quarantined, recent runs. */
  async status(pairId: string) {
    await this.settleOpenRuns(pairId, false);
    const pair = await this.store.pair(pairId);
    if (!pair) throw new AbpError('not_found', `sync pair ${JSON.stringify(pairId)} does not exist; abp sync status lists the pairs`);
    const counts = await this.store.counts(pairId);
    const items = await this.store.items(pairId);
    const runs = await this.store.recentRuns(pairId, 10);
    const now = Date.now();
    return {
      pair_id: pairId,
      mode: pair.mode,
      source: JSON.parse(pair.source) as unknown,
      target: JSON.parse(pair.target) as unknown,
      baseline: { source: counts.baseline.source ?? 0, target: counts.baseline.target ?? 0 },
      tombstones: counts.tombstones,
      failing: items.filter((i) => i.failures > 0).map((i) => ({ key: i.key, failures: i.failures, last_error: i.last_error })),
      quarantined: items.filter((i) => i.quarantined_until !== null && Number(i.quarantined_until) > now).map((i) => ({ key: i.key, until: isoTime(Number(i.quarantined_until)) })),
      phantoms: items.filter((i) => i.phantoms > 0).map((i) => ({ key: i.key, readds: i.phantoms })),
      runs: runs.map((r) => ({ job_id: r.job_id, committed: r.committed_at !== null, plan: JSON.parse(r.plan) as unknown })),
    };
  }

  async pairs() {
    return (await this.store.listPairs()).map((p) => ({ pair_id: p.id, mode: p.mode, last_job_id: p.last_job_id }));
  }

  async reset(pairId: string): Promise<void> {
    await this.store.resetPair(pairId);
  }
}

function planSummary(r: PlanResult) {
  const c = r.plan.counts;
  return {
    pair: r.pair_id,
    first_run: r.plan.first_run,
    counts: c,
    text: `+${c.adds} ~${c.updates} −${c.removes} unresolved ${c.unresolved} blocked ${c.blocked}`,
    health: { source: r.health.source.status, target: r.health.target.status },
  };
}

const SHOWN = 50;

function view(spec: JobSpec, r: PlanResult, flags: { dry_run: boolean }) {
  const writes = r.plan.stage.filter((s) => s.op !== null);
  return {
    sync: {
      ...planSummary(r),
      dry_run: flags.dry_run,
      health: r.health,
      writes: writes.slice(0, SHOWN).map((w) => ({ op: w.op, side: w.side, key: w.key })),
      blocked: r.plan.blocked.slice(0, SHOWN),
      unresolved: r.plan.unresolved.slice(0, SHOWN),
      guards: r.plan.events,
      reads: r.reads,
      mode: (spec.sync as SyncPair).mode,
    },
  };
}

/** Both sides' snapshots at once (null for a target that is down); the first to fail stops the other. */
export async function snapshotBoth(source: Provider, target: Provider | null, signal: AbortSignal): Promise<{ source: Snapshot; target: Snapshot | null }> {
  return bothAtOnce((s) => source.snapshot(s), target ? (s) => target.snapshot(s) : null, signal);
}
