import { accessSync, constants, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
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

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const PAIR = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const NUMBER = '[+-]?(?:\\d+\\.?\\d*|\\.\\d+)(?:[eE][+-]?\\d+)?|[+-]?Inf|NaN';
const SAMPLE_LINE = new RegExp(`^(${NAME})(?:\\{((?:${PAIR}(?:,${PAIR})*,?)?)\\})? (${NUMBER})(?: -?\\d+)?$`);
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const toNumber = (value: string) => Number(value.replace(/Inf$/, 'Infinity'));

/**
 * A strict reader of the Prometheus text exposition format (0.0.4), for machines
 * without promtool (it has no npm package, and the npm parsers accept malformed
 * values and unknown types). Returns every problem, each naming its line: the
 * line grammar; one HELP and one TYPE per family, TYPE before its samples; a
 * family's samples together; no series twice; histogram buckets ascending with
 * non-decreasing counts and a +Inf bucket equal to _count; and, as promtool's
 * lint does, HELP on every family and `_total` on counters.
 */
function expositionProblems(text: string): string[] {
  const problems: string[] = [];
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const sampled = new Set<string>();
  const series = new Set<string>();
  const buckets = new Map<string, { le: number; count: number; line: number }[]>();
  const counts = new Map<string, number>();
  let current: string | undefined;
  const familyOf = (name: string) => {
    const base = name.replace(/_(bucket|sum|count)$/, '');
    return base !== name && ['histogram', 'summary'].includes(types.get(base) ?? '') ? base : name;
  };
  text.split('\n').forEach((line, i) => {
    const at = `line ${i + 1}`;
    if (line === '') return;
    const meta = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
    if (meta) {
      const [, kind, name = '', rest = ''] = meta;
      if (!new RegExp(`^${NAME}$`).test(name)) problems.push(`${at}: bad metric name ${name}`);
      if (kind === 'HELP') {
        if (helps.has(name)) problems.push(`${at}: second HELP for ${name}`);
        helps.add(name);
      } else {
        if (!TYPES.has(rest)) problems.push(`${at}: unknown type ${rest} for ${name}`);
        if (types.has(name)) problems.push(`${at}: second TYPE for ${name}`);
        if (sampled.has(name)) problems.push(`${at}: TYPE for ${name} after its samples`);
        types.set(name, rest);
      }
      return;
    }
    if (line.startsWith('#')) return;
    const sample = SAMPLE_LINE.exec(line);
    if (!sample) {
      problems.push(`${at}: not a HELP, TYPE or sample line: ${line}`);
      return;
    }
    const [, name = '', labelText = '', value = ''] = sample;
    const labels = new Map([...labelText.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1] ?? '', m[2] ?? '']));
    const family = familyOf(name);
    if (family !== current && sampled.has(family)) problems.push(`${at}: samples of ${family} are not together`);
    current = family;
    sampled.add(family);
    const key = `${name}{${[...labels].sort().join(',')}}`;
    if (series.has(key)) problems.push(`${at}: series ${key} appears twice`);
    series.add(key);
    if (types.get(family) !== 'histogram') return;
    const group = `${family}{${[...labels].filter(([k]) => k !== 'le').sort().join(',')}}`;
    if (name.endsWith('_count')) counts.set(group, toNumber(value));
    if (!name.endsWith('_bucket')) return;
    const le = labels.get('le');
    if (le === undefined) {
      problems.push(`${at}: bucket without le`);
      return;
    }
    buckets.set(group, [...(buckets.get(group) ?? []), { le: toNumber(le), count: toNumber(value), line: i + 1 }]);
  });
  for (const [group, list] of buckets) {
    list.forEach((b, j) => {
      const prev = list[j - 1];
      if (prev && !(b.le > prev.le)) problems.push(`line ${b.line}: buckets of ${group} are not in ascending le order`);
      if (prev && b.count < prev.count) problems.push(`line ${b.line}: bucket count of ${group} decreases`);
    });
    const inf = list.at(-1);
    if (inf?.le !== Infinity) problems.push(`${group} has no le="+Inf" bucket`);
    else if (counts.get(group) !== inf.count) problems.push(`${group}: _count ${counts.get(group)} is not the +Inf bucket ${inf.count}`);
  }
  for (const family of sampled) {
    if (!helps.has(family)) problems.push(`${family} has no HELP`);
    if (types.get(family) === 'counter' && !family.endsWith('_total')) problems.push(`counter ${family} does not end in _total`);
  }
  return problems;
}

/** promtool (Debian's prometheus package; there is no npm one) when it is on PATH. */
const promtool = (process.env.PATH ?? '')
  .split(delimiter)
  .map((dir) => join(dir, 'promtool'))
  .find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });

if (!promtool) console.warn('http-metrics: promtool is not on PATH, so `promtool check metrics` is skipped; the exposition format is checked by expositionProblems alone');

/** Runs a job to FAILED (one unit fails, three succeed) beside an idle job, and asks for an unknown job. */
async function scrapeAfterAFailedJob(served: Served): Promise<void> {
  const job = (await call(served.url, '/jobs', { method: 'POST', body: slowJob(sb.path('rows.csv'), { failOn: 'gamma' }) })).json;
  await call(served.url, '/jobs', { method: 'POST', body: slowJob(sb.path('rows.csv'), { name: 'idle' }) });
  await call(served.url, `/jobs/${job.job_id}/start`, { method: 'POST', body: { skip_test: true } });
  await waitForStatus(served.url, job.job_id, (j) => j.status === 'FAILED');
  await call(served.url, '/jobs/777');
}

describe('GET /metrics', () => {
  it('exposes job and unit counts, durations, errors, cost, tokens, HTTP timings and heartbeats, in valid exposition format', async () => {
    srv = await startServe(sb);
    await scrapeAfterAFailedJob(srv);

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

    expect(expositionProblems(again)).toEqual([]);
  });

  it('the exposition reader finds malformed text, naming the line', () => {
    const valid = '# HELP h_seconds d\n# TYPE h_seconds histogram\nh_seconds_bucket{le="1"} 1\nh_seconds_bucket{le="+Inf"} 2\nh_seconds_sum 3\nh_seconds_count 2\n';
    expect(expositionProblems(valid)).toEqual([]);
    expect(expositionProblems(valid.replace('_count 2', '_count 5'))).toEqual(['h_seconds{}: _count 5 is not the +Inf bucket 2']);
    expect(expositionProblems(valid.replace('{le="+Inf"} 2', '{le="+Inf"} 0'))).toContain('line 4: bucket count of h_seconds{} decreases');
    expect(expositionProblems('# HELP g d\n# TYPE g gauge\ng{a="x"} abc\n')).toEqual(['line 3: not a HELP, TYPE or sample line: g{a="x"} abc']);
    expect(expositionProblems('# HELP g d\n# TYPE g gauge\ng{a="x} 1\n')).toHaveLength(1);
    expect(expositionProblems('# HELP g d\n# TYPE g gauge\ng 1\ng 2\n')).toEqual(['line 4: series g{} appears twice']);
    expect(expositionProblems('g 1\n# HELP g d\n# TYPE g gauge\n')).toEqual(['line 3: TYPE for g after its samples']);
    expect(expositionProblems('# HELP c d\n# TYPE c counter\nc 1\n')).toEqual(['counter c does not end in _total']);
    expect(expositionProblems('# TYPE g gauge\ng 1\n# TYPE g2 foo\ng2 1\n')).toEqual(['line 3: unknown type foo for g2', 'g has no HELP', 'g2 has no HELP']);
  });

  it.skipIf(!promtool)(`passes \`promtool check metrics\`${promtool ? '' : ' [skipped: promtool is not on PATH; it has no npm package]'}`, async () => {
    srv = await startServe(sb);
    await scrapeAfterAFailedJob(srv);
    const text = (await call(srv.url, '/metrics')).text;
    const check = await execa(promtool ?? 'promtool', ['check', 'metrics'], { input: text, reject: false });
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
