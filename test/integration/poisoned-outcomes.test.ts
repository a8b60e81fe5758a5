import { closeSync, existsSync, openSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WriteBatch } from '../../src/executor/write-batch.js';
import type { OutcomeWrite } from '../../src/store/repository.js';
import { CLI, ROOT, Sandbox, sleep } from '../helpers/cli.js';
import { createTestStore, queryDb, runningJob, type TestStore } from '../helpers/store.js';

/*
 * One poisoned outcome never harms the others (both stores). Outcomes are
 * group-committed; a row the store refuses used to fail its whole batch, and
 * every unit in it retried into the same batch again.
 */

/** A value neither store binds: past a 64-bit integer (better-sqlite3 throws RangeError; PostgreSQL 22003). */
const UNBINDABLE = (2n ** 70n) as unknown as number;

describe('a group commit with one row the store refuses', () => {
  let store: TestStore;
  beforeEach(async () => {
    store = await createTestStore();
  });
  afterEach(async () => {
    await store.cleanup();
  });

  const units = (jobId: number) => queryDb<{ item_id: string; status: string; output: string | null }>(store.url, 'select item_id, status, output from work_units where job_id = ? order by id', jobId);

  it('fails only that unit: every other outcome and event in the batch commits', async () => {
    const job = await runningJob(store.repo, 5, 5);
    const claimed = (await store.repo.claimUnits(job.id, 'exec-a', 5, 30_000)).units;
    expect(claimed).toHaveLength(5);
    const batch = new WriteBatch(store.repo, 'exec-a');
    const event = (unitId: number, kind: string, createdAt: number) => batch.event({ unit_id: unitId, job_id: job.id, attempt: 1, kind, data: '{}', created_at: createdAt });
    // All queued in one turn of the event loop: one batch, with one bad outcome and one bad event in it.
    for (const u of claimed) event(u.id, 'assistant', Date.now());
    event(claimed[0]!.id, 'poisoned', UNBINDABLE);
    const written = await Promise.allSettled(
      claimed.map((u, i) => batch.outcome(u, { next: 'SUCCEEDED', spent: false, output: `ok ${i}`, ...(i === 2 ? { duration_ms: UNBINDABLE } : {}) } as OutcomeWrite)),
    );
    expect(written.map((w) => w.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(written.filter((w) => w.status === 'fulfilled').map((w) => (w as PromiseFulfilledResult<boolean>).value)).toEqual([true, true, true, true]);

    expect((await units(job.id)).map((u) => [u.status, u.output])).toEqual([
      ['SUCCEEDED', 'ok 0'],
      ['SUCCEEDED', 'ok 1'],
      ['RUNNING', null],
      ['SUCCEEDED', 'ok 3'],
      ['SUCCEEDED', 'ok 4'],
    ]);
    expect(await store.repo.countUnits(job.id)).toEqual({ pending: 0, running: 1, submitted: 0, succeeded: 4, failed: 0, cancelled: 0 });
    const events = await queryDb<{ kind: string }>(store.url, 'select kind from unit_events where job_id = ?', job.id);
    expect(events.map((e) => e.kind)).toEqual(Array.from({ length: 5 }, () => 'assistant'));

    // The refused unit's caller writes it again, well-formed, alone: it lands.
    expect(await batch.outcome(claimed[2]!, { next: 'SUCCEEDED', spent: false, output: 'ok 2' })).toBe(true);
    expect(await store.repo.countUnits(job.id)).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: 5, failed: 0, cancelled: 0 });
  });

  it('a heartbeat extends only the leases of the units the executor still runs', async () => {
    const job = await runningJob(store.repo, 3, 3);
    const [a, b, c] = (await store.repo.claimUnits(job.id, 'exec-a', 3, 1_000)).units;
    const before = await queryDb<{ id: number; lease_expires_at: number }>(store.url, 'select id, lease_expires_at from work_units where job_id = ? order by id', job.id);
    // c's outcome was given up: the executor no longer runs it, so its lease is left to expire.
    expect(await store.repo.extendLeases('exec-a', 600_000, [a!.id, b!.id])).toBe(2);
    const after = await queryDb<{ id: number; lease_expires_at: number }>(store.url, 'select id, lease_expires_at from work_units where job_id = ? order by id', job.id);
    expect(Number(after[0]!.lease_expires_at)).toBeGreaterThan(Number(before[0]!.lease_expires_at) + 500_000);
    expect(Number(after[1]!.lease_expires_at)).toBeGreaterThan(Number(before[1]!.lease_expires_at) + 500_000);
    expect(Number(after[2]!.lease_expires_at)).toBe(Number(before[2]!.lease_expires_at));
    expect(after[2]!.id).toBe(c!.id);
    // And none for another executor's owner, or with nothing running.
    expect(await store.repo.extendLeases('exec-b', 600_000, [a!.id])).toBe(0);
    expect(await store.repo.extendLeases('exec-a', 600_000, [])).toBe(0);
  });
});

describe('an executor running units whose worker or log misbehaves', () => {
  let sb: Sandbox;
  beforeEach(() => {
    sb = new Sandbox();
  });
  afterEach(async () => {
    await sb.cleanup();
  });

  it('an agent that floods its stream keeps its result; its conversation is stored up to 10,000 events, and the cut is recorded', async () => {
    const file = sb.path('items.csv');
    writeFileSync(file, 'id\nflood\n');
    const script = 'seq 0 11999 | awk \'{ print "{\\"type\\":\\"tick\\",\\"n\\":" $1 "}" }\'; echo \'{"type":"result","text":"done"}\'';
    const job = await sb.ok([
      'create', '--name', 'flood', '--intent', 'many events', '--enumerator', 'csv', '-e', `file_path=${file}`, '-e', 'id_column=id',
      '--worker', 'agent-cli', '-w', 'command=sh', '-w', `args:=${JSON.stringify(['-c', script])}`, '-w', 'output=jsonl', '-w', 'result_path=text', '-w', 'stdin:=null',
      '--max-retries', '0',
    ]);
    const id = job.job_id as number;
    await sb.ok(['start', String(id), '--skip-test']);
    const done = await sb.waitFor(id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
    expect(done.status).toBe('COMPLETED');
    expect((await sb.results(id))[0]).toMatchObject({ status: 'SUCCEEDED', output: 'done' });
    const kinds = await sb.query<{ kind: string; n: number }>('select kind, count(*) as n from unit_events where job_id = ? group by kind order by kind', id);
    expect(kinds.map((k) => [k.kind, Number(k.n)])).toEqual([['events_cut', 1], ['tick', 10_000]]);
    const [cut] = await sb.query<{ data: string }>("select data from unit_events where job_id = ? and kind = 'events_cut'", id);
    expect(JSON.parse(cut!.data)).toMatchObject({ kept: 10_000, left_out: 2001 });
  });

  it('records every unit: a NUL byte in one output (refused by PostgreSQL in text) is kept as U+FFFD', async () => {
    const file = sb.path('items.csv');
    writeFileSync(file, ['id', ...Array.from({ length: 6 }, (_, i) => `i${i + 1}`)].join('\n') + '\n');
    const script = 'if [ "$1" = i3 ]; then printf "a\\000b"; else printf "ok-%s" "$1"; fi';
    const job = await sb.ok([
      'create', '--name', 'nul', '--intent', 'binary output', '--enumerator', 'csv', '-e', `file_path=${file}`, '-e', 'id_column=id',
      '--worker', 'shell', '-w', 'command=sh', '-w', `args:=${JSON.stringify(['-c', script, 'sh', '{{item.id}}'])}`,
      '--max-workers', '6', '--max-retries', '0',
    ]);
    const id = job.job_id as number;
    await sb.ok(['start', String(id), '--skip-test']);
    const done = await sb.waitFor(id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
    expect(done.status).toBe('COMPLETED');
    expect(done.counts).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: 6, failed: 0, cancelled: 0 });
    const outputs = Object.fromEntries((await sb.results(id)).map((r) => [r.item_id, r.output]));
    expect(outputs).toEqual({ i1: 'ok-i1', i2: 'ok-i2', i3: 'a\uFFFDb', i4: 'ok-i4', i5: 'ok-i5', i6: 'ok-i6' });
  });

  it('an agent stream with lines its worker cannot read (a type whose String() throws, an answer nested 100,000 deep) fails or skips them, and never crashes the executor', async () => {
    const file = sb.path('items.csv');
    writeFileSync(file, 'id\na\nb\nc\n');
    const deep = `${'['.repeat(100_000)}${']'.repeat(100_000)}`;
    writeFileSync(sb.path('deep.json'), `{"type":"result","text":${deep}}\n`);
    // b: an event whose type is {"toString": 1} (String() of it throws), then its answer. c: an answer
    // that JSON.stringify cannot serialise (too deep), and nothing else. Each used to end the executor.
    const script = `case "$1" in b) echo '{"type":{"toString":1,"valueOf":1}}'; echo '{"type":"result","text":"ok-b"}' ;; c) cat "$2" ;; *) echo '{"type":"result","text":"ok-a"}' ;; esac`;
    const job = await sb.ok([
      'create', '--name', 'unreadable', '--intent', 'lines that throw', '--enumerator', 'csv', '-e', `file_path=${file}`, '-e', 'id_column=id',
      '--worker', 'agent-cli', '-w', 'command=sh', '-w', `args:=${JSON.stringify(['-c', script, 'sh', '{{item.id}}', sb.path('deep.json')])}`,
      '-w', 'output=jsonl', '-w', 'result_path=text', '-w', 'stdin:=null', '--max-workers', '3', '--max-retries', '0',
    ]);
    const exec = sb.executor({ ABP_EXECUTOR_IDLE_SECONDS: '0' });
    for (let i = 0; (await sb.query('select id from executors where pid = ?', exec.pid)).length === 0; i++) {
      if (exec.exitCode !== null || i > 300) throw new Error(`the executor did not register (exit ${exec.exitCode})`);
      await sleep(100);
    }
    await sb.ok(['start', String(job.job_id), '--skip-test']);
    const done = await sb.waitFor(job.job_id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
    expect(done.counts).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: 2, failed: 1, cancelled: 0 });
    const units = Object.fromEntries((await sb.query<{ item_id: string; status: string; output: string | null; error: string | null; stderr_tail: string }>('select item_id, status, output, error, stderr_tail from work_units where job_id = ?', job.job_id)).map((u) => [u.item_id, u]));
    expect(units.a).toMatchObject({ status: 'SUCCEEDED', output: 'ok-a' });
    expect(units.b).toMatchObject({ status: 'SUCCEEDED', output: 'ok-b' });
    expect(units.b!.stderr_tail).toContain('[abp: 1 stdout line was skipped, unreadable (Cannot convert object to primitive value)]');
    // c has no answer, and its worker's summary of the run (its last event) cannot be made either: a retryable failure.
    expect(units.c).toMatchObject({ status: 'FAILED', error: 'worker error: Maximum call stack size exceeded' });
    // The one executor ran them all and is still alive; it stops cleanly.
    expect(exec.exitCode).toBe(null);
    exec.kill('SIGTERM');
    expect((await exec).exitCode).toBe(0);
  });

  it('an executor stopped while a unit outlives its drain (a child that left its process group holds its output open) exits once that child is gone, writing nothing for the unit', async () => {
    const file = sb.path('items.csv');
    writeFileSync(file, 'id\nx\n');
    const started = sb.path('started');
    // The agent starts a child in a session of its own (setsid), which keeps the agent's stdout open
    // for 10 s (past the 1 s grace and the 5 s the executor then waits for the stopped units), and
    // then waits for ever: killing the unit's process group on SIGTERM leaves the child.
    const script = `setsid sh -c 'sleep 10' & echo started > ${started}; sleep 300`;
    const job = await sb.ok([
      'create', '--name', 'straggler', '--intent', 'outlive the drain', '--enumerator', 'csv', '-e', `file_path=${file}`, '-e', 'id_column=id',
      '--worker', 'agent-cli', '-w', 'command=sh', '-w', `args:=${JSON.stringify(['-c', script])}`, '-w', 'stdin:=null',
    ]);
    const exec = sb.executor({ ABP_EXECUTOR_IDLE_SECONDS: '0', ABP_SHUTDOWN_GRACE_SECONDS: '1' });
    let log = '';
    exec.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    for (let i = 0; (await sb.query('select id from executors where pid = ?', exec.pid)).length === 0; i++) {
      if (exec.exitCode !== null || i > 300) throw new Error(`the executor did not register (exit ${exec.exitCode})`);
      await sleep(100);
    }
    await sb.ok(['start', String(job.job_id), '--skip-test']);
    for (let i = 0; !existsSync(started); i++) {
      if (i > 300) throw new Error('the unit did not start');
      await sleep(100);
    }
    const t0 = Date.now();
    // Not exec.kill(), which would SIGKILL it 5 s later.
    process.kill(exec.pid as number, 'SIGTERM');
    const { exitCode } = await exec;
    // Once the child is gone (10 s), not after a minute of tries to write to a closed store.
    expect(exitCode, log).toBe(0);
    expect(Date.now() - t0, log).toBeLessThan(25_000);
    expect(await sb.query('select id from executors')).toEqual([]);
    expect(log).not.toMatch(/cannot write its outcome/);
  });

  it('an executor whose log cannot be written (a full disk) keeps working: it runs the job to the end and exits 0 on SIGTERM, with every log line refused by /dev/full', async () => {
    const file = sb.path('items.csv');
    writeFileSync(file, 'id\nx1\nx2\nx3\n');
    const job = await sb.ok(['create', '--name', 'log', '--intent', 'no log', '--enumerator', 'csv', '-e', `file_path=${file}`, '-e', 'id_column=id', '--worker', 'shell', '-w', 'command=echo']);
    const full = openSync('/dev/full', 'w');
    const exec = execa(process.execPath, [CLI, 'executor', '--idle-seconds', '0'], { env: sb.env, stdout: 'ignore', stderr: full, reject: false, cwd: ROOT });
    closeSync(full);
    for (let i = 0; (await sb.query('select id from executors where pid = ?', exec.pid)).length === 0; i++) {
      if (exec.exitCode !== null || i > 300) throw new Error(`the executor did not register (exit ${exec.exitCode})`);
      await sleep(100);
    }
    const started = await sb.ok(['start', String(job.job_id), '--skip-test']);
    // The executor that cannot log is alive and registered: abp start launches no other.
    expect(started.executor.started).toBe(false);
    const done = await sb.waitFor(job.job_id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
    expect(done.counts).toEqual({ pending: 0, running: 0, submitted: 0, succeeded: 3, failed: 0, cancelled: 0 });
    exec.kill('SIGTERM');
    expect((await exec).exitCode).toBe(0);
    expect(await sb.query('select id from executors')).toEqual([]);
  });
});
