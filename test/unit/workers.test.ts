import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ConversationEvent, RunContext, UnitInput } from '../../src/contracts/worker.js';
import { parseWith } from '../../src/domain/job-spec.js';
import { SlidingWindowThrottle } from '../../src/executor/throttle.js';
import { agentCliAccess, agentCliArgs, agentCliWorker, PRESETS } from '../../workers/agent-cli.js';
import { classifyAgentFailure, quotaResetAt } from '../../workers/agent-failures.js';
import { claudeAccess, claudeArgs, claudeWorker } from '../../workers/claude.js';
import { retryAfterMs } from '../../workers/http-llm.js';
import { costOf, priceOf } from '../../workers/llm-prices.js';
import { agentCwd } from '../../workers/unit-values.js';

const FAKE_CODEX = resolve(import.meta.dirname, '..', 'fixtures', 'fake-codex.mjs');

describe('claude worker: flags', () => {
  const parse = (c: unknown) => parseWith(claudeWorker.configSchema, c, 'worker_config');

  it('granted nothing, it has the read-only tools and pre-approves none; [] takes every tool away; it never skips permissions unless asked', () => {
    expect(claudeArgs(parse({}))).toEqual(['-p', '--output-format', 'stream-json', '--verbose', '--tools', 'Read,Glob,Grep', '--strict-mcp-config']);
    expect(claudeArgs(parse({ allowed_tools: [] }))).toEqual(['-p', '--output-format', 'stream-json', '--verbose', '--tools', '', '--strict-mcp-config']);
  });

  it('says what the agent may do, for the job status', () => {
    expect(claudeAccess(parse({}))).toBe('read only: Read, Glob, Grep, in the working directory; writing and the shell need allowed_tools');
    expect(claudeAccess(parse({ allowed_tools: [] }))).toBe('no tools; in the working directory');
    expect(claudeAccess(parse({ allowed_tools: ['Read', 'Bash(git log:*)'], disallowed_tools: ['WebFetch'], add_dirs: ['/data'] }))).toBe(
      'tools Read, Bash; without asking: Read, Bash(git log:*); never: WebFetch; in the working directory and /data',
    );
    expect(claudeAccess(parse({ dangerously_skip_permissions: true }))).toMatch(/^everything: every permission check is off/);
  });

  it('maps every config field to its flag', () => {
    const args = claudeArgs(
      parse({
        model: 'sonnet',
        max_turns: 5,
        permission_mode: 'acceptEdits',
        allowed_tools: ['Read', 'Bash(git log:*)', 'mcp__db__query'],
        disallowed_tools: ['WebFetch'],
        add_dirs: ['/data'],
        append_system_prompt: 'Be terse.',
        mcp_config: '/etc/mcp.json',
      }),
    );
    expect(args).toEqual([
      '-p', '--output-format', 'stream-json', '--verbose',
      '--model', 'sonnet', '--max-turns', '5', '--permission-mode', 'acceptEdits',
      '--tools', 'Read,Bash',
      '--allowedTools', 'Read', 'Bash(git log:*)', 'mcp__db__query',
      '--disallowedTools', 'WebFetch',
      '--add-dir', '/data',
      '--append-system-prompt', 'Be terse.',
      '--mcp-config', '/etc/mcp.json', '--strict-mcp-config',
    ]);
    expect(args).not.toContain('--dangerously-skip-permissions');
  });

  it('passes --dangerously-skip-permissions only when the job asks, and bypassPermissions needs that too', () => {
    expect(claudeArgs(parse({ dangerously_skip_permissions: true })).at(-1)).toBe('--dangerously-skip-permissions');
    expect(() => parse({ permission_mode: 'bypassPermissions' })).toThrow(/worker_config\.permission_mode: bypassPermissions .* dangerously_skip_permissions: true/);
  });
});

describe('agent working directory', () => {
  const base: UnitInput = { unit_id: 7, job_id: 3, job_name: 'j', attempt: 1, item: {}, prompt: '', work_dir: '/work/job-3' };
  it("is the item's folder for file items, else the job's work dir, unless the job sets cwd", () => {
    expect(agentCwd({ ...base, item: { file_path: '/data/docs/a.md' } }, undefined)).toBe('/data/docs');
    expect(agentCwd(base, undefined)).toBe('/work/job-3');
    expect(agentCwd({ ...base, item: { id: 'x' } }, '/tmp/{{item.id}}')).toBe('/tmp/x');
  });
});

describe('agent failure classification', () => {
  it('reads auth, quota and rate-limit failures from what the CLI said', () => {
    expect(classifyAgentFailure('authentication_failed\nNot logged in · Please run /login')).toBe('auth_failed');
    expect(classifyAgentFailure('Invalid API key · Fix external API key')).toBe('auth_failed');
    expect(classifyAgentFailure('Claude AI usage limit reached|1893456000')).toBe('quota_exhausted');
    expect(classifyAgentFailure('5-hour limit reached ∙ resets 3pm')).toBe('quota_exhausted');
    expect(classifyAgentFailure('API Error: 529 Overloaded')).toBe('rate_limited');
    expect(classifyAgentFailure('whatever', 429)).toBe('rate_limited');
    expect(classifyAgentFailure('segfault')).toBeUndefined();
  });

  it('finds the reset time of a usage limit', () => {
    expect(quotaResetAt('Claude AI usage limit reached|1893456000')).toBe(1893456000 * 1000);
    const now = new Date(2030, 0, 1, 16, 0, 0);
    expect(quotaResetAt('limit reached ∙ resets 3pm', now)).toBe(new Date(2030, 0, 2, 15, 0, 0).getTime());
    expect(quotaResetAt('resets at 17:30', now)).toBe(new Date(2030, 0, 1, 17, 30, 0).getTime());
    expect(quotaResetAt('no time given')).toBeUndefined();
  });
});

describe('http-llm helpers', () => {
  it('reads Retry-After in seconds, as a date, and retry-after-ms', () => {
    expect(retryAfterMs(new Headers({ 'retry-after': '2' }))).toBe(2000);
    expect(retryAfterMs(new Headers({ 'retry-after-ms': '250' }))).toBe(250);
    expect(retryAfterMs(new Headers({ 'retry-after': new Date(10_000).toUTCString() }), 4000)).toBe(6000);
    expect(retryAfterMs(new Headers())).toBeUndefined();
  });

  it('prices by the longest model prefix, and an override wins', () => {
    expect(priceOf('gpt-4o-mini-2024-07-18')?.input_per_mtok).toBe(0.15);
    expect(priceOf('openai/gpt-4o')?.input_per_mtok).toBe(2.5);
    expect(priceOf('llama3.1:8b')).toBeUndefined();
    expect(costOf({ input_tokens: 1_000_000, output_tokens: 1_000_000 }, priceOf('x', { input_per_mtok: 1, output_per_mtok: 2 }))).toBe(3);
  });
});

describe('agent-cli worker', () => {
  const dir = mkdtempSync(join(tmpdir(), 'abp-agent-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const unit = (prompt: string): UnitInput => ({ unit_id: 1, job_id: 1, job_name: 'j', attempt: 1, item: { id: 'a' }, prompt, work_dir: dir });
  const ctx = (events: ConversationEvent[]): RunContext => ({
    signal: new AbortController().signal,
    onProcess: () => undefined,
    onEvent: (e) => events.push(e),
    throttle: new SlidingWindowThrottle(),
  });

  it('documents the exact preset flags', () => {
    expect(PRESETS.codex.args({ model: 'gpt-5-codex', access: 'read-only', cwd: '/data/docs' })).toEqual([
      'exec', '--json', '--skip-git-repo-check', '--sandbox', 'read-only', '--cd', '/data/docs', '--model', 'gpt-5-codex', '-',
    ]);
    expect(PRESETS.gemini.args({ access: 'read-only' })).toEqual(['--output-format', 'json', '--approval-mode', 'default', '-p', 'Follow the instructions above.']);
  });

  const parse = (c: unknown) => parseWith(agentCliWorker.configSchema, c, 'worker_config');
  const same = (s: string) => s;
  const refusal = (c: unknown) => {
    try {
      parse(c);
    } catch (err) {
      return (err as Error).message;
    }
    return 'accepted';
  };

  it('a preset is read only unless the job widens access; the widest needs dangerously_skip_permissions', () => {
    expect(agentCliArgs(parse({ preset: 'codex' }), same, '/data/docs')).toEqual(['exec', '--json', '--skip-git-repo-check', '--sandbox', 'read-only', '--cd', '/data/docs', '-']);
    expect(agentCliArgs(parse({ preset: 'codex', access: 'workspace-write' }), same, '/data/docs')).toContain('workspace-write');
    expect(agentCliArgs(parse({ preset: 'codex', dangerously_skip_permissions: true }), same, '/w').slice(3, 5)).toEqual(['--sandbox', 'danger-full-access']);
    expect(agentCliArgs(parse({ preset: 'gemini' }), same, '/w')).toEqual(['--output-format', 'json', '--approval-mode', 'default', '-p', 'Follow the instructions above.']);
    expect(agentCliArgs(parse({ preset: 'gemini', access: 'workspace-write', model: 'flash' }), same, '/w')).toEqual([
      '--output-format', 'json', '--approval-mode', 'auto_edit', '--model', 'flash', '-p', 'Follow the instructions above.',
    ]);
    expect(agentCliArgs(parse({ preset: 'gemini', dangerously_skip_permissions: true }), same, '/w')).toContain('yolo');
    // A relative cwd is made absolute, so codex's workspace is the directory the process starts in.
    expect(agentCliArgs(parse({ preset: 'codex' }), same, 'rel')).toContain(resolve('rel'));
  });

  it('says what the agent may do, for the job status', () => {
    expect(agentCliAccess(parse({ preset: 'codex' }))).toBe(
      "read only: codex --sandbox read-only (it may read files and run commands, but nothing it runs may write or reach the network), in the item's folder for file items, else the job's work dir; writing needs access: \"workspace-write\"",
    );
    expect(agentCliAccess(parse({ preset: 'gemini', access: 'workspace-write', cwd: '/data' }))).toMatch(/^may edit files in its workspace: gemini --approval-mode auto_edit .*, in \/data$/);
    expect(agentCliAccess(parse({ preset: 'codex', dangerously_skip_permissions: true }))).toMatch(/^everything: codex --sandbox danger-full-access/);
    expect(agentCliAccess(parse({ preset: 'codex', extra_args: ['--ephemeral'] }))).toMatch(/; extra arguments: --ephemeral$/);
    expect(agentCliAccess(parse({ command: 'aider', args: ['--message', '{{prompt}}'] }))).toBe('whatever aider allows with the arguments given; abp does not restrict it');
  });

  it('refuses bad access values and permission flags smuggled past access, naming the field', () => {
    expect(refusal({ preset: 'codex', access: 'write' })).toBe('worker_config.access: expected "read-only" or "workspace-write", got "write"');
    expect(refusal({ preset: 'codex', access: 'danger-full-access' })).toBe(
      'worker_config.access: danger-full-access turns every check off; set dangerously_skip_permissions: true to ask for it explicitly',
    );
    expect(refusal({ preset: 'codex', dangerously_skip_permissions: 'yes' })).toMatch(/^worker_config\.dangerously_skip_permissions: /);
    expect(refusal({ command: 'aider', access: 'workspace-write' })).toMatch(/^worker_config\.access: only the presets \(codex, gemini\) have it/);
    expect(refusal({ preset: 'codex', args: ['exec', '-'], access: 'read-only' })).toMatch(/^worker_config\.access: args replaces the preset's arguments/);
    expect(refusal({ preset: 'codex', extra_args: ['--ephemeral', '--sandbox=danger-full-access'] })).toMatch(/^worker_config\.extra_args\.1: --sandbox sets what the agent may do/);
    expect(refusal({ preset: 'codex', extra_args: ['-sworkspace-write'] })).toMatch(/^worker_config\.extra_args\.0: -s sets/);
    expect(refusal({ preset: 'codex', extra_args: ['--dangerously-bypass-approvals-and-sandbox'] })).toMatch(/^worker_config\.extra_args\.0: /);
    expect(refusal({ preset: 'gemini', extra_args: ['--yolo'] })).toMatch(/^worker_config\.extra_args\.0: --yolo sets/);
    expect(refusal({ preset: 'gemini', extra_args: ['-dy'] })).toMatch(/^worker_config\.extra_args\.0: -y sets/);
    expect(refusal({ preset: 'gemini', extra_args: ['--approval-mode', 'auto_edit'] })).toMatch(/^worker_config\.extra_args\.0: --approval-mode sets/);
    // Flags that do not widen it pass: gemini's container sandbox only narrows.
    expect(refusal({ preset: 'gemini', extra_args: ['--sandbox'] })).toBe('accepted');
    expect(refusal({ preset: 'codex', extra_args: ['--ephemeral'], access: 'workspace-write' })).toBe('accepted');
  });

  it('codex preset: streams the JSONL events and takes the last agent message, usage and thread id', async () => {
    const cfg = parseWith(agentCliWorker.configSchema, { preset: 'codex', command: FAKE_CODEX, model: 'gpt-5-codex' }, 'worker_config');
    const events: ConversationEvent[] = [];
    const out = await agentCliWorker.run(unit('hello codex'), cfg, ctx(events));
    expect(out).toMatchObject({ status: 'succeeded', output: 'answer: 11 chars, sandbox read-only', session_id: 'th_123', usage: { input_tokens: 200, cache_read_tokens: 100, output_tokens: 40 } });
    expect(events.map((e) => e.kind)).toEqual(['thread.started', 'turn.started', 'item.completed', 'item.completed', 'item.completed', 'turn.completed']);
  });

  it('codex preset: a widened job runs codex with the widened sandbox, in the item\'s folder', async () => {
    const cfg = parse({ preset: 'codex', command: FAKE_CODEX, model: 'gpt-5-codex', access: 'workspace-write' });
    const folder = join(dir, 'docs');
    mkdirSync(folder, { recursive: true });
    const out = await agentCliWorker.run({ ...unit('hi'), item: { file_path: join(folder, 'a.md') } }, cfg, ctx([]));
    expect(out).toMatchObject({ status: 'succeeded', output: 'answer: 2 chars, sandbox workspace-write' });
  });

  it('codex preset: a 401 in the stream is auth_failed with the login advice', async () => {
    const cfg = parseWith(agentCliWorker.configSchema, { preset: 'codex', command: FAKE_CODEX, model: 'gpt-5-codex' }, 'worker_config');
    const out = await agentCliWorker.run(unit('FAIL-AUTH'), cfg, ctx([]));
    expect(out).toMatchObject({ status: 'failed', kind: 'auth_failed' });
    expect(out.status === 'failed' && out.error).toContain('codex login');
  });

  it('a command template with JSON output picks the answer at result_path', async () => {
    const cfg = parseWith(
      agentCliWorker.configSchema,
      { command: process.execPath, args: ['-e', 'process.stdout.write(JSON.stringify({response: "item " + process.argv[1], stats: {}}))', '{{item.id}}'], stdin: null, output: 'json', result_path: 'response' },
      'worker_config',
    );
    const out = await agentCliWorker.run(unit('p'), cfg, ctx([]));
    expect(out).toMatchObject({ status: 'succeeded', output: 'item a' });
  });

  it('needs a command when no preset is given', () => {
    expect(() => parseWith(agentCliWorker.configSchema, {}, 'worker_config')).toThrow('worker_config.command: required when no preset is given');
  });
});
