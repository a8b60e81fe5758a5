import type { Kysely } from 'kysely';
import { AbpError } from '../domain/errors.js';
import { TERMINAL_JOB_STATES } from '../domain/states.js';
import type { Db, Repository, UnitDraft } from './repository.js';
import type { Database, JobRow, NewJob } from './schema.js';

/**
 * The sync job type's tables (migration 003-sync), reached through the
 * Repository's transactions so that SQL stays in store/ and every write shares
 * the Repository's locking. Kysely only: the same code runs on SQLite and PostgreSQL.
 */
export interface SyncPairsTable {
  id: string;
  mode: string;
  source: string;
  target: string;
  last_job_id: number | null;
  created_at: number;
  updated_at: number;
}
export interface SyncBaselinesTable {
  pair_id: string;
  side: string;
  key: string;
  hash: string;
  observed: number;
}
export interface SyncTombstonesTable {
  pair_id: string;
  key: string;
  hash: string;
  side: string;
  deleted_at: number;
}
export interface SyncItemsTable {
  pair_id: string;
  key: string;
  failures: number;
  quarantined_until: number | null;
  phantoms: number;
  last_error: string | null;
  updated_at: number;
}
export interface SyncRunsTable {
  job_id: number;
  pair_id: string;
  plan: string;
  committed_at: number | null;
  created_at: number;
  /** The checkpoints this run's reads saw (JSON: CheckpointRow[]), kept by its commit only if the run left the pair at rest. */
  checkpoints: string | null;
}
export interface SyncCheckpointsTable {
  pair_id: string;
  side: string;
  /** The side's provider config with the pair's mode: a checkpoint of another config is never used. */
  fingerprint: string;
  /** The provider's checkpoint (JSON). */
  data: string;
  /** The side's baseline size when it was saved. */
  items: number;
}
export interface SyncStageTable {
  job_id: number;
  key: string;
  source_hash: string | null;
  target_hash: string | null;
  op: string | null;
  side: string | null;
  phantom: number;
}
type SyncTables = {
  sync_pairs: SyncPairsTable;
  sync_baselines: SyncBaselinesTable;
  sync_tombstones: SyncTombstonesTable;
  sync_items: SyncItemsTable;
  sync_runs: SyncRunsTable;
  sync_stage: SyncStageTable;
  sync_checkpoints: SyncCheckpointsTable;
};
type SyncDb = Kysely<Database & SyncTables>;

export type BaselineRow = Omit<SyncBaselinesTable, 'pair_id'>;
export type StageRowData = Omit<SyncStageTable, 'job_id'>;
export type ItemRow = Omit<SyncItemsTable, 'pair_id'>;
export type TombstoneRow = Omit<SyncTombstonesTable, 'pair_id'>;
export type CheckpointRow = Omit<SyncCheckpointsTable, 'pair_id'>;

/** Everything a finished run changes, applied in one transaction. */
export interface RunCommit {
  baselineSet: BaselineRow[];
  baselineDelete: { side: string; key: string }[];
  tombstoneSet: TombstoneRow[];
  tombstoneDelete: string[];
  items: ItemRow[];
  /** Tombstones older than this are dropped. */
  tombstonesBefore: number;
  summary: unknown;
  /** The pair's checkpoints from now on: they replace every one it had (none: the next run reads both sides whole). */
  checkpoints: CheckpointRow[];
}

/** Baseline rows per page of a streamed read, and keys per lookup of chosen keys. */
const BASELINE_PAGE = 5000;
const KEYS_PER_LOOKUP = 500;

/** Rows per multi-row insert: SQLite allows 32766 bound values, PostgreSQL 65535. */
const ROWS_PER_INSERT = 1000;

function sync(t: Db): SyncDb {
  return t.withTables<SyncTables>() as unknown as SyncDb;
}

export class SyncStore {
  constructor(private readonly repo: Repository) {}

  private read<T>(fn: (t: SyncDb) => Promise<T>): Promise<T> {
    return this.repo.tx((t) => fn(sync(t)));
  }

  async pair(id: string): Promise<SyncPairsTable | undefined> {
    return this.read((t) => t.selectFrom('sync_pairs').selectAll().where('id', '=', id).executeTakeFirst());
  }

  async listPairs(): Promise<SyncPairsTable[]> {
    return this.read((t) => t.selectFrom('sync_pairs').selectAll().orderBy('id').execute());
  }

  /**
   * The pair's remembered state, read in one transaction so that it is consistent. Baselines
   * are handed to `visit` a page at a time, never held as one list: every one, or only those
   * of `keys` (an incremental plan's).
   */
  async loadState(pairId: string, visit: (row: BaselineRow) => void, keys?: readonly string[]): Promise<{ tombstones: TombstoneRow[]; items: ItemRow[] }> {
    return this.read(async (t) => {
      const baselines = t.selectFrom('sync_baselines').select(['side', 'key', 'hash', 'observed']).where('pair_id', '=', pairId);
      if (keys) {
        // By side, so that each lookup is a probe of the primary key (pair_id, side, key).
        for (const side of ['source', 'target']) {
          for (let i = 0; i < keys.length; i += KEYS_PER_LOOKUP) {
            for (const row of await baselines.where('side', '=', side).where('key', 'in', keys.slice(i, i + KEYS_PER_LOOKUP)).execute()) visit(row);
          }
        }
      } else {
        for (const side of ['source', 'target']) {
          for (let after: string | null = null; ; ) {
            let page = baselines.where('side', '=', side);
            if (after !== null) page = page.where('key', '>', after);
            const rows = await page.orderBy('key').limit(BASELINE_PAGE).execute();
            for (const row of rows) visit(row);
            if (rows.length < BASELINE_PAGE) break;
            after = (rows.at(-1) as BaselineRow).key;
          }
        }
      }
      return {
        tombstones: await t.selectFrom('sync_tombstones').select(['key', 'hash', 'side', 'deleted_at']).where('pair_id', '=', pairId).execute(),
        items: await t.selectFrom('sync_items').select(['key', 'failures', 'quarantined_until', 'phantoms', 'last_error', 'updated_at']).where('pair_id', '=', pairId).execute(),
      };
    });
  }

  /** The pair's saved checkpoints, one per side at most. */
  async checkpoints(pairId: string): Promise<CheckpointRow[]> {
    return this.read((t) => t.selectFrom('sync_checkpoints').select(['side', 'fingerprint', 'data', 'items']).where('pair_id', '=', pairId).execute());
  }

  async items(pairId: string): Promise<ItemRow[]> {
    return this.read((t) =>
      t.selectFrom('sync_items').select(['key', 'failures', 'quarantined_until', 'phantoms', 'last_error', 'updated_at']).where('pair_id', '=', pairId).execute(),
    );
  }

  /** Counts for `abp sync status`: baseline sizes per side and live tombstones. */
  async counts(pairId: string): Promise<{ baseline: Record<string, number>; tombstones: number }> {
    return this.read(async (t) => {
      const rows = await t
        .selectFrom('sync_baselines')
        .select(['side', (eb) => eb.fn.countAll<number>().as('n')])
        .where('pair_id', '=', pairId)
        .groupBy('side')
        .execute();
      const tomb = await t.selectFrom('sync_tombstones').select((eb) => eb.fn.countAll<number>().as('n')).where('pair_id', '=', pairId).executeTakeFirst();
      return { baseline: Object.fromEntries(rows.map((r) => [r.side, Number(r.n)])), tombstones: Number(tomb?.n ?? 0) };
    });
  }

  /** Runs of the pair whose state is not applied yet, with their job's status. */
  async openRuns(pairId: string): Promise<{ job_id: number; status: string }[]> {
    return this.read((t) =>
      t
        .selectFrom('sync_runs')
        .innerJoin('jobs', 'jobs.id', 'sync_runs.job_id')
        .select(['sync_runs.job_id as job_id', 'jobs.status as status'])
        .where('sync_runs.pair_id', '=', pairId)
        .where('sync_runs.committed_at', 'is', null)
        .orderBy('sync_runs.job_id')
        .execute(),
    );
  }

  /** Jobs whose run has ended (COMPLETED, FAILED or CANCELLED) and whose state is not applied yet, oldest first. */
  async endedOpenRuns(limit = 100): Promise<number[]> {
    const rows = await this.read((t) =>
      t
        .selectFrom('sync_runs')
        .innerJoin('jobs', 'jobs.id', 'sync_runs.job_id')
        .select('sync_runs.job_id as job_id')
        .where('sync_runs.committed_at', 'is', null)
        .where('jobs.status', 'in', [...TERMINAL_JOB_STATES])
        .orderBy('sync_runs.job_id')
        .limit(limit)
        .execute(),
    );
    return rows.map((r) => Number(r.job_id));
  }

  async run(jobId: number): Promise<SyncRunsTable | undefined> {
    return this.read((t) => t.selectFrom('sync_runs').selectAll().where('job_id', '=', jobId).executeTakeFirst());
  }

  async stage(jobId: number): Promise<StageRowData[]> {
    return this.read((t) =>
      t.selectFrom('sync_stage').select(['key', 'source_hash', 'target_hash', 'op', 'side', 'phantom']).where('job_id', '=', jobId).execute(),
    );
  }

  async recentRuns(pairId: string, limit: number): Promise<SyncRunsTable[]> {
    return this.read((t) => t.selectFrom('sync_runs').selectAll().where('pair_id', '=', pairId).orderBy('job_id', 'desc').limit(limit).execute());
  }

  /**
   * Creates a sync job with its units, its run and its staged state changes in
   * one transaction. Unlike a batch job it may have no units: a pair already in
   * step still records what it observed.
   */
  async createRun(args: {
    job: Omit<NewJob, 'created_at' | 'updated_at' | 'status'>;
    units: UnitDraft[];
    pair: Omit<SyncPairsTable, 'created_at' | 'updated_at' | 'last_job_id'>;
    stage: StageRowData[];
    plan: unknown;
    events: { type: string; data: unknown }[];
    /** What the run's reads saw; its commit keeps them only if the run leaves the pair at rest. */
    checkpoints: CheckpointRow[] | null;
  }): Promise<JobRow> {
    return this.repo.tx(async (db) => {
      const t = sync(db);
      const now = Date.now();
      const id = await this.repo.insertJobIn(db, args.job, args.units, args.events, { empty: 'allow' });
      await t
        .insertInto('sync_pairs')
        .values({ ...args.pair, last_job_id: id, created_at: now, updated_at: now })
        .onConflict((oc) => oc.column('id').doUpdateSet({ mode: args.pair.mode, source: args.pair.source, target: args.pair.target, last_job_id: id, updated_at: now }))
        .execute();
      await t.insertInto('sync_runs').values({ job_id: id, pair_id: args.pair.id, plan: JSON.stringify(args.plan), committed_at: null, created_at: now, checkpoints: args.checkpoints && JSON.stringify(args.checkpoints) }).execute();
      for (let i = 0; i < args.stage.length; i += ROWS_PER_INSERT) {
        await t.insertInto('sync_stage').values(args.stage.slice(i, i + ROWS_PER_INSERT).map((r) => ({ ...r, job_id: id }))).execute();
      }
      return t.selectFrom('jobs').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    });
  }

  /** An event that belongs to no job (a pair skipped before any job existed). */
  async pairEvent(type: string, data: unknown): Promise<void> {
    await this.repo.appendEvent(null, type, data);
  }

  /**
   * Applies a finished run's state changes, once: the run is marked committed
   * in the same transaction, and a second caller (executors' passes and the
   * move that ended the job may race) changes nothing. Returns whether this call applied them.
   */
  async commitRun(jobId: number, pairId: string, c: RunCommit): Promise<boolean> {
    return this.repo.tx(async (db) => {
      const t = sync(db);
      const now = Date.now();
      const claimed = await t.updateTable('sync_runs').set({ committed_at: now }).where('job_id', '=', jobId).where('committed_at', 'is', null).executeTakeFirst();
      if (Number(claimed.numUpdatedRows) === 0) return false;
      for (const d of c.baselineDelete) {
        await t.deleteFrom('sync_baselines').where('pair_id', '=', pairId).where('side', '=', d.side).where('key', '=', d.key).execute();
      }
      for (let i = 0; i < c.baselineSet.length; i += ROWS_PER_INSERT) {
        await t
          .insertInto('sync_baselines')
          .values(c.baselineSet.slice(i, i + ROWS_PER_INSERT).map((r) => ({ ...r, pair_id: pairId })))
          .onConflict((oc) => oc.columns(['pair_id', 'side', 'key']).doUpdateSet((eb) => ({ hash: eb.ref('excluded.hash'), observed: eb.ref('excluded.observed') })))
          .execute();
      }
      for (const key of c.tombstoneDelete) await t.deleteFrom('sync_tombstones').where('pair_id', '=', pairId).where('key', '=', key).execute();
      for (const r of c.tombstoneSet) {
        await t
          .insertInto('sync_tombstones')
          .values({ ...r, pair_id: pairId })
          .onConflict((oc) => oc.columns(['pair_id', 'key']).doUpdateSet({ hash: r.hash, side: r.side, deleted_at: r.deleted_at }))
          .execute();
      }
      await t.deleteFrom('sync_tombstones').where('pair_id', '=', pairId).where('deleted_at', '<', c.tombstonesBefore).execute();
      for (const r of c.items) {
        await t
          .insertInto('sync_items')
          .values({ ...r, pair_id: pairId })
          .onConflict((oc) =>
            oc.columns(['pair_id', 'key']).doUpdateSet({ failures: r.failures, quarantined_until: r.quarantined_until, phantoms: r.phantoms, last_error: r.last_error, updated_at: r.updated_at }),
          )
          .execute();
      }
      // Items back to health need no row.
      await t.deleteFrom('sync_items').where('pair_id', '=', pairId).where('failures', '=', 0).where('phantoms', '=', 0).where('quarantined_until', 'is', null).execute();
      await t.deleteFrom('sync_stage').where('job_id', '=', jobId).execute();
      await t.deleteFrom('sync_checkpoints').where('pair_id', '=', pairId).execute();
      if (c.checkpoints.length) await t.insertInto('sync_checkpoints').values(c.checkpoints.map((r) => ({ ...r, pair_id: pairId }))).execute();
      await t.insertInto('events').values({ job_id: jobId, type: 'sync_summary', data: JSON.stringify(c.summary), created_at: now }).execute();
      return true;
    });
  }

  /** Forgets a pair's state (baselines, tombstones, quarantine): the next run is a first run. */
  async resetPair(pairId: string): Promise<void> {
    const open = await this.openRuns(pairId);
    if (open.length > 0) throw new AbpError('conflict', `pair ${pairId}: job ${open[0]?.job_id} has not ended; cancel it or wait before resetting the pair`);
    await this.repo.tx(async (db) => {
      const t = sync(db);
      for (const table of ['sync_baselines', 'sync_tombstones', 'sync_items', 'sync_checkpoints'] as const) await t.deleteFrom(table).where('pair_id', '=', pairId).execute();
    });
  }
}
