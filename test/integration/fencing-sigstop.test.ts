import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { Sandbox, sleep } from '../helpers/cli.js';

/*
 * Fencing (issue 22): an executor stopped with SIGSTOP past its lease, whose
 * units another executor then claims and completes, is resumed with SIGCONT
 * and tries to record what its workers answered meanwhile. Every late write
 * must be refused by the fencing token (the unit's attempt) and the lease
 * owner: nothing is recorded twice, no finished unit moves, and the late
 * answers, costs and conversation events land nowhere. (The outcomes were
 * refused already; the conversation events were not: the stopped attempt's
 * answer and cost were appended to each unit's conversation after the attempt
 * that finished it. They are now fenced by the attempt, like the worker's pid.)
 *
 * Nothing here waits a fixed time for something to happen: the units wait at
 * gates (files) the test opens, and each phase polls for the state it needs.
 * A stopped executor's children keep running, so executor A's workers are
 * released while A itself is stopped, and A finds their answers waiting when
 * it is resumed.
 */

let sb: Sandbox;
/** Every fake agent process the test's units started: killed at the end, whatever happened. */
let agentPids: number[] = [];
beforeEach(() => {
  sb = new Sandbox({ ABP_LEASE_SECONDS: '2' });
  agentPids = [];
});
afterEach(async () => {
  for (const pid of agentPids) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await sb.cleanup();
});

/**
 * A stand-in for Claude Code (`claude -p --output-format stream-json`): it
 * answers the health check, prints its init event, logs that it started, waits
 * at its gates, then prints an assistant message and a result with a cost and
 * token counts, and logs that it answered. It tells who ran it by FENCE_HOLD,
 * which only executor A's environment sets: A's runs wait until that file
 * exists, and answer "A:item" at $7.50; every other run answers "B:item" at
 * $0.25. Item "slow", run by B, also waits while FENCE_SLOW exists. Each wait
 * is bounded (two minutes or more), so a test that dies midway leaves no
 * process waiting for ever.
 */
const FAKE_CLAUDE = `#!/bin/sh
case "$1" in
  --version) echo "0.0.0 (fencing fake)"; exit 0 ;;
  auth) echo '{"loggedIn":true,"authMethod":"fake"}'; exit 0 ;;
esac
prompt=$(cat)
item=\${prompt#*item=}
item=\${item%%[!A-Za-z0-9_-]*}
if [ -n "$FENCE_HOLD" ]; then who=A; cost=7.5; tokens=9000; else who=B; cost=0.25; tokens=100; fi
echo "{\\"type\\":\\"system\\",\\"subtype\\":\\"init\\",\\"session_id\\":\\"sess-$who-$item\\"}"
echo "start $item $who $$" >>"$FENCE_LOG"
i=0
if [ -n "$FENCE_HOLD" ]; then while [ ! -e "$FENCE_HOLD" ] && [ $i -lt 6000 ]; do sleep 0.02; i=$((i+1)); done; fi
if [ "$item" = slow ] && [ $who = B ]; then while [ -e "$FENCE_SLOW" ] && [ $i -lt 6000 ]; do sleep 0.02; i=$((i+1)); done; fi
echo "{\\"type\\":\\"assistant\\",\\"message\\":{\\"role\\":\\"assistant\\",\\"content\\":[{\\"type\\":\\"text\\",\\"text\\":\\"$who:$item\\"}]}}"
echo "{\\"type\\":\\"result\\",\\"subtype\\":\\"success\\",\\"is_error\\":false,\\"result\\":\\"$who:$item\\",\\"session_id\\":\\"sess-$who-$item\\",\\"total_cost_usd\\":$cost,\\"usage\\":{\\"input_tokens\\":$tokens,\\"output_tokens\\":$tokens},\\"duration_ms\\":5}"
echo "done $item $who $$" >>"$FENCE_LOG"
`;

interface Run {
  what: 'start' | 'done';
  item: string;
  who: string;
  pid: number;
}

function runs(log: string): Run[] {
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [what, item, who, pid] = line.split(' ');
      return { what: what as Run['what'], item: item as string, who: who as string, pid: Number(pid) };
    });
}

/** Whether a process exists (a zombie its stopped parent has not reaped counts). */
function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function until<T>(what: string | (() => string), probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await probe();
    if (got !== undefined && got !== false) return got;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${typeof what === 'string' ? what : what()}`);
    await sleep(25);
  }
}

it('an executor SIGSTOPped past its lease and resumed after another took its units over: its late outcomes and events are all refused, nothing is recorded twice, and no unit moves', { timeout: 180_000 }, async () => {
  // A claims all five. B finishes four (DONE) while A is stopped, and is still running the fifth
  // (SLOW, attempt 2, waiting at its gate) when A resumes: A's late outcome for it meets a unit that
  // is RUNNING, under B, which only the fencing token and the lease owner tell apart from A's own.
  const DONE = ['h1', 'h2', 'h3', 'h4'];
  const SLOW = 'slow';
  const ITEMS = [...DONE, SLOW];
  const N = ITEMS.length;
  const fake = sb.path('fake-claude');
  writeFileSync(fake, FAKE_CLAUDE, { mode: 0o755 });
  const log = sb.path('runs.log');
  writeFileSync(log, '');
  const hold = sb.path('release-a');
  const slowGate = sb.path('slow-gate');
  writeFileSync(slowGate, '');
  sb.env.FENCE_LOG = log;
  sb.env.FENCE_SLOW = slowGate;
  const items = sb.path('items.csv');
  writeFileSync(items, ['id', ...ITEMS].join('\n') + '\n');
  const spec = sb.path('spec.json');
  writeFileSync(
    spec,
    JSON.stringify({
      name: 'fencing',
      user_intent: 'answer once',
      enumerator_type: 'csv',
      enumerator_config: { file_path: items, id_column: 'id' },
      worker_type: 'claude',
      worker_config: { command: fake },
      prompt_template: 'fence item={{item.id}}',
      max_workers: N,
      max_retries: 3,
      timeout_seconds: 600,
    }),
  );
  const id = (await sb.ok(['create', '--spec', spec])).job_id as number;

  // Executor A, registered before the job starts (so `start` launches none), with room for exactly
  // the N units: once it holds them it only heartbeats and reads, and claims nothing more.
  const a = sb.executor({ FENCE_HOLD: hold, ABP_MAX_WORKERS: String(N), ABP_EXECUTOR_IDLE_SECONDS: '600' });
  let aLog = '';
  a.stderr?.on('data', (chunk: Buffer) => (aLog += chunk.toString()));
  const aPid = a.pid as number;
  const ownerA = await until('A registers', async () => (await sb.queryOne<{ id: string }>('select id from executors where pid = ?', aPid))?.id);
  await sb.ok(['start', String(id), '--skip-test']);

  // A holds the N units: each RUNNING under A at attempt 1, its agent started (its pid and init event written).
  await until('A holds every unit with its agent started', async () => {
    const held = await sb.query<{ attempt: number; worker_pid: number | null }>(
      "select attempt, worker_pid from work_units where job_id = ? and status = 'RUNNING' and lease_owner = ?", id, ownerA,
    );
    const inits = await sb.queryOne<{ n: number }>("select count(*) n from unit_events where job_id = ? and kind = 'init'", id);
    const started = runs(log).filter((r) => r.what === 'start' && r.who === 'A').length;
    return held.length === N && held.every((u) => u.attempt === 1 && u.worker_pid !== null) && Number(inits?.n) === N && started === N;
  });
  const aAgents = runs(log).filter((r) => r.what === 'start' && r.who === 'A');
  agentPids.push(...aAgents.map((r) => r.pid));
  expect(aAgents.map((r) => r.item).sort()).toEqual([...ITEMS].sort());
  // And A has looked at the job since it claimed them: two heartbeats later than the claim, so the
  // pass that wrote the first has ended. (On its first look at a job with running units an executor
  // also stops the attempts it no longer holds; stopped before that look, A would end its agents on
  // resuming instead of recording their answers. Both are refused; this test wants the answers.)
  const claimedAt = Number((await sb.queryOne<{ t: number }>('select max(started_at) t from work_units where job_id = ? and lease_owner = ?', id, ownerA))?.t);
  const heartbeat = async () => Number((await sb.queryOne<{ t: number }>('select heartbeat_at t from executors where id = ?', ownerA))?.t);
  const firstBeat = await until('A heartbeats after its claim', async () => ((await heartbeat()) > claimedAt ? await heartbeat() : false));
  await until('A heartbeats again', async () => (await heartbeat()) > firstBeat);

  // Stop A at a moment it holds no database lock: stopped inside a transaction, it would hold every
  // other executor up (SQLite's write lock, a PostgreSQL row lock); that is not this test's subject.
  for (let tries = 0; ; tries++) {
    process.kill(aPid, 'SIGSTOP');
    await sleep(50);
    if (!(await sb.inTransaction())) break;
    if (tries > 50) throw new Error('A was inside a transaction at every SIGSTOP');
    process.kill(aPid, 'SIGCONT');
    await sleep(10 + Math.random() * 40);
  }

  // The leases run out by the store's clock (lease_expires_at is epoch ms, written by A's Date.now()).
  await until('every lease A holds has expired', async () => {
    const row = await sb.queryOne<{ n: number; latest: number | null }>(
      "select count(*) n, max(lease_expires_at) latest from work_units where job_id = ? and status = 'RUNNING' and lease_owner = ?", id, ownerA,
    );
    return Number(row?.n) === N && Number(row?.latest) < Date.now();
  });

  // Executor B reclaims the expired units and runs each again (attempt 2): it finishes DONE, and
  // SLOW waits at its gate, RUNNING under B, which keeps the job RUNNING.
  const b = sb.executor({ ABP_EXECUTOR_IDLE_SECONDS: '600' });
  const bPid = b.pid as number;
  const ownerB = await until('B registers', async () => (await sb.queryOne<{ id: string }>('select id from executors where pid = ?', bPid))?.id);
  await until('B finished DONE and runs SLOW', async () => {
    const done = await sb.queryOne<{ n: number }>("select count(*) n from work_units where job_id = ? and status = 'SUCCEEDED'", id);
    const slow = await sb.queryOne<{ status: string; attempt: number; lease_owner: string | null; worker_pid: number | null }>(
      'select status, attempt, lease_owner, worker_pid from work_units where job_id = ? and item_id = ?', id, SLOW,
    );
    const slowStarted = runs(log).some((r) => r.what === 'start' && r.who === 'B' && r.item === SLOW);
    return Number(done?.n) === DONE.length && slow?.status === 'RUNNING' && slow.attempt === 2 && slow.lease_owner === ownerB && slow.worker_pid !== null && slowStarted;
  });
  agentPids.push(...runs(log).filter((r) => r.who === 'B' && r.what === 'start').map((r) => r.pid));
  const unitsQuery = 'select id, item_id, status, attempt, failures, output, session_id, cost_usd, input_tokens, output_tokens, usage, finished_at, lease_owner from work_units where job_id = ? order by id';
  const beforeA = await sb.query<Record<string, unknown>>(unitsQuery, id);
  for (const u of beforeA) {
    if (u.item_id === SLOW) expect(u).toMatchObject({ status: 'RUNNING', attempt: 2, failures: 1, output: null, lease_owner: ownerB });
    else expect(u, String(u.item_id)).toMatchObject({ status: 'SUCCEEDED', attempt: 2, failures: 1, output: `B:${u.item_id}`, session_id: `sess-B-${u.item_id}`, lease_owner: null });
  }
  // A's agents outlived the lease: a stopped executor is alive, so B did not reap their groups.
  expect(aAgents.every((r) => exists(r.pid))).toBe(true);

  // A's agents answer (A is still stopped: the answers wait in their pipes), then A resumes.
  writeFileSync(hold, '');
  await until('every agent of A answered', () => runs(log).filter((r) => r.what === 'done' && r.who === 'A').length === N);
  process.kill(aPid, 'SIGCONT');

  // A reads the answers and tries to record them: each is refused, as a lost lease, and meanwhile
  // no unit moves: not a status, an attempt, an output, a cost, a session, a finish time or a lease,
  // neither of the units B finished nor of the one it is still running.
  await until(
    () => `A reported every late outcome refused (A's log:\n${aLog})`,
    async () => {
      expect(await sb.query<Record<string, unknown>>(unitsQuery, id)).toEqual(beforeA);
      return beforeA.every((u) => aLog.includes(`unit ${u.id}: attempt 1 lost its lease; its outcome was refused`));
    },
  );
  // A's pool is empty again: its agents were read to the end and their groups reaped.
  await until("A's agents are gone", () => aAgents.every((r) => !exists(r.pid)));

  expect(await sb.query<Record<string, unknown>>(unitsQuery, id)).toEqual(beforeA);

  // SLOW finishes; the job completes.
  rmSync(slowGate);
  await until('the job COMPLETED', async () => (await sb.queryOne<{ status: string }>('select status from jobs where id = ?', id))?.status === 'COMPLETED');

  // Both executors stop cleanly: A, once resumed, is a healthy executor.
  process.kill(aPid, 'SIGTERM');
  process.kill(bPid, 'SIGTERM');
  expect((await a).exitCode, aLog).toBe(0);
  expect((await b).exitCode).toBe(0);

  // ---- what is recorded, table by table -------------------------------------------------------
  // The units: each SUCCEEDED once, at attempt 2, with B's answer, session, cost and tokens.
  const units = await sb.query<Record<string, any>>(unitsQuery, id);
  expect(units.map((u) => [u.item_id, u.status, u.attempt, u.failures, u.output, u.session_id, Number(u.cost_usd), Number(u.input_tokens), Number(u.output_tokens)])).toEqual(
    ITEMS.map((item) => [item, 'SUCCEEDED', 2, 1, `B:${item}`, `sess-B-${item}`, 0.25, 100, 100]),
  );
  for (const u of units) expect(JSON.parse(u.usage)).toMatchObject({ input_tokens: 100, output_tokens: 100 });
  expect(await sb.query('select count(*) n from work_units where job_id = ? and (lease_owner is not null or lease_expires_at is not null or worker_pid is not null or reserved_usd <> 0)', id)).toEqual([{ n: 0 }]);

  // The job's spending and counters: each unit counted once, at B's price.
  const job = await sb.queryOne<Record<string, any>>(
    'select status, total, pending, running, succeeded, failed, cancelled, cost_usd, input_tokens, output_tokens, costed_units, reserved_usd from jobs where id = ?', id,
  );
  expect({ ...job, cost_usd: Number(job?.cost_usd), reserved_usd: Number(job?.reserved_usd) }).toEqual({
    status: 'COMPLETED', total: N, pending: 0, running: 0, succeeded: N, failed: 0, cancelled: 0,
    cost_usd: 0.25 * N, input_tokens: 100 * N, output_tokens: 100 * N, costed_units: N, reserved_usd: 0,
  });
  const status = await sb.status(id);
  expect(status.counts).toEqual(await sb.counts(id));
  expect(status.cost_usd).toBe(0.25 * N);

  // The event log: per unit, attempt 1 ended once, by its lease's expiry, and attempt 2 succeeded once.
  const events = (await sb.query<{ data: string }>("select data from events where job_id = ? and type = 'unit' order by seq", id)).map((e) => JSON.parse(e.data));
  for (const u of units) {
    expect(events.filter((e) => e.unit_id === u.id).map((e) => [e.attempt, e.status, e.error ?? null]), u.item_id).toEqual([
      [1, 'PENDING', 'lease expired'],
      [2, 'SUCCEEDED', null],
    ]);
  }
  expect(events).toHaveLength(2 * N);

  // The conversations: A's attempt kept only what it wrote while it held the lease (its init); its
  // answer and cost, read after the lease was lost, were not added.
  const conversation = await sb.query<{ unit_id: number; attempt: number; kind: string; data: string }>('select unit_id, attempt, kind, data from unit_events where job_id = ? order by id', id);
  for (const u of units) {
    expect(conversation.filter((e) => e.unit_id === u.id).map((e) => [e.attempt, e.kind]), u.item_id).toEqual([[1, 'init'], [2, 'init'], [2, 'assistant'], [2, 'result']]);
  }
  expect(conversation.filter((e) => e.data.includes('"A:') || e.data.includes('7.5'))).toEqual([]);

  // Every agent ran once per claim: A's five (which answered, unrecorded) and B's five.
  const all = runs(log);
  expect(all.filter((r) => r.what === 'done').map((r) => `${r.who}:${r.item}`).sort()).toEqual([...ITEMS.map((i) => `A:${i}`), ...ITEMS.map((i) => `B:${i}`)].sort());
  expect(all.filter((r) => r.what === 'start')).toHaveLength(2 * N);
  expect(aLog).not.toMatch(/could not record its outcome|tick failed|stopped by a person/);
});

