import { writeFileSync } from 'node:fs';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import { Sandbox } from '../helpers/cli.js';
import { call, callError, driveCsvJob, pollStatus, connectInMemory } from '../helpers/mcp.js';

let sb: Sandbox;
let app: App;
let client: Client;

const connect = (capabilities: Record<string, unknown> = {}): Promise<Client> => connectInMemory(app, capabilities);

function rows(): string {
  const path = sb.path('rows.csv');
  writeFileSync(path, 'id,text\na,alpha\nb,beta\nc,gamma\n');
  return path;
}

async function created(extra: Record<string, unknown> = {}): Promise<number> {
  const job = await call(client, 'create_job', {
    name: 'j',
    user_intent: 'echo',
    enumerator_type: 'csv',
    enumerator_config: { file_path: rows() },
    worker_type: 'shell',
    worker_config: { command: 'echo', args: ['{{item.text}}'] },
    ...extra,
  });
  return job.job_id;
}

beforeEach(async () => {
  sb = new Sandbox();
  app = await createApp(resolveConfig(sb.env));
  client = await connect();
});
afterEach(async () => {
  await client.close();
  await app.close();
  await sb.cleanup();
});

describe('MCP tools in process (SDK client over InMemoryTransport)', () => {
  it('lists every tool with a description, described inputs, an output schema and annotations', async () => {
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name).sort();
    for (const name of ['list_enumerators', 'create_job', 'start_job', 'update_job', 'get_job', 'get_job_status', 'list_jobs', 'list_units', 'get_unit', 'get_results', 'pause_job', 'resume_job', 'cancel_job', 'retry_failed']) {
      expect(names).toContain(name);
    }
    for (const tool of tools) {
      expect(tool.description?.length).toBeGreaterThan(40);
      expect(tool.outputSchema?.type).toBe('object');
      expect(tool.annotations).toBeDefined();
      for (const [field, schema] of Object.entries((tool.inputSchema.properties ?? {}) as Record<string, any>)) {
        expect(schema.description, `${tool.name}.${field} has a description`).toBeTruthy();
      }
    }
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
    expect(byName.get_job_status?.annotations).toMatchObject({ readOnlyHint: true, idempotentHint: true });
    expect(byName.cancel_job?.annotations).toMatchObject({ destructiveHint: true });
    expect(byName.update_job?.annotations).toMatchObject({ idempotentHint: true });
  });

  it('list_enumerators gives each config as JSON Schema', async () => {
    const { enumerators } = await call(client, 'list_enumerators');
    const csv = enumerators.find((e: any) => e.type === 'csv');
    expect(csv.config_schema.properties.file_path.type).toBe('string');
    expect(csv.config_schema.required).toContain('file_path');
  });

  it('drives a whole job: create → test → approve → COMPLETED → results', async () => {
    writeFileSync(sb.path('abc.csv'), 'id,text\na,alpha\nb,beta\nc,gamma\n');
    await driveCsvJob(client, sb.path('abc.csv'));
  });

  it('create_job accepts configs as JSON strings and numbers as strings, for string-only clients', async () => {
    const job = await call(client, 'create_job', {
      name: 'strings',
      user_intent: 'x',
      enumerator_type: 'csv',
      enumerator_config: JSON.stringify({ file_path: rows() }),
      worker_type: 'shell',
      worker_config: '{"command": "true"}',
      max_workers: '2',
    });
    expect(job).toMatchObject({ max_workers: 2, total: 3, worker_config: { command: 'true' } });
  });

  it('bad input is a tool error that names the field and says what to do', async () => {
    const unknown = await callError(client, 'create_job', {
      name: 'x', user_intent: 'y', enumerator_type: 'csv', enumerator_config: { file_path: rows(), delimeter: ';' }, worker_type: 'shell', worker_config: { command: 'true' },
    });
    expect(unknown).toContain('unknown field in enumerator_config: delimeter');
    expect(unknown).toContain('list_enumerators');

    const badJson = await callError(client, 'create_job', {
      name: 'x', user_intent: 'y', enumerator_type: 'csv', enumerator_config: '{not json', worker_type: 'shell',
    });
    expect(badJson).toContain('enumerator_config: expected a JSON object');

    const missing = await callError(client, 'get_job_status', { job_id: 999 });
    expect(missing).toBe('job 999 does not exist. Use list_jobs to see the jobs that exist.');

    const wrongType = await callError(client, 'get_job', { job_id: 'abc' });
    expect(wrongType).toMatch(/job_id/);
  });

  it('update_job edits a CREATED job and refuses a running one with the next step', async () => {
    const id = await created();
    const updated = await call(client, 'update_job', { job_id: id, user_intent: 'new intent', prompt_template: 'P {{intent}} {{item.text}}' });
    expect(updated).toMatchObject({ user_intent: 'new intent', prompt_template: 'P {{intent}} {{item.text}}' });
    await call(client, 'start_job', { job_id: id, skip_test: true, wait_seconds: 0 });
    const refused = await callError(client, 'update_job', { job_id: id, name: 'late' });
    expect(refused).toMatch(new RegExp(`job ${id} is (RUNNING|COMPLETED); only a CREATED job can be edited`));
    const unit = await call(client, 'get_unit', { unit_id: (await call(client, 'list_units', { job_id: id })).units[0].unit_id });
    await pollStatus(client, id, (s) => s.status === 'COMPLETED');
    const again = await call(client, 'get_unit', { unit_id: unit.unit_id });
    expect(again.prompt).toBe('P new intent alpha');
    expect(again.payload).toMatchObject({ text: 'alpha', _row_index: 1 });
  });

  it('start_job with reject returns the job to CREATED; list and page through jobs and units', async () => {
    const id = await created();
    const tested = await call(client, 'start_job', { job_id: id, wait_seconds: 20 });
    expect(tested.test_unit.status).toBe('SUCCEEDED');
    const rejected = await call(client, 'start_job', { job_id: id, reject: true });
    expect(rejected.job.status).toBe('CREATED');

    await created();
    const page1 = await call(client, 'list_jobs', { limit: 1 });
    expect(page1.jobs).toHaveLength(1);
    expect(page1.cursor).toEqual(expect.any(String));
    const page2 = await call(client, 'list_jobs', { limit: 1, cursor: page1.cursor });
    expect(page2.jobs[0].job_id).not.toBe(page1.jobs[0].job_id);
    const created2 = await call(client, 'list_jobs', { status: ['CREATED'] });
    expect(created2.jobs.length).toBe(2);
    const units = await call(client, 'list_units', { job_id: id, status: ['PENDING'], limit: 2 });
    expect(units.units).toHaveLength(2);
    expect(units.cursor).toEqual(expect.any(String));
    const rest = await call(client, 'list_units', { job_id: id, status: ['PENDING'], limit: 2, cursor: units.cursor });
    expect(rest.units).toHaveLength(1);
    expect(rest.cursor).toBeNull();
  });

  it('pause, resume, cancel and retry_failed move the job, and illegal moves say what to do', async () => {
    // The units wait at a gate that never opens: the job cannot end on its own between the moves.
    const gate = sb.path('never');
    const id = await created({ worker_config: { command: 'sh', args: ['-c', `while [ ! -e ${gate} ]; do sleep 0.05; done`] }, max_workers: 1 });
    await call(client, 'start_job', { job_id: id, skip_test: 'true', wait_seconds: 0 });
    const paused = await call(client, 'pause_job', { job_id: id });
    expect(paused).toMatchObject({ status: 'PAUSED', status_reason: 'user' });
    const pausedAgain = await callError(client, 'pause_job', { job_id: id });
    expect(pausedAgain).toContain(`job ${id} is PAUSED; cannot pause`);
    expect(pausedAgain).toContain('resume_job');
    expect((await call(client, 'resume_job', { job_id: id })).status).toBe('RUNNING');
    const cancelled = await call(client, 'cancel_job', { job_id: id });
    expect(cancelled.status).toBe('CANCELLED');
    expect(await callError(client, 'cancel_job', { job_id: id })).toContain('The job has ended');

    const failing = await created({ worker_config: { command: 'false' }, max_retries: 0 });
    await call(client, 'start_job', { job_id: failing, skip_test: true });
    await pollStatus(client, failing, (s) => s.status === 'FAILED');
    const retried = await call(client, 'retry_failed', { job_id: failing });
    // The reply is the job as it stands after the move: an executor may already have re-run the units.
    expect(retried.retried).toBe(3);
    expect(['RUNNING', 'FAILED']).toContain(retried.status);
    await pollStatus(client, failing, (s) => s.status === 'FAILED');
    expect(await sb.query('select attempt from work_units where job_id = ? order by id', failing)).toEqual([{ attempt: 2 }, { attempt: 2 }, { attempt: 2 }]);
  });

  it('asks the person through elicitation and acts on their answer', async () => {
    const asked: string[] = [];
    const elicit = await connect({ elicitation: {} });
    elicit.setRequestHandler(ElicitRequestSchema, async (request) => {
      asked.push(request.params.message);
      return { action: 'accept', content: { decision: 'approve' } };
    });
    const id = await created();
    const progress: number[] = [];
    const result = (await elicit.callTool({ name: 'start_job', arguments: { job_id: id, wait_seconds: 20 } }, undefined, {
      onprogress: (p) => progress.push(p.progress),
    })) as any;
    expect(result.isError).toBeFalsy();
    expect(asked).toHaveLength(1);
    expect(asked[0]).toContain('alpha');
    expect(result.structuredContent.decision).toBe('approved_by_person');
    expect(result.structuredContent.job.approved_by).toBe('person (dialog)');
    expect(result.structuredContent.test_unit).toMatchObject({ status: 'SUCCEEDED', output: 'alpha' });
    expect(['RUNNING', 'COMPLETED']).toContain(result.structuredContent.job.status);
    expect(progress.length).toBeGreaterThan(0);
    await elicit.close();
  });

  it('a person who declines keeps the job in TESTING', async () => {
    const elicit = await connect({ elicitation: {} });
    elicit.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'decline' }));
    const id = await created();
    const first = await call(elicit, 'start_job', { job_id: id, wait_seconds: 20 });
    expect(first).toMatchObject({ decision: 'declined_by_person', job: { status: 'TESTING', approved_by: null } });
    expect(first.test_unit.output).toBe('alpha');
    await elicit.close();
  });

  it('preview_job shows the count, the first items and the first prompt, and creates nothing', async () => {
    const preview = await call(client, 'preview_job', {
      name: 'p', user_intent: 'Shout {{item.text}}', enumerator_type: 'csv', enumerator_config: { file_path: rows() },
      worker_type: 'shell', worker_config: { command: 'true' }, sample: 2,
    });
    expect(preview.count).toBe(3);
    expect(preview.items).toHaveLength(2);
    expect(preview.first_prompt).toContain('Shout {{item.text}}');
    expect(preview.first_prompt).toContain('"text": "alpha"');
    expect((await call(client, 'list_jobs')).jobs).toEqual([]);
    expect(await callError(client, 'preview_job', { name: 'p', user_intent: 'x', enumerator_type: 'csv', enumerator_config: {}, worker_type: 'shell' })).toContain('enumerator_config.file_path');
  });

  it('doctor reports every worker type’s health', async () => {
    const { workers } = await call(client, 'doctor');
    const shell = workers.find((w: any) => w.worker_type === 'shell');
    expect(shell.health.status).toMatch(/^(ok|degraded|down|auth_failed)$/);
    expect(new Set(workers.map((w: any) => w.worker_type))).toContain('shell');
  });

  it('dynamic code runs only after approval of its exact hash, asked of the person where the client can', async () => {
    const code = 'export default async function* enumerate() { yield { n: 1 }; yield { n: 2 }; }';
    const spec = { name: 'dyn', user_intent: 'x', enumerator_type: 'dynamic', enumerator_config: { code }, worker_type: 'shell', worker_config: { command: 'true' } };
    const pending = await call(client, 'create_job', spec);
    expect(pending.approval).toMatchObject({ status: 'pending_approval', code });
    expect(pending.total).toBe(0);
    const hash = pending.approval.code_sha256 as string;
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    const shown = await call(client, 'approve_code', { job_id: pending.job_id });
    expect(shown.approval.code_sha256).toBe(hash);
    const wrong = await callError(client, 'approve_code', { job_id: pending.job_id, code_sha256: 'a'.repeat(64) });
    expect(wrong).toContain('does not match');
    const approved = await call(client, 'approve_code', { job_id: pending.job_id, code_sha256: hash });
    expect(approved.total).toBe(2);

    const asked: string[] = [];
    const person = await connect({ elicitation: {} });
    person.setRequestHandler(ElicitRequestSchema, async (request) => {
      asked.push(request.params.message);
      return { action: 'accept', content: { approve: true } };
    });
    const changed = code.replace('n: 2', 'n: 3');
    const direct = await call(person, 'create_job', { ...spec, enumerator_config: { code: changed } });
    expect(asked).toHaveLength(1);
    expect(asked[0]).toContain(changed);
    expect(direct.total).toBe(2);
    await person.close();
  });

  it('serves the status, jobs, job and results resources', async () => {
    const id = await created();
    const read = async (uri: string) => JSON.parse(((await client.readResource({ uri })).contents[0] as { text: string }).text);
    expect((await read('abp://status')).jobs_by_status).toEqual({ CREATED: 1 });
    expect((await read('abp://jobs'))[0].job_id).toBe(id);
    expect((await read(`abp://jobs/${id}`)).user_intent).toBe('echo');
    expect(await read(`abp://jobs/${id}/results`)).toHaveLength(3);
    const templates = await client.listResourceTemplates();
    expect(templates.resourceTemplates.map((t) => t.uriTemplate).sort()).toEqual(['abp://jobs/{job_id}', 'abp://jobs/{job_id}/results']);
  });
});
