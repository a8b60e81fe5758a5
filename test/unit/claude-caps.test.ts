import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { ConversationEvent, RunContext, UnitInput } from '../../src/contracts/worker.js';
import { parseWith } from '../../src/domain/job-spec.js';
import { SlidingWindowThrottle } from '../../src/executor/throttle.js';
import { claudeArgs, claudeWorker, RESUME_PROMPT, resumedSession } from '../../workers/claude.js';

const parse = (c: unknown) => parseWith(claudeWorker.configSchema, c, 'worker_config');
const SESSION = '0f8e2c1a-3b4d-4e5f-8a9b-0c1d2e3f4a5b';
const schema = { type: 'object', properties: { label: { type: 'string' } } };

describe('claude worker: per-unit flags', () => {
  const base = ['-p', '--output-format', 'stream-json', '--verbose', '--tools', 'Read,Glob,Grep', '--strict-mcp-config'];

  it('a unit with nothing of its own has the job’s flags only', () => {
    expect(claudeArgs(parse({}), {})).toEqual(base);
    expect(claudeArgs(parse({}), { output_schema: schema, previous: { error_kind: 'timeout', session_id: SESSION } })).toEqual(base);
  });

  it('max_cost_usd is --max-budget-usd', () => {
    expect(claudeArgs(parse({}), { max_cost_usd: 0.25 })).toEqual(['-p', '--output-format', 'stream-json', '--verbose', '--max-budget-usd', '0.25', ...base.slice(4)]);
  });

  it('json_schema passes the job’s output_schema, when it has one', () => {
    expect(claudeArgs(parse({ json_schema: true }), { output_schema: schema })).toContain('--json-schema');
    expect(claudeArgs(parse({ json_schema: true }), { output_schema: schema })).toContain(JSON.stringify(schema));
    expect(claudeArgs(parse({ json_schema: true }), { output_schema: null })).toEqual(base);
  });

  it('resume_on_retry resumes only the session of an attempt that timed out, and only a real session id', () => {
    const cfg = parse({ resume_on_retry: true });
    expect(resumedSession(cfg, { previous: { error_kind: 'timeout', session_id: SESSION } })).toBe(SESSION);
    expect(resumedSession(parse({}), { previous: { error_kind: 'timeout', session_id: SESSION } })).toBeUndefined();
    expect(resumedSession(cfg, { previous: { error_kind: 'retryable', session_id: SESSION } })).toBeUndefined();
    expect(resumedSession(cfg, { previous: { error_kind: 'timeout', session_id: null } })).toBeUndefined();
    expect(resumedSession(cfg, { previous: { error_kind: 'timeout', session_id: '--dangerously-skip-permissions' } })).toBeUndefined();
    expect(resumedSession(cfg, {})).toBeUndefined();
    expect(claudeArgs(cfg, {}, SESSION).slice(0, 6)).toEqual(['-p', '--output-format', 'stream-json', '--verbose', '--resume', SESSION]);
  });
});

describe('claude worker: a resume the CLI refuses', () => {
  const dir = mkdtempSync(join(tmpdir(), 'abp-claude-caps-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** A stand-in for the CLI: it knows no session, and answers a fresh run with the first line of its prompt. */
  const fake = join(dir, 'claude');
  writeFileSync(
    fake,
    `#!/usr/bin/env node
const args = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
if (args.includes('--resume')) {
  const id = args[args.indexOf('--resume') + 1];
  process.stderr.write('No conversation found with session ID: ' + id + '\\n');
  out({ type: 'result', subtype: 'error_during_execution', is_error: true, num_turns: 0, session_id: id, total_cost_usd: 0 });
  process.exit(1);
}
let input = '';
process.stdin.on('data', (c) => (input += c)).on('end', () => {
  out({ type: 'system', subtype: 'init', session_id: '11111111-2222-4333-8444-555555555555' });
  out({ type: 'result', subtype: 'success', is_error: false, num_turns: 1, result: 'saw: ' + input.split('\\n')[0], total_cost_usd: 0.01, usage: { input_tokens: 5, output_tokens: 1 } });
});
`,
  );
  chmodSync(fake, 0o755);

  it('starts the attempt afresh with the whole prompt, and says so', async () => {
    const events: ConversationEvent[] = [];
    const ctx: RunContext = { signal: new AbortController().signal, onProcess: () => undefined, onEvent: (e) => events.push(e), throttle: new SlidingWindowThrottle() };
    const unit: UnitInput = { unit_id: 1, job_id: 1, job_name: 'j', attempt: 2, item: {}, prompt: 'THE TASK\nmore', work_dir: dir, previous: { error_kind: 'timeout', session_id: SESSION } };
    const outcome = await claudeWorker.run(unit, parse({ command: fake, resume_on_retry: true }), ctx);
    expect(outcome).toMatchObject({ status: 'succeeded', output: 'saw: THE TASK', session_id: '11111111-2222-4333-8444-555555555555' });
    expect(events.find((e) => e.kind === 'resume_refused')?.data).toMatchObject({ session_id: SESSION, said: expect.stringContaining('No conversation found') });
    expect(RESUME_PROMPT).not.toContain('THE TASK');
  });
});
