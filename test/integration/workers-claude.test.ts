import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startMockAnthropic, userText, type MockServer, type Script } from '../fixtures/mock-anthropic.js';
import { groupAlive, ROOT, Sandbox, sleep } from '../helpers/cli.js';

/** The real Claude Code CLI, pinned as a dev dependency. */
const CLAUDE = join(ROOT, 'node_modules', '.bin', 'claude');

let sb: Sandbox;
let mock: MockServer;

/** Answers every unit with a text that names the payload marker it saw, so outputs prove the routing. */
const echoMarker: Script = (req) => {
  const marker = /MARKER-[a-z0-9]+/.exec(userText(req))?.[0] ?? 'none';
  return { type: 'text', text: `done ${marker}`, usage: { input_tokens: 120, output_tokens: 30, cache_read_input_tokens: 7 } };
};

async function start(script: Script, env: Record<string, string> = {}) {
  mock = await startMockAnthropic(script);
  sb = new Sandbox({
    ANTHROPIC_BASE_URL: mock.url,
    ANTHROPIC_API_KEY: 'test',
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
    ABP_SKIP_TEST: '1',
    ...env,
  });
  // HOME inside the sandbox, so no user config leaks in and nothing leaks out.
  sb.env.HOME = sb.path('claude-home');
  mkdirSync(sb.env.HOME, { recursive: true });
}
afterEach(async () => {
  await sb?.cleanup();
  await mock?.close();
});

function csv(markers: string[]): string {
  const path = sb.path('items.csv');
  writeFileSync(path, ['id,text', ...markers.map((m, i) => `r${i + 1},please handle ${m}`)].join('\n') + '\n');
  return path;
}

async function createJob(markers: string[], extra: Record<string, unknown> = {}, workerConfig: Record<string, unknown> = {}): Promise<number> {
  const spec = {
    name: 'claude job',
    user_intent: 'Reply with the word done and the marker in the item.',
    enumerator_type: 'csv',
    enumerator_config: { file_path: csv(markers), id_column: 'id' },
    worker_type: 'claude',
    worker_config: { command: CLAUDE, max_turns: 2, ...workerConfig },
    max_workers: 3,
    max_retries: 0,
    timeout_seconds: 60,
    ...extra,
  };
  const file = sb.path('spec.json');
  writeFileSync(file, JSON.stringify(spec));
  return (await sb.ok(['create', '--spec', file])).job_id as number;
}

describe('claude worker, end to end against the real Claude Code CLI and a mock Messages API', () => {
  it('records result, cost, usage, session_id and conversation, and each payload reaches the API', async () => {
    await start(echoMarker);
    const markers = ['MARKER-alpha1', 'MARKER-beta2', 'MARKER-gamma3'];
    const id = await createJob(markers);
    await sb.ok(['start', String(id)]);
    const done = await sb.waitFor(id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 90_000);
    expect(done.status).toBe('COMPLETED');
    expect(done.cost_usd).toBeGreaterThan(0);

    const results = await sb.results(id);
    expect(results.map((r) => r.output).sort()).toEqual(markers.map((m) => `done ${m}`).sort());
    for (const line of results) expect(line.cost_usd).toBeGreaterThan(0);

    const unit = await sb.ok(['unit', String(results[0].unit_id)]);
    expect(unit.session_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(unit.usage).toMatchObject({ input_tokens: 120, output_tokens: 30, cache_read_tokens: 7 });
    const kinds = unit.conversation.map((e: { kind: string }) => e.kind);
    expect(kinds[0]).toBe('init');
    expect(kinds).toContain('assistant');
    expect(kinds.at(-1)).toBe('result');
    const init = unit.conversation[0].data;
    expect(init.session_id).toBe(unit.session_id);
    // No tools were granted: the agent has the read-only ones, and nothing else.
    expect([...init.tools].sort()).toEqual(['Glob', 'Grep', 'Read']);

    // What the mock received: every unit's own payload, streamed requests, the test key.
    const texts = mock.requests.map(userText).join('\n');
    for (const m of markers) expect(texts).toContain(m);
    expect(mock.requests.every((r) => r.body.stream === true)).toBe(true);
    expect(mock.requests.every((r) => r.headers['x-api-key'] === 'test')).toBe(true);
  });

  it('with no key, the health check reports auth_failed from the CLI itself and the job does not start', async () => {
    await start(echoMarker, { ANTHROPIC_API_KEY: '' });
    const id = await createJob(['MARKER-nokey']);

    const doctor = await sb.ok(['doctor', 'claude'], { PATH: `${join(ROOT, 'node_modules', '.bin')}:${process.env.PATH}` });
    expect(doctor.workers[0]).toMatchObject({ worker_type: 'claude', status: 'auth_failed' });
    expect(doctor.workers[0].details).toContain('claude auth status: loggedIn false');

    const r = await sb.cli(['start', String(id), '--json']);
    expect(r.exitCode).toBe(1);
    expect(r.json.error.message).toMatch(/auth_failed/);
    expect(r.json.error.message).toContain('ANTHROPIC_API_KEY');
    expect(r.json.error.message).toContain('claude /login');
    expect((await sb.status(id)).status).toBe('CREATED');
    await sleep(500);
    expect(mock.requests).toHaveLength(0);
    expect(await sb.counts(id)).toMatchObject({ pending: 1, running: 0, succeeded: 0, failed: 0 });
  });

  it('429 and 529 cool the worker type down and recover without spending an attempt', async () => {
    let n = 0;
    await start((req) => {
      n++;
      if (n === 1) return { type: 'error', status: 429, headers: { 'retry-after': '1' } };
      if (n === 2) return { type: 'error', status: 529 };
      return echoMarker(req, n);
    });
    const id = await createJob(['MARKER-limited']); // max_retries 0: any spent attempt would fail the unit
    await sb.ok(['start', String(id)]);
    const done = await sb.waitFor(id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 90_000);
    expect(done.status).toBe('COMPLETED');
    const [line] = await sb.results(id);
    expect(line.output).toBe('done MARKER-limited');
    const unit = await sb.ok(['unit', String(line.unit_id)]);
    expect(unit.failures).toBe(0);
    expect(unit.attempt).toBe(3);
    expect(unit.conversation.filter((e: { kind: string }) => e.kind === 'api_retry').map((e: any) => e.data.error_status)).toEqual([429, 529]);

    const coolDowns = await sb.query<{ data: string }>("select data from events where job_id = ? and type = 'cool_down' order by seq", id);
    expect(coolDowns).toHaveLength(2);
    // The first honours the server's Retry-After (1 s, as the CLI reports it).
    expect(JSON.parse(coolDowns[0]!.data).ms).toBeGreaterThanOrEqual(1000);
    // No request went out before the 429's Retry-After ran out.
    expect(mock.requests[1]!.at - mock.requests[0]!.at).toBeGreaterThanOrEqual(1000);
  });

  it('a hanging API is killed at the timeout, and the whole process group is gone', async () => {
    await start(() => ({ type: 'hang' }));
    const id = await createJob(['MARKER-hang'], { timeout_seconds: 5 });
    await sb.ok(['start', String(id)]);
    let pid: number | null = null;
    const deadline = Date.now() + 30_000;
    while (pid === null && Date.now() < deadline) {
      const row = await sb.queryOne<{ worker_pid: number | null }>('select worker_pid from work_units where job_id = ?', id);
      pid = row?.worker_pid ?? null;
      if (pid === null) await sleep(100);
    }
    expect(pid).not.toBeNull();
    expect(groupAlive(pid!)).toBe(true);
    const done = await sb.waitFor(id, (s) => s.status === 'FAILED' || s.status === 'COMPLETED', 60_000);
    expect(done.status).toBe('FAILED');
    const [line] = await sb.results(id);
    expect(line.error).toMatch(/timed out; killed process group/);
    expect(mock.requests.length).toBeGreaterThanOrEqual(1);
    // SIGTERM, then SIGKILL after a grace period: give the group a moment to be reaped.
    const gone = Date.now() + 5000;
    while (groupAlive(pid!) && Date.now() < gone) await sleep(100);
    expect(groupAlive(pid!)).toBe(false);
  });

  it('a job that asks for --dangerously-skip-permissions says so in its status and events', async () => {
    await start(echoMarker);
    const id = await createJob(['MARKER-danger'], {}, { dangerously_skip_permissions: true });
    const started = await sb.ok(['start', String(id)]);
    expect(started.job.status_reason).toMatch(/^warning: .*--dangerously-skip-permissions/);
    // The run itself may succeed, or fail where the CLI refuses the flag (it does for root); either way it ends.
    await sb.waitFor(id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 60_000);
    const health = await sb.queryOne<{ data: string }>("select data from events where job_id = ? and type = 'health'", id);
    expect(JSON.parse(health!.data)).toMatchObject({ status: 'ok', features: expect.arrayContaining(['dangerously_skip_permissions']) });
  });
});
