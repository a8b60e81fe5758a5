import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startMockAnthropic, toolUseReply, userText, type MockServer, type RecordedRequest, type Script } from '../fixtures/mock-anthropic.js';
import { ROOT, Sandbox } from '../helpers/cli.js';
import { RESUME_PROMPT } from '../../workers/claude.js';

/** The real Claude Code CLI, pinned as a dev dependency. */
const CLAUDE = join(ROOT, 'node_modules', '.bin', 'claude');
/** The model every job names, so the CLI prices its sessions at Sonnet's list prices ($3 in, $15 out per million tokens). */
const MODEL = 'claude-sonnet-4-5';

let sb: Sandbox;
let mock: MockServer;

const markerOf = (req: RecordedRequest) => /MARKER-[a-z0-9]+/.exec(userText(req))?.[0] ?? 'none';
const echoMarker: Script = (req) => ({ type: 'text', text: `done ${markerOf(req)}`, usage: { input_tokens: 120, output_tokens: 30 } });

async function start(script: Script) {
  mock = await startMockAnthropic(script);
  sb = new Sandbox({ ANTHROPIC_BASE_URL: mock.url, ANTHROPIC_API_KEY: 'test', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1', ABP_SKIP_TEST: '1' });
  // HOME inside the sandbox: no user config leaks in, and the CLI keeps its sessions there.
  sb.env.HOME = sb.path('claude-home');
  mkdirSync(sb.env.HOME, { recursive: true });
}
afterEach(async () => {
  await sb?.cleanup();
  await mock?.close();
});

/**
 * The CLI behind a wrapper that writes each invocation's argv (one argument a
 * line, then a line "--end--") before it execs the real one, so a test sees the
 * flags the worker passed to each unit's run.
 */
function wrapper(): { command: string; invocations: () => string[][] } {
  const log = sb.path('argv.log');
  const command = sb.path('claude-wrapper.sh');
  writeFileSync(command, `#!/bin/sh\nprintf '%s\\n' "$@" --end-- >> '${log}'\nexec '${CLAUDE}' "$@"\n`);
  chmodSync(command, 0o755);
  const invocations = () => {
    if (!existsSync(log)) return [];
    const runs: string[][] = [[]];
    for (const line of readFileSync(log, 'utf8').split('\n').slice(0, -1)) {
      if (line === '--end--') runs.push([]);
      else runs.at(-1)!.push(line);
    }
    // Only the units' runs: the health check calls the same command for --version and auth status.
    return runs.slice(0, -1).filter((argv) => argv[0] === '-p');
  };
  return { command, invocations };
}

/** The value after `flag` in an argv. */
const flag = (argv: string[], name: string) => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);

async function createJob(markers: string[], spec: Record<string, unknown>, workerConfig: Record<string, unknown>): Promise<number> {
  const items = sb.path('items.csv');
  writeFileSync(items, ['id,text', ...markers.map((m, i) => `r${i + 1},please handle ${m}`)].join('\n') + '\n');
  const file = sb.path('spec.json');
  writeFileSync(
    file,
    JSON.stringify({
      name: 'claude caps',
      user_intent: 'Reply with the word done and the marker in the item.',
      enumerator_type: 'csv',
      enumerator_config: { file_path: items, id_column: 'id' },
      worker_type: 'claude',
      worker_config: { command: CLAUDE, model: MODEL, max_turns: 3, ...workerConfig },
      max_workers: 2,
      max_retries: 1,
      timeout_seconds: 60,
      ...spec,
    }),
  );
  return (await sb.ok(['create', '--spec', file])).job_id as number;
}

async function run(id: number): Promise<any> {
  await sb.ok(['start', String(id)]);
  return sb.waitFor(id, (s) => s.status === 'COMPLETED' || s.status === 'FAILED', 90_000);
}

describe('claude worker caps, against the real Claude Code CLI and a mock Messages API', () => {
  it('max_cost_per_unit_usd: a session that passes the cap is stopped by the CLI and its unit fails for good, with what it spent; one under the cap succeeds', async () => {
    // The big item's one answer costs 1M input tokens × $3 + 100k output tokens × $15 = $4.50.
    await start((req) =>
      markerOf(req) === 'MARKER-big' ? { type: 'text', text: 'done MARKER-big', usage: { input_tokens: 1_000_000, output_tokens: 100_000 } } : echoMarker(req, 0),
    );
    const cli = wrapper();
    const id = await createJob(['MARKER-big', 'MARKER-small'], { max_cost_per_unit_usd: 0.5 }, { command: cli.command });
    const done = await run(id);
    expect(done.status).toBe('FAILED');

    expect(cli.invocations()).toHaveLength(2);
    for (const argv of cli.invocations()) expect(flag(argv, '--max-budget-usd')).toBe('0.5');
    const results = await sb.results(id);
    const big = results.find((r) => r.payload.text.includes('MARKER-big'));
    const small = results.find((r) => r.payload.text.includes('MARKER-small'));
    expect(small).toMatchObject({ status: 'SUCCEEDED', output: 'done MARKER-small' });
    expect(small.cost_usd).toBeLessThan(0.5);

    const unit = await sb.ok(['unit', String(big.unit_id)]);
    expect(unit).toMatchObject({ status: 'FAILED', error_kind: 'permanent', attempt: 1 });
    expect(unit.error).toMatch(/^the unit passed its cap of \$0\.5 \(max_cost_per_unit_usd\): it spent \$4\.5; Claude Code stopped it after 1 turn\(s\)$/);
    expect(unit.cost_usd).toBeCloseTo(4.5, 6);
    // The CLI's result reports zeros in `usage` for a stopped session; the unit counts its modelUsage.
    expect(unit.usage).toMatchObject({ input_tokens: 1_000_000, output_tokens: 100_000 });
    const result = unit.conversation.find((e: { kind: string }) => e.kind === 'result').data;
    expect(result).toMatchObject({ subtype: 'error_max_budget_usd', is_error: true, terminal_reason: 'budget_exhausted', errors: ['Reached maximum budget ($0.5)'] });
    // max_retries is 1, but the cap is no reason to try the same item again.
    expect(mock.requests.filter((r) => markerOf(r) === 'MARKER-big')).toHaveLength(1);
    expect(done.cost_usd).toBeCloseTo(4.5 + small.cost_usd, 6);
  });

  it('json_schema: the schema goes to the CLI as --json-schema, and the value it returns is the structured output', async () => {
    const schema = { type: 'object', properties: { label: { type: 'string' }, score: { type: 'number' } }, required: ['label', 'score'], additionalProperties: false };
    await start((req) => {
      const offered = (req.body.tools ?? []).some((t: { name: string }) => t.name === 'StructuredOutput');
      const answered = JSON.stringify(req.body.messages).includes('tool_result');
      return offered && !answered ? toolUseReply('StructuredOutput', { label: `L-${markerOf(req)}`, score: 0.75 }) : echoMarker(req, 0);
    });
    const cli = wrapper();
    const id = await createJob(['MARKER-schema'], { output_schema: schema }, { command: cli.command, json_schema: true });
    const done = await run(id);
    expect(done.status).toBe('COMPLETED');

    const [argv] = cli.invocations();
    expect(JSON.parse(flag(argv!, '--json-schema')!)).toEqual(schema);
    // What the CLI made of it: a StructuredOutput tool whose input is the schema.
    const tool = mock.requests[0]!.body.tools.find((t: { name: string }) => t.name === 'StructuredOutput');
    expect(tool.input_schema).toMatchObject(schema);
    const [line] = await sb.results(id);
    expect(line).toMatchObject({ status: 'SUCCEEDED', structured_output: { label: 'L-MARKER-schema', score: 0.75 } });
    expect(JSON.parse(line.output)).toEqual({ label: 'L-MARKER-schema', score: 0.75 });
  });

  it('resume_on_retry: an attempt that timed out is resumed in its own session by the next one', async () => {
    // The first answer never comes before the unit's timeout; the next is prompt.
    await start((req, index) => (index === 0 ? { type: 'hang' } : echoMarker(req, index)));
    const cli = wrapper();
    const id = await createJob(['MARKER-slow'], { timeout_seconds: 5 }, { command: cli.command, resume_on_retry: true });
    const done = await run(id);
    expect(done.status).toBe('COMPLETED');

    const [line] = await sb.results(id);
    expect(line).toMatchObject({ status: 'SUCCEEDED', attempt: 2, output: 'done MARKER-slow' });
    const unit = await sb.ok(['unit', String(line.unit_id)]);
    const inits = unit.conversation.filter((e: { kind: string }) => e.kind === 'init');
    expect(inits.map((e: { attempt: number }) => e.attempt)).toEqual([1, 2]);
    const first = inits[0].data.session_id as string;
    expect(first).toMatch(/^[0-9a-f-]{36}$/);
    // The timed-out attempt recorded its session, and the retry went on in it.
    expect(inits[1].data.session_id).toBe(first);
    expect(unit.session_id).toBe(first);

    const [one, two] = cli.invocations();
    expect(flag(one!, '--resume')).toBeUndefined();
    expect(flag(two!, '--resume')).toBe(first);
    // What the API saw the second time: the first attempt's conversation, then the note to go on.
    expect(mock.requests).toHaveLength(2);
    const second = mock.requests[1]!;
    expect(userText(second)).toContain('please handle MARKER-slow');
    expect(userText(second)).toContain(RESUME_PROMPT);
    expect(userText(mock.requests[0]!)).not.toContain(RESUME_PROMPT);
    expect(second.body.messages.length).toBeGreaterThan(mock.requests[0]!.body.messages.length);
  });
});
