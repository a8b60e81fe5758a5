import { z } from 'zod';
import type { RunContext, TokenUsage, UnitInput, UnitOutcome, Worker, WorkerHealth } from '../src/contracts/worker.js';
import { classifyAgentFailure, quotaResetAt } from './agent-failures.js';
import { AGENT_MAX_OUTPUT_BYTES, agentEnv, type AgentProcessResult, MAX_OUTPUT_BYTES_DESCRIPTION, parseJsonLine, runAgentProcess, stdoutLimits } from './agent-process.js';
import { NOT_A_FLAG, notAFlag } from './cli-args.js';
import { secretFreeRecord } from './secret-refs.js';
import { agentCwd } from './unit-values.js';
import { which } from './which.js';

const PERMISSION_MODES = ['default', 'acceptEdits', 'plan', 'dontAsk', 'auto', 'manual', 'bypassPermissions'] as const;

const config = z
  .strictObject({
    command: z.string().min(1).default('claude').describe('The Claude Code binary, looked up on PATH unless it has a slash.'),
    model: z.string().min(1).refine(notAFlag, NOT_A_FLAG).optional().describe('--model, e.g. "sonnet" or a full model id.'),
    max_turns: z.int().positive().optional().describe('--max-turns: agentic turns before the run stops (the unit then fails).'),
    allowed_tools: z
      .array(z.string().min(1).refine(notAFlag, NOT_A_FLAG))
      .optional()
      .describe(
        'Tools the agent may use without asking, e.g. ["Read", "Write", "Bash(git log:*)"] (--allowedTools); nothing else is granted. Left out (and tools too): Read, Glob and Grep, confined to the working directory and add_dirs; [] grants no tools at all.',
      ),
    disallowed_tools: z.array(z.string().min(1).refine(notAFlag, NOT_A_FLAG)).default([]).describe('Tools the agent may never use (--disallowedTools).'),
    tools: z
      .array(z.string().refine(notAFlag, NOT_A_FLAG))
      .optional()
      .describe('Built-in tools to make available (--tools). Default: the tool names in allowed_tools (so [] means no tools), or the read-only three when allowed_tools is left out.'),
    permission_mode: z.enum(PERMISSION_MODES).optional().describe('--permission-mode.'),
    add_dirs: z.array(z.string().min(1).refine(notAFlag, NOT_A_FLAG)).default([]).describe('More directories the agent may access (--add-dir).'),
    append_system_prompt: z.string().min(1).optional().describe('--append-system-prompt.'),
    mcp_config: z.string().min(1).refine(notAFlag, NOT_A_FLAG).optional().describe('--mcp-config: a file or JSON string; other MCP servers are ignored (--strict-mcp-config).'),
    env: secretFreeRecord()
      .default({})
      .describe('Extra environment variables; an empty value removes one (e.g. ANTHROPIC_API_KEY: ""), and a secret is named, not stored: "{{env.NAME}}".'),
    cwd: z.string().optional().describe("Working directory (placeholders allowed); default: the item's folder for file items, else a work dir per job."),
    max_output_bytes: z.int().positive().default(AGENT_MAX_OUTPUT_BYTES).describe(MAX_OUTPUT_BYTES_DESCRIPTION),
    dangerously_skip_permissions: z
      .boolean()
      .default(false)
      .describe('Pass --dangerously-skip-permissions. Off unless the job asks; a job that asks says so in its events and status.'),
    cli_retries: z
      .boolean()
      .default(false)
      .describe('Let the CLI retry 429/529 itself. Off: the run is stopped at the first rate-limit retry and the executor cools the worker type down.'),
    json_schema: z
      .boolean()
      .default(false)
      .describe(
        "When the job has an output_schema, hand it to Claude Code (--json-schema): the agent must end by returning a value the CLI checks against the schema, and that value is the unit's structured_output (abp validates it too). Off: the schema is asked for in the prompt only.",
      ),
    resume_on_retry: z
      .boolean()
      .default(false)
      .describe(
        "When a unit's attempt timed out, its retry resumes that attempt's Claude Code session (--resume) rather than starting over, so the agent goes on from where it was cut off. The session must be where the CLI keeps it on the executor that runs the retry (its config dir, same working directory); where it is not, the retry starts afresh.",
      ),
  })
  .refine((c) => c.permission_mode !== 'bypassPermissions' || c.dangerously_skip_permissions, {
    path: ['permission_mode'],
    message: 'bypassPermissions turns every permission check off; set dangerously_skip_permissions: true to ask for it explicitly',
  });
type ClaudeConfig = z.infer<typeof config>;

/** A tool rule's name: "Bash(git log:*)" → "Bash". */
const toolName = (rule: string) => rule.replace(/\(.*$/s, '').trim();

/**
 * What an agent may use when its job grants nothing: the tools that only read.
 * They are made available but not pre-approved, so Claude Code's own rule
 * applies: reading inside the working directory (the item's folder for file
 * items) and add_dirs needs no approval, reading anywhere else asks, and a
 * headless run has nobody to ask, so it is refused. Writing and the shell need
 * an explicit grant.
 */
export const READ_ONLY_TOOLS: readonly string[] = ['Read', 'Glob', 'Grep'];

/** The built-in tools the agent has at all; MCP tools come from mcp_config alone. */
function builtInTools(cfg: ClaudeConfig): readonly string[] {
  if (cfg.tools) return cfg.tools;
  if (cfg.allowed_tools === undefined) return READ_ONLY_TOOLS;
  return [...new Set(cfg.allowed_tools.map(toolName).filter((t) => t && !t.startsWith('mcp__')))];
}

/** What the agent may do, in words, for the job's status. */
export function claudeAccess(cfg: ClaudeConfig): string {
  if (cfg.dangerously_skip_permissions) return 'everything: every permission check is off (dangerously_skip_permissions)';
  const tools = builtInTools(cfg);
  const where = `the working directory${cfg.add_dirs.length ? ` and ${cfg.add_dirs.join(', ')}` : ''}`;
  if (cfg.allowed_tools === undefined && !cfg.tools) return `read only: ${tools.join(', ')}, in ${where}; writing and the shell need allowed_tools`;
  const parts = [tools.length ? `tools ${tools.join(', ')}` : 'no tools'];
  if (cfg.allowed_tools?.length) parts.push(`without asking: ${cfg.allowed_tools.join(', ')}`);
  if (cfg.disallowed_tools.length) parts.push(`never: ${cfg.disallowed_tools.join(', ')}`);
  if (cfg.mcp_config) parts.push('MCP servers from mcp_config');
  return `${parts.join('; ')}; in ${where}`;
}

/** What of a unit shapes its command line. */
export type ClaudeUnitArgs = Partial<Pick<UnitInput, 'max_cost_usd' | 'output_schema' | 'previous'>>;

/** A session id as Claude Code makes them; anything else is never put on a command line. */
const SESSION_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The session this attempt resumes (resume_on_retry): the previous attempt's, when it timed out. */
export function resumedSession(cfg: Pick<ClaudeConfig, 'resume_on_retry'>, unit: ClaudeUnitArgs): string | undefined {
  const previous = unit.previous;
  if (!cfg.resume_on_retry || previous?.error_kind !== 'timeout' || !previous.session_id) return undefined;
  return SESSION_ID.test(previous.session_id) ? previous.session_id : undefined;
}

/** The argv after the command. The prompt goes on stdin, never on the command line. */
export function claudeArgs(cfg: ClaudeConfig, unit: ClaudeUnitArgs = {}, resume?: string): string[] {
  const args = ['-p', '--output-format', 'stream-json', '--verbose'];
  if (resume) args.push('--resume', resume);
  if (cfg.model) args.push('--model', cfg.model);
  if (cfg.max_turns !== undefined) args.push('--max-turns', String(cfg.max_turns));
  // The CLI stops the session once its cost passes the cap (result subtype error_max_budget_usd).
  if (unit.max_cost_usd !== undefined) args.push('--max-budget-usd', String(unit.max_cost_usd));
  if (cfg.json_schema && unit.output_schema) args.push('--json-schema', JSON.stringify(unit.output_schema));
  if (cfg.permission_mode) args.push('--permission-mode', cfg.permission_mode);
  // Only the granted built-ins exist for the agent at all.
  args.push('--tools', builtInTools(cfg).join(','));
  if (cfg.allowed_tools?.length) args.push('--allowedTools', ...cfg.allowed_tools);
  if (cfg.disallowed_tools.length > 0) args.push('--disallowedTools', ...cfg.disallowed_tools);
  if (cfg.add_dirs.length > 0) args.push('--add-dir', ...cfg.add_dirs);
  if (cfg.append_system_prompt) args.push('--append-system-prompt', cfg.append_system_prompt);
  if (cfg.mcp_config) args.push('--mcp-config', cfg.mcp_config);
  args.push('--strict-mcp-config');
  if (cfg.dangerously_skip_permissions) args.push('--dangerously-skip-permissions');
  return args;
}

const LOGIN_HELP =
  'Log in with `claude /login` (or `claude setup-token` for a long-lived token), or set ANTHROPIC_API_KEY in the environment of abp (or in worker_config.env).';

/**
 * The variables Claude Code reads to decide where and how it authenticates: its
 * key or token, its endpoint, Bedrock or Vertex instead of the API, where its
 * login is kept. A name the job's env sets (or removes) is the config's, not the executor's.
 */
export const CLAUDE_ENV_NAMES: readonly string[] = [
  'ANTHROPIC_API_KEY',
  'ANTHROPIC_AUTH_TOKEN',
  'ANTHROPIC_BASE_URL',
  'CLAUDE_CODE_OAUTH_TOKEN',
  'CLAUDE_CONFIG_DIR',
  'CLAUDE_CODE_USE_BEDROCK',
  'ANTHROPIC_BEDROCK_BASE_URL',
  'AWS_BEARER_TOKEN_BEDROCK',
  'CLAUDE_CODE_USE_VERTEX',
  'ANTHROPIC_VERTEX_BASE_URL',
  'ANTHROPIC_VERTEX_PROJECT_ID',
  'CLOUD_ML_REGION',
];

export const claudeEnvNames = (cfg: Pick<ClaudeConfig, 'env'>): string[] => CLAUDE_ENV_NAMES.filter((name) => !Object.hasOwn(cfg.env, name));

const DANGER = 'worker_config.dangerously_skip_permissions is true: Claude Code runs with --dangerously-skip-permissions, every permission check off';

/**
 * The result's token usage. A session the CLI stopped (its budget passed) reports
 * `usage` as zeros; its per-model `modelUsage` still counts what was spent.
 */
function usageOf(result: Record<string, any> | undefined): TokenUsage | undefined {
  const raw = result?.usage;
  if (!raw || typeof raw !== 'object') return undefined;
  const usage = {
    input_tokens: Number(raw.input_tokens ?? 0),
    output_tokens: Number(raw.output_tokens ?? 0),
    cache_read_tokens: Number(raw.cache_read_input_tokens ?? 0),
    cache_write_tokens: Number(raw.cache_creation_input_tokens ?? 0),
  };
  const models = result?.modelUsage;
  if (Object.values(usage).some((n) => n > 0) || !models || typeof models !== 'object') return usage;
  for (const m of Object.values(models) as Record<string, unknown>[]) {
    usage.input_tokens += Number(m?.inputTokens ?? 0) || 0;
    usage.output_tokens += Number(m?.outputTokens ?? 0) || 0;
    usage.cache_read_tokens += Number(m?.cacheReadInputTokens ?? 0) || 0;
    usage.cache_write_tokens += Number(m?.cacheCreationInputTokens ?? 0) || 0;
  }
  return usage;
}

const usd = (n: number) => `$${Number(n.toFixed(6))}`;

/** What a resumed session is told: its history already holds the task and the work done on it. */
export const RESUME_PROMPT =
  'Your previous run of this task was stopped at its time limit before it finished. Continue from where it stopped, without redoing what is already done, and end with the answer the task asks for.';

/** What one Claude Code session of an attempt left: its process's end and what its stream said. */
interface Session {
  ended: AgentProcessResult;
  sawInit: boolean;
  sessionId: string | undefined;
  result: Record<string, any> | undefined;
  assistantError: { error: string; text: string } | undefined;
  rateLimit: Record<string, any> | undefined;
}

const clip = (text: string, n = 500) => (text.length > n ? `${text.slice(0, n)}…` : text);

/** Runs one Claude Code session and reads its stream as it comes. */
async function runSession(unit: UnitInput, cfg: ClaudeConfig, ctx: RunContext, resume: string | undefined): Promise<Session> {
  let sawInit = false;
  let sessionId: string | undefined;
  let result: Record<string, any> | undefined;
  let assistantError: { error: string; text: string } | undefined;
  let rateLimit: Record<string, any> | undefined;
  let linger: NodeJS.Timeout | undefined;
  const proc = runAgentProcess({
    command: cfg.command,
    args: claudeArgs(cfg, unit, resume),
    cwd: agentCwd(unit, cfg.cwd),
    env: agentEnv(cfg.env),
    input: resume ? RESUME_PROMPT : unit.prompt,
    signal: ctx.signal,
    onProcess: ctx.onProcess,
    maxStdoutBytes: cfg.max_output_bytes,
    onLine(line) {
      const ev = parseJsonLine(line);
      if (!ev) {
        ctx.onEvent({ kind: 'stdout', data: clip(line, 2000) });
        return;
      }
      switch (ev.type) {
        case 'system':
          if (ev.subtype === 'init') {
            sawInit = true;
            sessionId = ev.session_id;
            // The init event lists every slash command and plugin; keep what explains the run.
            const { session_id, model, cwd, tools, permissionMode, claude_code_version, apiKeySource } = ev;
            ctx.onEvent({ kind: 'init', data: { session_id, model, cwd, tools, permissionMode, claude_code_version, apiKeySource } });
          } else if (ev.subtype === 'api_retry') {
            ctx.onEvent({ kind: 'api_retry', data: ev });
            const limited = ev.error_status === 429 || ev.error_status === 529 || /rate_limit|overloaded/i.test(String(ev.error ?? ''));
            if (limited && !cfg.cli_retries && !rateLimit) {
              // Stop here, so the executor cools the whole worker type down instead of each CLI retrying alone.
              rateLimit = ev;
              proc.stop();
            }
          } else {
            ctx.onEvent({ kind: 'system', data: ev });
          }
          return;
        case 'assistant':
          ctx.onEvent({ kind: 'assistant', data: ev.message });
          if (ev.error) {
            const text = (ev.message?.content ?? []).map((b: any) => (typeof b?.text === 'string' ? b.text : '')).join(' ');
            assistantError = { error: String(ev.error), text };
          }
          return;
        case 'user':
          ctx.onEvent({ kind: 'user', data: ev.message });
          return;
        case 'result': {
          result = ev;
          // The run is over; a CLI that lingers (a stuck MCP server, a hook) is stopped rather than waited on until the timeout.
          linger ??= setTimeout(() => proc.stop(), 5000);
          sessionId ??= ev.session_id;
          const { subtype, is_error, num_turns, total_cost_usd, duration_ms, duration_api_ms, usage, api_error_status, terminal_reason, errors } = ev;
          ctx.onEvent({ kind: 'result', data: { subtype, is_error, num_turns, total_cost_usd, duration_ms, duration_api_ms, usage, api_error_status, terminal_reason, errors, result: ev.result } });
          return;
        }
        default:
          ctx.onEvent({ kind: String(ev.type ?? 'event'), data: ev });
      }
    },
  });
  const ended = await proc.done;
  clearTimeout(linger);
  return { ended, sawInit, sessionId, result, assistantError, rateLimit };
}

/** A resume the CLI refused before the session began: it has no such session. */
function resumeRefused(s: Session): boolean {
  return !s.sawInit && !s.ended.spawnError && (/no conversation found/i.test(s.ended.stderrTail) || (s.result?.subtype === 'error_during_execution' && s.result.num_turns === 0));
}

export const claudeWorker: Worker<ClaudeConfig> = {
  type: 'claude',
  capsUnitCost: true,
  description: 'Runs Claude Code (`claude -p`, stream-json) per unit in its own process group, with only the tools the job grants.',
  configSchema: config as unknown as z.ZodType<ClaudeConfig>,
  healthProbes: [{ label: 'claude', config: {} }],
  access: claudeAccess,
  envNames: claudeEnvNames,

  async run(unit, cfg, ctx): Promise<UnitOutcome> {
    const started = Date.now();
    const resume = resumedSession(cfg, unit);
    let session = await runSession(unit, cfg, ctx, resume);
    if (resume && !ctx.signal.aborted && resumeRefused(session)) {
      // The session is not on this executor (another host, a cleared config dir): start over.
      ctx.onEvent({ kind: 'resume_refused', data: { session_id: resume, said: clip(session.ended.stderrTail.trim()) } });
      session = await runSession(unit, cfg, ctx, undefined);
    }
    const { ended, sessionId, result, assistantError, rateLimit } = session;
    const limits = stdoutLimits(ended, cfg.max_output_bytes);

    const common = {
      ...(sessionId ? { session_id: sessionId } : {}),
      ...(typeof result?.total_cost_usd === 'number' ? { cost_usd: result.total_cost_usd } : {}),
      ...(usageOf(result) ? { usage: usageOf(result) } : {}),
      exit_code: ended.exitCode,
      stderr_tail: limits.stderrTail,
      duration_ms: typeof result?.duration_ms === 'number' ? result.duration_ms : Date.now() - started,
    };
    if (ctx.signal.aborted) {
      const reason = String(ctx.signal.reason);
      const what = `killed process group ${ended.pid}`;
      if (reason === 'timeout') return { ...common, status: 'timed_out', error: `timed out; ${what}` };
      return { ...common, status: 'cancelled', error: `stopped (${reason}); ${what}` };
    }
    if (limits.overflow) return { ...common, status: 'failed', kind: 'permanent', error: limits.overflow };
    if (rateLimit) {
      return {
        ...common,
        status: 'failed',
        kind: 'rate_limited',
        error: `rate limited: HTTP ${rateLimit.error_status ?? '?'} (${rateLimit.error ?? 'rate_limit'})`,
        ...(typeof rateLimit.retry_delay_ms === 'number' ? { retry_after_ms: rateLimit.retry_delay_ms } : {}),
      };
    }
    if (ended.spawnError) {
      const code = ended.spawnError.code;
      return {
        ...common,
        status: 'failed',
        kind: code === 'ENOENT' ? 'permanent' : 'retryable',
        error: code === 'ENOENT' ? `command not found: ${cfg.command} (install @anthropic-ai/claude-code, or set worker_config.command)` : `could not start ${cfg.command}: ${ended.spawnError.message}`,
      };
    }
    if (result && !result.is_error && result.subtype === 'success') {
      const structured = result.structured_output;
      // With --json-schema the result's text is the value as JSON; the value itself is structured_output.
      const text = typeof result.result === 'string' && result.result !== '' ? result.result : structured !== undefined ? JSON.stringify(structured) : JSON.stringify(result.result ?? '');
      return { ...common, status: 'succeeded', output: text, ...(structured !== undefined ? { structured_output: structured } : {}) };
    }
    const errors = Array.isArray(result?.errors) ? result.errors.filter((e: unknown) => typeof e === 'string').join('; ') : '';
    if (result?.subtype === 'error_max_budget_usd') {
      // The CLI stopped at --max-budget-usd. A retry would spend as much again on the same item.
      const spent = typeof result.total_cost_usd === 'number' ? `: it spent ${usd(result.total_cost_usd)}` : '';
      const cap = unit.max_cost_usd !== undefined ? `its cap of ${usd(unit.max_cost_usd)} (max_cost_per_unit_usd)` : "the CLI's budget";
      return { ...common, status: 'failed', kind: 'permanent', error: `the unit passed ${cap}${spent}; Claude Code stopped it after ${result.num_turns ?? '?'} turn(s)` };
    }

    const said = [assistantError?.error, assistantError?.text, typeof result?.result === 'string' ? result.result : '', ended.stderrTail].filter(Boolean).join('\n');
    const kind = classifyAgentFailure(said, typeof result?.api_error_status === 'number' ? result.api_error_status : null);
    const summary = clip(assistantError?.text || (typeof result?.result === 'string' ? result.result : '') || errors || ended.stderrTail.trim().split('\n').slice(-3).join(' | '));
    switch (kind) {
      case 'auth_failed':
        return { ...common, status: 'failed', kind, error: `Claude Code is not logged in, or its key was refused (${summary}). ${LOGIN_HELP}` };
      case 'quota_exhausted': {
        const resets = quotaResetAt(said);
        return { ...common, status: 'failed', kind, error: `usage limit reached: ${summary}`, ...(resets !== undefined ? { resets_at: resets } : {}) };
      }
      case 'rate_limited':
        return { ...common, status: 'failed', kind, error: `rate limited: ${summary}` };
      default:
        break;
    }
    if (result?.subtype === 'error_max_turns') {
      return { ...common, status: 'failed', kind: 'permanent', error: `reached max_turns (${cfg.max_turns ?? '?'}) after ${result.num_turns} turns without finishing` };
    }
    if (result?.subtype === 'error_max_structured_output_retries') {
      // json_schema: the agent kept answering outside the schema; the retry is told what was wrong.
      return { ...common, status: 'failed', kind: 'invalid_output', error: `output_schema: Claude Code gave up on an answer that matches the schema (--json-schema): ${summary}` };
    }
    if (result) {
      return { ...common, status: 'failed', kind: 'retryable', error: `claude reported an error (${result.subtype}): ${summary}` };
    }
    const how = ended.signal ? `was killed by ${ended.signal}` : `exited with code ${ended.exitCode}`;
    return { ...common, status: 'failed', kind: 'retryable', error: `claude ${how} without a result${summary ? `: ${summary}` : ''}` };
  },

  async health(cfg): Promise<WorkerHealth> {
    const env = agentEnv(cfg.env);
    const found = await which(cfg.command, env.PATH ?? '');
    if (!found) {
      return { status: 'down', details: `${cfg.command} is not an executable file on PATH; install it with npm install -g @anthropic-ai/claude-code, or set worker_config.command` };
    }
    const warnings = cfg.dangerously_skip_permissions ? [DANGER] : [];
    const { execa } = await import('execa');
    const version = await execa(found, ['--version'], { env, extendEnv: false, reject: false, timeout: 20_000, stdin: 'ignore' });
    if (version.exitCode !== 0) {
      return { status: 'down', details: `${found} --version failed: ${String(version.stderr || version.stdout).trim().slice(0, 300)}`, warnings };
    }
    const features = ['stream-json', `version ${String(version.stdout).trim()}`];
    // `claude auth status` answers from local state, so the check spends no tokens.
    const auth = await execa(found, ['auth', 'status'], { env, extendEnv: false, reject: false, timeout: 20_000, stdin: 'ignore' });
    const status = parseJsonLine(String(auth.stdout).trim());
    if (!status || typeof status.loggedIn !== 'boolean') {
      return { status: 'degraded', features, details: `could not read \`claude auth status\` (exit ${auth.exitCode}): ${String(auth.stderr || auth.stdout).trim().slice(0, 300)}`, warnings };
    }
    if (!status.loggedIn) {
      return {
        status: 'auth_failed',
        features,
        details: `Claude Code is not logged in (claude auth status: loggedIn false, authMethod ${status.authMethod ?? 'none'}). ${LOGIN_HELP}`,
        warnings,
      };
    }
    features.push(`auth ${status.authMethod}${status.apiKeySource ? ` (${status.apiKeySource})` : ''}`);
    if (cfg.dangerously_skip_permissions) features.push('dangerously_skip_permissions');
    return { status: 'ok', features, details: `${found} ${String(version.stdout).trim()}, logged in with ${status.authMethod}`, warnings };
  },
};
