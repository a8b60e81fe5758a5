import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import { startMockOpenAI, type MockServer } from '../fixtures/mock-openai.js';
import { ROOT, Sandbox, sleep } from '../helpers/cli.js';
import { createTestDatabase, queryPostgres } from '../helpers/postgres.js';

let sb: Sandbox;
let mock: MockServer | undefined;
afterEach(async () => {
  await sb?.cleanup();
  await mock?.close();
  mock = undefined;
});

function items(ids: string[]): string {
  const file = sb.path('items.csv');
  writeFileSync(file, ['id,text', ...ids.map((id) => `${id},${id === 'b/2' ? '"beta, ""quoted"""' : `text ${id}`}`)].join('\n') + '\n');
  return file;
}

async function job(spec: Record<string, unknown>): Promise<number> {
  writeFileSync(sb.path('spec.json'), JSON.stringify({ name: 'r', user_intent: 'describe', enumerator_type: 'csv', ...spec }));
  return (await sb.ok(['create', '--spec', sb.path('spec.json')])).job_id;
}

async function runToEnd(id: number, env: Record<string, string> = {}): Promise<any> {
  await sb.cli(['start', String(id), '--skip-test'], env);
  return sb.waitFor(id, (s) => ['COMPLETED', 'FAILED', 'PAUSED'].includes(s.status), 60_000);
}

async function structuredJob(): Promise<number> {
  const id = await job({
    enumerator_config: { file_path: items(['a1', 'b/2', 'c3']), id_column: 'id' },
    worker_type: 'function',
    worker_config: { module: join(ROOT, 'test/fixtures/functions/describe.mjs') },
  });
  expect((await runToEnd(id)).status).toBe('COMPLETED');
  return id;
}

describe('exports', () => {
  it('writes JSONL, JSON, CSV with structured outputs as columns, and Markdown', async () => {
    sb = new Sandbox();
    const id = await structuredJob();
    const jsonl = (await sb.cli(['results', String(id), '--format', 'jsonl'])).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(jsonl.map((l) => l.structured_output.word)).toEqual(['text a1', 'beta, "quoted"', 'text c3']);
    const json = JSON.parse((await sb.cli(['results', String(id), '--format', 'json'])).stdout);
    expect(json).toEqual(jsonl);

    const csv = (await sb.cli(['results', String(id), '--format', 'csv'])).stdout.trim().split('\n');
    expect(csv[0]).toBe('unit_id,item_id,status,attempt,output,error,cost_usd,duration_ms,payload,output.length,output.shape.upper,output.shape.vowels,output.word');
    expect(csv).toHaveLength(4);
    expect(csv[2]).toContain(',b/2,SUCCEEDED,1,');
    expect(csv[2]).toMatch(/,14,"BETA, ""QUOTED""",5,"beta, ""quoted"""$/);

    const md = (await sb.cli(['results', String(id), '--format', 'markdown'])).stdout;
    expect(md).toMatch(/^# Results of job \d+: r\n\nCOMPLETED: 3 succeeded, 0 failed, 0 cancelled of 3/);
    expect(md).toContain('## Unit');
    expect(md).toContain('(SUCCEEDED)');
    expect(md).toContain('"word":"beta, \\"quoted\\""');
  });
});

describe('sinks are idempotent', () => {
  it('a directory of files named from the items, a JSONL file and a SQLite table: a re-run duplicates nothing', async () => {
    sb = new Sandbox();
    const id = await structuredJob();
    const dir = sb.path('out');
    const db = sb.path('results.sqlite');
    const jsonl = sb.path('results.jsonl');
    const args = ['results', String(id), '--sink', `dir:${dir}`, '--sink', `jsonl:${jsonl}`, '--sink', `table:${db}#descriptions`, '--create-table'];
    const first = await sb.ok(args);
    expect(first.map((r: any) => [r.sink, r.written])).toEqual([['dir', 3], ['jsonl', 3], ['table', 3]]);
    const second = await sb.ok(args);
    expect(second[0].written).toBe(0); // nothing changed, nothing rewritten

    const files = (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.json')).sort();
    expect(files).toEqual(['a1.json', 'b/2.json', 'c3.json']);
    expect(JSON.parse(readFileSync(join(dir, 'b/2.json'), 'utf8'))).toMatchObject({ word: 'beta, "quoted"', length: 14 });
    expect(readFileSync(jsonl, 'utf8').trim().split('\n')).toHaveLength(3);

    const conn = new Database(db, { readonly: true });
    const rows = conn.prepare('select unit_id, item_id, status, word, length, shape__upper from descriptions order by unit_id').all();
    conn.close();
    expect(rows).toHaveLength(3);
    expect(rows[1]).toMatchObject({ item_id: 'b/2', status: 'SUCCEEDED', word: 'beta, "quoted"', length: 14, shape__upper: 'BETA, "QUOTED"' });

    const missing = await sb.cli(['results', String(id), '--sink', `table:${sb.path('other.sqlite')}#nope`]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain('sink.table: table nope does not exist');
  });

  it('a PostgreSQL table, upserted by unit id', async () => {
    sb = new Sandbox();
    const id = await structuredJob();
    const url = await createTestDatabase();
    for (let run = 0; run < 2; run++) await sb.ok(['results', String(id), '--sink', `table:${url}#descriptions`, '--create-table']);
    const rows = await queryPostgres<{ item_id: string; word: string; length: string }>(url, 'select item_id, word, length from descriptions order by unit_id');
    expect(rows.map((r) => [r.item_id, r.word, Number(r.length)])).toEqual([['a1', 'text a1', 7], ['b/2', 'beta, "quoted"', 14], ['c3', 'text c3', 7]]);
  });
});

describe('scatter-gather-synthesize', () => {
  const shellSpec = (script: string, extra: Record<string, unknown> = {}) => ({
    enumerator_config: { file_path: items(['a1', 'b2', 'c3', 'd4']), id_column: 'id' },
    worker_type: 'shell',
    worker_config: { command: 'sh', args: ['-c', script, 'sh', '{{item.manifest_path}}', '{{item.id}}'] },
    post_processing_prompt: 'Combine every output into one list.',
    max_retries: 1,
    ...extra,
  });

  it('runs one synthesis unit that reads a manifest of every output; its output is the job’s result', async () => {
    sb = new Sandbox();
    const id = await job(shellSpec('if [ -n "$1" ]; then cat "$1"; else echo "out-$2"; fi'));
    const done = await runToEnd(id);
    expect(done).toMatchObject({ status: 'COMPLETED', status_reason: null });
    const detail = await sb.ok(['status', String(id)]);
    expect(detail.synthesis_unit_id).toBeGreaterThan(0);
    const synthesis = await sb.ok(['unit', String(detail.synthesis_unit_id)]);
    // The worker read the manifest: one line per unit with its item, output, status and cost.
    const manifest = synthesis.output.trim().split('\n').map((l: string) => JSON.parse(l));
    expect(manifest.map((m: any) => [m.item_id, m.output, m.status])).toEqual([
      ['a1', 'out-a1', 'SUCCEEDED'], ['b2', 'out-b2', 'SUCCEEDED'], ['c3', 'out-c3', 'SUCCEEDED'], ['d4', 'out-d4', 'SUCCEEDED'],
    ]);
    expect(manifest[0].item).toMatchObject({ id: 'a1', text: 'text a1' });
    expect(synthesis.prompt).toContain('Combine every output into one list.');
    expect(synthesis.prompt).toContain('4 units (4 SUCCEEDED)');
    const app = await createApp(resolveConfig(sb.env));
    expect((await app.orchestrator.getJob(id)).result).toBe(synthesis.output);
    await app.close();
    // Results list the items; the synthesis is the job's result, not a row.
    expect(await sb.results(id)).toHaveLength(4);
  });

  it('a failing synthesis makes the job FAILED with that reason; allow_partial synthesises despite failed units', async () => {
    sb = new Sandbox();
    const failing = await job(shellSpec('if [ -n "$1" ]; then echo "cannot combine" >&2; exit 4; fi; echo ok'));
    const failed = await runToEnd(failing);
    expect(failed.status).toBe('FAILED');
    expect(failed.status_reason).toMatch(/^synthesis_failed: exit code 4: cannot combine/);

    const partial = await job(shellSpec('if [ -n "$1" ]; then wc -l < "$1"; elif [ "$2" = b2 ]; then exit 9; else echo ok; fi', { allow_partial: true }));
    const done = await runToEnd(partial);
    expect(done.status).toBe('COMPLETED');
    expect(done.status_reason).toBe('partial: 1 of 4 units failed');
    const strict = await job(shellSpec('if [ -n "$1" ]; then wc -l < "$1"; elif [ "$2" = b2 ]; then exit 9; else echo ok; fi'));
    const noSynthesis = await runToEnd(strict);
    expect(noSynthesis).toMatchObject({ status: 'FAILED', synthesis_unit_id: null });
  });
});

describe('budget', () => {
  it('reserves expected cost per unit, pauses at the cap with budget_exhausted, and a raised budget completes the job', async () => {
    mock = await startMockOpenAI(() => ({ type: 'text', text: 'ok', usage: { input_tokens: 100, output_tokens: 0 }, delayMs: 500 }));
    sb = new Sandbox();
    const ids = Array.from({ length: 50 }, (_, i) => `u${i}`);
    const id = await job({
      enumerator_config: { file_path: items(ids), id_column: 'id' },
      worker_type: 'http-llm',
      worker_config: { api: 'openai', base_url: `${mock.url}/v1`, model: 'fake', api_key_env: null, prices: { input_per_mtok: 100, output_per_mtok: 0 } },
      max_workers: 10,
      max_cost_usd: 0.205, // 20.5 units at $0.01 each
    });
    const app = await createApp(resolveConfig(sb.env));
    await app.orchestrator.skipTest(id);
    let peakReserved = 0;
    let s: any;
    try {
      for (;;) {
        s = await app.orchestrator.status(id);
        // The invariant: what is spent plus what running units reserved stays within the cap.
        expect(s.cost_usd + s.budget.reserved_usd).toBeLessThanOrEqual(0.205 + 1e-9);
        peakReserved = Math.max(peakReserved, s.budget.reserved_usd);
        if (s.status === 'PAUSED' && s.counts.running === 0) break;
        await sleep(20);
      }
    } finally {
      await app.close();
    }
    expect(s.status_reason).toMatch(/^budget_exhausted: /);
    expect(s.counts.succeeded).toBe(20);
    expect(s.cost_usd).toBeCloseTo(0.2, 9);
    expect(peakReserved).toBeGreaterThan(0.05); // several units in flight, each reserved
    expect(mock.requests).toHaveLength(20);

    await sb.ok(['update', String(id), '--max-cost', '1']);
    await sb.ok(['resume', String(id)]);
    const done = await sb.waitFor(id, (x) => x.status === 'COMPLETED', 60_000);
    expect(done.cost_usd).toBeCloseTo(0.5, 9);
    expect(done.budget.reserved_usd).toBeCloseTo(0, 9);
    expect(mock.requests).toHaveLength(50);
  }, 120_000);
});

describe('estimates', () => {
  it('after the test unit, the projected cost and time are within 10% of the outcome', async () => {
    mock = await startMockOpenAI(() => ({ type: 'text', text: 'ok', usage: { input_tokens: 100, output_tokens: 0 }, delayMs: 2500 }));
    sb = new Sandbox();
    const id = await job({
      enumerator_config: { file_path: items(Array.from({ length: 9 }, (_, i) => `e${i}`)), id_column: 'id' },
      worker_type: 'http-llm',
      worker_config: { api: 'openai', base_url: `${mock.url}/v1`, model: 'fake', api_key_env: null, prices: { input_per_mtok: 100, output_per_mtok: 0 } },
      max_workers: 4,
    });
    const app = await createApp(resolveConfig(sb.env));
    try {
      const tested = await app.orchestrator.startTest(id, { waitSeconds: 30 });
      expect(tested.test_unit?.status).toBe('SUCCEEDED');
      const estimate = tested.job.estimate;
      expect(estimate).toMatchObject({ basis: 'test_unit' });
      const approved = Date.now();
      await app.orchestrator.approve(id);
      const done = await app.orchestrator.waitUntilSettled(id, 60_000);
      expect(done.status).toBe('COMPLETED');
      // The projection is of the units' running time: from the first unit's start to the last one's
      // end after the approval. How long the host takes to launch the executor is not part of it
      // (on a loaded host that alone took seconds).
      const ran = (await app.repo.listUnits(id, {}, { limit: 100, offset: 0 })).filter((u) => Number(u.started_at) >= approved);
      expect(ran).toHaveLength(8);
      const actualSeconds = (Math.max(...ran.map((u) => Number(u.finished_at))) - Math.min(...ran.map((u) => Number(u.started_at)))) / 1000;
      expect(Math.abs((estimate!.projected_cost_usd as number) - done.cost_usd) / done.cost_usd).toBeLessThan(0.1);
      expect(Math.abs(estimate!.projected_seconds - actualSeconds) / actualSeconds).toBeLessThan(0.1);
    } finally {
      await app.close();
    }
  });
});

describe('quota auto-resume', () => {
  it('a quota pause with auto_resume resumes at the reset time by itself', async () => {
    const resetIn = 3;
    let calls = 0;
    mock = await startMockOpenAI(() => {
      calls++;
      if (calls === 2) {
        return { type: 'error', status: 429, errorType: 'insufficient_quota', message: 'You exceeded your current quota', headers: { 'retry-after': String(resetIn) } };
      }
      return { type: 'text', text: 'ok', usage: { input_tokens: 1, output_tokens: 1 } };
    });
    sb = new Sandbox();
    const id = await job({
      enumerator_config: { file_path: items(['q1', 'q2', 'q3']), id_column: 'id' },
      worker_type: 'http-llm',
      worker_config: { api: 'openai', base_url: `${mock.url}/v1`, model: 'fake', api_key_env: null },
      max_workers: 1,
      auto_resume: true,
    });
    await sb.cli(['start', String(id), '--skip-test']);
    const paused = await sb.waitFor(id, (s) => s.status === 'PAUSED', 30_000);
    expect(paused.status_reason).toMatch(/^quota_exhausted: .*resets at /);
    const done = await sb.waitFor(id, (s) => s.status === 'COMPLETED', 30_000);
    expect(done.counts.succeeded).toBe(3);
  });
});
