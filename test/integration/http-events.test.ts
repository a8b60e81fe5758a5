import { writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Sandbox, sleep } from '../helpers/cli.js';
import { call, slowJob, SseClient, startServe, waitForStatus, type Served } from '../helpers/serve.js';

let sb: Sandbox;
let srv: Served | undefined;
const clients: SseClient[] = [];

beforeEach(() => {
  sb = new Sandbox();
  writeFileSync(sb.path('rows.csv'), `id,text\n${Array.from({ length: 10 }, (_, i) => `r${i},row${i}`).join('\n')}\n`);
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await srv?.stop();
  srv = undefined;
  await sb.cleanup();
});

const open = async (path: string, headers: Record<string, string> = {}) => {
  const client = await new SseClient((srv as Served).url, path, headers).open();
  clients.push(client);
  return client;
};

/** Every stored event of the job, straight from the table: the ground truth a stream must match. */
const storedSeqs = async (jobId: number) =>
  (await sb.query<{ seq: number }>('select seq from events where job_id = ? order by seq', jobId)).map((r) => String(r.seq));

describe('GET /jobs/{id}/events', () => {
  it('resumes with Last-Event-ID after a disconnect and a server restart: every event exactly once, in order', async () => {
    srv = await startServe(sb);
    const job = (await call(srv.url, '/jobs', { method: 'POST', body: slowJob(sb.path('rows.csv'), { sleepSeconds: 0.4, maxWorkers: 2 }) })).json;
    await call(srv.url, `/jobs/${job.job_id}/start`, { method: 'POST', body: { skip_test: true } });

    const first = await open(`/jobs/${job.job_id}/events`);
    expect(first.status).toBe(200);
    await first.until((c) => c.events.filter((e) => e.event === 'unit').length >= 2);
    expect(first.events[0]?.id).toBeUndefined();
    expect(first.events[0]).toMatchObject({ event: 'hello', data: { type: 'hello', job_id: job.job_id, data: { since: 0 } } });
    first.close();
    const got = first.stored();
    const lastId = got.at(-1)?.id as string;

    // The server goes away mid-job and comes back: the replay comes from the database.
    await srv.stop();
    await sleep(600);
    srv = await startServe(sb);
    const second = await open(`/jobs/${job.job_id}/events`, { 'last-event-id': lastId });
    await second.until((c) => c.events.some((e) => e.event === 'end'), 40_000);
    expect(second.events[0]).toMatchObject({ event: 'hello', data: { data: { since: Number(lastId) } } });
    expect(second.events.at(-1)).toMatchObject({ event: 'end', data: { data: { job: { status: 'COMPLETED' } } } });

    const all = [...got, ...second.stored()];
    const ids = all.map((e) => e.id as string);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.map(Number)).toEqual([...ids.map(Number)].sort((a, b) => a - b));
    expect(ids).toEqual(await storedSeqs(job.job_id));
    // The ids are the seqs, and each event says so in its data too.
    for (const e of all) expect(String(e.data.seq)).toBe(e.id);

    // Types: stored status and unit events keep their type; others (health) are log lines.
    const units = all.filter((e) => e.event === 'unit');
    expect(units).toHaveLength(10);
    expect(units.every((e) => e.data.data.status === 'SUCCEEDED' && typeof e.data.data.unit_id === 'number')).toBe(true);
    expect(all.filter((e) => e.event === 'status').map((e) => e.data.data.status)).toEqual(['CREATED', 'RUNNING', 'COMPLETED']);
    expect(all.find((e) => e.event === 'log')).toMatchObject({ data: { type: 'log', kind: 'health' } });
    // The stream ends with the job's final status.
    expect(second.stored().at(-1)).toMatchObject({ event: 'status', data: { data: { status: 'COMPLETED' } } });
    await second.until((c) => c.ended);
  });

  it('replays from ?since=, carries checkpoints, and sends keep-alive comments while idle', async () => {
    srv = await startServe(sb, { ABP_SSE_KEEPALIVE_SECONDS: '0.3' });
    const job = (await call(srv.url, '/jobs', { method: 'POST', body: slowJob(sb.path('rows.csv')) })).json;
    const checkpoint = await call(srv.url, `/jobs/${job.job_id}/checkpoints`, { method: 'POST', body: { type: 'phase', data: { n: 1 } } });

    const stream = await open(`/jobs/${job.job_id}/events?since=0`);
    await stream.until((c) => c.events.some((e) => e.event === 'checkpoint') && c.comments.some((l) => l.startsWith(': keep-alive')));
    const cp = stream.events.find((e) => e.event === 'checkpoint');
    expect(cp).toMatchObject({ id: String(checkpoint.json.seq), data: { type: 'checkpoint', data: { type: 'phase', data: { n: 1 } } } });

    // A checkpoint recorded while the client listens arrives live.
    await call(srv.url, `/jobs/${job.job_id}/checkpoints`, { method: 'POST', body: { type: 'phase', data: { n: 2 } } });
    await stream.until((c) => c.events.filter((e) => e.event === 'checkpoint').length === 2);

    const later = await open(`/jobs/${job.job_id}/events?since=${checkpoint.json.seq}`);
    await later.until((c) => c.events.filter((e) => e.event === 'checkpoint').length === 1);
    expect(later.stored().map((e) => e.data.data.data)).toEqual([{ n: 2 }]);

    // A cancelled job's stream ends with CANCELLED.
    await call(srv.url, `/jobs/${job.job_id}`, { method: 'DELETE' });
    await stream.until((c) => c.events.some((e) => e.event === 'end'));
    expect(stream.stored().at(-1)).toMatchObject({ event: 'status', data: { data: { status: 'CANCELLED' } } });
    await waitForStatus(srv.url, job.job_id, (j) => j.status === 'CANCELLED');
  });

  it('answers a missing job with 404 and a bad Last-Event-ID or since with 400, before any stream starts', async () => {
    srv = await startServe(sb);
    const missing = await call(srv.url, '/jobs/4242/events');
    expect(missing.status).toBe(404);
    expect(missing.json.error.code).toBe('not_found');
    const job = (await call(srv.url, '/jobs', { method: 'POST', body: slowJob(sb.path('rows.csv')) })).json;
    const bad = await call(srv.url, `/jobs/${job.job_id}/events`, { headers: { 'last-event-id': 'yesterday' } });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toContain('Last-Event-ID');
    expect((await call(srv.url, `/jobs/${job.job_id}/events?since=-1`)).status).toBe(400);
  });
});
