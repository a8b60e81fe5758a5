import { writeFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { ElicitRequestSchema, type ElicitResult } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import { createMcpServer } from '../../src/mcp/server.js';
import { Sandbox } from '../helpers/cli.js';
import { call, callError, pollStatus } from '../helpers/mcp.js';
import { approvalSha256, dynamicEnumerator } from '../../enumerators/dynamic.js';

/**
 * The approval policy over MCP, the byte-bounded pages and the discovery aids,
 * against abp's real MCP server and an SDK client that plays a host: one that
 * has no dialogs, one that cancels every dialog (as `claude -p` does), one whose
 * person declines, and one whose person accepts.
 */
let sb: Sandbox;
let app: App;
const clients: Client[] = [];

/** A client; with `answer`, it advertises elicitation and answers every dialog so, recording the messages. */
async function host(answer?: () => ElicitResult): Promise<{ client: Client; asked: string[] }> {
  const server = createMcpServer({ app: async () => app });
  const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
  await server.connect(serverSide);
  const client = new Client({ name: 'host', version: '1.0.0' }, { capabilities: answer ? { elicitation: {} } : {} });
  const asked: string[] = [];
  if (answer) {
    client.setRequestHandler(ElicitRequestSchema, async (request) => {
      asked.push(request.params.message);
      return answer();
    });
  }
  await client.connect(clientSide);
  clients.push(client);
  return { client, asked };
}

function csv(lines: string[]): string {
  const path = sb.path(`rows-${lines.length}.csv`);
  writeFileSync(path, ['id,text', ...lines.map((t, i) => `r${i + 1},${t}`)].join('\n') + '\n');
  return path;
}

async function created(client: Client, extra: Record<string, unknown> = {}): Promise<number> {
  const job = await call(client, 'create_job', {
    name: 'j',
    user_intent: 'echo',
    enumerator_type: 'csv',
    enumerator_config: { file_path: csv(['alpha', 'beta', 'gamma']) },
    worker_type: 'shell',
    worker_config: { command: 'echo', args: ['{{item.text}}'] },
    ...extra,
  });
  return job.job_id;
}

beforeEach(async () => {
  sb = new Sandbox();
  app = await createApp(resolveConfig(sb.env));
});
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await app.close();
  await sb.cleanup();
});

describe('approval over MCP', () => {
  it('a host without dialogs: approve=true is the assistant’s, on the user’s word, and the test unit comes back', async () => {
    const { client } = await host();
    const id = await created(client);
    const tested = await call(client, 'start_job', { job_id: id, wait_seconds: 20 });
    expect(tested).toMatchObject({ decision: 'not_asked', job: { status: 'TESTING' }, test_unit: { status: 'SUCCEEDED', output: 'alpha' } });
    expect(tested.next).toContain(`start_job {"job_id":${id},"approve":true}`);
    const approved = await call(client, 'start_job', { job_id: id, approve: true });
    expect(approved.decision).toBe('approved_by_assistant');
    expect(approved.test_unit).toMatchObject({ output: 'alpha' });
    expect(approved.job.approved_by).toBe("assistant (on the user's word)");
    const done = await pollStatus(client, id, (s) => s.status === 'COMPLETED');
    expect(done.approved_by).toBe("assistant (on the user's word)");
    const events = await app.orchestrator.monitor.events(id, 0, 100);
    expect(events.some((e) => e.type === 'status' && (e.data as any).approved_by === "assistant (on the user's word)")).toBe(true);
  });

  it('a host that cancels every dialog (claude -p): no answer, so approve=true is honoured, and the person is asked only once', async () => {
    const { client, asked } = await host(() => ({ action: 'cancel' }));
    const id = await created(client);
    const tested = await call(client, 'start_job', { job_id: id, wait_seconds: 20 });
    expect(tested).toMatchObject({ decision: 'no_answer', job: { status: 'TESTING' }, test_unit: { output: 'alpha' } });
    expect(asked).toHaveLength(1);
    const approved = await call(client, 'start_job', { job_id: id, approve: true });
    expect(approved).toMatchObject({ decision: 'approved_by_assistant', job: { approved_by: "assistant (on the user's word)" } });
    expect(asked).toHaveLength(1);
    await pollStatus(client, id, (s) => s.status === 'COMPLETED');
  });

  it('a person who declines in the dialog: that call approves nothing, even with approve=true', async () => {
    const { client, asked } = await host(() => ({ action: 'decline' }));
    const id = await created(client);
    await pollStatus(client, (await call(client, 'start_job', { job_id: id, wait_seconds: 0 })).job.job_id, (s) => s.counts.succeeded === 1);
    const refused = await call(client, 'start_job', { job_id: id, approve: true });
    expect(refused).toMatchObject({ decision: 'declined_by_person', job: { status: 'TESTING', approved_by: null }, test_unit: { output: 'alpha' } });
    expect(asked).toHaveLength(1);
    expect(asked[0]).toContain('alpha');
  });

  it('a person who accepts in the dialog approves, and the assistant still gets the test unit', async () => {
    const { client, asked } = await host(() => ({ action: 'accept', content: { decision: 'approve' } }));
    const id = await created(client);
    const result = await call(client, 'start_job', { job_id: id, wait_seconds: 20 });
    expect(result).toMatchObject({ decision: 'approved_by_person', job: { approved_by: 'person (dialog)' }, test_unit: { status: 'SUCCEEDED', output: 'alpha' } });
    expect(asked).toHaveLength(1);
    await pollStatus(client, id, (s) => s.status === 'COMPLETED');
  });

  it('a person who rejects in the dialog sends the job back to CREATED', async () => {
    const { client } = await host(() => ({ action: 'accept', content: { decision: 'reject' } }));
    const id = await created(client);
    const result = await call(client, 'start_job', { job_id: id, wait_seconds: 20 });
    expect(result).toMatchObject({ decision: 'rejected_by_person', job: { status: 'CREATED' } });
    expect(result.next).toContain('update_job');
  });

  it('skip_test asks the person like an approval: declined stays CREATED; without dialogs it is the assistant’s', async () => {
    const declined = await host(() => ({ action: 'decline' }));
    const id = await created(declined.client);
    const refused = await call(declined.client, 'start_job', { job_id: id, skip_test: true });
    expect(refused).toMatchObject({ decision: 'declined_by_person', job: { status: 'CREATED' } });
    expect(declined.asked[0]).toContain('without a test unit');

    const plain = await host();
    const skipped = await call(plain.client, 'start_job', { job_id: id, skip_test: true, wait_seconds: 0 });
    expect(skipped).toMatchObject({ decision: 'approved_by_assistant', job: { approved_by: "assistant (on the user's word)" } });
    expect(['RUNNING', 'COMPLETED']).toContain(skipped.job.status);
  });

  it('approve on a running job says it already runs, in MCP words', async () => {
    const { client } = await host();
    const id = await created(client, { worker_config: { command: 'sleep', args: ['5'] }, max_workers: 1 });
    await call(client, 'start_job', { job_id: id, skip_test: true, wait_seconds: 0 });
    const text = await callError(client, 'start_job', { job_id: id, approve: true });
    expect(text).toContain(`job ${id} is RUNNING; cannot approve`);
    expect(text).toContain(`get_job_status {"job_id":${id}}`);
    expect(text).not.toMatch(/Pause it first|\babp (start|watch|results)\b/);
    await call(client, 'cancel_job', { job_id: id });
  });

  it('progress goes out only when something changed, at most once a second', async () => {
    const { client } = await host();
    const id = await created(client, { worker_config: { command: 'sh', args: ['-c', 'sleep 1; echo {{item.text}}'] }, max_workers: 1 });
    const progress: string[] = [];
    const started = Date.now();
    const result = (await client.callTool({ name: 'start_job', arguments: { job_id: id, skip_test: true, wait_seconds: 30 } }, undefined, {
      onprogress: (p) => progress.push(String(p.message)),
    })) as any;
    const seconds = (Date.now() - started) / 1000;
    expect(result.structuredContent.job.status).toBe('COMPLETED');
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.length).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
    for (let i = 1; i < progress.length; i++) expect(progress[i]).not.toBe(progress[i - 1]);
  });
});

/*
 * Issue 22, class 3: a person's no to dynamic code is final for its job, and an
 * approval binds the code with its context and its limits. Both are rows in abp's
 * store (the refusal is the job's cancellation with its event, the approval a
 * code_approvals row), so these run on SQLite and on PostgreSQL.
 */
describe('dynamic code: a refusal is final, and an approval binds the code, its context and its limits', () => {
  const code = 'export default (ctx) => (ctx.context.names ?? ["a", "b"]).map((name) => ({ name, _id: name }))';
  const dynamicSpec = (config: Record<string, unknown> = {}) => ({
    name: 'dyn',
    user_intent: 'x',
    enumerator_type: 'dynamic',
    enumerator_config: { code, ...config },
    worker_type: 'shell',
    worker_config: { command: 'true' },
  });
  const refusedText = (id: number) => `job ${id}: a person refused its code, and a refusal is final: it cannot be approved or run. Create a new job if the person wants to be asked again`;

  it('a person who declines in create_job’s dialog: approve_code with the hash create_job returned is refused, and so is every other way', async () => {
    const person = await host(() => ({ action: 'decline' }));
    const refused = await call(person.client, 'create_job', dynamicSpec());
    expect(person.asked).toHaveLength(1);
    expect(person.asked[0]).toContain(code);
    expect(person.asked[0]).toContain('limits: timeout_seconds 60, max_memory_mb 256, limit none');
    const id = refused.job_id as number;
    const hash = refused.approval.code_sha256 as string;
    expect(hash).toBe(approvalSha256(dynamicEnumerator.configSchema.parse(dynamicSpec().enumerator_config)));
    expect(refused).toMatchObject({ status: 'CANCELLED', status_reason: 'code_refused', total: 0, approval: { status: 'code_refused', refused_by: 'person via MCP elicitation' } });
    expect(refused.next).toContain('The person refused this code in the dialog');

    // The model, on a host without dialogs, approves with the hash it was given: refused.
    const model = await host();
    expect(await callError(model.client, 'approve_code', { job_id: id, code_sha256: hash })).toContain(refusedText(id));
    // Asked again on a host with dialogs whose person would say yes: refused before anyone is asked.
    const yes = await host(() => ({ action: 'accept', content: { approve: true } }));
    expect(await callError(yes.client, 'approve_code', { job_id: id })).toContain(refusedText(id));
    expect(await callError(yes.client, 'approve_code', { job_id: id, code_sha256: hash })).toContain(refusedText(id));
    expect(yes.asked).toHaveLength(0);
    // The CLI, and the orchestrator every front end calls.
    const cli = await sb.cli(['approve', String(id), '--code-sha256', hash]);
    expect(cli.exitCode).toBe(1);
    expect(cli.stderr).toContain(refusedText(id));
    await expect(app.orchestrator.approveCode(id, hash, 'cli')).rejects.toThrow(refusedText(id));
    // Nothing ran and nothing was approved: no units, no approval row, and the refusal is on record.
    expect(await sb.query('select id from work_units where job_id = ?', id)).toEqual([]);
    expect(await sb.query('select id from code_approvals where code_sha256 = ?', hash)).toEqual([]);
    const events = await app.orchestrator.monitor.events(id, 0, 100);
    expect(events.find((e) => e.type === 'code_refused')?.data).toEqual({ code_sha256: hash, refused_by: 'person via MCP elicitation' });
    expect((await call(model.client, 'get_job_status', { job_id: id })).status).toBe('CANCELLED');

    // A new job with the same code asks the person again; their yes there runs it.
    const again = await call(yes.client, 'create_job', dynamicSpec());
    expect(yes.asked).toHaveLength(1);
    expect(again).toMatchObject({ status: 'CREATED', status_reason: null, total: 2 });
  });

  it('approve_code with a hash on a host with dialogs asks the person; their no cancels the job for good', async () => {
    const model = await host();
    const pending = await call(model.client, 'create_job', dynamicSpec({ context: { names: ['x'] } }));
    expect(pending.approval.status).toBe('pending_approval');
    const person = await host(() => ({ action: 'accept', content: { approve: false } }));
    const answer = await call(person.client, 'approve_code', { job_id: pending.job_id, code_sha256: pending.approval.code_sha256 });
    expect(person.asked).toHaveLength(1);
    expect(person.asked[0]).toContain('with this context (ctx.context):');
    expect(answer).toMatchObject({ status: 'CANCELLED', status_reason: 'code_refused', approval: { status: 'code_refused' } });
    expect(await callError(model.client, 'approve_code', { job_id: pending.job_id, code_sha256: pending.approval.code_sha256 })).toContain(refusedText(pending.job_id));
  });

  it('a host that cancels the dialog gave no answer: the job stays pending, and the assistant’s hash then approves it', async () => {
    const host_ = await host(() => ({ action: 'cancel' }));
    const pending = await call(host_.client, 'create_job', dynamicSpec({ context: { names: ['y'] } }));
    expect(pending).toMatchObject({ status: 'CREATED', status_reason: 'pending_approval' });
    const approved = await call(host_.client, 'approve_code', { job_id: pending.job_id, code_sha256: pending.approval.code_sha256 });
    expect(host_.asked).toHaveLength(2);
    expect(approved).toMatchObject({ status: 'CREATED', status_reason: null, total: 1 });
  });

  it('changing the context, timeout_seconds, max_memory_mb or limit after an approval needs a new one', async () => {
    const model = await host();
    const base = { context: { names: ['p', 'q'] }, timeout_seconds: 30, max_memory_mb: 128 };
    const first = await call(model.client, 'create_job', dynamicSpec(base));
    expect(first.approval).toMatchObject({ status: 'pending_approval', context: base.context, limits: { timeout_seconds: 30, max_memory_mb: 128, limit: null } });
    const hash = first.approval.code_sha256 as string;
    expect((await call(model.client, 'approve_code', { job_id: first.job_id, code_sha256: hash })).total).toBe(2);

    // The same code, context and limits: approved, so it runs at once (key order does not matter).
    const same = await call(model.client, 'create_job', dynamicSpec({ max_memory_mb: 128, timeout_seconds: 30, context: { names: ['p', 'q'] } }));
    expect(same).toMatchObject({ status_reason: null, total: 2 });

    for (const changed of [
      { ...base, context: { names: ['p', 'q', 'r'] } },
      { ...base, timeout_seconds: 3600 },
      { ...base, max_memory_mb: 8192 },
      { ...base, limit: 1 },
    ]) {
      const job = await call(model.client, 'create_job', dynamicSpec(changed));
      expect(job.status_reason, JSON.stringify(changed)).toBe('pending_approval');
      expect(job.total).toBe(0);
      expect(job.approval.code_sha256).not.toBe(hash);
      // The earlier approval's hash does not fit it.
      expect(await callError(model.client, 'approve_code', { job_id: job.job_id, code_sha256: hash })).toContain(
        `code_sha256: ${hash} does not match job ${job.job_id}'s code (sha256 ${job.approval.code_sha256}, of the code with its context and limits)`,
      );
      const preview = await call(model.client, 'preview_job', dynamicSpec(changed));
      expect(preview).toMatchObject({ count: null, approval: { status: 'pending_approval', code_sha256: job.approval.code_sha256 } });
    }
  });
});

describe('pages that fit the host', () => {
  it('get_results pages stay under 20 KB, long fields carry a marker, and cursors return every output', async () => {
    const { client } = await host();
    const items = Array.from({ length: 30 }, (_, i) => `item${String(i).padStart(2, '0')}`);
    const job = await call(client, 'create_job', {
      name: 'big outputs',
      user_intent: 'pad',
      enumerator_type: 'csv',
      enumerator_config: { file_path: csv(items) },
      worker_type: 'shell',
      // ~3 KB per unit; the last one 12 KB, longer than one field may be in a page.
      worker_config: { command: 'sh', args: ['-c', 'n=3000; [ "$1" = item29 ] && n=12000; printf "%s:" "$1"; head -c $n /dev/zero | tr "\\0" x', 'sh', '{{item.text}}'] },
      max_workers: 4,
    });
    await call(client, 'start_job', { job_id: job.job_id, skip_test: true });
    await pollStatus(client, job.job_id, (s) => s.status === 'COMPLETED', 60_000);

    const outputs: string[] = [];
    let cursor: string | null | undefined;
    let pages = 0;
    do {
      const raw = (await client.callTool({ name: 'get_results', arguments: { job_id: job.job_id, ...(cursor ? { cursor } : {}) } })) as any;
      expect(Buffer.byteLength(raw.content[0].text)).toBeLessThanOrEqual(20_000);
      const page = raw.structuredContent;
      outputs.push(...page.results.map((r: any) => r.output));
      cursor = page.cursor;
      pages++;
    } while (cursor && pages < 50);
    expect(outputs).toHaveLength(30);
    expect(pages).toBeGreaterThan(1);
    expect(outputs.slice(0, 29).every((o, i) => o === `${items[i]}:${'x'.repeat(3000)}`)).toBe(true);
    const last = outputs[29] as string;
    expect(last).toMatch(/…\[cut: 12007 characters in all; read_unit_field \{"unit_id":\d+,"field":"output","offset":4000\} returns the rest\]$/);
    const unitId = Number(/"unit_id":(\d+)/.exec(last)?.[1]);
    const rest = await call(client, 'read_unit_field', { unit_id: unitId, field: 'output', offset: 4000 });
    expect(rest).toMatchObject({ length: 12007, offset: 4000, next_offset: null });
    expect(last.slice(0, 4000) + rest.text).toBe(`item29:${'x'.repeat(12000)}`);
  });

  it('a cursor that this server did not give out is refused, naming the field', async () => {
    const { client } = await host();
    const id = await created(client);
    expect(await callError(client, 'get_results', { job_id: id, cursor: 'nonsense' })).toMatch(/^cursor: "nonsense" is not a cursor this server gave out/);
  });
});

describe('discovery over MCP', () => {
  it('an unknown top-level argument gets abp’s message with the valid names and the nearest one', async () => {
    const { client } = await host();
    const text = await callError(client, 'create_job', { name: 'x', user_intent: 'y', enumerator: 'csv' });
    expect(text).toMatch(/^create_job: unknown argument "enumerator" \(did you mean enumerator_type\?\); it takes name, user_intent, enumerator_type, /);
  });

  it('a wrong worker_config field points to list_workers, which lists every worker’s config schema and health', async () => {
    const { client } = await host();
    const text = await callError(client, 'create_job', {
      name: 'x', user_intent: 'y', enumerator_type: 'csv', enumerator_config: { file_path: csv(['a']) }, worker_type: 'shell', worker_config: { comand: 'true' },
    });
    expect(text).toContain('worker_config');
    expect(text).toContain('list_workers shows every worker type and its config fields');
    const { workers } = await call(client, 'list_workers');
    const shell = workers.find((w: any) => w.type === 'shell');
    expect(Object.keys(shell.config_schema.properties)).toContain('command');
    expect(shell.health[0].status).toMatch(/^(ok|degraded|down|auth_failed)$/);
  });
});
