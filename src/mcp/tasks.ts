import { createHash, randomUUID } from 'node:crypto';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CreateTaskOptions, TaskStore } from '@modelcontextprotocol/sdk/experimental/tasks';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolRequest,
  type ListToolsResult,
  type Request,
  type Result,
  type ServerCapabilities,
  type Task,
} from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import type { App } from '../app.js';
import { AbpError } from '../domain/errors.js';
import { nextStepFor, type NextStep } from '../domain/next-step.js';
import { isTerminalUnit } from '../domain/states.js';
import { JobStatusWire, UnitDetailWire } from '../wire/schemas.js';
import type { StartResult } from '../orchestrator/job-start.js';
import { mcpHint } from './hints.js';
import { defineTool, fail, jobId, ok, register, unknownArguments, type AppSource, type Extra, type ToolDef } from './tool.js';
import { fitUnit } from './tools/inspect.js';
import { startJob } from './tools/jobs.js';
import { isoTime } from '../domain/iso-time.js';

/*
 * MCP Tasks (protocol 2025-11-25, the SDK's experimental API). A task follows one
 * job for one caller; its status is read from the job whenever it is asked for, so
 * no poller has to outlive the process, and a task survives a client's disconnect
 * and a restart of `abp serve`:
 *   TESTING, test unit not finished, or RUNNING → working
 *   TESTING with a finished test unit, CREATED (rejected), PAUSED → input_required
 *   COMPLETED, FAILED, CANCELLED → completed, failed, cancelled; tasks/result returns the job.
 * tasks/cancel cancels the job. A plain tools/call (a client without tasks) takes
 * the same path as before.
 */

/** How long a task stays readable unless the client asks for less. */
/** One task's row, as the app's task rows keep it. */
type TaskRow = Parameters<App['tasks']['insert']>[0];

const DEFAULT_TTL_MS = 7 * 24 * 3600_000;
const MAX_TTL_MS = 30 * 24 * 3600_000;
const POLL_INTERVAL_MS = 2000;
const LIST_PAGE = 50;
const MAX_WAIT = 50;

/** The owner of every task created over stdio against this ABP_HOME. */
export function stdioOwner(app: App): string {
  return `stdio:${app.config.home}`;
}

/** The owner of tasks created with this API key: a hash of it, never the key. */
export function apiKeyOwner(key: string): string {
  return `api-key:${createHash('sha256').update(key).digest('hex').slice(0, 32)}`;
}

export const waitForJob = defineTool({
  name: 'wait_for_job',
  title: 'Wait for a job to end or to need someone',
  description:
    'Waits until the job ends (COMPLETED, FAILED, CANCELLED) or needs someone (its test unit finished, it was paused or rejected), at most wait_seconds, and returns its status. ' +
    'Hosts with MCP Tasks can call it (or start_job) as a task instead: the task follows the job to its end, survives a lost connection, and tasks/cancel cancels the job.',
  input: {
    job_id: jobId,
    wait_seconds: z.coerce.number().min(0).max(MAX_WAIT).optional().describe(`How long to wait (default 30, at most ${MAX_WAIT}).`),
  },
  output: {
    job: JobStatusWire,
    test_unit: UnitDetailWire.nullable().describe('The test unit while the job is TESTING.'),
    next: z.string().describe('What to do next, naming the tools to call.'),
  },
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async handler(args, { app }) {
    await app.orchestrator.waitUntilSettled(args.job_id, (args.wait_seconds ?? 30) * 1000);
    const state = await app.orchestrator.startState(args.job_id);
    return { job: state.job, test_unit: fitted(state), next: mcpHint(stepOf(state)) };
  },
});

/** What a task-capable tool does when called as a task: start (or look up) its job. */
interface TaskTool {
  def: ToolDef<any, any>;
  /** Returns the job id and what to keep of the tool's first answer. */
  begin(args: Record<string, unknown>, app: App, server: McpServer, extra: Extra): Promise<{ jobId: number; started: Record<string, unknown> }>;
}

const TASK_TOOLS: TaskTool[] = [
  {
    def: startJob,
    // The tool's own logic (approvals included) runs once, without waiting: the task does the waiting.
    async begin(args, app, server, extra) {
      const answer = (await startJob.handler({ ...(args as { job_id: number }), wait_seconds: 0 }, { app, server }, extra)) as { job: { job_id: number } } & Record<string, unknown>;
      const { job, test_unit: _t, next: _n, next_step: _s, executor: _e, ...kept } = answer;
      return { jobId: job.job_id, started: kept };
    },
  },
  {
    def: waitForJob,
    async begin(args, app) {
      const job = await app.orchestrator.status(args.job_id as number);
      return { jobId: job.job_id, started: {} };
    },
  },
];

/**
 * Tasks backed by abp's database, for one owner. The SDK passes each request's
 * session id; it is not used: a session ends with its connection, a task does not.
 */
export class JobTaskStore implements TaskStore {
  private loaded?: Promise<{ app: App; rows: App['tasks']; owner: string }>;

  constructor(
    private readonly app: () => Promise<App>,
    private readonly owner?: string,
  ) {}

  /** The app, its task rows and the owner (over stdio, the app's ABP_HOME): asked for at the first task request. */
  private get ready(): Promise<{ app: App; rows: App['tasks']; owner: string }> {
    return (this.loaded ??= this.app().then((app) => ({ app, rows: app.tasks, owner: this.owner ?? stdioOwner(app) })));
  }

  /** `taskParams.context` carries job_id, tool and started (see installTasks). */
  async createTask(taskParams: CreateTaskOptions, _requestId: unknown, request: Request): Promise<Task> {
    const context = taskParams.context as { job_id: number; started: Record<string, unknown> } | undefined;
    if (!context) throw new Error('a task needs its job (context.job_id)');
    const { rows, owner } = await this.ready;
    const now = Date.now();
    const ttl = Math.min(taskParams.ttl ?? DEFAULT_TTL_MS, MAX_TTL_MS);
    const row: TaskRow = {
      task_id: randomUUID(),
      owner,
      job_id: context.job_id,
      tool: String((request.params as { name?: unknown } | undefined)?.name ?? request.method),
      started: JSON.stringify(context.started),
      created_at: now,
      expires_at: now + ttl,
    };
    await rows.insert(row);
    return this.view(row);
  }

  async getTask(taskId: string): Promise<Task | null> {
    const { rows, owner } = await this.ready;
    const row = await rows.get(taskId, owner, Date.now());
    return row ? this.view(row) : null;
  }

  async getTaskResult(taskId: string): Promise<Result> {
    const { app, rows, owner } = await this.ready;
    const row = await rows.get(taskId, owner, Date.now());
    if (!row) throw new McpError(ErrorCode.InvalidParams, `Task not found: ${taskId}`);
    const state = await app.orchestrator.startState(row.job_id);
    const step = stepOf(state);
    const data = row.tool === waitForJob.name
      ? { job: state.job, test_unit: fitted(state), next: mcpHint(step) }
      : { ...(JSON.parse(row.started) as Record<string, unknown>), job: state.job, test_unit: fitted(state), next: mcpHint(step), next_step: step };
    return ok(data);
  }

  /** Only cancellation is a move; every other status is read from the job. */
  async updateTaskStatus(taskId: string, status: Task['status']): Promise<void> {
    if (status !== 'cancelled') return;
    const { app, rows, owner } = await this.ready;
    const row = await rows.get(taskId, owner, Date.now());
    if (!row) throw new McpError(ErrorCode.InvalidParams, `Task not found: ${taskId}`);
    try {
      await app.orchestrator.cancel(row.job_id);
    } catch (err) {
      throw new McpError(ErrorCode.InvalidParams, `cannot cancel task ${taskId}: ${failText(err)}`);
    }
  }

  async storeTaskResult(): Promise<void> {
    throw new Error("abp's tasks take their result from their job; nothing stores one");
  }

  async listTasks(cursor?: string): Promise<{ tasks: Task[]; nextCursor?: string }> {
    const offset = cursor === undefined ? 0 : Number(cursor);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new Error(`invalid cursor ${JSON.stringify(cursor)}: pass back the nextCursor of the previous page`);
    const { rows, owner } = await this.ready;
    const page = await rows.list(owner, Date.now(), { offset, limit: LIST_PAGE + 1 });
    const tasks = await Promise.all(page.slice(0, LIST_PAGE).map((r) => this.view(r)));
    return page.length > LIST_PAGE ? { tasks, nextCursor: String(offset + LIST_PAGE) } : { tasks };
  }

  /** The task as the protocol shows it, from its job as it is now. */
  private async view(row: TaskRow): Promise<Task> {
    const base = {
      taskId: row.task_id,
      ttl: row.expires_at - row.created_at,
      createdAt: isoTime(row.created_at),
      pollInterval: POLL_INTERVAL_MS,
    };
    const { app } = await this.ready;
    let state: Awaited<ReturnType<App['orchestrator']['startState']>>;
    try {
      state = await app.orchestrator.startState(row.job_id);
    } catch (err) {
      if (err instanceof AbpError && err.code === 'not_found') {
        return { ...base, status: 'failed', lastUpdatedAt: base.createdAt, statusMessage: `job ${row.job_id} no longer exists` };
      }
      throw err;
    }
    const { job, test_unit: test } = state;
    const status = taskStatus(state);
    const changed = Math.max(row.created_at, Date.parse(job.finished_at ?? job.started_at ?? job.created_at ?? '') || 0);
    const done = job.counts.succeeded + job.counts.failed + job.counts.cancelled;
    // While a person must look at the test unit, say where its output is: the task itself does not carry it.
    const review = test && job.status === 'TESTING' && status === 'input_required' ? ` Its test unit ${test.status}: read it with get_unit {"unit_id":${test.unit_id}}.` : '';
    return {
      ...base,
      status,
      lastUpdatedAt: isoTime(changed),
      statusMessage: `job ${job.job_id} is ${job.status}${job.status_reason ? ` (${job.status_reason})` : ''}, ${done}/${job.total} units done.${review} ${mcpHint(stepOf(state))}`,
    };
  }
}

/** An error in the words a tool result would use, with its advice. */
function failText(err: unknown): string {
  const first = fail(err).content[0];
  return first?.type === 'text' ? first.text : String(err);
}

function taskStatus({ job, test_unit }: Pick<StartResult, 'job' | 'test_unit'>): Task['status'] {
  switch (job.status) {
    case 'COMPLETED':
      return 'completed';
    case 'FAILED':
      return 'failed';
    case 'CANCELLED':
      return 'cancelled';
    case 'RUNNING':
      return 'working';
    case 'TESTING':
      return test_unit && !isTerminalUnit(test_unit.status) ? 'working' : 'input_required';
    case 'CREATED':
    case 'PAUSED':
      return 'input_required';
  }
}

/** The test unit cut to fit a tool result, as start_job returns it. */
function fitted({ test_unit }: Pick<StartResult, 'test_unit'>) {
  return test_unit ? fitUnit(test_unit) : null;
}

function stepOf({ job, test_unit }: Pick<StartResult, 'job' | 'test_unit'>): NextStep {
  return nextStepFor({ id: job.job_id, status: job.status, status_reason: job.status_reason }, test_unit?.status);
}

/** What the server declares: tasks for tools/call, tasks/list and tasks/cancel. */
export const TASK_CAPABILITIES: ServerCapabilities['tasks'] = { list: {}, cancel: {}, requests: { tools: { call: {} } } };

type Handler = (request: unknown, extra: Extra) => Promise<unknown>;

/**
 * The handler the SDK installed for a method. McpServer's own task tools
 * (registerToolTask) would turn every plain call of an optional-task tool into a
 * task the server polls itself; abp keeps plain calls on their usual path and only
 * handles calls that ask for a task, so it wraps the installed handlers.
 */
function installedHandler(server: McpServer, method: string): Handler {
  const handlers = (server.server as unknown as { _requestHandlers?: Map<string, Handler> })._requestHandlers;
  const handler = handlers?.get(method);
  if (!handler) throw new Error(`the MCP SDK has no ${method} handler to extend (did its internals change?)`);
  return handler;
}

/**
 * Makes start_job and wait_for_job callable as tasks (taskSupport "optional"). Call
 * after every tool is registered, on a server built with `taskStore: store` and
 * `capabilities.tasks: TASK_CAPABILITIES`.
 */
export function installTasks(server: McpServer, source: AppSource, store: JobTaskStore): void {
  register(server, source, [waitForJob]);
  const byName = new Map(TASK_TOOLS.map((t) => [t.def.name, t]));
  const listTools = installedHandler(server, 'tools/list');
  const callTool = installedHandler(server, 'tools/call');

  server.server.setRequestHandler(ListToolsRequestSchema, async (request, extra) => {
    const result = (await listTools(request, extra)) as ListToolsResult;
    return { ...result, tools: result.tools.map((t) => (byName.has(t.name) ? { ...t, execution: { ...t.execution, taskSupport: 'optional' as const } } : t)) };
  });

  server.server.setRequestHandler(CallToolRequestSchema, async (request: CallToolRequest, extra) => {
    const tool = byName.get(request.params.name);
    if (!request.params.task || !tool) return (await callTool(request, extra)) as never;
    const args = request.params.arguments ?? {};
    const refused = unknownArguments(tool.def.name, args, Object.keys(tool.def.input));
    const parsed = z.object(tool.def.input).safeParse(args);
    if (refused || !parsed.success) {
      throw new McpError(ErrorCode.InvalidParams, refused?.message ?? `${tool.def.name}: ${z.prettifyError(parsed.error!)}`);
    }
    let begun: Awaited<ReturnType<TaskTool['begin']>>;
    try {
      begun = await tool.begin(parsed.data, await source.app(), server, extra);
    } catch (err) {
      // Nothing was started: the request fails, as a JSON-RPC error that says what to do.
      throw new McpError(ErrorCode.InvalidParams, failText(err));
    }
    const task = await store.createTask({ ttl: request.params.task.ttl, context: { job_id: begun.jobId, started: begun.started } }, extra.requestId, request);
    return { task } as never;
  });
}
