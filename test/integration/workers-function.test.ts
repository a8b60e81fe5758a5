import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, Sandbox } from '../helpers/cli.js';

const FUNCTIONS = join(ROOT, 'test', 'fixtures', 'functions');

let sb: Sandbox;
afterEach(async () => {
  await sb.cleanup();
});

async function runJob(module: string, ids: string[], extra: Record<string, unknown> = {}) {
  sb = new Sandbox({ ABP_SKIP_TEST: '1' });
  const items = sb.path('items.csv');
  writeFileSync(items, ['id,text', ...ids.map((id) => `${id},text ${id}`)].join('\n') + '\n');
  const spec = sb.path('spec.json');
  writeFileSync(
    spec,
    JSON.stringify({
      name: 'function job',
      user_intent: 'Transform each row.',
      enumerator_type: 'csv',
      enumerator_config: { file_path: items, id_column: 'id' },
      worker_type: 'function',
      worker_config: { module: join(FUNCTIONS, module), max_threads: 2 },
      max_workers: 4,
      max_retries: 0,
      ...extra,
    }),
  );
  const id = (await sb.ok(['create', '--spec', spec])).job_id as number;
  await sb.ok(['start', String(id)]);
  const done = await sb.waitFor(id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
  return { id, done, results: await sb.results(id) };
}

describe('function worker on piscina threads', () => {
  it('runs the default export off the main thread; a returned object is the structured output', async () => {
    const { done, results } = await runJob('echo-thread.mjs', ['a', 'b', 'c']);
    expect(done.status).toBe('COMPLETED');
    for (const r of results) {
      expect(r.structured_output).toMatchObject({ id: r.item_id, upper: `TEXT ${r.item_id.toUpperCase()}`, isMainThread: false });
      expect(r.structured_output.threadId).toBeGreaterThan(0);
      expect(JSON.parse(r.output)).toEqual(r.structured_output);
    }
  });

  it('a function that throws fails the unit with its message', async () => {
    const { done, results } = await runJob('throws.mjs', ['x1', 'x2']);
    expect(done.status).toBe('FAILED');
    expect(results.map((r) => [r.status, r.error]).sort()).toEqual([
      ['FAILED', 'cannot handle item x1'],
      ['FAILED', 'cannot handle item x2'],
    ]);
  });

  it('a timeout terminates the busy thread and fails the unit', async () => {
    const started = Date.now();
    const { done, results } = await runJob('spin.mjs', ['s1'], { timeout_seconds: 2 });
    expect(done.status).toBe('FAILED');
    expect(results[0]).toMatchObject({ status: 'FAILED', error: 'timed out; its worker thread was terminated' });
    // The executor was not blocked by the spinning function: it recorded the outcome and went on.
    expect(Date.now() - started).toBeLessThan(55_000);
  });

  it('a module that does not exist is refused at start (health down)', async () => {
    sb = new Sandbox({ ABP_SKIP_TEST: '1' });
    const items = sb.path('items.csv');
    writeFileSync(items, 'id\n1\n');
    const id = (
      await sb.ok(['create', '--name', 'f', '--intent', 'x', '--enumerator', 'csv', '-e', `file_path=${items}`, '--worker', 'function', '-w', `module=${join(FUNCTIONS, 'missing.mjs')}`])
    ).job_id as number;
    const r = await sb.cli(['start', String(id), '--json']);
    expect(r.exitCode).toBe(1);
    expect(r.json.error.message).toMatch(/function worker is unavailable \(down\): worker_config\.module: .*missing\.mjs is not a readable file/);
  });
});
