import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { expect } from 'vitest';
import type { App } from '../../src/app.js';
import { createMcpServer } from '../../src/mcp/server.js';
import { sleep } from './cli.js';

/** A real SDK client connected in memory to abp's MCP server over `app`, with the client capabilities given. */
export async function connectInMemory(app: App, capabilities: Record<string, unknown> = {}): Promise<Client> {
  const server = createMcpServer({ app: async () => app });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const c = new Client({ name: 'test', version: '1.0.0' }, { capabilities });
  await c.connect(clientSide);
  return c;
}

/** Calls a tool that must succeed and returns its structured content (checked against the text copy). */
export async function call(client: Client, name: string, args: Record<string, unknown> = {}): Promise<any> {
  const result = (await client.callTool({ name, arguments: args })) as any;
  if (result.isError) throw new Error(`${name} failed: ${result.content?.[0]?.text}`);
  expect(JSON.parse(result.content[0].text)).toEqual(result.structuredContent);
  return result.structuredContent;
}

/** Calls a tool that must fail, and returns its error text. */
export async function callError(client: Client, name: string, args: Record<string, unknown> = {}): Promise<string> {
  const result = (await client.callTool({ name, arguments: args })) as any;
  expect(result.isError).toBe(true);
  return result.content[0].text as string;
}

export async function pollStatus(client: Client, jobId: number, until: (s: any) => boolean, timeoutMs = 30_000): Promise<any> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await call(client, 'get_job_status', { job_id: jobId });
    if (until(s)) return s;
    if (Date.now() > deadline) throw new Error(`job ${jobId} did not settle: ${JSON.stringify(s)}`);
    await sleep(100);
  }
}

/** Drives a whole job through any connected client: create (CSV) → test → approve → COMPLETED → results. */
export async function driveCsvJob(client: Client, csvPath: string): Promise<void> {
  const job = await call(client, 'create_job', {
    name: 'mcp job',
    user_intent: 'shout each row',
    enumerator_type: 'csv',
    enumerator_config: { file_path: csvPath, id_column: 'id' },
    worker_type: 'shell',
    worker_config: { command: 'sh', args: ['-c', 'printf "%s!" "$1" | tr a-z A-Z', 'sh', '{{item.text}}'] },
    max_workers: 2,
  });
  expect(job).toMatchObject({ status: 'CREATED', total: 3 });

  let started = await call(client, 'start_job', { job_id: job.job_id, wait_seconds: 20 });
  expect(started.job.status).toBe('TESTING');
  expect(started.test_unit).toMatchObject({ status: 'SUCCEEDED', output: 'ALPHA!' });
  expect(started.next).toMatch(/Do not approve on your own/);

  started = await call(client, 'start_job', { job_id: job.job_id, approve: true, wait_seconds: 20 });
  expect(['RUNNING', 'COMPLETED']).toContain(started.job.status);
  const done = await pollStatus(client, job.job_id, (s) => s.status === 'COMPLETED');
  expect(done.counts).toMatchObject({ succeeded: 3, failed: 0 });

  const results = await call(client, 'get_results', { job_id: job.job_id });
  expect(results.results.map((r: any) => r.output)).toEqual(['ALPHA!', 'BETA!', 'GAMMA!']);
  expect(results.cursor).toBeNull();
}
