import type { Counts } from './job-store.js';
import type { ExecutorRow } from './schema.js';
import type { Db, Transactions } from './tx.js';

/** Unit counters, cost and tokens summed over every job. */
export type Totals = Counts & { cost_usd: number; input_tokens: number; output_tokens: number };

/**
 * What the executors share beside jobs and units: their heartbeat rows,
 * rate-limit cool-downs, and what the HTTP front end reads about the whole
 * fleet (totals, migrations, one-time dashboard links).
 */
export class FleetStore {
  private readonly db: Db;

  constructor(private readonly core: Transactions) {
    this.db = core.db;
  }

  // ---- rate-limit cool-downs, shared by every executor ------------------------

  /** Holds `workerType` back on every executor until `until` (never shortens a longer one). */
  async shareCoolDown(workerType: string, until: number): Promise<void> {
    const now = Date.now();
    await this.db
      .insertInto('cool_downs')
      .values({ worker_type: workerType, until, updated_at: now })
      .onConflict((oc) =>
        oc
          .column('worker_type')
          .doUpdateSet({ until, updated_at: now })
          .where('cool_downs.until', '<', until),
      )
      .execute();
  }

  /** Cool-downs still running, by worker type: epoch ms when each ends. */
  async activeCoolDowns(now: number): Promise<Map<string, number>> {
    const rows = await this.db.selectFrom('cool_downs').select(['worker_type', 'until']).where('until', '>', now).execute();
    return new Map(rows.map((r) => [r.worker_type, r.until]));
  }

  // ---- executors ------------------------------------------------------------

  /**
   * Registers an executor. `slot` is the launch slot it was started for
   * (claimLaunch), which it replaces: its own row first, so that the executors
   * table never looks empty in between.
   */
  async registerExecutor(row: ExecutorRow, slot?: string): Promise<void> {
    await this.db.insertInto('executors').values(row).execute();
    if (slot !== undefined && slot !== row.id) await this.db.deleteFrom('executors').where('id', '=', slot).execute();
  }

  /**
   * The one decision to launch an executor, atomic across every process on the
   * database. In a transaction serialised against every other claim (BEGIN
   * IMMEDIATE on SQLite, an advisory lock on PostgreSQL) it reads the live
   * executors (heartbeat fresher than `staleMs`) and calls `launch` with them;
   * when that starts an executor, it returns a row that stands for it (its pid,
   * a fresh heartbeat, the variables it has), inserted in the same transaction: a
   * launch slot. Every later claim sees the slot as a live executor, so of N
   * starts at once exactly one launches. The executor's own registration replaces
   * the slot (registerExecutor); a slot whose executor never registers goes stale
   * like any executor that stopped beating, and is pruned with them.
   *
   * `launch` runs inside the transaction and may run again if PostgreSQL retries
   * it: it must not start a second process then.
   */
  async claimLaunch(staleMs: number, launch: (live: ExecutorRow[]) => ExecutorRow | undefined): Promise<ExecutorRow | undefined> {
    return this.core.tx(async (t) => {
      await this.core.lockFleet(t);
      const live = await t.selectFrom('executors').selectAll().where('heartbeat_at', '>=', Date.now() - staleMs).execute();
      const slot = launch(live);
      if (slot) await t.insertInto('executors').values(slot).execute();
      return slot;
    });
  }

  /** Returns false when the executor has no row (it was pruned as stale). */
  async heartbeat(id: string): Promise<boolean> {
    const result = await this.db.updateTable('executors').set({ heartbeat_at: Date.now() }).where('id', '=', id).executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async unregisterExecutor(id: string): Promise<void> {
    await this.db.deleteFrom('executors').where('id', '=', id).execute();
  }

  /** Executors whose heartbeat is fresher than `staleMs`. Liveness is the heartbeat, never a bare PID. */
  async liveExecutors(staleMs: number): Promise<ExecutorRow[]> {
    return this.db
      .selectFrom('executors')
      .selectAll()
      .where('heartbeat_at', '>=', Date.now() - staleMs)
      .execute();
  }

  async pruneExecutors(staleMs: number): Promise<void> {
    await this.db
      .deleteFrom('executors')
      .where('heartbeat_at', '<', Date.now() - staleMs)
      .execute();
  }

  /** Every registered executor, fresh or stale (the heartbeat age is the metric). */
  async executors(): Promise<ExecutorRow[]> {
    return this.db.selectFrom('executors').selectAll().execute();
  }

  // ---- the HTTP front end: readiness, metrics, dashboard links ----------------

  /** Unit counters, cost and tokens summed over every job: one aggregate over the jobs table. */
  async totals(): Promise<Totals> {
    const row = await this.db
      .selectFrom('jobs')
      .select((eb) => [
        eb.fn.sum<number>('pending').as('pending'),
        eb.fn.sum<number>('running').as('running'),
        eb.fn.sum<number>('submitted').as('submitted'),
        eb.fn.sum<number>('succeeded').as('succeeded'),
        eb.fn.sum<number>('failed').as('failed'),
        eb.fn.sum<number>('cancelled').as('cancelled'),
        eb.fn.sum<number>('cost_usd').as('cost_usd'),
        eb.fn.sum<number>('input_tokens').as('input_tokens'),
        eb.fn.sum<number>('output_tokens').as('output_tokens'),
      ])
      .executeTakeFirst();
    const n = (v: unknown) => Number(v ?? 0);
    return {
      pending: n(row?.pending),
      running: n(row?.running),
      submitted: n(row?.submitted),
      succeeded: n(row?.succeeded),
      failed: n(row?.failed),
      cancelled: n(row?.cancelled),
      cost_usd: n(row?.cost_usd),
      input_tokens: n(row?.input_tokens),
      output_tokens: n(row?.output_tokens),
    };
  }

  /** The names of the migrations this database has run; a failed query means it is unreachable. */
  async executedMigrations(): Promise<string[]> {
    const rows = await this.db
      .withTables<{ kysely_migration: { name: string } }>()
      .selectFrom('kysely_migration')
      .select('name')
      .execute();
    return rows.map((r) => r.name);
  }

  async insertDashboardToken(tokenSha256: string, expiresAt: number): Promise<void> {
    await this.db.insertInto('dashboard_tokens').values({ token_sha256: tokenSha256, created_at: Date.now(), expires_at: expiresAt, used_at: null }).execute();
  }

  /** Spends a one-time token: true for exactly one caller, and only before it expires. */
  async consumeDashboardToken(tokenSha256: string, now: number): Promise<boolean> {
    const result = await this.db
      .updateTable('dashboard_tokens')
      .set({ used_at: now })
      .where('token_sha256', '=', tokenSha256)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    // Spent and expired tokens are useless; dropping them keeps the table small.
    await this.db.deleteFrom('dashboard_tokens').where('expires_at', '<', now - 24 * 3600 * 1000).execute();
    return Number(result.numUpdatedRows) === 1;
  }
}
