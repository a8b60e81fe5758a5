import { writeFileSync } from 'node:fs';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Sandbox } from '../helpers/cli.js';
import { call, slowJob, startServe, waitForStatus, type Served } from '../helpers/serve.js';

let sb: Sandbox;
let srv: Served | undefined;

beforeEach(() => {
  sb = new Sandbox();
  writeFileSync(sb.path('rows.csv'), 'id,text\na,alpha\nb,beta\nc,gamma\nd,delta\n');
});
afterEach(async () => {
  await srv?.stop();
  srv = undefined;
  await sb.cleanup();
});

/** One sample's value from the exposition text, by its full name and labels. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('GET /metrics', () => {
  it('exposes job and unit counts, durations, errors, cost, tokens, HTTP timings and heartbeats, and passes promtool check metrics', async () => {
    srv = await startServe(sb);
    const job = (await call(srv.url, '/jobs', { method: 'POST', body: slowJob(sb.path('rows.csv'), { failOn: 'gamma' }) })).json;
    await call(srv.url, '/jobs', { method: 'POST', body: slowJob(sb.path('rows.csv'), { name: 'idle' }) });
    await call(srv.url, `/jobs/${job.job_id}/start`, { method: 'POST', body: { skip_test: true } });
    await waitForStatus(srv.url, job.job_id, (j) => j.status === 'FAILED');
    await call(srv.url, '/jobs/777');

    const r = await call(srv.url, '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toContain('text/plain');
    const text = r.text;
    expect(sample(text, 'abp_jobs{state="FAILED"}')).toBe(1);
    expect(sample(text, 'abp_jobs{state="CREATED"}')).toBe(1);
    expect(sample(text, 'abp_jobs{state="RUNNING"}')).toBe(0);
    expect(sample(text, 'abp_units{state="SUCCEEDED"}')).toBe(3);
    expect(sample(text, 'abp_units{state="FAILED"}')).toBe(1);
    expect(sample(text, 'abp_units{state="PENDING"}')).toBe(4);
    expect(sample(text, 'abp_unit_duration_seconds_count')).toBe(4);
    expect(sample(text, 'abp_unit_duration_seconds_bucket{le="+Inf"}')).toBe(4);
    expect(sample(text, 'abp_unit_outcomes_total{status="SUCCEEDED"}')).toBe(3);
    expect(sample(text, 'abp_worker_errors_total{kind="retryable"}')).toBe(1);
    expect(sample(text, 'abp_cost_usd_total')).toBe(0);
    expect(sample(text, 'abp_tokens_total{direction="input"}')).toBe(0);
    expect(text).toMatch(/^abp_executor_heartbeat_age_seconds\{executor="[^"]+",hostname="[^"]+"\} \d/m);
    expect(sample(text, 'abp_executors')).toBeGreaterThanOrEqual(1);
    expect(text).toContain('abp_http_request_duration_seconds_count{method="POST",route="/jobs",status="201"} 2');
    expect(text).toContain('abp_http_request_duration_seconds_count{method="GET",route="/jobs/:id",status="404"} 1');

    // A second scrape counts nothing twice.
    const again = (await call(srv.url, '/metrics')).text;
    expect(sample(again, 'abp_unit_duration_seconds_count')).toBe(4);
    expect(sample(again, 'abp_worker_errors_total{kind="retryable"}')).toBe(1);

    const check = await execa('promtool', ['check', 'metrics'], { input: again, reject: false });
    expect(check.exitCode, `${check.stdout}\n${check.stderr}`).toBe(0);
  });

  it('counts outcomes recorded before this server started (the events table is the source)', async () => {
    srv = await startServe(sb);
    const job = (await call(srv.url, '/jobs', { method: 'POST', body: slowJob(sb.path('rows.csv')) })).json;
    await call(srv.url, `/jobs/${job.job_id}/start`, { method: 'POST', body: { skip_test: true } });
    await waitForStatus(srv.url, job.job_id, (j) => j.status === 'COMPLETED');
    await srv.stop();
    srv = await startServe(sb);
    const text = (await call(srv.url, '/metrics')).text;
    expect(sample(text, 'abp_unit_duration_seconds_count')).toBe(4);
    expect(sample(text, 'abp_jobs{state="COMPLETED"}')).toBe(1);
  });
});
