import { mkdirSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createApp, openStore } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import type { Repository } from '../../src/store/repository.js';
import { SyncStore } from '../../src/store/sync-store.js';
import { Sandbox } from '../helpers/cli.js';
import { call, connectInMemory, pollStatus } from '../helpers/mcp.js';
import { call as http, startServe, type Served } from '../helpers/serve.js';
import { numberedFiles, SyncBed } from './sync-support.js';

/*
 * A sync job's end (the pair's state saved, its `sync_summary` written) is the
 * sync job type's onEnded, reached by the executors' passes and by the moves
 * that end a job: no front end has to call it. Nothing here reads the pair's
 * status or plans the pair for real, since both would save an ended run lazily.
 */

let sb: Sandbox;
let repo: Repository;
let served: Served | undefined;
beforeEach(async () => {
  sb = new Sandbox();
  repo = await openStore(resolveConfig(sb.env));
});
afterEach(async () => {
  await served?.stop();
  served = undefined;
  await repo.close();
  await sb.cleanup();
});

function folder(name: string, contents: Record<string, string>): string {
  const root = sb.path(name);
  mkdirSync(root, { recursive: true });
  for (const [file, text] of Object.entries(contents)) writeFileSync(`${root}/${file}`, text);
  return root;
}

function pairSpec(pair: string, files = 4) {
  const source = folder(`${pair}-src`, numberedFiles(files));
  const target = folder(`${pair}-dst`, {});
  return { pair, source: { type: 'dir', path: source }, target: { type: 'dir', path: target }, options: { apply_chunk_size: 2 } };
}

/** Waits until the job's run is saved, and returns the run and the job's sync_summary events. */
async function saved(jobId: number, timeoutMs = 20_000) {
  const store = new SyncStore(repo);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const run = await store.run(jobId);
    const summaries = (await repo.listEvents(jobId, 0, 10_000)).filter((e) => e.type === 'sync_summary').map((e) => JSON.parse(e.data));
    if (run?.committed_at != null && summaries.length > 0) return { run, summaries };
    if (Date.now() > deadline) throw new Error(`job ${jobId}: its run was not saved (committed_at ${run?.committed_at}, ${summaries.length} summaries)`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('a sync job saves its pair state when it ends, from any front end', () => {
  it('over MCP: created, started and run to its end with no CLI call', async () => {
    const app = await createApp(resolveConfig(sb.env));
    const client = await connectInMemory(app);
    try {
      const sync = pairSpec('mcp-docs');
      const job = await call(client, 'create_job', { name: 'mirror', user_intent: 'mirror the folder', sync: JSON.stringify(sync) });
      expect(job).toMatchObject({ type: 'sync', total: 2, status: 'CREATED' });
      await call(client, 'start_job', { job_id: job.job_id, skip_test: true, wait_seconds: 20 });
      // A detached executor runs it; on a busy machine it can take a while to start.
      await pollStatus(client, job.job_id, (s) => s.status === 'COMPLETED', 90_000);

      const { summaries } = await saved(job.job_id);
      expect(summaries).toHaveLength(1);
      expect(summaries[0]).toMatchObject({ pair: 'mcp-docs', status: 'COMPLETED', adds: 4, unresolved: 0 });
      const again = await call(client, 'preview_job', { name: 'again', user_intent: 'mirror', sync });
      expect(again.sync).toMatchObject({ first_run: false, counts: { adds: 0 } });
      expect(again.count).toBe(0);
    } finally {
      await client.close();
      await app.close();
    }
  }, 150_000);

  it('over HTTP: created, started and run to its end with no CLI call', async () => {
    served = await startServe(sb);
    const sync = pairSpec('http-docs', 3);
    const created = await http(served.url, '/jobs', { method: 'POST', body: { name: 'mirror', user_intent: 'mirror the folder', sync } });
    expect(created.status).toBe(201);
    const id = created.json.job_id as number;
    const started = await http(served.url, `/jobs/${id}/start`, { method: 'POST', body: { skip_test: true, wait_seconds: 20 } });
    expect(started.status).toBe(200);
    const deadline = Date.now() + 90_000;
    for (;;) {
      const job = await http(served.url, `/jobs/${id}`);
      if (job.json.status === 'COMPLETED') break;
      if (Date.now() > deadline) throw new Error(`job ${id} did not complete: ${job.text}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    const { summaries } = await saved(id);
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toMatchObject({ pair: 'http-docs', status: 'COMPLETED', adds: 3 });
    const again = await http(served.url, '/jobs?mode=plan', { method: 'POST', body: { name: 'again', user_intent: 'mirror', sync } });
    expect(again.status).toBe(200);
    expect(again.json.sync).toMatchObject({ first_run: false, counts: { adds: 0 } });
  }, 150_000);

  it('a cancelled sync job has its state saved by the cancel itself, before any executor runs', async () => {
    const app = await createApp(resolveConfig(sb.env));
    const client = await connectInMemory(app);
    try {
      const sync = pairSpec('cancelled', 2);
      // One file already in step: an observation the cancelled run still records.
      writeFileSync(`${sync.target.path}/f001.txt`, 'content of f1\n');
      const job = await call(client, 'create_job', { name: 'mirror', user_intent: 'mirror the folder', sync: JSON.stringify(sync) });
      expect(job.status).toBe('CREATED');
      const cancelled = await call(client, 'cancel_job', { job_id: job.job_id });
      expect(cancelled.status).toBe('CANCELLED');
      // No wait: the cancel ran the job type's end before it answered.
      expect((await new SyncStore(repo).run(job.job_id))?.committed_at).not.toBeNull();
      const { summaries } = await saved(job.job_id, 0);
      expect(summaries).toHaveLength(1);
      expect(summaries[0]).toMatchObject({ pair: 'cancelled', status: 'CANCELLED', adds: 0, unresolved: 1 });
      const again = await call(client, 'preview_job', { name: 'again', user_intent: 'mirror', sync });
      expect(again.sync).toMatchObject({ first_run: false, counts: { adds: 1 } });
    } finally {
      await client.close();
      await app.close();
    }
  });

  it('a stop of the last running unit ends the job, and the stop saves its state before it answers', async () => {
    const bed = await SyncBed.open();
    const client = await connectInMemory(bed.app);
    try {
      bed.files('src', { 'a.md': 'hello\n' });
      bed.files('dst', {});
      // A transform that never finishes by itself, so the one unit is still running when it is stopped.
      const sync = { pair: 'stopped', source: { type: 'dir', path: bed.path('src') }, target: { type: 'dir', path: bed.path('dst') }, transform: { worker_type: 'shell', worker_config: { command: 'sleep', args: ['30'] } } };
      const job = await call(client, 'create_job', { name: 'slow', user_intent: 'copy slowly', sync: JSON.stringify(sync), max_retries: 0 });
      await call(client, 'start_job', { job_id: job.job_id, skip_test: true, wait_seconds: 0 });
      const deadline = Date.now() + 20_000;
      let unitId: number | undefined;
      while (unitId === undefined) {
        unitId = (await bed.app.repo.listUnits(job.job_id, { status: ['RUNNING'] }, { limit: 1, offset: 0 }))[0]?.id;
        if (Date.now() > deadline) throw new Error('the unit never ran');
        if (unitId === undefined) await new Promise((r) => setTimeout(r, 20));
      }
      const stopped = await call(client, 'stop_unit', { unit_id: unitId });
      expect(stopped).toMatchObject({ job: { status: 'FAILED' }, unit: { status: 'FAILED' } });
      // No wait: the stop ran the job type's end before it answered.
      const run = await new SyncStore(bed.app.repo).run(job.job_id);
      expect(run?.committed_at).not.toBeNull();
      expect(await bed.events(job.job_id, 'sync_summary')).toEqual([expect.objectContaining({ pair: 'stopped', status: 'FAILED', adds: 0, unresolved: 1 })]);
      // The executor's next pass kills the stopped unit's process; closing sooner would wait out its shutdown grace.
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      await client.close();
      await bed.close();
    }
  });
});
