import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, Sandbox } from '../helpers/cli.js';
import { call, KEY, slowJob, startServe, waitForStatus, type Served } from '../helpers/serve.js';

let sb: Sandbox;
let srv: Served;
let csv: string;

beforeAll(async () => {
  sb = new Sandbox();
  csv = sb.path('rows.csv');
  writeFileSync(csv, 'id,text\na,alpha\nb,beta\nc,gamma\n');
  srv = await startServe(sb, { ABP_MAX_BODY_BYTES: '65536', ABP_CORS_ORIGINS: 'http://allowed.example' });
});
afterAll(async () => {
  await srv?.stop();
  await sb?.cleanup();
});

const create = async (overrides: Record<string, unknown> = {}) => {
  const r = await call(srv.url, '/jobs', { method: 'POST', body: { ...slowJob(csv), ...overrides } });
  expect(r.status, r.text).toBe(201);
  return r.json;
};

describe('probes', () => {
  it('/health and /ready answer without a key; /ready reports the migrations', async () => {
    const health = await call(srv.url, '/health', { key: false });
    expect(health).toMatchObject({ status: 200, json: { status: 'ok' } });
    const ready = await call(srv.url, '/ready', { key: false });
    expect(ready.status).toBe(200);
    expect(ready.json).toMatchObject({ status: 'ready', database: 'ok', migrations: { pending: [] } });
    expect(ready.json.migrations.latest).toMatch(/^\d{3}-/);
  });
});

describe('security', () => {
  it('refuses a missing or wrong key with 401 in the error envelope, and accepts Bearer or x-api-key', async () => {
    const missing = await call(srv.url, '/jobs', { key: false });
    expect(missing.status).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer');
    expect(missing.json).toEqual({ error: { code: 'unauthorized', message: expect.stringContaining('missing or wrong API key'), details: {} } });
    expect((await call(srv.url, '/jobs', { key: 'wrong' })).status).toBe(401);
    expect((await call(srv.url, '/jobs', { key: `${KEY}x` })).status).toBe(401);
    expect((await call(srv.url, '/metrics', { key: false })).status).toBe(401);
    expect((await call(srv.url, '/schemas', { key: false })).status).toBe(401);
    expect((await call(srv.url, '/jobs/1/events', { key: false })).status).toBe(401);
    expect((await call(srv.url, '/jobs', { key: false, headers: { 'x-api-key': KEY } })).status).toBe(200);
    expect((await call(srv.url, '/jobs')).status).toBe(200);
  });

  it('refuses a foreign Host (DNS rebinding) and a foreign Origin; grants CORS only to ABP_CORS_ORIGINS', async () => {
    const rebinding = await call(srv.url, '/jobs', { headers: { host: `evil.example:${srv.port}` } });
    expect(rebinding.status).toBe(403);
    expect(rebinding.json.error).toMatchObject({ code: 'forbidden_host' });
    // Even the open probes check the Host.
    expect((await call(srv.url, '/health', { key: false, headers: { host: `evil.example:${srv.port}` } })).status).toBe(403);

    const foreign = await call(srv.url, '/jobs', { headers: { origin: 'http://evil.example' } });
    expect(foreign.status).toBe(403);
    expect(foreign.json.error).toMatchObject({ code: 'forbidden_origin', message: expect.stringContaining('ABP_CORS_ORIGINS') });
    expect(foreign.headers['access-control-allow-origin']).toBeUndefined();

    const allowed = await call(srv.url, '/jobs', { headers: { origin: 'http://allowed.example' } });
    expect(allowed.status).toBe(200);
    expect(allowed.headers['access-control-allow-origin']).toBe('http://allowed.example');
    const preflight = await call(srv.url, '/jobs', { method: 'OPTIONS', key: false, headers: { origin: 'http://allowed.example', 'access-control-request-method': 'POST' } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-methods']).toContain('DELETE');

    // The server's own origin (the dashboard) is fine, without CORS headers.
    const self = await call(srv.url, '/jobs', { headers: { origin: `http://127.0.0.1:${srv.port}` } });
    expect(self.status).toBe(200);
    expect(self.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('caps request bodies with 413', async () => {
    const big = JSON.stringify({ ...slowJob(csv), user_intent: 'x'.repeat(70_000) });
    const r = await call(srv.url, '/jobs', { method: 'POST', body: big });
    expect(r.status).toBe(413);
    expect(r.json.error).toMatchObject({ code: 'payload_too_large', details: { max_bytes: 65536 } });
    // The server is fine afterwards.
    expect((await call(srv.url, '/health', { key: false })).status).toBe(200);
  });
});

describe('jobs', () => {
  it('POST /jobs creates (201 + Location); ?mode=plan previews and creates nothing', async () => {
    const before = (await call(srv.url, '/jobs?limit=500')).json.jobs.length;
    const plan = await call(srv.url, '/jobs?mode=plan', { method: 'POST', body: slowJob(csv) });
    expect(plan.status, plan.text).toBe(200);
    expect(plan.json).toMatchObject({ count: 3, items: [{ id: 'a', text: 'alpha' }, { id: 'b' }, { id: 'c' }] });
    expect(plan.json.first_prompt).toContain('alpha');
    expect((await call(srv.url, '/jobs?limit=500')).json.jobs.length).toBe(before);

    const created = await call(srv.url, '/jobs', { method: 'POST', body: slowJob(csv, { name: 'created' }) });
    expect(created.status).toBe(201);
    expect(created.headers.location).toBe(`/jobs/${created.json.job_id}`);
    expect(created.json).toMatchObject({ name: 'created', status: 'CREATED', total: 3, worker_type: 'shell' });
    const got = await call(srv.url, created.headers.location as string);
    expect(got.json).toMatchObject({ job_id: created.json.job_id, user_intent: 'echo each row', enumerator_config: { file_path: csv } });
  });

  it('rejects bad JSON, unknown fields, missing fields and bad query values with 400', async () => {
    const badJson = await call(srv.url, '/jobs', { method: 'POST', body: '{"name": "x",' });
    expect(badJson.status).toBe(400);
    expect(badJson.json.error).toMatchObject({ code: 'invalid_json', message: expect.stringContaining('not JSON') });

    const unknown = await call(srv.url, '/jobs', { method: 'POST', body: { ...slowJob(csv), colour: 'blue' } });
    expect(unknown.status).toBe(400);
    expect(unknown.json.error).toMatchObject({ code: 'invalid_input', message: expect.stringContaining('unknown field: colour') });

    const missing = await call(srv.url, '/jobs', { method: 'POST', body: { name: 'x' } });
    expect(missing.status).toBe(400);
    expect(missing.json.error.message).toContain('user_intent');

    const empty = await call(srv.url, '/jobs', { method: 'POST' });
    expect(empty.status).toBe(400);

    const badConfig = await call(srv.url, '/jobs', { method: 'POST', body: { ...slowJob(csv), worker_config: { command: 'sh', nope: 1 } } });
    expect(badConfig.status).toBe(400);
    expect(badConfig.json.error.message).toContain('worker_config');

    expect((await call(srv.url, '/jobs?mode=launch', { method: 'POST', body: slowJob(csv) })).json.error.message).toContain('query.mode');
    expect((await call(srv.url, '/jobs?status=SLEEPING')).status).toBe(400);
    const typo = await call(srv.url, '/jobs?limt=5');
    expect(typo.status).toBe(400);
    expect(typo.json.error.message).toContain('limt');
    expect((await call(srv.url, '/jobs?limit=0')).status).toBe(400);
  });

  it('GET /jobs filters by state and pages', async () => {
    const a = await create({ name: 'page a' });
    const b = await create({ name: 'page b' });
    const first = await call(srv.url, '/jobs?status=created&limit=1');
    expect(first.status).toBe(200);
    expect(first.json.jobs).toHaveLength(1);
    expect(first.json.jobs[0].job_id).toBe(b.job_id);
    expect(first.json.next_offset).toBe(1);
    const second = await call(srv.url, `/jobs?status=CREATED&limit=1&offset=${first.json.next_offset}`);
    expect(second.json.jobs[0].job_id).toBe(a.job_id);
    const all = await call(srv.url, '/jobs?status=COMPLETED,CREATED&limit=500');
    expect(all.json.jobs.every((j: any) => ['COMPLETED', 'CREATED'].includes(j.status))).toBe(true);
    expect(all.json.next_offset).toBeNull();
  });

  it('answers a missing job with 404, a bad id with 400, an unknown route with 404 and a wrong method with 405', async () => {
    for (const path of ['/jobs/99999', '/jobs/99999/units', '/jobs/99999/results', '/jobs/99999/timeline']) {
      const r = await call(srv.url, path);
      expect(r.status, path).toBe(404);
      expect(r.json).toEqual({ error: { code: 'not_found', message: 'job 99999 does not exist', details: {} } });
    }
    for (const move of ['start', 'pause', 'resume', 'retry', 'checkpoints']) {
      const r = await call(srv.url, `/jobs/99999/${move}`, { method: 'POST', body: move === 'checkpoints' ? { type: 'x' } : {} });
      expect(r.status, move).toBe(404);
    }
    expect((await call(srv.url, '/jobs/99999', { method: 'DELETE' })).status).toBe(404);
    const bad = await call(srv.url, '/jobs/abc');
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toContain('id: expected a positive integer');
    expect((await call(srv.url, '/nothing/here')).json.error.code).toBe('not_found');
    const wrong = await call(srv.url, '/jobs/1/pause');
    expect(wrong.status).toBe(405);
    expect(wrong.headers.allow).toBe('POST');
  });
});

describe('a job through the API', () => {
  it('runs with skip_test; lists units, one unit, results; refuses illegal moves with 409', async () => {
    const job = await create({ name: 'full run' });
    const id = job.job_id;
    expect((await call(srv.url, `/jobs/${id}/start`, { method: 'POST', body: { skip_test: true, colour: 1 } })).status).toBe(400);
    expect((await call(srv.url, `/jobs/${id}/start`, { method: 'POST', body: { skip_test: 'yes' } })).status).toBe(400);
    const started = await call(srv.url, `/jobs/${id}/start`, { method: 'POST', body: { skip_test: true } });
    expect(started.status, started.text).toBe(200);
    expect(['RUNNING', 'COMPLETED']).toContain(started.json.job.status);
    const done = await waitForStatus(srv.url, id, (j) => j.status === 'COMPLETED');
    expect(done.counts).toMatchObject({ succeeded: 3, failed: 0 });

    const units = await call(srv.url, `/jobs/${id}/units?limit=2`);
    expect(units.json.units.map((u: any) => u.item_id)).toEqual(['a', 'b']);
    expect(units.json.next_offset).toBe(2);
    // Keyset paging: `after` the last unit id of a page, handed back as next_after.
    expect(units.json.next_after).toBe(units.json.units[1].unit_id);
    const after = await call(srv.url, `/jobs/${id}/units?limit=2&after=${units.json.next_after}`);
    expect(after.json).toMatchObject({ units: [{ item_id: 'c' }], next_after: null, next_offset: null });
    const badAfter = await call(srv.url, `/jobs/${id}/units?after=abc`);
    expect(badAfter.status).toBe(400);
    expect(badAfter.json.error.message).toContain('after');
    expect((await call(srv.url, `/jobs/${id}/units?after=1&offset=2`)).json.error.message).toMatch(/^after: give either/);
    const succeeded = await call(srv.url, `/jobs/${id}/units?status=succeeded`);
    expect(succeeded.json.units).toHaveLength(3);
    expect((await call(srv.url, `/jobs/${id}/units?status=FAILED`)).json.units).toEqual([]);
    expect((await call(srv.url, `/jobs/${id}/units?status=DONE`)).status).toBe(400);

    const unitId = units.json.units[0].unit_id;
    const unit = await call(srv.url, `/jobs/${id}/units/${unitId}`);
    expect(unit.json).toMatchObject({ unit_id: unitId, job_id: id, status: 'SUCCEEDED', output: 'alpha', payload: { id: 'a', text: 'alpha' } });
    expect(typeof unit.json.prompt).toBe('string');
    const other = await create({ name: 'other' });
    const foreign = await call(srv.url, `/jobs/${other.job_id}/units/${unitId}`);
    expect(foreign.status).toBe(404);
    expect(foreign.json.error.message).toContain(`does not belong to job ${other.job_id}`);
    expect((await call(srv.url, `/jobs/${id}/units/99999`)).status).toBe(404);

    const page1 = await call(srv.url, `/jobs/${id}/results?limit=2`);
    expect(page1.json.results.map((r: any) => r.output)).toEqual(['alpha', 'beta']);
    const page2 = await call(srv.url, `/jobs/${id}/results?limit=2&offset=${page1.json.next_offset}`);
    expect(page2.json).toMatchObject({ job_id: id, results: [{ output: 'gamma' }], next_offset: null });
    const byAfter = await call(srv.url, `/jobs/${id}/results?limit=2&after=${page1.json.next_after}`);
    expect(byAfter.json).toMatchObject({ job_id: id, results: [{ output: 'gamma' }], next_after: null });
    const format = await call(srv.url, `/jobs/${id}/results?format=xml`);
    expect(format.status).toBe(400);
    expect(format.json.error.message).toContain('query.format');
    // With a format, the whole job's results as a download, the same text `abp results --format` writes.
    const csvExport = await call(srv.url, `/jobs/${id}/results?format=csv`);
    expect(csvExport.status).toBe(200);
    expect(csvExport.headers['content-type']).toContain('text/csv');
    expect(csvExport.headers['content-disposition']).toBe(`attachment; filename="job-${id}-results.csv"`);
    const csvLines = csvExport.text.trim().split(/\r?\n/);
    expect(csvLines).toHaveLength(4);
    expect(csvLines[0]).toContain('unit_id,item_id,status');
    expect(csvLines.slice(1).map((l) => l.split(',')[1])).toEqual(['a', 'b', 'c']);
    const jsonl = await call(srv.url, `/jobs/${id}/results?format=jsonl&status=SUCCEEDED`);
    expect(jsonl.headers['content-type']).toContain('application/x-ndjson');
    expect(jsonl.text.trim().split('\n').map((l) => JSON.parse(l).output)).toEqual(['alpha', 'beta', 'gamma']);
    expect((await call(srv.url, '/jobs/99999/results?format=csv')).status).toBe(404);

    const timeline = await call(srv.url, `/jobs/${id}/timeline?buckets=10`);
    expect(timeline.json.points.at(-1)).toMatchObject({ succeeded: 3, failed: 0 });

    for (const [method, path, body] of [
      ['POST', 'pause', {}],
      ['POST', 'resume', {}],
      ['POST', 'retry', {}],
      ['POST', 'start', { approve: true }],
      ['DELETE', '', undefined],
    ] as const) {
      const r = await call(srv.url, `/jobs/${id}${path ? `/${path}` : ''}`, { method, body });
      expect(r.status, `${method} ${path}`).toBe(409);
      expect(r.json.error.code).toBe('illegal_transition');
      expect(r.json.error.details).toMatchObject({ job_id: id, status: 'COMPLETED' });
    }
  });

  it('tests one unit, approves it, and pauses, resumes and cancels', async () => {
    writeFileSync(sb.path('many.csv'), `id,text\n${Array.from({ length: 12 }, (_, i) => `r${i},row${i}`).join('\n')}\n`);
    // Every unit but the test unit waits at a gate that never opens: the job cannot end between the moves.
    const gated = `[ "$1" = row0 ] || while [ ! -e ${sb.path('never')} ]; do sleep 0.05; done; printf '%s' "$1"`;
    const job = await create({
      ...slowJob(sb.path('many.csv'), { maxWorkers: 1 }),
      worker_config: { command: 'sh', args: ['-c', gated, 'sh', '{{item.text}}'] },
      name: 'tested',
    });
    const id = job.job_id;
    const tested = await call(srv.url, `/jobs/${id}/start`, { method: 'POST', body: { wait_seconds: 20 } });
    expect(tested.json.job.status).toBe('TESTING');
    expect(tested.json.test_unit).toMatchObject({ status: 'SUCCEEDED', output: 'row0' });
    const approved = await call(srv.url, `/jobs/${id}/start`, { method: 'POST', body: { approve: true } });
    expect(approved.status, approved.text).toBe(200);
    expect(approved.json.job.status).toBe('RUNNING');
    expect((await call(srv.url, `/jobs/${id}/pause`, { method: 'POST', body: { now: true } })).status).toBe(400);
    const paused = await call(srv.url, `/jobs/${id}/pause`, { method: 'POST' });
    expect(paused.json).toMatchObject({ status: 'PAUSED', status_reason: 'user' });
    expect((await call(srv.url, `/jobs/${id}/pause`, { method: 'POST' })).status).toBe(409);
    const resumed = await call(srv.url, `/jobs/${id}/resume`, { method: 'POST', body: {} });
    expect(resumed.json.status).toBe('RUNNING');
    const cancelled = await call(srv.url, `/jobs/${id}`, { method: 'DELETE' });
    expect(cancelled.status).toBe(200);
    expect(cancelled.json.status).toBe('CANCELLED');
    expect((await call(srv.url, `/jobs/${id}`, { method: 'DELETE' })).status).toBe(409);
  });

  it('records checkpoints as events, and refuses bad ones', async () => {
    const job = await create({ name: 'checkpointed' });
    const r = await call(srv.url, `/jobs/${job.job_id}/checkpoints`, { method: 'POST', body: { type: 'phase', data: { step: 2, note: 'half way' } } });
    expect(r.status, r.text).toBe(201);
    expect(r.json).toMatchObject({ job_id: job.job_id, type: 'checkpoint', data: { type: 'phase', data: { step: 2, note: 'half way' } } });
    expect(r.json.seq).toBeGreaterThan(0);
    expect((await call(srv.url, `/jobs/${job.job_id}/checkpoints`, { method: 'POST', body: { data: 1 } })).json.error.message).toContain('body.type');
    expect((await call(srv.url, `/jobs/${job.job_id}/checkpoints`, { method: 'POST', body: { type: 'x', extra: 1 } })).status).toBe(400);
    expect((await call(srv.url, `/jobs/${job.job_id}/checkpoints`, { method: 'POST', body: '[1,' })).status).toBe(400);
    const row = await sb.queryOne<{ data: string }>("select data from events where job_id = ? and type = 'checkpoint'", job.job_id);
    expect(JSON.parse(row?.data ?? 'null')).toEqual({ type: 'phase', data: { step: 2, note: 'half way' } });
  });
});

describe('schemas', () => {
  it('serves the committed JSON Schemas at /schemas/…', async () => {
    const index = await call(srv.url, '/schemas');
    const names = index.json.schemas.map((s: any) => s.name);
    expect(names).toEqual(expect.arrayContaining(['job-spec.json', 'job.json', 'unit.json', 'checkpoint.json', 'event.json']));
    for (const name of names) {
      const r = await call(srv.url, `/schemas/${name}`);
      expect(r.headers['content-type']).toContain('application/schema+json');
      expect(r.json).toEqual(JSON.parse(readFileSync(join(ROOT, 'schemas', name), 'utf8')));
    }
    expect((await call(srv.url, '/schemas/nope.json')).status).toBe(404);
  });
});
