import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openStore } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import { Sandbox, sleep } from '../helpers/cli.js';

/**
 * `abp start` launches an executor only when none is alive, and the decision is
 * one transaction across processes (FleetStore.claimLaunch): N starts at once,
 * whatever their interleaving, launch exactly one. The job's units wait on a gate
 * file the test creates only after every start has returned, so the executor
 * cannot finish and leave (idle exit) while a start is still deciding: the count
 * of launches depends on the claims alone, never on timing.
 */

const STARTERS = 6;

let sb: Sandbox;
beforeEach(() => {
  // No grace on shutdown: the first executor gives its gated units back at once.
  sb = new Sandbox({ ABP_SHUTDOWN_GRACE_SECONDS: '0' });
});
afterEach(async () => {
  await sb.cleanup();
});

/** A job of `n` rows whose units each wait for the gate file, then print their text. */
async function gatedJob(n: number): Promise<number> {
  const file = sb.path('rows.csv');
  writeFileSync(file, `id,text\n${Array.from({ length: n }, (_, i) => `r${i + 1},row ${i + 1}`).join('\n')}\n`);
  const gate = sb.path('gate');
  const job = await sb.ok([
    'create',
    '--name', 'gated',
    '--intent', 'wait for the gate, then echo',
    '--enumerator', 'csv',
    '-e', `file_path=${file}`,
    '-e', 'id_column=id',
    '--worker', 'shell',
    '-w', 'command=sh',
    '-w', `args:=${JSON.stringify(['-c', `while [ ! -e '${gate}' ]; do sleep 0.05; done; printf '%s' "$1"`, 'sh', '{{item.text}}'])}`,
    '--max-workers', '2',
    '--max-retries', '0',
  ]);
  return job.job_id as number;
}

/** Lines of the detached executors' log that announce a start: one per executor process launched. */
function executorStarts(): string[] {
  const log = sb.path('logs', 'executor.log');
  return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter((l) => / executor [^ ]+: started \(max /.test(l)) : [];
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('N concurrent `abp start` launch exactly one executor', () => {
  it(`${STARTERS} starts of one RUNNING job with no executor: one launch, the others see it, and the job completes`, async () => {
    const id = await gatedJob(6);
    // A foreground executor serves the job while it is moved to RUNNING (so that start launches nothing),
    // then drains away: the job is RUNNING, its units PENDING again, and no executor is left.
    const fg = sb.executor();
    await until('the foreground executor to register', async () => (await sb.query('select id from executors')).length === 1);
    const first = await sb.ok(['start', String(id), '--skip-test']);
    expect(first.executor).toEqual({ started: false });
    await until('units to run', async () => (await sb.counts(id)).running > 0);
    fg.kill('SIGTERM');
    expect((await fg).exitCode).toBe(0);
    expect(await sb.query('select id from executors')).toEqual([]);
    expect(await sb.counts(id)).toMatchObject({ pending: 6, running: 0, succeeded: 0 });
    expect(executorStarts()).toEqual([]);

    // Now the race: every start sees a RUNNING job and asks for an executor at the same moment.
    const starts = await Promise.all(Array.from({ length: STARTERS }, () => sb.cli(['start', String(id), '--json'])));
    for (const r of starts) expect(r.exitCode, r.stderr).toBe(0);
    const launched = starts.filter((r) => r.json.executor?.started === true);
    expect(launched, JSON.stringify(starts.map((r) => r.json.executor))).toHaveLength(1);
    for (const r of starts) if (r !== launched[0]) expect(r.json.executor).toEqual({ started: false });
    const pid = launched[0]!.json.executor.pid as number;

    // Open the gate; the one executor runs every unit.
    writeFileSync(sb.path('gate'), '');
    const done = await sb.waitFor(id, (s) => s.status === 'COMPLETED', 60_000);
    expect(done.counts).toMatchObject({ succeeded: 6, failed: 0 });
    const owners = await sb.query<{ lease_owner: string | null }>('select distinct lease_owner from work_units where job_id = ?', id);
    expect(owners.every((o) => o.lease_owner === null || o.lease_owner.split(':')[1] === String(pid))).toBe(true);
    const starts2 = executorStarts();
    expect(starts2, starts2.join('\n')).toHaveLength(1);
    expect(starts2[0]).toContain(`:${pid}:`);
    // The executor took the place of its launch slot: the table never held both for long, and holds no slot now.
    expect((await sb.query<{ id: string }>("select id from executors where id like 'launch:%'")).length).toBe(0);
  }, 120_000);

  it(`${STARTERS} starts of ${STARTERS} different CREATED jobs at once: one executor serves them all`, async () => {
    const ids: number[] = [];
    for (let i = 0; i < STARTERS; i++) ids.push(await gatedJob(2));
    const starts = await Promise.all(ids.map((id) => sb.cli(['start', String(id), '--skip-test', '--json'])));
    for (const r of starts) expect(r.exitCode, r.stderr).toBe(0);
    expect(starts.filter((r) => r.json.executor?.started === true)).toHaveLength(1);
    writeFileSync(sb.path('gate'), '');
    for (const id of ids) expect((await sb.waitFor(id, (s) => s.status === 'COMPLETED', 60_000)).counts.succeeded).toBe(2);
    expect(executorStarts()).toHaveLength(1);
  }, 120_000);

  it('a slot whose executor never registers holds off launches only until it goes stale, then a start launches', async () => {
    const id = await gatedJob(1);
    // A slot as a launch leaves it when its process dies before it registers. Its pid is a process of
    // this test's own (cleanup kills the pids in the executors table).
    const stand = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      const at = Date.now();
      await plantSlot('launch:elsewhere:never-registered', stand.pid as number, at);
      // Fresh (within three heartbeats, 30 s by default): it stands for an executor, and nothing is launched.
      const held = await sb.ok(['start', String(id), '--skip-test']);
      expect(held.executor).toEqual({ started: false });
      expect(executorStarts()).toEqual([]);
      // With a lease of 1 s (a heartbeat every 333 ms), a row whose heartbeat is over 1 s old is stale.
      await sleep(Math.max(0, at + 1200 - Date.now()));
      const started = await sb.ok(['start', String(id)], { ABP_LEASE_SECONDS: '1' });
      expect(started.executor.started).toBe(true);
      writeFileSync(sb.path('gate'), '');
      await sb.waitFor(id, (s) => s.status === 'COMPLETED', 60_000);
      expect(executorStarts()).toHaveLength(1);
    } finally {
      stand.kill('SIGKILL');
    }
  }, 120_000);
});

/** Inserts a launch slot row through the store's own claim, as a launcher that died after claiming would leave it. */
async function plantSlot(id: string, pid: number, at: number): Promise<void> {
  const repo = await openStore(resolveConfig(sb.env));
  try {
    const planted = await repo.claimLaunch(30_000, (live) => {
      expect(live).toEqual([]);
      return { id, hostname: 'elsewhere', pid, version: 'test', started_at: at, heartbeat_at: at, env_names: '[]' };
    });
    expect(planted?.id).toBe(id);
  } finally {
    await repo.close();
  }
}
