import { readFileSync, rmSync, writeFileSync } from 'node:fs';
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

it('kill -9 of the executor with units in flight: the job still completes, each caught unit is taken over, each unit succeeds once, and nothing succeeded runs again', { timeout: 300_000 }, async () => {
  const N = 300;
  const file = sb.path('items.csv');
  writeFileSync(file, ['id', ...Array.from({ length: N }, (_, i) => `u${i + 1}`)].join('\n') + '\n');
  const log = sb.path('runs.log');
  writeFileSync(log, '');
  // While the hold file exists, a unit that has started (and logged "id attempt") waits: it is RUNNING
  // under the executor that spawned it when that executor is killed. (The wait is bounded, at a
  // minute or more, so a run that dies mid-test leaves no process waiting for ever.)
  const hold = sb.path('hold');
  const job = await sb.ok([
    'create', '--name', 'crash', '--intent', 'survive', '--enumerator', 'csv', '-e', `file_path=${file}`, '-e', 'id_column=id',
    '--worker', 'shell', '-w', 'command=sh',
    '-w', `args:=${JSON.stringify(['-c', `echo "$1 $2" >> ${log}; i=0; while [ -e ${hold} ] && [ $i -lt 6000 ]; do sleep 0.01; i=$((i+1)); done; sleep 0.05; echo "done-$1"`, 'sh', '{{item.id}}', '{{unit.attempt}}'])}`,
    '--max-workers', '8', '--max-retries', '10',
  ]);
  const id = job.job_id as number;
  /** Waits until the executor process has registered, and returns its id (the lease owner of its units). */
  const registered = async (pid: number | undefined): Promise<string> => {
    for (;;) {
      const [row] = await sb.query<{ id: string }>('select id from executors where pid = ?', pid);
      if (row) return row.id;
      await sleep(20);
    }
  };
  const succeeded = async () =>
    new Set((await sb.query<{ item_id: string }>("select item_id from work_units where job_id = ? and status = 'SUCCEEDED'", id)).map((r) => r.item_id));

  // Our own foreground executor is registered first, so `start` launches none of its own; it
  // does not idle out however long `start` takes to come.
  let executor = sb.executor({ ABP_EXECUTOR_IDLE_SECONDS: '600' });
  let owner = await registered(executor.pid);
  await sb.ok(['start', String(id), '--skip-test']);

  const frozen: { succeeded: Set<string>; runs: Map<string, number> }[] = [];
  const caught: { item: string; attempt: number }[] = [];
  for (let kill = 1; kill <= 4; kill++) {
    // Let the job make progress first (at most half of it, so plenty is left to start after the hold).
    while ((await succeeded()).size < (kill * N) / 8) await sleep(20);
    // Hold new units, and kill once the database shows a unit RUNNING under this executor whose
    // process started after the hold: it is waiting, so the kill lands while it is in flight.
    writeFileSync(hold, '');
    const logged = readFileSync(log, 'utf8').length;
    let inFlight: { item: string; attempt: number }[] = [];
    while (inFlight.length === 0) {
      const started = new Set(readFileSync(log, 'utf8').slice(logged).split('\n'));
      const running = await sb.query<{ item_id: string; attempt: number }>(
        "select item_id, attempt from work_units where job_id = ? and status = 'RUNNING' and lease_owner = ?", id, owner,
      );
      inFlight = running.filter((r) => started.has(`${r.item_id} ${r.attempt}`)).map((r) => ({ item: r.item_id, attempt: r.attempt }));
      if (inFlight.length === 0) await sleep(20);
    }
    executor.kill('SIGKILL');
    await executor;
    rmSync(hold);
    caught.push(...inFlight);
    frozen.push({ succeeded: await succeeded(), runs: runCounts(log) });
    executor = sb.executor();
    owner = await registered(executor.pid);
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
  // Every unit caught mid-flight by a kill was taken over after its lease expired, as a later attempt.
  expect(caught.length).toBeGreaterThanOrEqual(4);
  const attempts = new Map(results.map((r) => [r.item_id, r.attempt as number]));
  for (const { item, attempt } of caught) expect(attempts.get(item), item).toBeGreaterThan(attempt);
  for (const f of frozen) expect(f.succeeded.size).toBeLessThan(N);

  // No unit that had SUCCEEDED at a kill ran again afterwards.
  const finalRuns = runCounts(log);
  for (const snapshot of frozen) {
    for (const item of snapshot.succeeded) expect(finalRuns.get(item)).toBe(snapshot.runs.get(item));
  }

  // The counters equal a COUNT(*) of unit states.
  const status = await sb.status(id);
  expect(status.counts).toEqual(await sb.counts(id));
  expect(status.counts).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: N, failed: 0, cancelled: 0 });
  const leftovers = await sb.queryOne<{ n: number }>('select count(*) n from work_units where lease_owner is not null');
  expect(leftovers?.n).toBe(0);
});
