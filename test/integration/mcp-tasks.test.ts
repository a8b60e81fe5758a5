import { writeFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CallToolResultSchema, CreateTaskResultSchema, type Task } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, Sandbox, sleep } from '../helpers/cli.js';
import { call, pollStatus } from '../helpers/mcp.js';
import { KEY, slowJob, startServe, type Served } from '../helpers/serve.js';

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox();
  writeFileSync(sb.path('rows.csv'), 'id,text\na,alpha\nb,beta\nc,gamma\n');
});
afterEach(async () => {
  await sb.cleanup();
});

async function httpClient(served: Served, key = KEY): Promise<Client> {
  const client = new Client({ name: 'tasks-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL('/mcp', served.url), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
  return client;
}

async function stdioClient(): Promise<Client> {
  const client = new Client({ name: 'tasks-test', version: '1.0.0' });
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp'], env: { ...process.env, ...sb.env } as Record<string, string>, stderr: 'pipe' }));
  return client;
}

/** Calls a tool as a task (the 2025-11-25 request form) and returns the task it created. */
async function callAsTask(client: Client, name: string, args: Record<string, unknown>): Promise<Task> {
  const created = await client.request({ method: 'tools/call', params: { name, arguments: args, task: { ttl: 3_600_000 } } }, CreateTaskResultSchema);
  return created.task;
}

async function taskUntil(client: Client, taskId: string, until: (t: Task) => boolean, timeoutMs = 30_000): Promise<Task> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const task = await client.experimental.tasks.getTask(taskId);
    if (until(task)) return task;
    if (Date.now() > deadline) throw new Error(`task ${taskId} did not get there: ${JSON.stringify(task)}`);
    await sleep(100);
  }
}

describe('MCP Tasks over Streamable HTTP', () => {
  let served: Served | undefined;
  afterEach(async () => {
    await served?.stop();
    served = undefined;
  });

  it('start_job as a task survives a disconnect and an abp serve restart; tasks/result returns the job; another key sees nothing', async () => {
    served = await startServe(sb);
    let client = await httpClient(served);
    const tools = (await client.listTools()).tools;
    for (const name of ['start_job', 'wait_for_job']) expect(tools.find((t) => t.name === name)?.execution?.taskSupport).toBe('optional');
    expect(tools.find((t) => t.name === 'get_results')?.execution?.taskSupport).not.toBe('optional');

    const job = await call(client, 'create_job', slowJob(sb.path('rows.csv'), { sleepSeconds: 1 }));
    const created = await callAsTask(client, 'start_job', { job_id: job.job_id });
    expect(created).toMatchObject({ status: 'working', ttl: 3_600_000, pollInterval: expect.any(Number) });

    // The test unit finished: the task needs someone, and says what to call.
    const review = await taskUntil(client, created.taskId, (t) => t.status !== 'working');
    expect(review.status).toBe('input_required');
    expect(review.statusMessage).toContain(`start_job {"job_id":${job.job_id},"approve":true}`);
    expect(review.statusMessage).not.toMatch(/\babp (start|watch|results)\b/);
    expect(review.statusMessage).toMatch(/get_unit \{"unit_id":\d+\}/);

    // Approved on the person's word (plain call: today's path), then the client goes away and the server restarts.
    const approved = await call(client, 'start_job', { job_id: job.job_id, approve: true });
    expect(['RUNNING', 'COMPLETED']).toContain(approved.job.status);
    await client.close();
    await served.stop();
    served = await startServe(sb);

    client = await httpClient(served);
    const done = await taskUntil(client, created.taskId, (t) => t.status === 'completed');
    expect(done.statusMessage).toContain('COMPLETED');
    const result = await client.experimental.tasks.getTaskResult(done.taskId, CallToolResultSchema);
    expect(result.structuredContent).toMatchObject({ job: { job_id: job.job_id, status: 'COMPLETED', counts: { succeeded: 3, failed: 0 } } });
    expect((result.structuredContent as { next: string }).next).toContain('get_results');
    expect(JSON.parse((result.content[0] as { text: string }).text)).toEqual(result.structuredContent);
    expect((await client.experimental.tasks.listTasks()).tasks.map((t) => t.taskId)).toContain(created.taskId);
    await client.close();

    // Tasks belong to the API key: the same server restarted with another key knows none of them.
    await served.stop();
    served = await startServe(sb, { ABP_API_KEY: 'another-key-0123456789abcdef' });
    client = await httpClient(served, 'another-key-0123456789abcdef');
    await expect(client.experimental.tasks.getTask(created.taskId)).rejects.toThrow(/not found/i);
    expect((await client.experimental.tasks.listTasks()).tasks).toEqual([]);
    await client.close();
  });

  it('tasks/cancel cancels the running job and its units; skip_test as a task goes straight to working', async () => {
    served = await startServe(sb);
    const client = await httpClient(served);
    const job = await call(client, 'create_job', slowJob(sb.path('rows.csv'), { sleepSeconds: 30, maxWorkers: 3 }));
    // The SDK's own task client: it sees taskSupport "optional" in tools/list and asks for a task by itself.
    await client.listTools();
    const stream = client.experimental.tasks.callToolStream({ name: 'start_job', arguments: { job_id: job.job_id, skip_test: true } });
    const first = (await stream.next()).value;
    await stream.return(undefined);
    if (first?.type !== 'taskCreated') throw new Error(`expected a task, got ${JSON.stringify(first)}`);
    const task = first.task;
    const running = await pollStatus(client, job.job_id, (s) => s.status === 'RUNNING' && s.counts.running > 0);
    expect(running.status).toBe('RUNNING');
    expect((await client.experimental.tasks.getTask(task.taskId)).status).toBe('working');

    const cancelled = await client.experimental.tasks.cancelTask(task.taskId);
    expect(cancelled.status).toBe('cancelled');
    const status = await call(client, 'get_job_status', { job_id: job.job_id });
    expect(status.status).toBe('CANCELLED');
    // Cancelling the job cancelled its units, the running ones included: none of them succeeds later.
    expect(status.counts).toMatchObject({ cancelled: 3, running: 0, succeeded: 0 });
    const result = await client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema);
    expect(result.structuredContent).toMatchObject({ job: { status: 'CANCELLED' } });
    // A task that has ended cannot be cancelled again.
    await expect(client.experimental.tasks.cancelTask(task.taskId)).rejects.toThrow(/terminal/);
    await client.close();
  });

  it('a task on a job that does not exist is refused with advice, and creates nothing', async () => {
    served = await startServe(sb);
    const client = await httpClient(served);
    await expect(callAsTask(client, 'wait_for_job', { job_id: 999 })).rejects.toThrow(/job 999 does not exist.*list_jobs/);
    await expect(callAsTask(client, 'start_job', { job_id: 1, aprove: true })).rejects.toThrow(/unknown argument "aprove" \(did you mean approve\?\)/);
    expect((await client.experimental.tasks.listTasks()).tasks).toEqual([]);
    await client.close();
  });
});

describe('MCP Tasks over stdio', () => {
  it('a task survives the client and its abp mcp process: a new process on the same ABP_HOME follows it to the end', async () => {
    let client = await stdioClient();
    const job = await call(client, 'create_job', slowJob(sb.path('rows.csv'), { sleepSeconds: 0 }));
    // Plain calls keep today's behaviour: start_job waits for the test unit and returns it.
    const started = await call(client, 'start_job', { job_id: job.job_id, wait_seconds: 20 });
    expect(started.test_unit).toMatchObject({ status: 'SUCCEEDED', output: 'alpha' });
    const task = await callAsTask(client, 'wait_for_job', { job_id: job.job_id });
    expect(task.status).toBe('input_required');
    await client.close();

    client = await stdioClient();
    expect((await client.experimental.tasks.getTask(task.taskId)).status).toBe('input_required');
    await call(client, 'start_job', { job_id: job.job_id, approve: true });
    await taskUntil(client, task.taskId, (t) => t.status === 'completed');
    const result = await client.experimental.tasks.getTaskResult(task.taskId, CallToolResultSchema);
    expect(result.structuredContent).toMatchObject({ job: { job_id: job.job_id, status: 'COMPLETED', counts: { succeeded: 3 } } });
    // The plain wait_for_job returns at once on an ended job.
    expect((await call(client, 'wait_for_job', { job_id: job.job_id })).job.status).toBe('COMPLETED');
    await client.close();
  });
});
