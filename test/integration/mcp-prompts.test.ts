import { writeFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, Sandbox } from '../helpers/cli.js';
import { call } from '../helpers/mcp.js';

let sb: Sandbox;
let client: Client;

beforeEach(async () => {
  sb = new Sandbox();
  writeFileSync(sb.path('rows.csv'), 'id,text\na,alpha\nb,beta\nc,gamma\n');
  const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp'], env: { ...process.env, ...sb.env } as Record<string, string>, stderr: 'pipe' });
  client = new Client({ name: 'prompts-test', version: '1.0.0' });
  await client.connect(transport);
});
afterEach(async () => {
  await client.close();
  await sb.cleanup();
});

async function createJob(name: string): Promise<number> {
  const job = await call(client, 'create_job', {
    name,
    user_intent: 'shout each row',
    enumerator_type: 'csv',
    enumerator_config: { file_path: sb.path('rows.csv'), id_column: 'id' },
    worker_type: 'shell',
    worker_config: { command: 'sh', args: ['-c', 'printf "%s!" "$1" | tr a-z A-Z', 'sh', '{{item.text}}'] },
  });
  return job.job_id;
}

async function promptText(name: string, args: Record<string, string> = {}): Promise<string> {
  const { messages } = await client.getPrompt({ name, arguments: args });
  expect(messages.length).toBeGreaterThan(0);
  return messages.map((m) => (m.content.type === 'text' ? m.content.text : '')).join('\n');
}

/** Guidance must be in MCP's words: tool calls, never the abp CLI. */
async function expectOnlyMcpTools(text: string): Promise<void> {
  expect(text).not.toMatch(/\babp (create|start|status|watch|results|update|cancel|pause|resume|retry|list|units?|serve|mcp|preview|doctor|executor|approve)\b/);
  expect(text).not.toMatch(/--(approve|reject|skip-test|wait|json)\b/);
  const tools = new Set((await client.listTools()).tools.map((t) => t.name));
  const named = [...text.matchAll(/\b([a-z]+(?:_[a-z]+)+) \{/g)].map((m) => m[1] as string);
  expect(named.length).toBeGreaterThan(0);
  for (const tool of named) expect(tools, `${tool} is an MCP tool of this server`).toContain(tool);
}

/** The JSON in the prompt's first fenced json block. */
function embeddedJson(text: string): any {
  const m = /(`{3,})json\n([\s\S]*?)\n\1/.exec(text);
  expect(m, 'a fenced json block').not.toBeNull();
  return JSON.parse((m as RegExpExecArray)[2] as string);
}

describe('MCP prompts over stdio (abp mcp)', () => {
  it('lists batch and status, declares completions, and batch walks the MCP tools only', async () => {
    const capabilities = client.getServerCapabilities();
    expect(capabilities?.prompts).toBeDefined();
    expect(capabilities?.completions).toBeDefined();

    const { prompts } = await client.listPrompts();
    const byName = Object.fromEntries(prompts.map((p) => [p.name, p]));
    expect(Object.keys(byName).sort()).toEqual(['batch', 'status']);
    expect(byName.batch?.arguments).toEqual([
      expect.objectContaining({ name: 'what', required: true }),
      expect.objectContaining({ name: 'items', required: false }),
    ]);
    expect(byName.status?.arguments).toEqual([expect.objectContaining({ name: 'job_id', required: false })]);

    const text = await promptText('batch', { what: 'summarise each file in one line', items: 'docs/**/*.md' });
    expect(text).toContain('summarise each file in one line');
    expect(text).toContain('docs/**/*.md');
    // The walk, in order: discover → preview → create → one test unit → the person's word → approve → follow → results.
    const order = ['list_enumerators {', 'list_workers {', 'preview_job {', 'create_job {', 'start_job {"job_id":N}', 'start_job {"job_id":N,"approve":true}', 'get_job_status {', 'get_results {', 'write_results {'];
    const at = order.map((s) => text.indexOf(s));
    for (const [i, pos] of at.entries()) expect(pos, order[i]).toBeGreaterThanOrEqual(0);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
    expect(text).toMatch(/show the test unit's output to the user/i);
    expect(text).toContain('"reject":true');
    expect(text).toContain('update_job {');
    expect(text).toContain('"cursor"');
    await expectOnlyMcpTools(text);

    // Without items it says to ask; without an instruction the request is refused, naming the argument.
    expect(await promptText('batch', { what: 'classify each row' })).toMatch(/Items: not given\. Ask the user/);
    await expect(client.getPrompt({ name: 'batch', arguments: { what: '  ' } })).rejects.toThrow(/what: /);
  });

  it('status embeds a real job’s current status and names the next MCP calls', async () => {
    const id = await createJob('shout rows');
    const created = await promptText('status', { job_id: String(id) });
    expect(embeddedJson(created)).toMatchObject({ job_id: id, name: 'shout rows', status: 'CREATED', total: 3 });
    expect(created).toContain(`start_job {"job_id":${id}}`);
    await expectOnlyMcpTools(created);

    const started = await call(client, 'start_job', { job_id: id, wait_seconds: 30 });
    expect(started.test_unit).toMatchObject({ status: 'SUCCEEDED', output: 'ALPHA!' });
    const status = await call(client, 'get_job_status', { job_id: id });
    const testing = await promptText('status', { job_id: String(id) });
    const embedded = embeddedJson(testing);
    for (const key of ['job_id', 'name', 'status', 'total', 'counts', 'test_unit_id', 'cost_usd', 'created_at', 'started_at']) expect(embedded[key], key).toEqual(status[key]);
    expect(embedded.status).toBe('TESTING');
    expect(testing).toContain(`start_job {"job_id":${id},"approve":true}`);
    expect(testing).toContain(`get_unit {"unit_id":${status.test_unit_id}}`);
    await expectOnlyMcpTools(testing);

    // Without a job id: the recent jobs, newest first, and what needs attention.
    const other = await createJob('second job');
    const recent = await promptText('status');
    expect(embeddedJson(recent).map((j: any) => [j.job_id, j.status])).toEqual([
      [other, 'CREATED'],
      [id, 'TESTING'],
    ]);
    expect(recent).toContain(`- job ${id}: `);
    await expectOnlyMcpTools(recent);

    await expect(client.getPrompt({ name: 'status', arguments: { job_id: 'seven' } })).rejects.toThrow(/-32602.*job_id: expected a positive integer/);
    await expect(client.getPrompt({ name: 'status', arguments: { job_id: String(other + 100) } })).rejects.toThrow(new RegExp(`job ${other + 100} does not exist`));
  });

  it('completes job_id with the ids of the jobs that exist, filtered by prefix, in the prompt and both resource templates', async () => {
    const ids: number[] = [];
    for (let i = 0; i < 11; i++) ids.push(await createJob(`job ${i}`));
    const newestFirst = [...ids].reverse().map(String);
    const refs = [
      { type: 'ref/prompt' as const, name: 'status' },
      { type: 'ref/resource' as const, uri: 'abp://jobs/{job_id}' },
      { type: 'ref/resource' as const, uri: 'abp://jobs/{job_id}/results' },
    ];
    for (const ref of refs) {
      const complete = async (value: string) => (await client.complete({ ref, argument: { name: 'job_id', value } })).completion.values;
      expect(await complete('')).toEqual(newestFirst);
      for (const prefix of ['1', String(ids[1]), String(ids[10])]) {
        const expected = newestFirst.filter((id) => id.startsWith(prefix));
        expect(expected.length).toBeGreaterThan(0);
        expect(await complete(prefix), `${JSON.stringify(ref)} ${prefix}`).toEqual(expected);
      }
      expect(await complete(`${ids[10]}9`)).toEqual([]);
      expect(await complete('x')).toEqual([]);
    }
    // A completed value reads as a resource: the oldest match for the first job's id is that job.
    const values = (await client.complete({ ref: refs[1] as (typeof refs)[1], argument: { name: 'job_id', value: String(ids[0]) } })).completion.values;
    const read = await client.readResource({ uri: `abp://jobs/${values.at(-1)}` });
    expect(JSON.parse((read.contents[0] as { text: string }).text)).toMatchObject({ job_id: ids[0], name: 'job 0' });
  });
});
