import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { resolveConfig } from '../../src/config.js';
import { envNeeds, missingFrom } from '../../src/executor/launcher.js';
import { CLAUDE_ENV_NAMES, claudeWorker } from '../../workers/claude.js';
import { httpLlmWorker } from '../../workers/http-llm.js';
import { envRefNames } from '../../src/domain/env-refs.js';
import { shellWorker } from '../../workers/shell.js';
import { startMockAnthropic, userText, type MockServer } from '../fixtures/mock-anthropic.js';
import { CLI, ROOT, Sandbox, sleep } from '../helpers/cli.js';
import { call, connectInMemory } from '../helpers/mcp.js';

/**
 * Issue 24: `{{env.NAME}}` and a worker's own variables (ANTHROPIC_API_KEY) are
 * read in the executor, not where the job is started. An executor that was
 * started without a variable and lingers must not run a job that needs it: the
 * job records what its start had, executors record which names they have, and
 * `start` launches a fresh executor and says which one lacked which variable.
 */

const CLAUDE = join(ROOT, 'node_modules', '.bin', 'claude');
const KEY = 'sk-stale-env-test-key';

let sb: Sandbox | undefined;
let mock: MockServer | undefined;
let app: App | undefined;
const spawned: ResultPromise[] = [];
const savedEnv: Record<string, string | undefined> = {};

afterEach(async () => {
  for (const p of spawned.splice(0)) p.kill('SIGKILL');
  await app?.close();
  await sb?.cleanup();
  await mock?.close();
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
    delete savedEnv[k];
  }
  [sb, mock, app] = [undefined, undefined, undefined];
});

/** An executor process with exactly `env` over a copy of this process's environment without `drop`. */
function oldExecutor(s: Sandbox, drop: readonly string[], env: Record<string, string> = {}): ResultPromise {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !drop.includes(k)));
  const p = execa(process.execPath, [CLI, 'executor'], {
    env: { ...base, ...s.env, ABP_EXECUTOR_IDLE_SECONDS: '300', ...env },
    extendEnv: false,
    reject: false,
    cwd: ROOT,
    all: true,
  });
  spawned.push(p);
  return p;
}

async function registered(s: Sandbox, count: number): Promise<{ id: string; pid: number; env_names: string | null }[]> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    // Until the executor has opened (and migrated) the database, there is nothing to read.
    const rows = await s.query<{ id: string; pid: number; env_names: string | null }>('select id, pid, env_names from executors order by started_at').catch(() => []);
    if (rows.length >= count) return rows;
    if (Date.now() > deadline) throw new Error(`expected ${count} executors, have ${rows.length}`);
    await sleep(100);
  }
}

describe('what a job needs of its executor’s environment', () => {
  it('is its {{env.NAME}} references and its worker’s own variables, of those set where it is started', () => {
    expect(envRefNames({ env: { A: '{{env.TOKEN_A}}', B: 'x {{ env.TOKEN_B }} y' }, args: ['{{env.ARG_TOKEN}}', '{{item.id}}'], n: 3 }).sort()).toEqual([
      'ARG_TOKEN',
      'TOKEN_A',
      'TOKEN_B',
    ]);

    const starter = { ANTHROPIC_API_KEY: 'k', ANTHROPIC_BASE_URL: 'http://x', MY_TOKEN: 't', EMPTY_TOKEN: '', PATH: '/bin' };
    // claude: its own variables that the starter has, and the config's references; an unset or empty one is no need.
    const raw = { env: { GH: '{{env.MY_TOKEN}}', X: '{{env.EMPTY_TOKEN}}', Y: '{{env.NOT_SET}}' } };
    const parsed = claudeWorker.configSchema.parse(raw);
    expect(envNeeds(claudeWorker, raw, parsed, starter)).toEqual(['ANTHROPIC_API_KEY', 'ANTHROPIC_BASE_URL', 'MY_TOKEN']);
    // A name the job's env sets (or removes) is the config's, not the executor's.
    const own = { env: { ANTHROPIC_API_KEY: '{{env.MY_TOKEN}}', ANTHROPIC_BASE_URL: '' } };
    expect(envNeeds(claudeWorker, own, claudeWorker.configSchema.parse(own), starter)).toEqual(['MY_TOKEN']);
    // A starter logged in another way (no key anywhere) needs nothing of the executor.
    expect(envNeeds(claudeWorker, {}, claudeWorker.configSchema.parse({}), { PATH: '/bin' })).toEqual([]);
    expect(CLAUDE_ENV_NAMES).toEqual(expect.arrayContaining(['ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'CLAUDE_CODE_USE_BEDROCK', 'CLAUDE_CODE_USE_VERTEX']));

    // http-llm: the key variable it reads by default, or the one api_key_env names, or none.
    const env = { OPENAI_API_KEY: 'o', ANTHROPIC_API_KEY: 'a', ROUTER_KEY: 'r', HEADER_TOKEN: 'h' };
    const llm = (c: Record<string, unknown>) => envNeeds(httpLlmWorker, c, httpLlmWorker.configSchema.parse(c), env);
    expect(llm({ model: 'm' })).toEqual(['OPENAI_API_KEY']);
    expect(llm({ api: 'anthropic', model: 'm' })).toEqual(['ANTHROPIC_API_KEY']);
    expect(llm({ model: 'm', api_key_env: 'ROUTER_KEY', headers: { 'x-extra': '{{env.HEADER_TOKEN}}' } })).toEqual(['HEADER_TOKEN', 'ROUTER_KEY']);
    expect(llm({ model: 'm', api_key_env: null })).toEqual([]);

    // shell reads nothing by itself: only its references count.
    const sh = { command: 'sh', env: { T: '{{env.MY_TOKEN}}' } };
    expect(envNeeds(shellWorker, sh, shellWorker.configSchema.parse(sh), starter)).toEqual(['MY_TOKEN']);

    // What an executor lacks: what its registered names miss; an executor that registered none (older) lacks all.
    expect(missingFrom({ env_names: JSON.stringify(['A', 'PATH']) }, ['A', 'B'])).toEqual(['B']);
    expect(missingFrom({ env_names: null }, ['A'])).toEqual(['A']);
    expect(missingFrom({ env_names: null }, [])).toEqual([]);
  });
});

describe('an executor started without a variable the job needs', () => {
  it('claude: `abp start` from a shell with ANTHROPIC_API_KEY starts a fresh executor, names the stale one, and no unit fails auth_failed', async () => {
    mock = await startMockAnthropic((req) => {
      const marker = /MARKER-[a-z0-9]+/.exec(userText(req))?.[0] ?? 'none';
      return { type: 'text', text: `done ${marker}`, usage: { input_tokens: 50, output_tokens: 10 } };
    });
    const s = (sb = new Sandbox({ ANTHROPIC_BASE_URL: mock.url, CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1' }));
    s.env.HOME = s.path('claude-home');
    mkdirSync(s.env.HOME, { recursive: true });

    // An executor from earlier, started where ANTHROPIC_API_KEY was not set; it lingers while idle.
    const stale = oldExecutor(s, [...CLAUDE_ENV_NAMES.filter((n) => n !== 'ANTHROPIC_BASE_URL')]);
    const [old] = await registered(s, 1);
    expect(JSON.parse(old!.env_names!)).not.toContain('ANTHROPIC_API_KEY');
    expect(JSON.parse(old!.env_names!)).toContain('ANTHROPIC_BASE_URL');

    const markers = ['MARKER-one1', 'MARKER-two2', 'MARKER-three3'];
    const csv = s.path('items.csv');
    writeFileSync(csv, ['id,text', ...markers.map((m, i) => `r${i + 1},please handle ${m}`)].join('\n') + '\n');
    const spec = s.path('spec.json');
    writeFileSync(
      spec,
      JSON.stringify({
        name: 'needs the key',
        user_intent: 'Reply with the word done and the marker in the item.',
        enumerator_type: 'csv',
        enumerator_config: { file_path: csv, id_column: 'id' },
        worker_type: 'claude',
        worker_config: { command: CLAUDE, max_turns: 2 },
        max_workers: 3,
        max_retries: 0,
        timeout_seconds: 60,
      }),
    );
    const id = (await s.ok(['create', '--spec', spec])).job_id as number;

    // The user has set the key in their shell now, and starts the job from it.
    const started = await s.cli(['start', String(id), '--skip-test'], { ANTHROPIC_API_KEY: KEY });
    expect(started.exitCode, started.stderr).toBe(0);
    expect(started.stdout).toContain(`executor ${old!.id} (pid ${old!.pid}) was started without ANTHROPIC_API_KEY`);
    expect(started.stdout).toMatch(/started an executor \(pid \d+, log /);
    expect(started.stdout).toMatch(/a fresh executor \(pid \d+\), started with this environment, runs them/);
    const job = await s.queryOne<{ env_needs: string }>('select env_needs from jobs where id = ?', id);
    expect(JSON.parse(job!.env_needs)).toEqual(expect.arrayContaining(['ANTHROPIC_API_KEY', 'ANTHROPIC_BASE_URL']));
    expect(job!.env_needs).not.toContain(KEY);

    const done = await s.waitFor(id, (st) => ['COMPLETED', 'FAILED', 'PAUSED'].includes(st.status), 120_000);
    expect(done.status).toBe('COMPLETED');
    expect(done.counts).toMatchObject({ succeeded: 3, failed: 0 });

    // Every request carried the key, and no unit ever failed for want of it.
    expect(mock.requests.length).toBeGreaterThanOrEqual(3);
    expect(mock.requests.every((r) => r.headers['x-api-key'] === KEY)).toBe(true);
    const units = await s.query<{ attempt: number; error_kind: string | null }>('select attempt, error_kind from work_units where job_id = ?', id);
    expect(units.map((u) => [u.attempt, u.error_kind])).toEqual([
      [1, null],
      [1, null],
      [1, null],
    ]);
    const kinds = await s.query<{ data: string }>("select data from events where job_id = ? and type = 'unit'", id);
    expect(kinds.map((e) => JSON.parse(e.data).error_kind ?? null)).toEqual([null, null, null]);
    expect((await s.results(id)).map((r) => r.output).sort()).toEqual(markers.map((m) => `done ${m}`).sort());

    // The stale executor stayed alive, registered, and claimed nothing of the job: it said why once.
    const rows = await registered(s, 1);
    expect(rows.map((r) => r.id)).toContain(old!.id);
    expect(rows.every((r) => !(r.env_names ?? '').includes(KEY))).toBe(true);
    stale.kill('SIGTERM');
    const out = (await stale).all ?? '';
    expect(out).toContain(`job ${id} needs ANTHROPIC_API_KEY, which this executor was started without: leaving its units to another executor`);
    expect(out).not.toMatch(/unit \d+/);
    // The fresh executor's log is where the units ran.
    expect(readFileSync(s.path('logs', 'executor.log'), 'utf8')).toContain('started (max');
  }, 180_000);

  it('MCP start_job: a {{env.NAME}} reference the stale executor lacks is run by a fresh one, and the answer says which executor lacked it', async () => {
    const s = (sb = new Sandbox());
    oldExecutor(s, ['STALE_ENV_TEST_TOKEN']);
    const [old] = await registered(s, 1);

    // The MCP server's process has the variable (it was set before the host started it).
    savedEnv.STALE_ENV_TEST_TOKEN = process.env.STALE_ENV_TEST_TOKEN;
    savedEnv.ABP_EXECUTOR_IDLE_SECONDS = process.env.ABP_EXECUTOR_IDLE_SECONDS;
    savedEnv.ABP_POLL_MS = process.env.ABP_POLL_MS;
    process.env.STALE_ENV_TEST_TOKEN = 'token-value-1';
    process.env.ABP_EXECUTOR_IDLE_SECONDS = '3';
    process.env.ABP_POLL_MS = '50';
    app = await createApp(resolveConfig(s.env));
    const client = await connectInMemory(app);
    const csv = s.path('items.csv');
    writeFileSync(csv, 'id,text\na,1\nb,2\n');
    const job = await call(client, 'create_job', {
      name: 'needs a token',
      user_intent: 'echo the token',
      enumerator_type: 'csv',
      enumerator_config: { file_path: csv, id_column: 'id' },
      worker_type: 'shell',
      worker_config: { command: 'sh', args: ['-c', 'test -n "$API_TOKEN" && printf "have %s" "$1"', 'sh', '{{item.id}}'], env: { API_TOKEN: '{{env.STALE_ENV_TEST_TOKEN}}' } },
    });
    const started = await call(client, 'start_job', { job_id: job.job_id, skip_test: true, wait_seconds: 30 });
    expect(started.executor_note).toContain(`executor ${old!.id} (pid ${old!.pid}) was started without STALE_ENV_TEST_TOKEN`);
    expect(started.executor_note).toContain('a fresh executor');
    expect(started.job).toMatchObject({ status: 'COMPLETED', counts: { succeeded: 2, failed: 0 } });
    expect((await s.results(job.job_id)).map((r) => r.output).sort()).toEqual(['have a', 'have b']);
    const units = await s.query<{ attempt: number }>('select attempt from work_units where job_id = ?', job.job_id);
    expect(units.map((u) => u.attempt)).toEqual([1, 1]);

    // A job that needs nothing the stale executor lacks is still its to run: no fresh executor, no note.
    const plain = await call(client, 'create_job', {
      name: 'needs nothing',
      user_intent: 'echo',
      enumerator_type: 'csv',
      enumerator_config: { file_path: csv, id_column: 'id' },
      worker_type: 'shell',
      worker_config: { command: 'sh', args: ['-c', 'printf "plain %s" "$1"', 'sh', '{{item.id}}'] },
    });
    const again = await call(client, 'start_job', { job_id: plain.job_id, skip_test: true, wait_seconds: 30 });
    expect(again.executor_note).toBeUndefined();
    expect(again.job).toMatchObject({ status: 'COMPLETED', counts: { succeeded: 2 } });
    await client.close();
  }, 120_000);
});
