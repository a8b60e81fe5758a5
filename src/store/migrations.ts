import { sql, type CreateTableBuilder, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import type { MigrationName } from './migration-names.js';
import { isPostgres } from './tx.js';

/*
 * Every migration runs on SQLite and on PostgreSQL, so column types are the ones
 * both understand the same way, plus the two helpers below for what differs.
 */

/** An auto-numbered integer primary key: INTEGER AUTOINCREMENT on SQLite, serial on PostgreSQL. */
function idColumn(db: Kysely<any>, name = 'id') {
  return (table: CreateTableBuilder<any, any>): CreateTableBuilder<any, any> =>
    isPostgres(db)
      ? table.addColumn(name, 'serial', (c) => c.primaryKey())
      : table.addColumn(name, 'integer', (c) => c.primaryKey().autoIncrement());
}

/**
 * Floating point. PostgreSQL's `real` has 4 bytes (6 digits: wrong for money);
 * `double precision` is 8 bytes there and has REAL affinity on SQLite.
 */
const REAL = 'double precision';

/**
 * Numbered migrations, run on open. Never edit a migration that has shipped:
 * add the next number instead.
 */
const migrations: Record<MigrationName, Migration> = {
  '001-initial': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('jobs')
        .$call(idColumn(db))
        .addColumn('type', 'text', (c) => c.notNull().defaultTo('batch'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('status_reason', 'text')
        .addColumn('user_intent', 'text', (c) => c.notNull())
        .addColumn('enumerator_type', 'text', (c) => c.notNull())
        .addColumn('enumerator_config', 'text', (c) => c.notNull())
        .addColumn('worker_type', 'text', (c) => c.notNull())
        .addColumn('worker_config', 'text', (c) => c.notNull())
        .addColumn('max_workers', 'integer', (c) => c.notNull())
        .addColumn('max_retries', 'integer', (c) => c.notNull())
        .addColumn('timeout_seconds', REAL, (c) => c.notNull())
        .addColumn('output_schema', 'text')
        .addColumn('max_cost_usd', REAL)
        .addColumn('post_processing_prompt', 'text')
        .addColumn('prompt_template', 'text', (c) => c.notNull())
        .addColumn('test_unit_id', 'integer')
        .addColumn('total', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('pending', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('running', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('succeeded', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('failed', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('cancelled', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('cost_usd', REAL, (c) => c.notNull().defaultTo(0))
        .addColumn('input_tokens', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('output_tokens', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addColumn('started_at', 'bigint')
        .addColumn('finished_at', 'bigint')
        .execute();
      await db.schema.createIndex('jobs_status').on('jobs').columns(['status', 'id']).execute();

      await db.schema
        .createTable('work_units')
        .$call(idColumn(db))
        .addColumn('job_id', 'integer', (c) => c.notNull().references('jobs.id'))
        .addColumn('seq', 'integer', (c) => c.notNull())
        .addColumn('item_id', 'text', (c) => c.notNull())
        .addColumn('payload', 'text', (c) => c.notNull())
        .addColumn('prompt', 'text')
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('attempt', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('failures', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('available_at', 'bigint', (c) => c.notNull().defaultTo(0))
        .addColumn('lease_owner', 'text')
        .addColumn('lease_expires_at', 'bigint')
        .addColumn('worker_pid', 'integer')
        .addColumn('output', 'text')
        .addColumn('structured_output', 'text')
        .addColumn('error', 'text')
        .addColumn('error_kind', 'text')
        .addColumn('exit_code', 'integer')
        .addColumn('stderr_tail', 'text')
        .addColumn('cost_usd', REAL)
        .addColumn('input_tokens', 'bigint')
        .addColumn('output_tokens', 'bigint')
        .addColumn('usage', 'text')
        .addColumn('session_id', 'text')
        .addColumn('duration_ms', 'bigint')
        .addColumn('started_at', 'bigint')
        .addColumn('finished_at', 'bigint')
        .execute();
      await db.schema.createIndex('work_units_claim').on('work_units').columns(['job_id', 'status', 'id']).execute();
      await db.schema.createIndex('work_units_lease').on('work_units').columns(['status', 'lease_expires_at']).execute();

      await db.schema
        .createTable('unit_events')
        .$call(idColumn(db))
        .addColumn('unit_id', 'integer', (c) => c.notNull())
        .addColumn('job_id', 'integer', (c) => c.notNull())
        .addColumn('attempt', 'integer', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('data', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('unit_events_unit').on('unit_events').columns(['unit_id', 'id']).execute();

      await db.schema
        .createTable('events')
        .$call(idColumn(db, 'seq'))
        .addColumn('job_id', 'integer')
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('data', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('events_job').on('events').columns(['job_id', 'seq']).execute();

      await db.schema
        .createTable('executors')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('hostname', 'text', (c) => c.notNull())
        .addColumn('pid', 'integer', (c) => c.notNull())
        .addColumn('version', 'text', (c) => c.notNull())
        .addColumn('started_at', 'bigint', (c) => c.notNull())
        .addColumn('heartbeat_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
  // A person's approval of user code (the dynamic enumerator), by the code's exact
  // sha256. Code with an approved hash may run again; changed code has a new hash.
  '002-code-approvals': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('code_approvals')
        .$call(idColumn(db))
        .addColumn('code_sha256', 'text', (c) => c.notNull())
        .addColumn('job_id', 'integer')
        .addColumn('approved_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('code_approvals_sha').on('code_approvals').columns(['code_sha256']).execute();
    },
  },
  // Sync pairs (src/sync/): per-pair baselines, tombstones and item health, the
  // runs that planned writes, and each run's staged baseline changes, which are
  // applied only once the run's job has ended (a dry run stages nothing).
  '003-sync': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('sync_pairs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('mode', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('target', 'text', (c) => c.notNull())
        .addColumn('last_job_id', 'integer')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('sync_baselines')
        .addColumn('pair_id', 'text', (c) => c.notNull())
        .addColumn('side', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        // 0 when the entry comes from a confirmed add that no snapshot has shown yet (the phantom guard).
        .addColumn('observed', 'integer', (c) => c.notNull().defaultTo(1))
        .addPrimaryKeyConstraint('sync_baselines_pk', ['pair_id', 'side', 'key'])
        .execute();
      await db.schema
        .createTable('sync_tombstones')
        .addColumn('pair_id', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .addColumn('side', 'text', (c) => c.notNull())
        .addColumn('deleted_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('sync_tombstones_pk', ['pair_id', 'key'])
        .execute();
      await db.schema
        .createTable('sync_items')
        .addColumn('pair_id', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('failures', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('quarantined_until', 'bigint')
        .addColumn('phantoms', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('last_error', 'text')
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('sync_items_pk', ['pair_id', 'key'])
        .execute();
      await db.schema
        .createTable('sync_runs')
        .addColumn('job_id', 'integer', (c) => c.primaryKey())
        .addColumn('pair_id', 'text', (c) => c.notNull())
        .addColumn('plan', 'text', (c) => c.notNull())
        .addColumn('committed_at', 'bigint')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('sync_runs_pair').on('sync_runs').columns(['pair_id', 'committed_at']).execute();
      await db.schema
        .createTable('sync_stage')
        .addColumn('job_id', 'integer', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('source_hash', 'text')
        .addColumn('target_hash', 'text')
        .addColumn('op', 'text')
        .addColumn('side', 'text')
        .addColumn('phantom', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema.createIndex('sync_stage_job').on('sync_stage').columns(['job_id']).execute();
    },
  },
  '004-spending-and-synthesis': {
    async up(db: Kysely<any>) {
      // Budgets: what running units have reserved, and how many finished units reported a cost.
      await db.schema.alterTable('jobs').addColumn('reserved_usd', REAL, (c) => c.notNull().defaultTo(0)).execute();
      await db.schema.alterTable('jobs').addColumn('costed_units', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      // Estimates: the summed duration of finished units.
      await db.schema.alterTable('jobs').addColumn('unit_ms_total', 'bigint', (c) => c.notNull().defaultTo(0)).execute();
      // Scatter-gather-synthesize.
      await db.schema.alterTable('jobs').addColumn('allow_partial', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      await db.schema.alterTable('jobs').addColumn('synthesis_unit_id', 'integer').execute();
      await db.schema.alterTable('jobs').addColumn('result', 'text').execute();
      // Quota pauses that resume on their own.
      await db.schema.alterTable('jobs').addColumn('auto_resume', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      await db.schema.alterTable('jobs').addColumn('resume_at', 'bigint').execute();
      await db.schema.alterTable('work_units').addColumn('kind', 'text', (c) => c.notNull().defaultTo('item')).execute();
      await db.schema.alterTable('work_units').addColumn('reserved_usd', REAL, (c) => c.notNull().defaultTo(0)).execute();
    },
  },
  // One-time dashboard links: `abp serve`, `abp dashboard` and the MCP dashboard_url
  // tool mint them, the HTTP server consumes them. Only the token's sha256 is kept.
  '005-dashboard-tokens': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('dashboard_tokens')
        .addColumn('token_sha256', 'text', (c) => c.primaryKey())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('used_at', 'bigint')
        .execute();
    },
  },
  // Rate-limit cool-downs shared by every executor on the database: a 429 seen on
  // one host holds back that worker type on all of them until it runs out.
  '006-shared-cool-downs': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('cool_downs')
        .addColumn('worker_type', 'text', (c) => c.primaryKey())
        .addColumn('until', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
  // Only running units need finding by lease: a partial index holds just them, so a
  // unit's claim and its outcome each touch it once, and the other moves not at all
  // (the full (status, lease_expires_at) index changed with every move). Queries
  // must say status = 'RUNNING' as a literal for either database to use it.
  '007-running-units-index': {
    async up(db: Kysely<any>) {
      await db.schema.dropIndex('work_units_lease').execute();
      await sql`create index work_units_running on work_units (lease_expires_at) where status = 'RUNNING'`.execute(db);
    },
  },
  // Who approved a job's test unit (or skipping it), shown in its status, and the one
  // time a person was asked about a test unit (an assistant's host is never asked twice).
  '008-approvals': {
    async up(db: Kysely<any>) {
      await db.schema.alterTable('jobs').addColumn('approved_by', 'text').execute();
      await db.schema.alterTable('jobs').addColumn('approval_asked', 'text').execute();
    },
  },
  // MCP Tasks (src/mcp/tasks.ts): a task follows one job for one caller. Its status is
  // read from the job each time, so the row holds only whose it is and what was asked.
  '009-mcp-tasks': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('mcp_tasks')
        .addColumn('task_id', 'text', (c) => c.primaryKey())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('job_id', 'integer', (c) => c.notNull())
        .addColumn('tool', 'text', (c) => c.notNull())
        .addColumn('started', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('mcp_tasks_owner').on('mcp_tasks').columns(['owner', 'created_at']).execute();
    },
  },
  '010-agent-access': {
    async up(db: Kysely<any>) {
      // What a job's agent may do, in words, as its worker described it at creation.
      await db.schema.alterTable('jobs').addColumn('agent_access', 'text').execute();
    },
  },
  '011-unit-stops': {
    async up(db: Kysely<any>) {
      // Raised each time a person stops one running unit of the job: an executor that
      // sees it change looks up which of its units it no longer holds, and kills them.
      await db.schema.alterTable('jobs').addColumn('unit_stops', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    },
  },
  '012-executor-env': {
    async up(db: Kysely<any>) {
      // The names of the environment variables an executor was started with that jobs
      // may reference (JSON list), and the names a started job needs (JSON list): an
      // executor claims only jobs whose needs it has.
      await db.schema.alterTable('executors').addColumn('env_names', 'text').execute();
      await db.schema.alterTable('jobs').addColumn('env_needs', 'text').execute();
    },
  },
  // Sync checkpoints (src/sync/side-reads.ts): per pair and side, what the provider saw at the last
  // run that committed and left the pair at rest; a run stages its own until its commit decides.
  '013-sync-checkpoints': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('sync_checkpoints')
        .addColumn('pair_id', 'text', (c) => c.notNull())
        .addColumn('side', 'text', (c) => c.notNull())
        .addColumn('fingerprint', 'text', (c) => c.notNull())
        .addColumn('data', 'text', (c) => c.notNull())
        .addColumn('items', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('sync_checkpoints_pk', ['pair_id', 'side'])
        .execute();
      await db.schema.alterTable('sync_runs').addColumn('checkpoints', 'text').execute();
    },
  },
  // Spending less (batch APIs, the response cache, per-unit caps). A unit in a provider's
  // batch is SUBMITTED, held by its llm_batches row through work_units.batch_id; jobs count
  // such units in `submitted`. A unit of a job with `cache` on records the key of its request
  // (`cache_key`), and a unit answered from the cache points at the unit it came from.
  '014-spending-less': {
    async up(db: Kysely<any>) {
      await db.schema.alterTable('jobs').addColumn('submitted', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      await db.schema.alterTable('jobs').addColumn('cache', 'integer', (c) => c.notNull().defaultTo(0)).execute();
      await db.schema.alterTable('jobs').addColumn('max_cost_per_unit_usd', REAL).execute();
      // What a unit costs as a share of the online price: a job whose worker sends provider batches pays 0.5.
      await db.schema.alterTable('jobs').addColumn('price_factor', REAL, (c) => c.notNull().defaultTo(1)).execute();
      await db.schema.alterTable('work_units').addColumn('batch_id', 'integer').execute();
      await db.schema.alterTable('work_units').addColumn('cache_key', 'text').execute();
      await db.schema.alterTable('work_units').addColumn('cached_from', 'integer').execute();
      await sql`create index work_units_cache on work_units (cache_key) where cache_key is not null`.execute(db);
      await sql`create index work_units_batch on work_units (batch_id) where status = 'SUBMITTED'`.execute(db);
      await db.schema
        .createTable('llm_batches')
        .$call(idColumn(db))
        .addColumn('job_id', 'integer', (c) => c.notNull())
        .addColumn('api', 'text', (c) => c.notNull())
        // abp's own name for the batch, sent as metadata where the API keeps it (OpenAI), so a
        // batch posted by an executor that died before it recorded the provider's id is found again.
        .addColumn('ref', 'text', (c) => c.notNull())
        .addColumn('provider_id', 'text')
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('requests', 'integer', (c) => c.notNull())
        .addColumn('counts', 'text')
        .addColumn('error', 'text')
        .addColumn('cancel_requested', 'integer', (c) => c.notNull().defaultTo(0))
        // Cancelled at the job's deadline: what it did not answer runs online.
        .addColumn('run_online', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('lease_owner', 'text')
        .addColumn('lease_expires_at', 'bigint')
        .addColumn('next_poll_at', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('submitted_at', 'bigint')
        .addColumn('ended_at', 'bigint')
        .execute();
      await sql`create index llm_batches_open on llm_batches (next_poll_at) where state <> 'ended'`.execute(db);
      await db.schema.createIndex('llm_batches_job').on('llm_batches').columns(['job_id']).execute();
    },
  },
};

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};
