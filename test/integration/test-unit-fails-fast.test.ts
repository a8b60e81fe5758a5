import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { startMockOpenAI, userContent, type MockServer } from '../fixtures/mock-openai.js';
import { Sandbox } from '../helpers/cli.js';
import { call, startServe, type Served } from '../helpers/serve.js';

/**
 * Issue 24: a test unit that fails is reported after its one attempt, whatever
 * max_retries says, with its error, its cost and the two ways on, and with no
 * projection made from it. Starting again re-runs it; approving anyway runs
 * every unit, the test unit among them with the job's retries.
 */

let sb: Sandbox | undefined;
let mock: MockServer | undefined;
let served: Served | undefined;

afterEach(async () => {
  await served?.stop();
  await sb?.cleanup();
  await mock?.close();
  sb = undefined;
  mock = undefined;
  served = undefined;
});

function itemsCsv(s: Sandbox, ids: string[]): string {
  const path = s.path('items.csv');
  writeFileSync(path, ['id,text', ...ids.map((id) => `${id},text of ${id}`)].join('\n') + '\n');
  return path;
}

const lines = (path: string) => readFileSync(path, 'utf8').split('\n').filter(Boolean);

describe('the test unit fails fast', () => {
  it('shell: one run, its error and both choices shown, no projection; start runs it once more; approving anyway completes the job', async () => {
    const s = (sb = new Sandbox());
    const runs = s.path('runs');
    const broken = s.path('broken');
    writeFileSync(runs, '');
    writeFileSync(broken, '');
    // Every run is counted by item; while `broken` exists the command fails the way a wrong prompt would.
    const script = `echo "$1" >> ${runs}; if [ -e ${broken} ]; then echo "the prompt is wrong" >&2; exit 1; fi; printf 'ok %s' "$1"`;
    const created = await s.ok([
      'create', '--name', 'fails fast', '--intent', 'check each row',
      '--enumerator', 'csv', '-e', `file_path=${itemsCsv(s, ['r1', 'r2', 'r3', 'r4'])}`, '-e', 'id_column=id',
      '--worker', 'shell', '-w', 'command=sh', '-w', `args:=${JSON.stringify(['-c', script, 'sh', '{{item.id}}'])}`,
      '--max-retries', '3',
    ]);
    const id = created.job_id as number;
    expect(created.max_retries).toBe(3);

    // What a person sees: the failure, its error, and what to do next.
    const started = await s.cli(['start', String(id), '--wait']);
    expect(started.exitCode).toBe(0);
    expect(started.stdout).toMatch(/test unit \d+ \(item r1\): FAILED, attempt 1\n/);
    expect(started.stdout).toContain('error: exit code 1');
    expect(started.stdout).toContain('the prompt is wrong');
    expect(started.stdout).toContain(`Run it again with abp start ${id},`);
    expect(started.stdout).toContain(`abp start ${id} --approve`);
    expect(lines(runs)).toEqual(['r1']);

    const status = await s.status(id);
    expect(status).toMatchObject({ status: 'TESTING', max_retries: 3, counts: { failed: 1, pending: 3, running: 0 }, estimate: null, estimate_note: 'no estimate: the test unit failed' });
    const test = await s.ok(['unit', String(status.test_unit_id)]);
    expect(test).toMatchObject({ item_id: 'r1', status: 'FAILED', attempt: 1, failures: 1, exit_code: 1 });
    expect(test.error).toContain('the prompt is wrong');
    expect(test.error).not.toContain('attempts');
    const shown = await s.cli(['status', String(id)]);
    expect(shown.stdout).toContain('no estimate: the test unit failed');
    expect(shown.stdout).not.toContain('projected');
    // A failed test unit is final: the executor runs nothing more on its own.
    expect(lines(runs)).toEqual(['r1']);

    // Starting again is the person's choice to re-run it: one more attempt, counted afresh.
    const again = await s.ok(['start', String(id), '--wait']);
    expect(again.job.status).toBe('TESTING');
    expect(again.test_unit).toMatchObject({ unit_id: status.test_unit_id, status: 'FAILED', attempt: 2, failures: 1 });
    expect(again.next_step).toEqual({ action: 'test_failed', job_id: id });
    expect(again.job.estimate).toBeNull();
    expect(lines(runs)).toEqual(['r1', 'r1']);

    // The cause is fixed; approving anyway runs every unit, the test unit again among them.
    rmSync(broken);
    const approved = await s.ok(['start', String(id), '--approve', '--wait']);
    expect(approved.job).toMatchObject({ status: 'COMPLETED', counts: { succeeded: 4, failed: 0, pending: 0 } });
    const results = await s.results(id);
    expect(results.map((r) => [r.item_id, r.status, r.output])).toEqual([
      ['r1', 'SUCCEEDED', 'ok r1'],
      ['r2', 'SUCCEEDED', 'ok r2'],
      ['r3', 'SUCCEEDED', 'ok r3'],
      ['r4', 'SUCCEEDED', 'ok r4'],
    ]);
    expect(results[0].attempt).toBe(3);
    expect(lines(runs).sort()).toEqual(['r1', 'r1', 'r1', 'r2', 'r3', 'r4']);
  }, 120_000);

  it('http-llm: one request per start, cost recorded, no projection; re-run over HTTP; after approval the test unit has the job’s retries', async () => {
    mock = await startMockOpenAI(() => ({ type: 'error', status: 500, message: 'upstream exploded' }));
    const s = (sb = new Sandbox());
    const spec = s.path('spec.json');
    writeFileSync(
      spec,
      JSON.stringify({
        name: 'llm fails fast',
        user_intent: 'Label the text.',
        enumerator_type: 'csv',
        enumerator_config: { file_path: itemsCsv(s, ['t1', 't2', 't3']), id_column: 'id' },
        worker_type: 'http-llm',
        worker_config: { api: 'openai', base_url: `${mock.url}/v1`, model: 'fake', api_key_env: null, prices: { input_per_mtok: 100, output_per_mtok: 0 } },
        output_schema: { type: 'object', properties: { label: { type: 'string' } }, required: ['label'] },
        max_retries: 3,
      }),
    );
    const id = (await s.ok(['create', '--spec', spec])).job_id as number;

    // A 500 would be retried in a running job; the test unit is reported after the one request.
    const first = await s.ok(['start', String(id), '--wait']);
    expect(mock.requests).toHaveLength(1);
    expect(first.test_unit).toMatchObject({ item_id: 't1', status: 'FAILED', attempt: 1, failures: 1 });
    expect(first.test_unit.error).toContain('HTTP 500');
    expect(first.test_unit.error).toContain('upstream exploded');
    expect(first.next_step).toEqual({ action: 'test_failed', job_id: id });
    expect(first.next).toContain(`abp start ${id} --approve`);
    expect(first.job).toMatchObject({ status: 'TESTING', max_retries: 3, estimate: null, estimate_note: 'no estimate: the test unit failed' });

    // Started again over HTTP: a paid answer that misses the output schema fails it again, at once, with its cost kept.
    mock.setScript(() => ({ type: 'text', text: '{"verdict": "unsure"}', usage: { input_tokens: 1000, output_tokens: 0 } }));
    served = await startServe(s);
    const restarted = await call(served.url, `/jobs/${id}/start`, { method: 'POST', body: {} });
    expect(restarted.status).toBe(200);
    expect(restarted.json.job.status).toBe('TESTING');
    expect(restarted.json.next).toEqual(expect.any(String));
    // The reset happened before the reply, so a failure seen once the second request is in is the new attempt's.
    const refailed = await s.waitFor(id, (st) => mock!.requests.length === 2 && st.counts.failed === 1 && st.counts.running === 0, 60_000);
    const unit = await s.ok(['unit', String(refailed.test_unit_id)]);
    expect(unit).toMatchObject({ status: 'FAILED', attempt: 2, failures: 1, error_kind: 'invalid_output' });
    expect(unit.error).toContain("must have required property 'label'");
    expect(unit.cost_usd).toBeCloseTo(0.1, 9);
    expect(refailed.cost_usd).toBeCloseTo(0.1, 9);
    expect(refailed.estimate).toBeNull();
    expect(refailed.estimate_note).toBe('no estimate: the test unit failed');
    const shown = await s.cli(['status', String(id)]);
    expect(shown.stdout).not.toContain('projected');
    expect(shown.stdout).toContain('no estimate: the test unit failed');
    expect(mock.requests).toHaveLength(2);

    // Approved anyway: the test unit's first request after approval fails with a 500 and is retried (max_retries 3).
    let failedOnce = false;
    mock.setScript((req) => {
      if (!failedOnce && userContent(req).includes('text of t1')) {
        failedOnce = true;
        return { type: 'error', status: 500, message: 'one more hiccup' };
      }
      return { type: 'text', text: '{"label": "fine"}', usage: { input_tokens: 10, output_tokens: 0 } };
    });
    const approved = await s.ok(['start', String(id), '--approve', '--wait']);
    expect(approved.job).toMatchObject({ status: 'COMPLETED', counts: { succeeded: 3, failed: 0 } });
    const results = await s.results(id);
    expect(results.find((r) => r.item_id === 't1')).toMatchObject({ status: 'SUCCEEDED', attempt: 4, structured_output: { label: 'fine' } });
    const test = await s.ok(['unit', String(refailed.test_unit_id)]);
    expect(test.failures).toBe(1);
    expect(mock.requests).toHaveLength(2 + 1 + 3);
  }, 180_000);
});
