import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import { groupAlive, Sandbox } from '../helpers/cli.js';
import { call as mcpCall, callError, connectInMemory } from '../helpers/mcp.js';
import { call as httpCall, startServe, type Served } from '../helpers/serve.js';

/**
 * Per-unit control, end to end: real CLI processes, a real detached executor, shell
 * units that are real process groups. A unit marked "held" blocks (in `sleep`) until
 * its "go" file exists, so a test decides when it may finish; every run appends to
 * a log, so its output says which run produced it.
 */
let sb: Sandbox;
let app: App | undefined;
let served: Served | undefined;

afterEach(async () => {
  await served?.stop();
  served = undefined;
  await app?.close();
  app = undefined;
  await sb?.cleanup();
});

const SCRIPT = [
  'id="$1"; dir="$2"',
  'echo run >> "$dir/runs-$id"',
  'if [ -f "$dir/hold-$id" ] && [ ! -f "$dir/go-$id" ]; then echo $$ > "$dir/pid-$id"; sleep 600; fi',
  'printf "done %s run %s" "$id" "$(wc -l < "$dir/runs-$id" | tr -d " ")"',
].join('\n');

function spec(ids: string[], extra: Record<string, unknown> = {}) {
  const file = sb.path(`items-${ids.join('')}.json`);
  writeFileSync(file, JSON.stringify(ids.map((id) => ({ id }))));
  return {
    name: 'unit control',
    user_intent: 'run each item',
    enumerator_type: 'json',
    enumerator_config: { file_path: file, id_field: 'id' },
    worker_type: 'shell',
    worker_config: { command: 'sh', args: ['-c', SCRIPT, 'sh', '{{item.id}}', sb.home] },
    max_workers: 4,
    max_retries: 2,
    ...extra,
  };
}

async function createAndRun(ids: string[], held: string[], extra: Record<string, unknown> = {}): Promise<number> {
  for (const id of held) writeFileSync(sb.path(`hold-${id}`), '');
  const specFile = sb.path(`spec-${ids.join('')}.json`);
  writeFileSync(specFile, JSON.stringify(spec(ids, extra)));
  const job = await sb.ok(['create', '--spec', specFile]);
  await sb.ok(['start', String(job.job_id), '--skip-test']);
  return job.job_id;
}

async function unitOf(job: number, item: string): Promise<any> {
  const row = await sb.queryOne<any>('select * from work_units where job_id = ? and item_id = ?', job, item);
  if (!row) throw new Error(`job ${job} has no unit for item ${item}`);
  return row;
}

/** Waits until the held item's unit runs inside `sleep` and its process group is known; returns that group. */
async function waitHeld(job: number, item: string): Promise<{ id: number; pgid: number; attempt: number }> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const u = await unitOf(job, item);
    if (u.status === 'RUNNING' && u.worker_pid !== null && existsSync(sb.path(`pid-${item}`))) return { id: u.id, pgid: u.worker_pid, attempt: u.attempt };
    if (Date.now() > deadline) throw new Error(`unit of ${item} never ran held: ${JSON.stringify(u)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A unit just queued again: an executor may claim it, or finish it, before the answer is read. */
const AGAIN = ['PENDING', 'RUNNING', 'SUCCEEDED'];

async function waitUntil(condition: () => boolean, what = 'the condition'): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function waitGroupGone(pgid: number): Promise<void> {
  await waitUntil(() => !groupAlive(pgid), `process group ${pgid} to end`);
}

describe('per-unit control from the CLI', () => {
  it('stops one running unit (its processes die, it ends FAILED unspent, the others are untouched), then retries it, then re-does a succeeded one', async () => {
    sb = new Sandbox({ ABP_EXECUTOR_IDLE_SECONDS: '30' });
    const job = await createAndRun(['a', 'b', 'c'], ['c']);
    const held = await waitHeld(job, 'c');
    await sb.waitFor(job, (s) => s.counts.succeeded === 2);

    const stopped = await sb.ok(['stop-unit', String(held.id)]);
    expect(stopped.unit).toMatchObject({ unit_id: held.id, status: 'FAILED' });
    await waitGroupGone(held.pgid);
    const failedJob = await sb.waitFor(job, (s) => s.status === 'FAILED');
    expect(failedJob.status_reason).toMatch(/^units_failed: 1 of 3/);
    const c = await unitOf(job, 'c');
    expect(c).toMatchObject({ status: 'FAILED', error: 'stopped by a person', error_kind: 'stopped', failures: 0, lease_owner: null });
    // The executor's own outcome for the stopped attempt was refused by the fence, and it says why.
    const log = () => readFileSync(sb.path('logs', 'executor.log'), 'utf8');
    await waitUntil(() => log().includes(`unit ${held.id}: attempt ${held.attempt} was stopped by a person`), `the executor's log to say so:\n${log()}`);
    expect((await unitOf(job, 'a')).output).toBe('done a run 1');

    // Refusals name the unit and its state; a bad flag value names the flag.
    const a = await unitOf(job, 'a');
    const notRunning = await sb.cli(['stop-unit', String(a.id)]);
    expect(notRunning.exitCode).not.toBe(0);
    expect(notRunning.stderr).toContain(`unit ${a.id} of job ${job} is SUCCEEDED; only a RUNNING unit can be stopped`);
    const badThen = await sb.cli(['stop-unit', String(a.id), '--then', 'later']);
    expect(badThen.exitCode).toBe(2);
    expect(badThen.stderr).toContain('--then: expected failed or pending, got "later"');
    const missing = await sb.cli(['retry-unit', '999999']);
    expect(missing.exitCode).not.toBe(0);
    expect(missing.stderr).toContain('unit 999999 does not exist');

    // Retry the stopped unit: the FAILED job runs again for it, and only for it.
    writeFileSync(sb.path('go-c'), '');
    const retried = await sb.ok(['retry-unit', String(held.id)]);
    // Queued again; an executor may already have claimed it, or even finished it, by the time the answer is read.
    expect(AGAIN).toContain(retried.unit.status);
    expect(retried.job.status).toMatch(/^(RUNNING|COMPLETED)$/);
    const done = await sb.waitFor(job, (s) => s.status === 'COMPLETED');
    expect(done.counts).toMatchObject({ succeeded: 3, failed: 0, pending: 0, running: 0 });
    expect(await unitOf(job, 'c')).toMatchObject({ status: 'SUCCEEDED', output: 'done c run 2', failures: 0, error: null });
    expect(await unitOf(job, 'b')).toMatchObject({ output: 'done b run 1', attempt: 1 });

    // Re-do a unit that succeeded: the COMPLETED job runs again for it, and its output is the new run's.
    const redo = await sb.ok(['retry-unit', String(a.id)]);
    expect(redo.unit.unit_id).toBe(a.id);
    expect(AGAIN).toContain(redo.unit.status);
    await sb.waitFor(job, (s) => s.status === 'COMPLETED');
    expect(await unitOf(job, 'a')).toMatchObject({ status: 'SUCCEEDED', output: 'done a run 2', attempt: 2 });
    expect(await sb.counts(job)).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: 3, failed: 0, cancelled: 0 });
    const events = await sb.query<any>("select type, data from events where job_id = ? and type in ('unit_stop', 'unit_retry') order by seq", job);
    expect(events.map((e) => [e.type, JSON.parse(e.data).unit_id])).toEqual([
      ['unit_stop', held.id],
      ['unit_retry', held.id],
      ['unit_retry', a.id],
    ]);
  });

  it('a re-done unit of a job with a synthesis gets a fresh synthesis over the new output', async () => {
    sb = new Sandbox({ ABP_EXECUTOR_IDLE_SECONDS: '30' });
    const synthScript = `if [ -n "$3" ]; then cat "$3"; else\n${SCRIPT}\nfi`;
    const job = await createAndRun(['x', 'y'], [], {
      post_processing_prompt: 'List every output.',
      worker_config: { command: 'sh', args: ['-c', synthScript, 'sh', '{{item.id}}', sb.home, '{{item.manifest_path}}'] },
    });
    const first = await sb.waitFor(job, (s) => s.status === 'COMPLETED');
    expect(first.total).toBe(3);
    const x = await unitOf(job, 'x');
    const before = await sb.queryOne<any>('select synthesis_unit_id, result from jobs where id = ?', job);
    expect(before.result).toContain('done x run 1');

    await sb.ok(['retry-unit', String(x.id)]);
    await sb.waitFor(job, (s) => s.status === 'COMPLETED' && s.counts.running === 0);
    const after = await sb.queryOne<any>('select synthesis_unit_id, result, total from jobs where id = ?', job);
    expect(after.total).toBe(3);
    expect(after.synthesis_unit_id).not.toBe(before.synthesis_unit_id);
    expect(after.result).toContain('done x run 2');
    expect(after.result).toContain('done y run 1');
    expect(await sb.counts(job)).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: 3, failed: 0, cancelled: 0 });
  });
});

describe('per-unit control over MCP and HTTP', () => {
  it('MCP: stop_unit with then=pending puts the unit back unspent and it runs again; retry_unit re-does a succeeded unit and refuses a running one', async () => {
    sb = new Sandbox({ ABP_EXECUTOR_IDLE_SECONDS: '30' });
    app = await createApp(resolveConfig(sb.env));
    const client = await connectInMemory(app);
    const job = await createAndRun(['p', 'q'], ['p']);
    const held = await waitHeld(job, 'p');

    const running = await callError(client, 'retry_unit', { unit_id: held.id });
    expect(running).toContain(`unit ${held.id} of job ${job}: it is RUNNING; stop it first`);

    writeFileSync(sb.path('go-p'), '');
    const stopped = await mcpCall(client, 'stop_unit', { unit_id: held.id, then: 'pending' });
    expect(AGAIN).toContain(stopped.unit.status);
    await waitGroupGone(held.pgid);
    await sb.waitFor(job, (s) => s.status === 'COMPLETED');
    const p = await unitOf(job, 'p');
    // The second attempt ran the item again; the stop spent no retry.
    expect(p).toMatchObject({ status: 'SUCCEEDED', output: 'done p run 2', attempt: held.attempt + 1, failures: 0 });

    const q = await unitOf(job, 'q');
    const redo = await mcpCall(client, 'retry_unit', { unit_id: q.id });
    expect(redo).toMatchObject({ unit: { unit_id: q.id }, job: { job_id: job } });
    expect(AGAIN).toContain(redo.unit.status);
    await sb.waitFor(job, (s) => s.status === 'COMPLETED');
    expect((await unitOf(job, 'q')).output).toBe('done q run 2');

    const bad = await callError(client, 'stop_unit', { unit_id: q.id, then: 'later' });
    expect(bad).toMatch(/then/);
    await client.close();
  });

  it('HTTP: POST …/units/{unit_id}/stop and …/retry answer with the unit; a unit under another job is a 404; a bad body names the field', async () => {
    sb = new Sandbox({ ABP_EXECUTOR_IDLE_SECONDS: '30' });
    served = await startServe(sb);
    const job = await createAndRun(['h', 'i'], ['h']);
    const other = await createAndRun(['z'], []);
    const held = await waitHeld(job, 'h');

    const wrongJob = await httpCall(served.url, `/jobs/${other}/units/${held.id}/stop`, { method: 'POST', body: {} });
    expect(wrongJob.status).toBe(404);
    expect(wrongJob.json.error.message).toBe(`unit ${held.id} does not belong to job ${other}`);
    const badBody = await httpCall(served.url, `/jobs/${job}/units/${held.id}/stop`, { method: 'POST', body: { then: 'later' } });
    expect(badBody.status).toBe(400);
    expect(badBody.text).toContain('then');
    expect((await unitOf(job, 'h')).status).toBe('RUNNING');

    const stopped = await httpCall(served.url, `/jobs/${job}/units/${held.id}/stop`, { method: 'POST', body: { then: 'failed' } });
    expect(stopped.status).toBe(200);
    expect(stopped.json).toMatchObject({ unit_id: held.id, job_id: job, status: 'FAILED', error: 'stopped by a person' });
    await waitGroupGone(held.pgid);
    await sb.waitFor(job, (s) => s.status === 'FAILED');

    const again = await httpCall(served.url, `/jobs/${job}/units/${held.id}/stop`, { method: 'POST', body: {} });
    expect(again.status).toBe(409);
    expect(again.json.error.message).toContain('is FAILED; only a RUNNING unit can be stopped');

    writeFileSync(sb.path('go-h'), '');
    const retried = await httpCall(served.url, `/jobs/${job}/units/${held.id}/retry`, { method: 'POST', body: {} });
    expect(retried.status).toBe(200);
    expect(retried.json).toMatchObject({ unit_id: held.id });
    expect(AGAIN).toContain(retried.json.status);
    await sb.waitFor(job, (s) => s.status === 'COMPLETED');
    expect((await unitOf(job, 'h')).output).toBe('done h run 2');
  });
});
