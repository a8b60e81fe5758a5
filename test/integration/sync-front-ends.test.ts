import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import { createMcpServer } from '../../src/mcp/server.js';
import { Sandbox } from '../helpers/cli.js';
import { call, pollStatus } from '../helpers/mcp.js';
import { numberedFiles } from './sync-support.js';

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox();
});
afterEach(async () => {
  await sb.cleanup();
});

function files(folder: string, contents: Record<string, string>): string {
  const root = sb.path(folder);
  mkdirSync(root, { recursive: true });
  for (const [name, text] of Object.entries(contents)) writeFileSync(`${root}/${name}`, text);
  return root;
}

describe('sync jobs from every front end', () => {
  it('abp sync: plan (dry run), then run → TESTING on the first chunk → approve → COMPLETED, then status', async () => {
    const src = files('src', numberedFiles(5));
    files('dst', {});
    const flags = ['--source', `dir:${src}`, '--target', `dir:${sb.path('dst')}`, '-o', 'apply_chunk_size=2', '--pair', 'docs'];

    const plan = await sb.ok(['sync', 'plan', ...flags]);
    expect(plan.sync).toMatchObject({ dry_run: true, counts: { adds: 5 } });
    const listed = await sb.ok(['list']);
    expect(Array.isArray(listed) ? listed : listed.jobs).toHaveLength(0);

    const created = await sb.ok(['sync', 'run', ...flags, '--start', '--wait', '30']);
    expect(created).toMatchObject({ type: 'sync', units: 3, job: { status: 'TESTING' }, test_unit: { status: 'SUCCEEDED' } });
    expect(created.test_unit.structured_output.outcomes).toHaveLength(2);
    const id = created.job_id as number;

    const approved = await sb.ok(['start', String(id), '--approve', '--wait']);
    expect(approved.job.status).toBe('COMPLETED');
    const status = await sb.ok(['sync', 'status', 'docs']);
    expect(status).toMatchObject({ pair_id: 'docs', baseline: { source: 5, target: 5 } });
    expect(status.runs[0]).toMatchObject({ job_id: id, committed: true });
    const human = await sb.cli(['sync', 'status', 'docs']);
    expect(human.stdout).toMatch(/docs \(one-way\): baseline 5 source \/ 5 target items, 0 tombstones/);
  });

  it('abp create --spec with a sync section, and abp preview on the same spec', async () => {
    const src = files('src', numberedFiles(3));
    files('dst', {});
    const spec = sb.path('sync.json');
    writeFileSync(spec, JSON.stringify({ name: 'docs mirror', sync: { source: { type: 'dir', path: src }, target: { type: 'dir', path: sb.path('dst') } } }));
    const preview = await sb.ok(['preview', '--spec', spec]);
    expect(preview).toMatchObject({ count: 3, enumerator_type: 'sync-plan', worker_type: 'sync-apply' });
    const job = await sb.ok(['create', '--spec', spec]);
    expect(job).toMatchObject({ type: 'sync', name: 'docs mirror', total: 1, status: 'CREATED' });
    const done = await sb.ok(['start', String(job.job_id), '--skip-test', '--wait']);
    expect(done.job.status).toBe('COMPLETED');
  });

  it('abp sync run exits 0 when its job COMPLETED (unresolved items included) and 1 when it FAILED, as abp start does', async () => {
    const src = files('src', { 'a.txt': 'A', 'b.txt': 'B' });
    // The target has a folder where a.txt must go: that write fails every time; b.txt goes through.
    mkdirSync(sb.path('dst', 'a.txt'), { recursive: true });
    const flags = ['--source', `dir:${src}`, '--target', `dir:${sb.path('dst')}`, '--skip-test', '--wait', '60'];
    const partial = await sb.cli(['sync', 'run', ...flags, '--json']);
    expect(partial.json?.job?.status, partial.stdout + partial.stderr).toBe('COMPLETED');
    expect(partial.json.summary).toMatchObject({ adds: 1, unresolved: 1 });
    expect(partial.exitCode).toBe(0);

    // Only a.txt is left to write, and nothing of the run can be applied: FAILED.
    const failed = await sb.cli(['sync', 'run', ...flags]);
    expect(failed.stdout, failed.stderr).toMatch(/is FAILED: \+0 ~0 −0 unresolved 1 blocked 0/);
    expect(failed.exitCode).toBe(1);

    rmSync(sb.path('dst', 'a.txt'), { recursive: true });
    const done = await sb.cli(['sync', 'run', ...flags]);
    expect(done.stdout, done.stderr).toMatch(/is COMPLETED: \+1 ~0 −0 unresolved 0 blocked 0/);
    expect(done.exitCode).toBe(0);
  });

  it('a dry run writes nothing, not even against a down source or a snapshot that fails', async () => {
    files('dst', {});
    const events = () => sb.query<{ n: number }>('select count(*) n from events');
    await sb.ok(['migrate']);
    const before = await events();
    const down = await sb.cli(['sync', 'plan', '--source', `dir:${sb.path('gone')}`, '--target', `dir:${sb.path('dst')}`, '--json']);
    expect(down.exitCode).not.toBe(0);
    expect(down.stderr + down.stdout).toMatch(/source .* is down/);
    writeFileSync(sb.path('broken.jsonl'), '{"id": "a"}\n{"id": "b", broken\n');
    const broken = await sb.cli(['sync', 'plan', '--source', `jsonl:${sb.path('broken.jsonl')}`, '--target', `json:${sb.path('out.json')}`, '--json']);
    expect(broken.exitCode).not.toBe(0);
    expect(broken.stderr + broken.stdout).toMatch(/not valid JSON/);
    expect(await events()).toEqual(before);
  });

  it('bad sync specs are refused with the field named', async () => {
    const r = await sb.cli(['sync', 'run', '--source', 'dir:/tmp', '--target', 'jsonl:/tmp/x.jsonl', '--json']);
    expect(r.exitCode).toBe(2);
    expect(r.json.error.message).toMatch(/sync\.target\.type: a dir provider pairs only with another dir provider/);
    const mode = await sb.cli(['sync', 'run', '--source', 'dir:/tmp', '--target', 'dir:/tmp/b', '--mode', 'both-ways', '--json']);
    expect(mode.exitCode).toBe(2);
    expect(mode.json.error.message).toMatch(/sync\.mode/);
  });

  it('MCP create_job with job type sync runs through start_job like any job', async () => {
    const src = files('src', numberedFiles(4));
    files('dst', {});
    const app = await createApp(resolveConfig(sb.env));
    const server = createMcpServer({ app: async () => app });
    const [clientSide, serverSide] = InMemoryTransport.createLinkedPair();
    await server.connect(serverSide);
    const client = new Client({ name: 'test', version: '1.0.0' });
    await client.connect(clientSide);
    try {
      const preview = await call(client, 'preview_job', { name: 'p', user_intent: 'mirror', sync: { source: { type: 'dir', path: src }, target: { type: 'dir', path: sb.path('dst') } } });
      expect(preview).toMatchObject({ count: 4 });
      const job = await call(client, 'create_job', {
        name: 'mirror',
        user_intent: 'mirror the folder',
        sync: JSON.stringify({ source: { type: 'dir', path: src }, target: { type: 'dir', path: sb.path('dst') }, options: { apply_chunk_size: 2 } }),
      });
      expect(job).toMatchObject({ type: 'sync', total: 2, status: 'CREATED' });
      const started = await call(client, 'start_job', { job_id: job.job_id, skip_test: true, wait_seconds: 20 });
      expect(['RUNNING', 'COMPLETED']).toContain(started.job.status);
      // A detached executor is spawned for it; on a busy machine it can take a while to start.
      await pollStatus(client, job.job_id, (s) => s.status === 'COMPLETED', 90_000);
    } finally {
      await client.close();
      await app.close();
    }
  }, 120_000);
});
