import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { startMockBatches, type MockBatches } from '../fixtures/mock-batches.js';
import { startMockModel, type Conversation, type MockModel, type Play, type Step } from '../fixtures/mock-model.js';
import { CLI, groupAlive, ROOT, Sandbox } from '../helpers/cli.js';

/**
 * The real Claude Code CLI (the pinned dev dependency) as the MCP host: it runs
 * `abp mcp` over stdio from an --mcp-config (or from the plugin in this
 * checkout), and a loopback mock of the Messages API plays the model, deciding
 * each tool call from the results it got back.
 */
const CLAUDE = join(ROOT, 'node_modules', '.bin', 'claude');
const MARKER = 'ABP-HOST-TEST';
/** A CLI command in a hint: the assistant, allowed only mcp__abp__* tools, cannot run it. */
const CLI_HINT = /\babp (start|watch|results|units|unit|retry|resume|update|approve|cancel|status|create|pause)\b/;

let sb: Sandbox | undefined;
let model: MockModel | undefined;
afterEach(async () => {
  await sb?.cleanup();
  await model?.close();
  sb = undefined;
  model = undefined;
});

interface Run {
  exitCode: number;
  stdout: string;
  stderr: string;
  result: any;
}

interface HostOptions {
  /** User settings for the host (HOME/.claude/settings.json). */
  settings?: () => Record<string, unknown>;
  /** Runs once the sandbox exists, before the host starts. */
  before?: () => void;
  /** Load abp as the plugin in this checkout (--plugin-dir) instead of an --mcp-config entry. */
  plugin?: boolean;
  /** Another MCP server in abp's place (named `other`). */
  other?: { command: string; args: string[] };
  /** More environment for abp (and the executors it launches). */
  env?: Record<string, string>;
}

/** The MCP server's name as the host knows it: tools are called mcp__<name>__<tool>. */
const serverName = (options: HostOptions) => (options.plugin ? 'plugin_abp_abp' : options.other ? 'other' : 'abp');

/** Starts the mock model and a sandbox whose HOME holds the host's config, and runs `claude -p` once. */
async function host(play: Play, options: HostOptions = {}): Promise<Run> {
  // A port of its own, for an abp serve that dashboard_url may start.
  sb = new Sandbox({ ABP_HTTP_PORT: String(await freePort()), ...options.env });
  options.before?.();
  const server = serverName(options);
  model = await startMockModel(play, { marker: MARKER, server, maxCalls: 400 });
  const home = sb.path('claude-home');
  mkdirSync(join(home, '.claude'), { recursive: true });
  if (options.settings) writeFileSync(join(home, '.claude', 'settings.json'), JSON.stringify(options.settings()));
  const mcpConfig = sb.path('mcp.json');
  const entry = options.other ?? { command: process.execPath, args: [CLI, 'mcp'], env: sb.env };
  writeFileSync(mcpConfig, JSON.stringify({ mcpServers: { [server]: { type: 'stdio', ...entry } } }));
  // The plugin's server entry sets no env: it inherits the host's, so the sandbox's ABP_HOME reaches it that way.
  const servers = options.plugin ? ['--plugin-dir', ROOT] : ['--mcp-config', mcpConfig, '--strict-mcp-config'];
  const r = await execa(
    CLAUDE,
    ['-p', `${MARKER}: run the batch job this test scripts.`, ...servers, '--allowedTools', `mcp__${server}__*`, '--output-format', 'json', '--max-turns', '400', '--no-session-persistence'],
    {
      cwd: sb.home,
      env: {
        ...(options.plugin ? sb.env : {}),
        HOME: home,
        PATH: process.env.PATH ?? '',
        ANTHROPIC_BASE_URL: model.url,
        ANTHROPIC_API_KEY: 'test',
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      },
      extendEnv: false,
      stdin: 'ignore',
      reject: false,
      timeout: 300_000,
    },
  );
  let result: unknown;
  try {
    result = JSON.parse(String(r.stdout));
  } catch {
    result = undefined;
  }
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), result };
}

function csv(rows: number, text: (i: number) => string): string {
  const path = sb!.path(`items-${rows}.csv`);
  writeFileSync(path, ['id,text', ...Array.from({ length: rows }, (_, i) => `r${String(i + 1).padStart(3, '0')},${text(i + 1)}`)].join('\n') + '\n');
  return path;
}

/** The tool calls of one tool that the model made, with what it received. */
const of = (name: string) => model!.exchanges.filter((e) => e.name === name);

const UNIT_DONE = ['SUCCEEDED', 'FAILED', 'CANCELLED'];
const call = (name: string, input: Record<string, unknown>): Step => ({ call: name, input });

/** A shell job over a CSV: each unit prints what `script` prints for the row's text ($1). */
function shellJob(csvPath: string, script: string): Record<string, unknown> {
  return {
    name: 'host job',
    user_intent: 'Label each row.',
    enumerator_type: 'csv',
    enumerator_config: { file_path: csvPath, id_column: 'id' },
    worker_type: 'shell',
    worker_config: { command: 'sh', args: ['-c', script, 'sh', '{{item.text}}'] },
    max_workers: 4,
    max_retries: 0,
  };
}

/**
 * The model's side of the main flow: create the job, run its test unit until it
 * has finished, then (when `approve`) approve it as the person asked in the
 * prompt, and follow the job with get_job_status until it ends; then `after`
 * takes over (e.g. to read the results).
 */
function mainFlow(spec: Record<string, unknown>, options: { approve: boolean; after?: (c: Conversation, jobId: number) => Step }): Play {
  let followSince: number | undefined;
  return (c) => {
    const created = c.lastOf('create_job');
    if (!created) return call('create_job', spec);
    const id = created.json?.job_id;
    if (typeof id !== 'number') return { say: `create_job failed: ${created.text}` };
    const starts = c.exchanges.filter((e) => e.name === 'start_job');
    const lastStart = starts.at(-1);
    const approvedCall = starts.find((e) => e.input.approve === true);
    const job = lastStart?.json?.job;
    const stillTesting = !lastStart || (job?.status === 'TESTING' && !UNIT_DONE.includes(lastStart.json?.test_unit?.status));
    if (!approvedCall && stillTesting) {
      if (starts.length >= 10) return { say: 'the test unit never finished' };
      return call('start_job', { job_id: id, wait_seconds: 20 });
    }
    // The test unit has finished and its output is in front of the model (and so of the person).
    if (!approvedCall && options.approve && job?.status === 'TESTING') return call('start_job', { job_id: id, approve: true });
    const status = c.lastOf('get_job_status');
    if (status?.json?.status === 'TESTING') return { say: `job ${id} is still TESTING: the approval did not take` };
    const settled = (s: any) => ['COMPLETED', 'FAILED', 'CANCELLED'].includes(s?.status);
    if (!settled(status?.json) && !settled(c.last?.json?.job)) {
      followSince ??= Date.now();
      if (Date.now() - followSince > 180_000) return { say: 'the job never ended' };
      return call('get_job_status', { job_id: id });
    }
    return options.after?.(c, id) ?? { say: `job ${id} ended` };
  };
}

function describeRun(run: Run): string {
  return JSON.stringify({ exit: run.exitCode, stderr: run.stderr.slice(-2000), result: run.result?.result, errors: model?.errors, calls: model?.exchanges.map((e) => [e.name, e.input, e.text?.slice(0, 600)]) }, null, 1);
}

/** The job the model created in this run. */
function createdJob(run: Run): number {
  const id = of('create_job')[0]?.json?.job_id;
  expect(id, describeRun(run)).toBeTypeOf('number');
  return id as number;
}

/** Every abp tool result the model received names only MCP tools in its advice, never a CLI command. */
function expectOnlyMcpHints(): void {
  const abp = model!.exchanges.filter((e) => !e.name.startsWith('@'));
  expect(abp.length).toBeGreaterThan(0);
  for (const e of abp) expect(e.text ?? '', `${e.name} result`).not.toMatch(CLI_HINT);
  // The check has something to look at: the start_job results carry a hint, and it names MCP tools.
  const hints = of('start_job').map((e) => String(e.json?.next ?? ''));
  expect(hints.some((h) => /\b(start_job|get_job_status|get_results|write_results)\b/.test(h)), hints.join(' | ')).toBe(true);
}

describe('Claude Code as the MCP host of abp mcp (claude -p, a mock model)', () => {
  it('headless, no elicitation answer: the test unit is shown, approve=true from the assistant runs the job, recorded as the assistant’s approval; hints and error advice name MCP tools', async () => {
    let spec: Record<string, unknown> = {};
    // Once the job ended, two calls that fail, so the error advice reaches the model too.
    const mistakes = (c: Conversation, id: number): Step => {
      const wrong = c.exchanges.filter((e) => e.isError);
      if (wrong.length === 0) return call('start_job', { job_id: id, approve: true });
      if (wrong.length === 1) return call('get_job_status', { job_id: 999 });
      return { say: 'done' };
    };
    const run = await host((c) => mainFlow(spec, { approve: true, after: mistakes })(c), {
      before: () => {
        spec = shellJob(csv(3, (i) => `row${i}`), 'printf "LABEL:%s" "$1"');
      },
    });
    expect(run.exitCode, describeRun(run)).toBe(0);
    expect(model!.errors).toEqual([]);
    const id = createdJob(run);

    // The model saw the finished test unit and its output before it approved.
    const starts = of('start_job');
    const shown = starts.find((e) => e.json?.test_unit?.status === 'SUCCEEDED');
    expect(shown?.json.test_unit.output, describeRun(run)).toMatch(/^LABEL:row\d$/);
    expect(starts.indexOf(shown!)).toBeLessThan(starts.findIndex((e) => e.input.approve === true));
    // Nobody answered the host's elicitation (claude -p cancels it): no answer, so the assistant's approval counts.
    expect(shown!.json.decision, shown!.text).toBe('no_answer');
    expect(shown!.json.next).toMatch(new RegExp(`start_job \\{"job_id": ?${id}, ?"approve": ?true\\}`));
    const approved = starts.find((e) => e.input.approve === true)!;
    expect(approved.isError, approved.text).toBe(false);
    expect(approved.json.decision, approved.text).toBe('approved_by_assistant');
    expect(approved.json.test_unit?.output).toMatch(/^LABEL:row\d$/);

    const status = await sb!.status(id);
    expect(status).toMatchObject({ status: 'COMPLETED', approved_by: "assistant (on the user's word)" });
    expect(await sb!.counts(id)).toMatchObject({ succeeded: 3, failed: 0 });
    // What the model polled agrees with the store.
    expect(of('get_job_status').findLast((e) => !e.isError)?.json).toMatchObject({ status: 'COMPLETED', approved_by: "assistant (on the user's word)" });
    // The error advice names tools too.
    const advice = model!.exchanges.filter((e) => e.isError);
    expect(advice.map((e) => e.name)).toEqual(['start_job', 'get_job_status']);
    for (const e of advice) expect(e.text, e.name).toMatch(/\b(create_job|list_jobs|get_job_status|get_results)\b/);
    expectOnlyMcpHints();
  }, 400_000);

  it('a batch-mode job with the cache on: the model creates it, follows its open provider batch in get_job_status, and the job ends at the batch price', async () => {
    const batches: MockBatches = await startMockBatches('anthropic', { hold: true, processMs: 100 });
    try {
      let spec: Record<string, unknown> = {};
      const follow = mainFlow(spec, { approve: true });
      const run = await host(
        (c) => {
          // The provider finishes the batch once the model has seen it open.
          if (c.lastOf('get_job_status')?.json?.batches?.open?.[0]?.provider_id) batches.finish();
          return follow(c);
        },
        {
          env: { ABP_BATCH_POLL_SECONDS: '0.2' },
          before: () => {
            Object.assign(spec, {
              name: 'host batch job',
              user_intent: 'Label each row.',
              enumerator_type: 'csv',
              enumerator_config: { file_path: csv(4, (i) => `row${i}`), id_column: 'id' },
              worker_type: 'http-llm',
              worker_config: { api: 'anthropic', base_url: batches.baseUrl, model: 'claude-haiku-4-5', api_key_env: null, batch: true },
              cache: true,
            });
          },
        },
      );
      expect(run.exitCode, describeRun(run)).toBe(0);
      expect(model!.errors).toEqual([]);
      const id = createdJob(run);
      expect(of('create_job')[0]!.json).toMatchObject({ cache: true, price_factor: 0.5 });
      // The model saw the open batch, with the provider's id, while its units waited in it.
      const seen = of('get_job_status').find((e) => e.json?.batches?.open?.[0]?.provider_id);
      expect(seen?.json, describeRun(run)).toMatchObject({ counts: { submitted: 3 }, batches: { open: [{ provider: 'anthropic', provider_id: batches.creates[0]!.id, requests: 3 }] } });
      const status = await sb!.status(id);
      expect(status).toMatchObject({ status: 'COMPLETED', counts: { succeeded: 4, submitted: 0 } });
      // One online test unit at $0.0002 (100 in, 20 out at $1/$5 per million), three in the batch at half that.
      expect(status.cost_usd).toBeCloseTo(0.0002 + 3 * 0.0001, 9);
      expect(batches.counters.online).toBe(1);
      expectOnlyMcpHints();
    } finally {
      await batches.close();
    }
  }, 400_000);

  it('with an Elicitation hook that accepts: the person is asked once, the dialog approves and is recorded, and the model still gets the test unit’s output', async () => {
    let spec: Record<string, unknown> = {};
    let asked = '';
    // A user-settings hook that answers abp's elicitation as the person would: approve. It keeps what it was asked.
    const answer = JSON.stringify({ hookSpecificOutput: { hookEventName: 'Elicitation', action: 'accept', content: { decision: 'approve' } } });
    const run = await host((c) => mainFlow(spec, { approve: false })(c), {
      before: () => {
        spec = shellJob(csv(3, (i) => `row${i}`), 'printf "LABEL:%s" "$1"');
        asked = sb!.path('elicitations.jsonl');
      },
      settings: () => ({
        hooks: { Elicitation: [{ matcher: 'abp', hooks: [{ type: 'command', command: `cat >> '${asked}'; echo >> '${asked}'; printf '%s' '${answer}'` }] }] },
      }),
    });
    expect(run.exitCode, describeRun(run)).toBe(0);
    expect(model!.errors).toEqual([]);
    const id = createdJob(run);

    // The host ran the hook once, for abp's question, with the form the contract names.
    const questions = readFileSync(asked, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(questions, describeRun(run)).toHaveLength(1);
    expect(questions[0]).toMatchObject({ hook_event_name: 'Elicitation', mcp_server_name: 'abp' });
    expect(questions[0].requested_schema.properties.decision.enum).toEqual(['approve', 'reject', 'wait']);
    expect(questions[0].message).toContain('LABEL:row');

    // The model never passed approve=true; the start_job call that asked returned the decision and the output.
    const starts = of('start_job');
    expect(starts.every((e) => e.input.approve === undefined)).toBe(true);
    const decided = starts.find((e) => e.json?.decision === 'approved_by_person');
    expect(decided, describeRun(run)).toBeDefined();
    expect(decided!.json.test_unit?.output).toMatch(/^LABEL:row\d$/);
    expect(decided!.json.job.approved_by).toBe('person (dialog)');

    const status = await sb!.status(id);
    expect(status).toMatchObject({ status: 'COMPLETED', approved_by: 'person (dialog)' });
    expect(await sb!.counts(id)).toMatchObject({ succeeded: 3, failed: 0 });
    expectOnlyMcpHints();
  }, 400_000);

  it('100 units of ~2 KB: no get_results page is cut by the host, and following the cursors returns all 100 outputs whole', async () => {
    let spec: Record<string, unknown> = {};
    const line = (row: string, n: number) => `${row} line ${String(n).padStart(2, '0')}: the quick brown fox jumps over the dog\n`;
    // The shell worker keeps stdout without its final newline.
    const expected = (row: string) => Array.from({ length: 40 }, (_, n) => line(row, n + 1)).join('').trimEnd();
    const readPages = (c: Conversation, id: number): Step => {
      const page = c.lastOf('get_results');
      if (!page) return call('get_results', { job_id: id });
      if (page.isError || !page.json) return { say: `get_results gave no page: ${page.text?.slice(0, 300)}` };
      if (c.exchanges.filter((e) => e.name === 'get_results').length > 100) return { say: 'too many pages' };
      return typeof page.json.cursor === 'string' ? call('get_results', { job_id: id, cursor: page.json.cursor }) : { say: 'read every page' };
    };
    const run = await host((c) => mainFlow(spec, { approve: true, after: readPages })(c), {
      before: () => {
        const script = `i=1; while [ $i -le 40 ]; do printf '%s line %02d: the quick brown fox jumps over the dog\\n' "$1" $i; i=$((i+1)); done`;
        spec = { ...shellJob(csv(100, (i) => `row${String(i).padStart(3, '0')}`), script), max_workers: 8 };
      },
    });
    expect(run.exitCode, describeRun(run)).toBe(0);
    expect(model!.errors).toEqual([]);
    expect(model!.finished).toBe('read every page');
    const id = createdJob(run);
    expect(await sb!.status(id)).toMatchObject({ status: 'COMPLETED' });

    const pages = of('get_results');
    expect(pages.length).toBeGreaterThan(1);
    const outputs = new Map<string, string>();
    for (const page of pages) {
      // The host passed the page through whole: no "Output too large" notice or preview in its place.
      expect(page.replaced, page.text?.slice(0, 300)).toBe(false);
      // abp's own bound: a page of ~20 KB.
      expect(page.text!.length).toBeLessThan(24_000);
      expect(page.json, page.text?.slice(0, 300)).toBeTruthy();
      for (const r of page.json.results) outputs.set(r.payload?.text ?? r.item_id, r.output);
    }
    expect(outputs.size).toBe(100);
    for (const [row, output] of outputs) expect(output, row).toBe(expected(row));
    expect(pages.at(-1)!.json.cursor ?? null).toBeNull();
    expectOnlyMcpHints();
  }, 400_000);
});

/** A port nothing listens on now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('one unit at a time, and the dashboard, from the host', () => {
  it('the assistant stops a stuck unit (its process dies), retries it once the person fixed the cause, and opens the dashboard, which starts abp serve', async () => {
    let spec: Record<string, unknown> = {};
    let go = '';
    let stuckPgid: number | undefined;
    const play = (c: Conversation): Step => {
      const created = c.lastOf('create_job');
      if (!created) return call('create_job', spec);
      const id = created.json?.job_id as number;
      if (!c.lastOf('start_job')) return call('start_job', { job_id: id, skip_test: true, wait_seconds: 0 });
      const stopped = c.lastOf('stop_unit');
      if (!stopped) {
        // Follow the job until one unit is done and the other is stuck running; then find the stuck one.
        const listed = c.last?.name === 'list_units' ? c.last.json?.units?.find((u: any) => u.item_id === 'r2' && u.status === 'RUNNING') : undefined;
        if (listed) return call('stop_unit', { unit_id: listed.unit_id, then: 'failed' });
        const s = c.lastOf('get_job_status')?.json;
        if (c.last?.name === 'get_job_status' && s?.counts?.succeeded === 1 && s?.counts?.running === 1) return call('list_units', { job_id: id, status: ['RUNNING'] });
        if (c.exchanges.length > 300) return { say: 'the stuck unit never ran' };
        return call('get_job_status', { job_id: id });
      }
      if (stopped.isError) return { say: `stop_unit failed: ${stopped.text}` };
      const retried = c.lastOf('retry_unit');
      if (!retried) {
        // The person fixed what held the unit; the assistant runs it again.
        writeFileSync(go, '');
        return call('retry_unit', { unit_id: stopped.json.unit.unit_id });
      }
      if (retried.isError) return { say: `retry_unit failed: ${retried.text}` };
      const s = c.lastOf('get_job_status')?.json;
      if (c.last?.name !== 'dashboard_url' && !c.lastOf('dashboard_url') && s?.status !== 'COMPLETED') return call('get_job_status', { job_id: id });
      if (!c.lastOf('dashboard_url')) return call('dashboard_url', {});
      return { say: 'done' };
    };
    const run = await host(play, {
      before: () => {
        go = sb!.path('go');
        const script = `if [ "$1" = stuck ] && [ ! -e '${go}' ]; then echo $$ > '${sb!.path('stuck.pid')}'; sleep 600; fi; printf "LABEL:%s" "$1"`;
        spec = { ...shellJob(sb!.path('rows.csv'), script), max_retries: 2 };
        writeFileSync(sb!.path('rows.csv'), 'id,text\nr1,quick\nr2,stuck\n');
      },
    });
    try {
      expect(run.exitCode, describeRun(run)).toBe(0);
      expect(model!.errors).toEqual([]);
      expect(model!.finished, describeRun(run)).toBe('done');
      const id = createdJob(run);

      // The stop answered with the unit FAILED, and the unit's process group is gone.
      const [stop] = of('stop_unit');
      expect(stop!.json.unit, stop!.text).toMatchObject({ status: 'FAILED', item_id: 'r2' });
      const unitId = stop!.json.unit.unit_id as number;
      expect(existsSync(sb!.path('stuck.pid'))).toBe(true);
      stuckPgid = Number(readFileSync(sb!.path('stuck.pid'), 'utf8'));
      const deadline = Date.now() + 20_000;
      while (groupAlive(stuckPgid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(groupAlive(stuckPgid)).toBe(false);

      // The retry ran it again to the end, and the job completed.
      expect(of('retry_unit')[0]!.json.unit.unit_id).toBe(unitId);
      await sb!.waitFor(id, (s) => s.status === 'COMPLETED', 60_000);
      const unit = await sb!.queryOne<any>('select status, output, attempt, failures from work_units where id = ?', unitId);
      expect(unit).toMatchObject({ status: 'SUCCEEDED', output: 'LABEL:stuck', attempt: 2, failures: 0 });

      // dashboard_url started the server, and its one-time link signs a browser in.
      const [dash] = of('dashboard_url');
      expect(dash!.isError, dash!.text).toBe(false);
      expect(dash!.json).toMatchObject({ started: true, stop: expect.stringContaining('abp serve stop') });
      const login = await fetch(dash!.json.url, { redirect: 'manual' });
      expect(login.status).toBe(303);
      expect(login.headers.get('set-cookie')).toMatch(/^abp_session_\d+=/);
      expect(login.headers.get('location')).toMatch(/^\/#session=/);
    } finally {
      // The server this conversation started outlives it until stopped: stop it as the answer said.
      const stop = await execa(process.execPath, [CLI, 'serve', 'stop', '--home', sb!.home], { env: sb!.env, reject: false });
      expect(stop.exitCode, String(stop.stderr)).toBe(0);
    }
  }, 400_000);
});

describe('the mock model sees what the host does to tool output', () => {
  it('control: a 200 KB tool result is replaced by the host, and the mock marks it replaced', async () => {
    // A one-tool MCP server, not abp, so that the host's limit is certainly crossed.
    const sdk = (path: string) => pathToFileURL(join(ROOT, 'node_modules', '@modelcontextprotocol', 'sdk', 'dist', 'esm', path)).href;
    const code = [
      `import { McpServer } from '${sdk('server/mcp.js')}';`,
      `import { StdioServerTransport } from '${sdk('server/stdio.js')}';`,
      `const server = new McpServer({ name: 'other', version: '1.0.0' });`,
      `server.registerTool('big', { description: 'Returns 200,000 characters.' }, async () => ({ content: [{ type: 'text', text: 'x'.repeat(200000) }] }));`,
      `await server.connect(new StdioServerTransport());`,
    ].join('\n');
    const run = await host((c) => (c.last ? { say: 'done' } : call('big', {})), { other: { command: process.execPath, args: ['--input-type=module', '-e', code] } });
    expect(run.exitCode, describeRun(run)).toBe(0);
    const [big] = of('big');
    expect(big?.replaced, big?.text?.slice(0, 300)).toBe(true);
    expect(big!.text!.length).toBeLessThan(200_000);
  }, 400_000);
});

describe('the Claude Code plugin in this checkout', () => {
  it('passes `claude plugin validate --strict`, and provides the abp MCP server and skill; a broken manifest fails it', async () => {
    const validate = (path: string) =>
      execa(CLAUDE, ['plugin', 'validate', path, '--strict', '--json'], { env: { HOME: sb!.path('claude-home'), PATH: process.env.PATH ?? '' }, extendEnv: false, stdin: 'ignore', reject: false, timeout: 120_000 });
    sb = new Sandbox();
    // The checkout is a marketplace (for `claude plugin install abp@abp`) whose one plugin is the checkout itself.
    const r = await validate(ROOT);
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
    const report = JSON.parse(String(r.stdout));
    expect(report).toMatchObject({ success: true, strict: true, manifest: { type: 'marketplace', errors: [], warnings: [] } });
    expect(report.contents.flatMap((c: { errors: unknown[]; warnings: unknown[] }) => [...c.errors, ...c.warnings])).toEqual([]);
    const plugin = await validate(join(ROOT, '.claude-plugin', 'plugin.json'));
    expect(plugin.exitCode, String(plugin.stdout)).toBe(0);
    expect(JSON.parse(String(plugin.stdout))).toMatchObject({ success: true, manifest: { type: 'plugin', errors: [], warnings: [] } });
    expect(report.provides.mcpServers).toEqual([{ name: 'abp', type: 'stdio', target: 'node', args: ['${CLAUDE_PLUGIN_ROOT}/dist/cli/main.js', 'mcp'] }]);
    expect(report.provides.skills).toEqual(['abp:abp']);

    // The same check fails on a plugin whose manifest is broken.
    const broken = sb.path('broken');
    mkdirSync(join(broken, '.claude-plugin'), { recursive: true });
    const manifest = JSON.parse(readFileSync(join(ROOT, '.claude-plugin', 'plugin.json'), 'utf8'));
    writeFileSync(join(broken, '.claude-plugin', 'plugin.json'), JSON.stringify({ ...manifest, name: 'not a valid name!' }));
    const bad = await validate(broken);
    expect(bad.exitCode).toBe(1);
  }, 180_000);

  it('loaded with --plugin-dir, the host lists the abp skill and runs a job through the plugin’s own abp mcp server', async () => {
    let spec: Record<string, unknown> = {};
    const run = await host((c) => mainFlow(spec, { approve: true })(c), {
      plugin: true,
      before: () => {
        spec = shellJob(csv(2, (i) => `row${i}`), 'printf "LABEL:%s" "$1"');
      },
    });
    expect(run.exitCode, describeRun(run)).toBe(0);
    expect(model!.errors).toEqual([]);
    // The skill reaches the model's prompt with the requests it is for.
    const prompt = JSON.stringify(model!.turns[0]!.body);
    expect(prompt).toMatch(/- abp:abp: [^\n]*summarise every file in docs\/[^\n]*classify each row of this CSV/);
    // The tools were the plugin server's, and the job it made is in the sandbox's store.
    expect(model!.exchanges.some((e) => e.name === '@ToolSearch' && String(e.input.query).includes('mcp__plugin_abp_abp__create_job'))).toBe(true);
    const id = createdJob(run);
    expect(await sb!.status(id)).toMatchObject({ status: 'COMPLETED', approved_by: "assistant (on the user's word)" });
    expectOnlyMcpHints();
  }, 400_000);
});
