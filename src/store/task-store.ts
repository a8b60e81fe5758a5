import type { Kysely } from 'kysely';
import type { Db, Repository } from './repository.js';
import type { Database } from './schema.js';

/**
 * MCP tasks (migration 009-mcp-tasks): which job a task follows, for whom. A row
 * keeps no status: the task's status is read from its job, so it survives the
 * process that created it. Reached through the Repository's transactions, like
 * the sync tables; Kysely only, for SQLite and PostgreSQL alike.
 */
export interface McpTasksTable {
  task_id: string;
  /** Who may see the task: a hash of the API key over HTTP, the ABP_HOME over stdio. */
  owner: string;
  job_id: number;
  /** The tool that was called as a task. */
  tool: string;
  /** JSON: the tool's answer when the task was created, minus what is read live from the job. */
  started: string;
  created_at: number;
  expires_at: number;
}

type TaskDb = Kysely<Database & { mcp_tasks: McpTasksTable }>;

const tasks = (t: Db): TaskDb => t.withTables<{ mcp_tasks: McpTasksTable }>() as unknown as TaskDb;

export class TaskRows {
  constructor(private readonly repo: Repository) {}

  /** Inserts a task, and drops every task whose time ran out. */
  async insert(row: McpTasksTable): Promise<void> {
    await this.repo.tx(async (t) => {
      await tasks(t).deleteFrom('mcp_tasks').where('expires_at', '<', row.created_at).execute();
      await tasks(t).insertInto('mcp_tasks').values(row).execute();
    });
  }

  /** The owner's task, unless it expired. */
  async get(taskId: string, owner: string, now: number): Promise<McpTasksTable | undefined> {
    return this.repo.tx((t) =>
      tasks(t).selectFrom('mcp_tasks').selectAll().where('task_id', '=', taskId).where('owner', '=', owner).where('expires_at', '>=', now).executeTakeFirst(),
    );
  }

  /** The owner's live tasks, newest first. */
  async list(owner: string, now: number, page: { offset: number; limit: number }): Promise<McpTasksTable[]> {
    return this.repo.tx((t) =>
      tasks(t)
        .selectFrom('mcp_tasks')
        .selectAll()
        .where('owner', '=', owner)
        .where('expires_at', '>=', now)
        .orderBy('created_at', 'desc')
        .orderBy('task_id')
        .limit(page.limit)
        .offset(page.offset)
        .execute(),
    );
  }
}
