import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ConversationEvent, RunContext, UnitInput } from '../../src/contracts/worker.js';
import { parseWith } from '../../src/domain/job-spec.js';
import { SlidingWindowThrottle } from '../../src/executor/throttle.js';
import { agentCliWorker, PRESETS } from '../../workers/agent-cli.js';
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
    expect(PRESETS.codex.args('gpt-5-codex')).toEqual(['exec', '--json', '--skip-git-repo-check', '--model', 'gpt-5-codex', '-']);
    expect(PRESETS.gemini.args(undefined)).toEqual(['--output-format', 'json', '-p', 'Follow the instructions above.']);
  });

  it('codex preset: streams the JSONL events and takes the last agent message, usage and thread id', async () => {
    const cfg = parseWith(agentCliWorker.configSchema, { preset: 'codex', command: FAKE_CODEX, model: 'gpt-5-codex' }, 'worker_config');
    const events: ConversationEvent[] = [];
    const out = await agentCliWorker.run(unit('hello codex'), cfg, ctx(events));
    expect(out).toMatchObject({ status: 'succeeded', output: 'answer: 11 chars', session_id: 'th_123', usage: { input_tokens: 200, cache_read_tokens: 100, output_tokens: 40 } });
    expect(events.map((e) => e.kind)).toEqual(['thread.started', 'turn.started', 'item.completed', 'item.completed', 'item.completed', 'turn.completed']);
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
