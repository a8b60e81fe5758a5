import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startMockAnthropic, toolUseReply, type MockServer, type RecordedRequest } from '../fixtures/mock-anthropic.js';
import { ROOT, Sandbox, sleep } from '../helpers/cli.js';
import type { ZodType } from 'zod';
import { parseWith } from '../../src/domain/job-spec.js';
import { agentCliWorker } from '../../workers/agent-cli.js';
import { claudeWorker } from '../../workers/claude.js';

/**
 * Security point 5: an agent gets exactly the permissions its job grants. The
 * argv each worker builds is recorded by a stand-in CLI run by the real
 * executor, and the real Claude Code CLI is driven against a loopback mock of the
 * Messages API that asks for a tool the job did or did not grant.
 */

const CLAUDE = join(ROOT, 'node_modules', '.bin', 'claude');

let sb: Sandbox | undefined;
let mock: MockServer | undefined;
afterEach(async () => {
  await sb?.cleanup();
  await mock?.close();
  sb = undefined;
  mock = undefined;
});

function specFile(s: Sandbox, workerType: string, workerConfig: Record<string, unknown>, rows = ['r1,hello']): string {
  const name = Math.random().toString(36).slice(2);
  const csv = s.path(`items-${name}.csv`);
  writeFileSync(csv, ['id,text', ...rows].join('\n') + '\n');
  const file = s.path(`spec-${name}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      name: 'permissions',
      user_intent: 'Answer.',
      enumerator_type: 'csv',
      enumerator_config: { file_path: csv, id_column: 'id' },
      worker_type: workerType,
      worker_config: workerConfig,
      max_workers: 1,
      max_retries: 0,
      timeout_seconds: 60,
    }),
  );
  return file;
}

/** A stand-in agent CLI: writes its argv to a file, then prints `output` lines. */
function recorder(s: Sandbox, name: string, output: string[]): { path: string; argv: () => string[] } {
  const log = s.path(`${name}.argv.json`);
  const path = s.path(name);
  writeFileSync(
    path,
    `#!${process.execPath}\nrequire('node:fs').writeFileSync(${JSON.stringify(log)}, JSON.stringify(process.argv.slice(2)));\n` +
      `process.stdin.resume(); process.stdin.on('end', () => { for (const l of ${JSON.stringify(output)}) console.log(l); });\n`,
  );
  chmodSync(path, 0o755);
  return { path, argv: () => JSON.parse(readFileSync(log, 'utf8')) as string[] };
}

/** Creates and starts each job, then waits for all of them to end, reading the jobs table (cheaper than `abp status`). */
async function runAll(s: Sandbox, specs: string[]): Promise<{ id: number; status: string }[]> {
  const ids: number[] = [];
  for (const spec of specs) ids.push((await s.ok(['create', '--spec', spec])).job_id as number);
  for (const id of ids) await s.ok(['start', String(id), '--skip-test']);
  const deadline = Date.now() + 180_000;
  for (;;) {
    const rows = await s.query<{ id: number; status: string }>(`select id, status from jobs where id in (${ids.join(',')}) order by id`);
    if (rows.every((r) => ['COMPLETED', 'FAILED', 'PAUSED'].includes(r.status))) return rows;
    if (Date.now() > deadline) throw new Error(`jobs did not end: ${JSON.stringify(rows)}`);
    await sleep(250);
  }
}

const BYPASS = ['--dangerously-skip-permissions', '--dangerously-bypass-approvals-and-sandbox', '--full-auto', '--yolo', 'yolo', 'auto_edit', 'danger-full-access', '--permission-mode'];

// The workers' argv and config checks do not touch the store: one project runs them.
describe('agent permissions are exactly what the job grants', () => {
  it('the argv the executor runs: exactly the granted tools for claude, the documented presets for agent-cli, no bypass flag', async () => {
    sb = new Sandbox({ ABP_SKIP_TEST: '1' });
    const done = JSON.stringify({ type: 'result', subtype: 'success', is_error: false, result: 'ok', session_id: 's' });
    const granted = recorder(sb, 'claude-granted', [done]);
    const none = recorder(sb, 'claude-none', [done]);
    const readOnly = recorder(sb, 'claude-default', [done]);
    const codex = recorder(sb, 'codex', [JSON.stringify({ type: 'thread.started', thread_id: 't' }), JSON.stringify({ type: 'item.completed', item: { type: 'agent_message', text: 'ok' } })]);
    const gemini = recorder(sb, 'gemini', [JSON.stringify({ response: 'ok', session_id: 'g' })]);
    const codexWide = recorder(sb, 'codex-wide', [JSON.stringify({ type: 'item.completed', item: { type: 'agent_message', text: 'ok' } })]);
    const jobs = await runAll(sb, [
      specFile(sb, 'claude', { command: granted.path, allowed_tools: ['Read', 'Bash(git log:*)'], disallowed_tools: ['WebFetch'] }),
      specFile(sb, 'claude', { command: none.path, allowed_tools: [] }),
      specFile(sb, 'claude', { command: readOnly.path }),
      specFile(sb, 'agent-cli', { preset: 'codex', command: codex.path, model: 'gpt-5-codex' }),
      specFile(sb, 'agent-cli', { preset: 'gemini', command: gemini.path }),
      specFile(sb, 'agent-cli', { preset: 'codex', command: codexWide.path, access: 'workspace-write' }),
    ]);
    expect(jobs.map((j) => j.status)).toEqual(['COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED']);
    expect(granted.argv()).toEqual([
      '-p', '--output-format', 'stream-json', '--verbose',
      '--tools', 'Read,Bash',
      '--allowedTools', 'Read', 'Bash(git log:*)',
      '--disallowedTools', 'WebFetch',
      '--strict-mcp-config',
    ]);
    // An empty grant: an empty --tools (no tools at all) and no --allowedTools.
    expect(none.argv()).toEqual(['-p', '--output-format', 'stream-json', '--verbose', '--tools', '', '--strict-mcp-config']);
    // No grant at all: the read-only tools exist, none is pre-approved (Claude Code lets them read the working directory only).
    expect(readOnly.argv()).toEqual(['-p', '--output-format', 'stream-json', '--verbose', '--tools', 'Read,Glob,Grep', '--strict-mcp-config']);
    // The presets pass their read-only choice explicitly; codex gets the unit's working directory as its workspace.
    expect(codex.argv()).toEqual(['exec', '--json', '--skip-git-repo-check', '--sandbox', 'read-only', '--cd', expect.stringMatching(/^\//), '--model', 'gpt-5-codex', '-']);
    expect(gemini.argv()).toEqual(['--output-format', 'json', '--approval-mode', 'default', '-p', 'Follow the instructions above.']);
    for (const flag of BYPASS) expect([...granted.argv(), ...none.argv(), ...readOnly.argv(), ...codex.argv(), ...gemini.argv()]).not.toContain(flag);
    // Widened on purpose: the sandbox the job asked for, and no further.
    expect(codexWide.argv().slice(0, 5)).toEqual(['exec', '--json', '--skip-git-repo-check', '--sandbox', 'workspace-write']);
    // `abp status` says what each agent may do.
    const accessLine = async (id: number) => /agent access: (.*)/.exec((await sb!.cli(['status', String(id)])).stdout)?.[1];
    expect(await accessLine(jobs[3]!.id)).toMatch(/^read only: codex --sandbox read-only .*; writing needs access: "workspace-write"$/);
    expect(await accessLine(jobs[4]!.id)).toMatch(/^read only: gemini --approval-mode default /);
    expect(await accessLine(jobs[5]!.id)).toMatch(/^may write in its workspace: codex --sandbox workspace-write /);
  }, 180_000);

  it('a value that would be read as a flag (a smuggled --dangerously-skip-permissions) is refused at creation', async () => {
    sb = new Sandbox();
    const r = await sb.cli(['create', '--spec', specFile(sb, 'claude', { allowed_tools: ['Read', '--dangerously-skip-permissions'] }), '--json']);
    expect(r.exitCode, r.stdout).toBe(2);
    expect(r.json.error.message).toBe('worker_config.allowed_tools.1: may not start with "-": the CLI would read it as a flag of its own');
    expect(await sb.query('select id from jobs')).toEqual([]);
    // Every other field that becomes an argument, through the same validation `abp create` runs.
    const refused = (schema: ZodType, config: Record<string, unknown>) => {
      try {
        parseWith(schema, config, 'worker_config');
      } catch (err) {
        return (err as Error).message;
      }
      return 'accepted';
    };
    const flag = '--dangerously-skip-permissions';
    expect(refused(claudeWorker.configSchema, { disallowed_tools: ['--permission-mode=bypassPermissions'] })).toMatch(/^worker_config\.disallowed_tools\.0: may not start with "-"/);
    expect(refused(claudeWorker.configSchema, { tools: ['Read', flag] })).toMatch(/^worker_config\.tools\.1: may not start with "-"/);
    expect(refused(claudeWorker.configSchema, { add_dirs: [flag] })).toMatch(/^worker_config\.add_dirs\.0: may not start with "-"/);
    expect(refused(claudeWorker.configSchema, { model: flag })).toMatch(/^worker_config\.model: may not start with "-"/);
    expect(refused(claudeWorker.configSchema, { mcp_config: ` ${flag}` })).toMatch(/^worker_config\.mcp_config: may not start with "-"/);
    expect(refused(agentCliWorker.configSchema, { preset: 'gemini', model: '--yolo' })).toMatch(/^worker_config\.model: may not start with "-"/);
    // bypassPermissions is dangerously_skip_permissions by another name: it needs the explicit flag.
    expect(refused(claudeWorker.configSchema, { permission_mode: 'bypassPermissions' })).toMatch(/^worker_config\.permission_mode: bypassPermissions turns every permission check off/);
    // The controls: the same fields without a leading dash are accepted.
    expect(refused(claudeWorker.configSchema, { allowed_tools: ['Read'], tools: ['Read'], add_dirs: ['./-x'], model: 'sonnet' })).toBe('accepted');
  });
});

/** The tool_result blocks a request carries (the CLI's answer to the tool call). */
const toolResults = (req: RecordedRequest) =>
  ((req.body?.messages ?? []) as { content: unknown }[]).flatMap((m) => (Array.isArray(m.content) ? m.content : [])).filter((b: any) => b?.type === 'tool_result') as any[];

describe('the real Claude Code CLI runs a tool only when the job grants it', () => {
  it('asked to run Bash: with no tools, or Bash available but not allowed, it never runs; allowed, it does', async () => {
    // Each item names its own marker file; the mock asks once per unit to `touch` it,
    // and ends the turn as soon as the CLI answers the tool call.
    mock = await startMockAnthropic((req) => {
      const marker = /PLEASE-TOUCH (\/[\w/.-]+)/.exec(JSON.stringify(req.body?.messages ?? ''))?.[1];
      return marker && toolResults(req).length === 0 ? toolUseReply('Bash', { command: `touch ${marker}`, description: 'make a file' }) : { type: 'text', text: 'done' };
    });
    sb = new Sandbox({ ANTHROPIC_BASE_URL: mock.url, ANTHROPIC_API_KEY: 'test', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', ABP_SKIP_TEST: '1' });
    // HOME inside the sandbox, so no user config leaks in and nothing leaks out.
    sb.env.HOME = sb.path('claude-home');
    mkdirSync(sb.env.HOME, { recursive: true });
    const cases = [
      { name: 'none', config: { allowed_tools: [] } },
      { name: 'available', config: { tools: ['Bash'] } },
      { name: 'allowed', config: { allowed_tools: ['Bash'] } },
    ].map((c) => ({ ...c, marker: sb!.path(`ran-${c.name}`) }));
    const jobs = await runAll(
      sb,
      cases.map((c) => specFile(sb!, 'claude', { command: CLAUDE, max_turns: 3, ...c.config }, [`r1,PLEASE-TOUCH ${c.marker}`])),
    );
    const seen = await Promise.all(
      jobs.map(async (job, i) => {
        // The init event the worker recorded from the CLI's stream: the tools it has and its permission mode.
        const init = await sb!.queryOne<{ data: string }>("select e.data from unit_events e join work_units u on u.id = e.unit_id where u.job_id = ? and e.kind = 'init'", job.id);
        const marker = cases[i]!.marker;
        const answer = mock!.requests.find((r) => JSON.stringify(r.body?.messages ?? '').includes(marker) && toolResults(r).length > 0);
        return { status: job.status, ran: existsSync(marker), init: init ? JSON.parse(init.data) : undefined, result: answer ? toolResults(answer)[0] : undefined };
      }),
    );
    const [none, available, allowed] = seen as [any, any, any];
    // Nothing granted: no tools at all, and the call is answered with an error.
    expect(none.init).toMatchObject({ tools: [], permissionMode: 'default' });
    expect(none.ran).toBe(false);
    expect(none.result).toMatchObject({ tool_use_id: 'toolu_security', is_error: true });
    // Bash exists but is not pre-approved: in a headless run nobody can approve it.
    expect(available.init).toMatchObject({ tools: ['Bash'], permissionMode: 'default' });
    expect(available.ran).toBe(false);
    expect(available.result).toMatchObject({ tool_use_id: 'toolu_security', is_error: true });
    // The control that shows the test can tell: granted, the very same call runs.
    expect(allowed.status).toBe('COMPLETED');
    expect(allowed.init).toMatchObject({ tools: ['Bash'], permissionMode: 'default' });
    expect(allowed.ran).toBe(true);
    expect(allowed.result?.is_error ?? false).toBe(false);
  }, 240_000);

  it('a job that names no worker runs claude, granted nothing: on file items it reads its own folder and nothing else: Write, Bash and a Read outside are refused', async () => {
    sb = new Sandbox({ ANTHROPIC_API_KEY: 'test', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', ABP_SKIP_TEST: '1' });
    sb.env.HOME = sb.path('claude-home');
    mkdirSync(sb.env.HOME, { recursive: true });
    const items = sb.path('items');
    mkdirSync(items);
    writeFileSync(join(items, 'case-read.txt'), 'SECRET-INSIDE-42\n');
    for (const c of ['outside', 'write', 'bash']) writeFileSync(join(items, `case-${c}.txt`), `${c}\n`);
    const outside = sb!.path('outside-secret.txt');
    writeFileSync(outside, 'SECRET-OUTSIDE-99\n');
    const written = join(items, 'written.txt');
    const ranBash = sb!.path('bash-ran');
    // Each unit's prompt names its file; the mock asks for the matching tool once, then ends the turn.
    const ask: Record<string, [string, Record<string, unknown>]> = {
      read: ['Read', { file_path: join(items, 'case-read.txt') }],
      outside: ['Read', { file_path: outside }],
      write: ['Write', { file_path: written, content: 'written by the agent' }],
      bash: ['Bash', { command: `touch ${ranBash}`, description: 'make a file' }],
    };
    mock = await startMockAnthropic((req) => {
      const which = /case-(read|outside|write|bash)\.txt/.exec(JSON.stringify(req.body?.messages ?? ''))?.[1];
      return which && toolResults(req).length === 0 ? toolUseReply(...ask[which]!) : { type: 'text', text: 'done' };
    });
    sb!.env.ANTHROPIC_BASE_URL = mock.url;
    const spec = sb!.path('spec-files.json');
    writeFileSync(
      spec,
      JSON.stringify({
        name: 'read-only by default',
        user_intent: 'Summarise the file.',
        enumerator_type: 'file',
        enumerator_config: { base_directory: items, pattern: 'case-*.txt' },
        // No worker_type: the default worker is claude.
        worker_config: { command: CLAUDE, max_turns: 3 },
        max_workers: 2,
        max_retries: 0,
        timeout_seconds: 60,
      }),
    );
    const [job] = await runAll(sb!, [spec]);
    expect(job!.status).toBe('COMPLETED');
    const answered = (c: string) => {
      const req = mock!.requests.find((r) => JSON.stringify(r.body?.messages ?? '').includes(`case-${c}.txt`) && toolResults(r).length > 0);
      expect(req, `the CLI answered the ${c} call`).toBeDefined();
      const result = toolResults(req!)[0];
      return { isError: result.is_error === true, text: JSON.stringify(result.content) };
    };
    const read = answered('read');
    expect(read.isError).toBe(false);
    expect(read.text).toContain('SECRET-INSIDE-42');
    const out = answered('outside');
    expect(out.isError).toBe(true);
    expect(out.text).not.toContain('SECRET-OUTSIDE-99');
    // Refused by the permission check (nobody to grant it in a headless run), not by a missing file.
    expect(out.text).toMatch(/requested permissions to read/);
    // Write and Bash do not exist for this agent at all.
    expect(answered('write')).toMatchObject({ isError: true, text: expect.stringMatching(/No such tool available: Write/) });
    expect(existsSync(written)).toBe(false);
    expect(answered('bash')).toMatchObject({ isError: true, text: expect.stringMatching(/No such tool available: Bash/) });
    expect(existsSync(ranBash)).toBe(false);
    // The job says what its agent may do.
    const status = await sb!.status(job!.id);
    expect(status.worker_type).toBe('claude');
    expect(status.agent_access).toMatch(/^read only: Read, Glob, Grep, in the working directory/);
  }, 240_000);
});
