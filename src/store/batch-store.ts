import { sql } from 'kysely';
import type { EventStore } from './event-store.js';
import type { JobStore } from './job-store.js';
import type { BatchRow, UnitRow } from './schema.js';
import type { Db, Transactions } from './tx.js';
import { applyFencedMoves, applyUnitMove, moveDeltas } from './unit-moves.js';
import { ONLINE_AFTER_BATCH, outOfWork } from '../domain/job-rules.js';

/*
 * The ledger of provider batches (llm_batches). A batch row is written, and its
 * units moved from RUNNING (their claim's lease) to SUBMITTED (held by the row),
 * in one transaction before the batch is posted; so a crash after the post leaves
 * a row that says which attempts it holds, and no lease expires under them. Any
 * executor polls an open row under the row's own lease, and harvests its results
 * through the fenced outcome write (UnitOutcomes, owner `{batch}`), so a result
 * is recorded once whichever executor reads it, and never for a newer attempt.
 */

/** A unit a batch holds, as the harvest needs it: its fence, its spent retries and its reservation. */
export type HeldUnit = Pick<UnitRow, 'id' | 'job_id' | 'attempt' | 'failures' | 'reserved_usd' | 'cache_key'>;

export class BatchStore {
  constructor(
    private readonly core: Transactions,
    private readonly jobs: JobStore,
    private readonly events: EventStore,
  ) {}

  /**
   * Writes a batch row (state `submitting`, leased to `owner`) and moves the
   * claimed attempts into it, fenced by attempt and lease, each with the prompt
   * it is sent with. Returns the row's id and the units that moved (an attempt
   * whose lease was lost meanwhile is left out, and must not be posted).
   */
  async open(
    jobId: number,
    api: string,
    ref: string,
    owner: string,
    leaseMs: number,
    units: readonly { id: number; attempt: number; prompt: string; cache_key: string | null }[],
  ): Promise<{ batchId: number; moved: number[] }> {
    return this.core.tx(async (t) => {
      const now = Date.now();
      const row = await t
        .insertInto('llm_batches')
        .values({ job_id: jobId, api, ref, state: 'submitting', requests: 0, lease_owner: owner, lease_expires_at: now + leaseMs, next_poll_at: now, created_at: now })
        .returning('id')
        .executeTakeFirstOrThrow();
      const batchId = Number(row.id);
      // Fenced like an outcome: only the attempts this executor still holds move into the batch.
      const held = await applyFencedMoves(
        t,
        'submit',
        units.map((u) => ({
          where: { jobId, unitId: u.id, attempt: u.attempt, leaseOwner: owner },
          set: { batch_id: batchId, prompt: u.prompt, cache_key: u.cache_key, lease_owner: null, lease_expires_at: null, worker_pid: null },
        })),
      );
      const moved = units.filter((_, i) => held[i]).map((u) => u.id);
      const deltas = moveDeltas('submit', moved.length);
      await t.updateTable('llm_batches').set({ requests: moved.length }).where('id', '=', batchId).execute();
      if (moved.length > 0) await this.jobs.bump(t, jobId, deltas);
      return { batchId, moved };
    });
  }

  /** The provider took the batch: its id is known, and the row is polled from now on. */
  async submitted(batchId: number, providerId: string, nextPollAt: number): Promise<void> {
    await this.core.tx(async (t) => {
      const row = await t
        .updateTable('llm_batches')
        .set({ state: 'submitted', provider_id: providerId, submitted_at: Date.now(), lease_owner: null, lease_expires_at: null, next_poll_at: nextPollAt })
        .where('id', '=', batchId)
        .where('state', '=', 'submitting')
        .returning(['job_id', 'requests'])
        .executeTakeFirst();
      if (row) await this.events.write(t, row.job_id, 'batch_submitted', { batch_id: batchId, provider_id: providerId, requests: row.requests });
    });
  }

  /**
   * Takes up to `limit` open batches that are due for a poll and whose lease is
   * free or expired (its executor died), leasing each to `owner`. A row is taken
   * by one executor at a time: the update re-checks the lease it read.
   */
  async leaseDue(owner: string, now: number, leaseMs: number, limit: number): Promise<BatchRow[]> {
    const due = await this.core.db
      .selectFrom('llm_batches')
      .selectAll()
      .where('state', '<>', 'ended')
      .where('next_poll_at', '<=', now)
      .where((eb) => eb.or([eb('lease_expires_at', 'is', null), eb('lease_expires_at', '<', now)]))
      .orderBy('next_poll_at')
      .limit(limit)
      .execute();
    const taken: BatchRow[] = [];
    for (const row of due) {
      const result = await this.core.db
        .updateTable('llm_batches')
        .set({ lease_owner: owner, lease_expires_at: now + leaseMs })
        .where('id', '=', row.id)
        .where('state', '<>', 'ended')
        .where((eb) => (row.lease_expires_at === null ? eb('lease_expires_at', 'is', null) : eb('lease_expires_at', '=', row.lease_expires_at)))
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) === 1) taken.push({ ...row, lease_owner: owner, lease_expires_at: now + leaseMs });
    }
    return taken;
  }

  /** Keeps this owner's lease on a batch it is working on (posting, harvesting). */
  async extendLease(batchId: number, owner: string, leaseMs: number): Promise<boolean> {
    const r = await this.core.db
      .updateTable('llm_batches')
      .set({ lease_expires_at: Date.now() + leaseMs })
      .where('id', '=', batchId)
      .where('lease_owner', '=', owner)
      .where('state', '<>', 'ended')
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** A poll that found the batch still processing (or failed to reach the provider): the counts, and the next poll. */
  async polled(batchId: number, owner: string, patch: { counts?: Record<string, number>; error?: string | null; cancel_requested?: boolean; run_online?: boolean }, nextPollAt: number): Promise<void> {
    await this.core.db
      .updateTable('llm_batches')
      .set({
        lease_owner: null,
        lease_expires_at: null,
        next_poll_at: nextPollAt,
        ...(patch.counts ? { counts: JSON.stringify(patch.counts) } : {}),
        ...(patch.error !== undefined ? { error: patch.error } : {}),
        ...(patch.cancel_requested ? { cancel_requested: 1 } : {}),
        ...(patch.run_online ? { run_online: 1 } : {}),
      })
      .where('id', '=', batchId)
      .where('lease_owner', '=', owner)
      .execute();
  }

  /** The units a batch still holds (SUBMITTED in it), for its harvest. */
  async held(batchId: number): Promise<HeldUnit[]> {
    return this.core.db
      .selectFrom('work_units')
      .select(['id', 'job_id', 'attempt', 'failures', 'reserved_usd', 'cache_key'])
      .where('batch_id', '=', batchId)
      .where('status', '=', 'SUBMITTED')
      .execute();
  }

  /**
   * Ends a batch: every unit it still holds goes back to PENDING without
   * spending a retry (never posted, expired, missing from the results; to run
   * online when the batch passed its deadline), or to CANCELLED when its job
   * was cancelled; their reservations are released. The
   * row records why, and the job ends if that was its last work.
   */
  async close(batchId: number, patch: { counts?: Record<string, number>; error?: string | null; available_at?: number }): Promise<number> {
    return this.core.tx(async (t) => {
      const row = await t.selectFrom('llm_batches').selectAll().where('id', '=', batchId).executeTakeFirst();
      if (!row || row.state === 'ended') return 0;
      const job = await this.core.lockJob(t, row.job_id);
      const cancelled = job.status === 'CANCELLED';
      const left = await t.selectFrom('work_units').select((eb) => eb.fn.sum<number>('reserved_usd').as('r')).where('batch_id', '=', batchId).where('status', '=', 'SUBMITTED').executeTakeFirst();
      const { moved, deltas } = await applyUnitMove(
        t,
        cancelled ? 'harvest_cancel' : 'harvest_release',
        { jobId: row.job_id, batchId },
        cancelled
          ? { reserved_usd: 0, finished_at: Date.now(), error: 'cancelled with its job while in a provider batch' }
          : { reserved_usd: 0, available_at: patch.available_at ?? 0, ...(row.run_online ? { error_kind: ONLINE_AFTER_BATCH, error: 'not answered by its batch before the deadline: runs online' } : {}) },
      );
      await t
        .updateTable('llm_batches')
        .set({
          state: 'ended',
          ended_at: Date.now(),
          lease_owner: null,
          lease_expires_at: null,
          ...(patch.counts ? { counts: JSON.stringify(patch.counts) } : {}),
          ...(patch.error !== undefined ? { error: patch.error } : {}),
        })
        .where('id', '=', batchId)
        .execute();
      const reserved = Number(left?.r ?? 0);
      const after = await this.jobs.bump(t, row.job_id, deltas, reserved ? { reserved_usd: sql`reserved_usd - ${reserved}` } : {});
      if (moved > 0 && !cancelled) await this.core.notifyWork(t, row.job_id);
      await this.events.write(t, row.job_id, 'batch_ended', {
        batch_id: batchId,
        provider_id: row.provider_id,
        ...(patch.counts ? { counts: patch.counts } : {}),
        ...(patch.error ? { error: patch.error.slice(0, 500) } : {}),
        ...(moved > 0 ? { [cancelled ? 'cancelled' : 'returned']: moved } : {}),
      });
      if (after.status === 'RUNNING' && outOfWork(after)) await this.jobs.finishIfDone(t, row.job_id);
      return moved;
    });
  }

  /** A job's batches that have not ended, newest first, and how many ended (for its status). */
  async ofJob(jobId: number): Promise<{ open: BatchRow[]; ended: number }> {
    const open = await this.core.db.selectFrom('llm_batches').selectAll().where('job_id', '=', jobId).where('state', '<>', 'ended').orderBy('id', 'desc').limit(50).execute();
    const ended = await this.core.db
      .selectFrom('llm_batches')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('job_id', '=', jobId)
      .where('state', '=', 'ended')
      .executeTakeFirstOrThrow();
    return { open, ended: Number(ended.n) };
  }

  /** Makes a job's open batches due for a poll now (its cancel reaches the provider at the next pass). */
  async pollSoon(t: Db, jobId: number): Promise<void> {
    await t.updateTable('llm_batches').set({ next_poll_at: 0 }).where('job_id', '=', jobId).where('state', '<>', 'ended').execute();
  }

  /** Whether any batch is open anywhere: an executor stays alive to poll it. */
  async anyOpen(): Promise<boolean> {
    return (await this.core.db.selectFrom('llm_batches').select('id').where('state', '<>', 'ended').limit(1).executeTakeFirst()) !== undefined;
  }
}
