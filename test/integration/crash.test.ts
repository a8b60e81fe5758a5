import { readFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { Sandbox, sleep } from '../helpers/cli.js';

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox({ ABP_LEASE_SECONDS: '1', ABP_MAX_WORKERS: '8', ABP_EXECUTOR_IDLE_SECONDS: '1' });
});
afterEach(async () => {
  await sb.cleanup();
});

function runCounts(log: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const line of readFileSync(log, 'utf8').split('\n').filter(Boolean)) {
    const id = line.split(' ')[0] as string;
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

it('kill -9 of the executor at random points: the job still completes, each unit succeeds once, and nothing succeeded runs again', async () => {
  const N = 300;
  const file = sb.path('items.csv');
  writeFileSync(file, ['id', ...Array.from({ length: N }, (_, i) => `u${i + 1}`)].join('\n') + '\n');
  const log = sb.path('runs.log');
  writeFileSync(log, '');
  const job = await sb.ok([
    'create', '--name', 'crash', '--intent', 'survive', '--enumerator', 'csv', '-e', `file_path=${file}`, '-e', 'id_column=id',
    '--worker', 'shell', '-w', 'command=sh',
    '-w', `args:=${JSON.stringify(['-c', `echo "$1 $2" >> ${log}; sleep 0.05; echo "done-$1"`, 'sh', '{{item.id}}', '{{unit.attempt}}'])}`,
    '--max-workers', '8', '--max-retries', '10',
  ]);
  const id = job.job_id as number;

  // Our own foreground executor is alive first, so `start` launches none of its own.
  let executor = sb.executor();
  await sleep(400);
  await sb.ok(['start', String(id), '--skip-test']);

  const frozen: { succeeded: Set<string>; runs: Map<string, number> }[] = [];
  for (let kill = 0; kill < 4; kill++) {
    await sleep(300 + Math.floor(Math.random() * 900));
    executor.kill('SIGKILL');
    await executor;
    const succeeded = new Set(
      (await sb.query<{ item_id: string }>("select item_id from work_units where job_id = ? and status = 'SUCCEEDED'", id)).map((r) => r.item_id),
    );
    frozen.push({ succeeded, runs: runCounts(log) });
    executor = sb.executor();
  }
  const done = await sb.waitFor(id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
  await executor;

  expect(done.status).toBe('COMPLETED');
  const results = await sb.results(id);
  expect(results).toHaveLength(N);
  expect(new Set(results.map((r) => r.unit_id)).size).toBe(N);
  for (const r of results) {
    expect(r.status).toBe('SUCCEEDED');
    expect(r.output).toBe(`done-${r.item_id}`);
  }
  // Some units were caught mid-flight by a kill and were taken over after their lease expired.
  expect(results.some((r) => r.attempt > 1)).toBe(true);
  expect(frozen.some((f) => f.succeeded.size > 0 && f.succeeded.size < N)).toBe(true);

  // No unit that had SUCCEEDED at a kill ran again afterwards.
  const finalRuns = runCounts(log);
  for (const snapshot of frozen) {
    for (const item of snapshot.succeeded) expect(finalRuns.get(item)).toBe(snapshot.runs.get(item));
  }

  // The counters equal a COUNT(*) of unit states.
  const status = await sb.status(id);
  expect(status.counts).toEqual(await sb.counts(id));
  expect(status.counts).toEqual({ pending: 0, running: 0, succeeded: N, failed: 0, cancelled: 0 });
  const leftovers = await sb.queryOne<{ n: number }>('select count(*) n from work_units where lease_owner is not null');
  expect(leftovers?.n).toBe(0);
});
