import { type Kysely, type Migration, type MigrationProvider } from 'kysely';

/**
 * Numbered migrations, run on open. Never edit a migration that has shipped:
 * add the next number instead.
 */
const migrations: Record<string, Migration> = {
  '001-initial': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('jobs')
        .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
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
        .addColumn('timeout_seconds', 'real', (c) => c.notNull())
        .addColumn('output_schema', 'text')
        .addColumn('max_cost_usd', 'real')
        .addColumn('post_processing_prompt', 'text')
        .addColumn('prompt_template', 'text', (c) => c.notNull())
        .addColumn('test_unit_id', 'integer')
        .addColumn('total', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('pending', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('running', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('succeeded', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('failed', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('cancelled', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('cost_usd', 'real', (c) => c.notNull().defaultTo(0))
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
        .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
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
        .addColumn('cost_usd', 'real')
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
        .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
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
        .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
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
        .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('code_sha256', 'text', (c) => c.notNull())
        .addColumn('job_id', 'integer')
        .addColumn('approved_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('code_approvals_sha').on('code_approvals').columns(['code_sha256']).execute();
    },
  },
};

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};

export const LATEST_MIGRATION = Object.keys(migrations).sort().at(-1) as string;
