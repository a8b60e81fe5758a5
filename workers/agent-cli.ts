import { resolve } from 'node:path';
import { z } from 'zod';
import type { TokenUsage, UnitOutcome, Worker, WorkerHealth } from '../src/contracts/worker.js';
import { lookup } from '../src/domain/template.js';
import { classifyAgentFailure, quotaResetAt } from './agent-failures.js';
import { AGENT_MAX_OUTPUT_BYTES, agentEnv, MAX_OUTPUT_BYTES_DESCRIPTION, parseJsonLine, runAgentProcess, stdoutLimits } from './agent-process.js';
import { envFields, NOT_A_FLAG, notAFlag, refusedArguments } from './cli-args.js';
import { secretFreeRecord } from './secret-refs.js';
import { agentCwd, fillFor } from './unit-values.js';
import { which } from './which.js';

const OUTPUTS = ['text', 'json', 'jsonl'] as const;
type OutputMode = (typeof OUTPUTS)[number];

/**
 * What a preset's agent may do. `read-only` is the default; `workspace-write`
 * is asked for with `access`; `danger-full-access` only with
 * `dangerously_skip_permissions: true`.
 */
export type AccessLevel = 'read-only' | 'workspace-write' | 'danger-full-access';

export interface PresetArgs {
  model?: string | undefined;
  access: AccessLevel;
  /** The unit's working directory, for CLIs that take it as a flag. */
  cwd?: string | undefined;
}

/** A known agent CLI: how to call it, where its answer is, and how to ask whether it is logged in. */
interface Preset {
  command: string;
  args: (o: PresetArgs) => string[];
  /** The access flags for each level, and what the agent may then do, in words. */
  access: Record<AccessLevel, { flags: string[]; words: string }>;
  /** Flags that set permissions: abp sets them from `access`, so extra_args may not. */
  permission_flags: { long: string[]; short: string };
  stdin: string;
  output: OutputMode;
  result_path: string;
  result_when?: Record<string, string>;
  session_path?: string;
  error_paths: string[];
  usage?: (event: Record<string, any>) => TokenUsage | undefined;
  /** Arguments whose exit code says whether the CLI is logged in (0 = yes), if it has such a command. */
  auth_args?: string[];
  login_help: string;
}

/**
 * The exact invocations. The prompt always goes on stdin: an item may be far
 * larger than one command-line argument may be.
 */
/** The variables each preset's CLI reads by itself to log in or to find its service (see Worker.envNames). */
const PRESET_ENV: Readonly<Record<'codex' | 'gemini', string[]>> = {
  codex: ['OPENAI_API_KEY', 'CODEX_API_KEY', 'OPENAI_BASE_URL', 'CODEX_HOME'],
  gemini: ['GEMINI_API_KEY', 'GOOGLE_API_KEY', 'GOOGLE_GENAI_USE_VERTEXAI', 'GOOGLE_CLOUD_PROJECT', 'GOOGLE_CLOUD_LOCATION', 'GOOGLE_APPLICATION_CREDENTIALS'],
};

export const PRESETS: Readonly<Record<'codex' | 'gemini', Preset>> = {
  // codex exec --json emits JSONL: thread.started, turn.started, item.started/completed, turn.completed (usage), turn.failed, error.
  // "-" reads the prompt from stdin; --skip-git-repo-check lets it run in the per-job work dir.
  // --sandbox is always explicit, so a sandbox_mode in ~/.codex/config.toml never widens it;
  // --cd makes the unit's working directory codex's workspace root.
  codex: {
    command: 'codex',
    args: ({ model, access, cwd }) => [
      'exec',
      '--json',
      '--skip-git-repo-check',
      ...PRESETS.codex.access[access].flags,
      ...(cwd !== undefined ? ['--cd', resolve(cwd)] : []),
      ...(model ? ['--model', model] : []),
      '-',
    ],
    access: {
      'read-only': { flags: ['--sandbox', 'read-only'], words: 'read only: codex --sandbox read-only (it may read files and run commands, but nothing it runs may write or reach the network)' },
      'workspace-write': { flags: ['--sandbox', 'workspace-write'], words: 'may write in its workspace: codex --sandbox workspace-write (it may read, and write in the working directory and temp dirs; no network)' },
      'danger-full-access': { flags: ['--sandbox', 'danger-full-access'], words: 'everything: codex --sandbox danger-full-access, no sandbox at all (dangerously_skip_permissions)' },
    },
    permission_flags: { long: ['--sandbox', '--full-auto', '--dangerously-bypass-approvals-and-sandbox', '--yolo', '--ask-for-approval', '--cd'], short: 'saC' },
    stdin: '{{prompt}}',
    output: 'jsonl',
    result_path: 'item.text',
    result_when: { type: 'item.completed', 'item.type': 'agent_message' },
    session_path: 'thread_id',
    error_paths: ['error.message', 'message'],
    usage: (e) =>
      e.type === 'turn.completed' && e.usage
        ? {
            input_tokens: Math.max(0, Number(e.usage.input_tokens ?? 0) - Number(e.usage.cached_input_tokens ?? 0)),
            output_tokens: Number(e.usage.output_tokens ?? 0),
            cache_read_tokens: Number(e.usage.cached_input_tokens ?? 0),
          }
        : undefined,
    auth_args: ['login', 'status'],
    login_help: 'Log in with `codex login`, or set OPENAI_API_KEY (or CODEX_API_KEY).',
  },
  // gemini -p runs headless; stdin is read as input and the -p text is appended to it.
  // --output-format json prints one object: {response, stats, error}.
  // --approval-mode is always explicit, so a default mode in settings.json never widens it. Headless,
  // gemini offers no tool that needs an approval: under `default` it cannot edit files or run the
  // shell; `auto_edit` approves file edits (the shell stays off). It has no working-directory flag:
  // its workspace is the directory it starts in, the unit's working directory.
  gemini: {
    command: 'gemini',
    args: ({ model, access }) => ['--output-format', 'json', ...PRESETS.gemini.access[access].flags, ...(model ? ['--model', model] : []), '-p', 'Follow the instructions above.'],
    access: {
      'read-only': { flags: ['--approval-mode', 'default'], words: 'read only: gemini --approval-mode default (headless, the tools that edit files or run the shell are not offered)' },
      'workspace-write': { flags: ['--approval-mode', 'auto_edit'], words: 'may edit files in its workspace: gemini --approval-mode auto_edit (file edits approved; the shell is not offered)' },
      'danger-full-access': { flags: ['--approval-mode', 'yolo'], words: 'everything: gemini --approval-mode yolo, every tool call approved, the shell included (dangerously_skip_permissions)' },
    },
    permission_flags: { long: ['--approval-mode', '--yolo', '--allowed-tools'], short: 'y' },
    stdin: '{{prompt}}',
    output: 'json',
    result_path: 'response',
    session_path: 'session_id',
    error_paths: ['error.message'],
    login_help: 'Log in by running `gemini` once interactively, or set GEMINI_API_KEY (or GOOGLE_API_KEY with GOOGLE_GENAI_USE_VERTEXAI=true).',
  },
};

const ACCESS = ['read-only', 'workspace-write'] as const;

/** Why `value` in extra_args sets a permission the preset sets itself, or undefined. */
function permissionFlag(preset: Preset, value: string): string | undefined {
  const arg = value.trim();
  const long = preset.permission_flags.long.find((f) => arg === f || arg.startsWith(`${f}=`));
  if (long) return long;
  // A short flag alone, with its value attached (-sread-only), or in a group (-dy).
  const short = /^-([A-Za-z]+)/.exec(arg)?.[1];
  const hit = short && [...preset.permission_flags.short].find((f) => short.includes(f));
  return hit ? `-${hit}` : undefined;
}

const config = z
  .strictObject({
    preset: z.enum(['codex', 'gemini']).optional().describe('A known CLI: fills command, args, output and result_path.'),
    command: z.string().min(1).optional().describe('The program (required without a preset).'),
    args: z.array(z.string()).optional().describe('Arguments with {{placeholders}}; replaces the preset arguments.'),
    extra_args: z.array(z.string()).default([]).describe('Appended after the (preset) arguments. With a preset, flags that set permissions are refused: use access.'),
    model: z.string().min(1).refine(notAFlag, NOT_A_FLAG).optional().describe('Passed as --model by the presets.'),
    access: z
      .enum(ACCESS, {
        error: (issue) =>
          issue.input === 'danger-full-access' || issue.input === 'yolo'
            ? `${String(issue.input)} turns every check off; set dangerously_skip_permissions: true to ask for it explicitly`
            : `expected "read-only" or "workspace-write", got ${JSON.stringify(issue.input)}`,
      })
      .optional()
      .describe(
        'Presets only: what the agent may do. "read-only" (the default): codex --sandbox read-only, gemini --approval-mode default. "workspace-write": codex --sandbox workspace-write, gemini --approval-mode auto_edit (it may also write in its working directory).',
      ),
    dangerously_skip_permissions: z
      .boolean()
      .default(false)
      .describe('Presets only: no sandbox and no approvals (codex --sandbox danger-full-access, gemini --approval-mode yolo). Off unless the job asks; the job status says so.'),
    stdin: z.string().nullable().optional().describe('Text on stdin (placeholders allowed); default "{{prompt}}"; null = none.'),
    output: z.enum(OUTPUTS).optional().describe('text: stdout is the answer; json: one JSON document; jsonl: one JSON event per line.'),
    result_path: z.string().min(1).optional().describe('json/jsonl: dot path of the answer; for jsonl the last event that has it wins. Unset: the whole document / last event.'),
    result_when: z.record(z.string(), z.string()).optional().describe('jsonl: only events whose fields equal these values carry the answer.'),
    session_path: z.string().min(1).optional().describe('json/jsonl: dot path of a session id.'),
    env: secretFreeRecord().default({}).describe('Extra environment variables; an empty value removes one, and a secret is named, not stored: "{{env.NAME}}".'),
    cwd: z.string().optional().describe("Working directory; default: the item's folder for file items, else a work dir per job."),
    max_output_bytes: z.int().positive().default(AGENT_MAX_OUTPUT_BYTES).describe(MAX_OUTPUT_BYTES_DESCRIPTION),
  })
  .refine((c) => c.preset !== undefined || c.command !== undefined, { path: ['command'], message: 'required when no preset is given' })
  .superRefine((c, ctx) => {
    const asked = (['access', 'dangerously_skip_permissions'] as const).filter((f) => (f === 'access' ? c.access !== undefined : c.dangerously_skip_permissions));
    for (const field of asked) {
      if (!c.preset) ctx.addIssue({ code: 'custom', path: [field], message: 'only the presets (codex, gemini) have it; a custom command runs with whatever its own arguments allow' });
      else if (c.args) ctx.addIssue({ code: 'custom', path: [field], message: "args replaces the preset's arguments, its access flags included; leave args out to use it" });
    }
    if (!c.preset || c.args) return;
    const preset = PRESETS[c.preset];
    c.extra_args.forEach((arg, i) => {
      const flag = permissionFlag(preset, arg);
      if (flag) ctx.addIssue({ code: 'custom', path: ['extra_args', i], message: `${flag} sets what the agent may do, which abp sets for the ${c.preset} preset: use access ("read-only" or "workspace-write")` });
    });
  });
type AgentCliConfig = z.infer<typeof config>;

/** The access level a preset job runs with. */
function accessLevel(cfg: AgentCliConfig): AccessLevel {
  return cfg.dangerously_skip_permissions ? 'danger-full-access' : (cfg.access ?? 'read-only');
}

/** What the agent may do, in words, for the job's status. */
export function agentCliAccess(cfg: AgentCliConfig): string {
  if (!cfg.preset || cfg.args) return `whatever ${cfg.command ?? cfg.preset} allows with the arguments given; abp does not restrict it`;
  const preset = PRESETS[cfg.preset];
  const level = accessLevel(cfg);
  const where = cfg.cwd !== undefined ? cfg.cwd : "the item's folder for file items, else the job's work dir";
  const widen = level === 'read-only' ? '; writing needs access: "workspace-write"' : '';
  const extra = cfg.extra_args.length ? `; extra arguments: ${cfg.extra_args.join(' ')}` : '';
  return `${preset.access[level].words}, in ${where}${widen}${extra}`;
}

interface Resolved {
  command: string;
  stdin: string | null;
  output: OutputMode;
  result_path: string | undefined;
  result_when: Record<string, string> | undefined;
  session_path: string | undefined;
  preset: Preset | undefined;
}

function resolveConfig(cfg: AgentCliConfig): Resolved {
  const preset = cfg.preset ? PRESETS[cfg.preset] : undefined;
  return {
    command: cfg.command ?? (preset as Preset).command,
    stdin: cfg.stdin === undefined ? (preset?.stdin ?? '{{prompt}}') : cfg.stdin,
    output: cfg.output ?? preset?.output ?? 'text',
    result_path: cfg.result_path ?? preset?.result_path,
    result_when: cfg.result_when ?? preset?.result_when,
    session_path: cfg.session_path ?? preset?.session_path,
    preset,
  };
}

/**
 * The argv after the command. The job's own values (args, extra_args, model)
 * take placeholders; the working directory is passed as it is.
 */
export function agentCliArgs(cfg: AgentCliConfig, fill: (template: string) => string, cwd: string | undefined): string[] {
  const preset = cfg.preset ? PRESETS[cfg.preset] : undefined;
  const base = cfg.args ? cfg.args.map(fill) : (preset?.args({ model: cfg.model && fill(cfg.model), access: accessLevel(cfg), cwd }) ?? []);
  return [...base, ...cfg.extra_args.map(fill)];
}

const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
const matches = (event: Record<string, unknown>, when: Record<string, string> | undefined) =>
  !when || Object.entries(when).every(([path, value]) => lookup(event, path) === value);

export const agentCliWorker: Worker<AgentCliConfig> = {
  type: 'agent-cli',
  description: 'Runs another agent CLI per unit from a command template (presets: codex, gemini, read only unless the job widens access); the answer is the last message or JSON.',
  configSchema: config as unknown as z.ZodType<AgentCliConfig>,
  access: agentCliAccess,
  envNames: (cfg) => (cfg.preset ? PRESET_ENV[cfg.preset] : []).filter((name) => !Object.hasOwn(cfg.env, name)),
  healthProbes: [
    { label: 'agent-cli (codex)', config: { preset: 'codex' } },
    { label: 'agent-cli (gemini)', config: { preset: 'gemini' } },
  ],

  async run(unit, cfg, ctx): Promise<UnitOutcome> {
    const started = Date.now();
    const r = resolveConfig(cfg);
    const fill = fillFor(unit);
    let answer: string | undefined;
    let sessionId: string | undefined;
    let usage: TokenUsage | undefined;
    let lastEvent: Record<string, any> | undefined;
    const errors: string[] = [];
    let stdout = '';
    const take = (event: Record<string, any>) => {
      lastEvent = event;
      if (r.session_path) sessionId = str(lookup(event, r.session_path)) ?? sessionId;
      if (matches(event, r.result_when)) {
        const value = r.result_path ? lookup(event, r.result_path) : event;
        if (value !== undefined) answer = typeof value === 'string' ? value : JSON.stringify(value);
      }
      for (const path of r.preset?.error_paths ?? []) {
        const e = str(lookup(event, path));
        if (e && (event.type === 'error' || event.type === 'turn.failed' || path.startsWith('error'))) errors.push(e);
      }
      const u = r.preset?.usage?.(event);
      if (u) usage = u;
    };
    const cwd = agentCwd(unit, cfg.cwd);
    const args = agentCliArgs(cfg, fill, cwd);
    const extraEnv = Object.fromEntries(Object.entries(cfg.env).map(([k, v]) => [k, fill(v)]));
    const refused = refusedArguments([
      ...(cwd === undefined ? [] : [{ field: 'the working directory (worker_config.cwd)', value: cwd }]),
      ...args.map((value, i) => {
        const base = args.length - cfg.extra_args.length;
        const field = i >= base ? `worker_config.extra_args[${i - base}]` : cfg.args ? `worker_config.args[${i}]` : `argument ${i + 1} of ${r.command}`;
        return { field, value };
      }),
      ...envFields(extraEnv),
    ]);
    if (refused) return { status: 'failed', kind: 'permanent', error: refused, duration_ms: Date.now() - started };
    const proc = runAgentProcess({
      command: r.command,
      args,
      cwd,
      env: agentEnv(extraEnv),
      input: r.stdin === null ? undefined : fill(r.stdin),
      signal: ctx.signal,
      onProcess: ctx.onProcess,
      maxStdoutBytes: cfg.max_output_bytes,
      onLine(line) {
        if (r.output !== 'jsonl') {
          stdout += `${line}\n`;
          return;
        }
        const event = parseJsonLine(line);
        if (!event) {
          ctx.onEvent({ kind: 'stdout', data: line.slice(0, 2000) });
          return;
        }
        ctx.onEvent({ kind: String(event.type ?? 'event'), data: event });
        take(event);
      },
    });
    const ended = await proc.done;
    const limits = stdoutLimits(ended, cfg.max_output_bytes);
    const common = {
      exit_code: ended.exitCode,
      stderr_tail: limits.stderrTail,
      duration_ms: Date.now() - started,
      ...(sessionId ? { session_id: sessionId } : {}),
      ...(usage ? { usage } : {}),
    };
    if (ctx.signal.aborted) {
      const reason = String(ctx.signal.reason);
      if (reason === 'timeout') return { ...common, status: 'timed_out', error: `timed out; killed process group ${ended.pid}` };
      return { ...common, status: 'cancelled', error: `stopped (${reason}); killed process group ${ended.pid}` };
    }
    if (limits.overflow) return { ...common, status: 'failed', kind: 'permanent', error: limits.overflow };
    if (ended.spawnError) {
      const missing = ended.spawnError.code === 'ENOENT';
      return { ...common, status: 'failed', kind: missing ? 'permanent' : 'retryable', error: missing ? `command not found: ${r.command}` : `could not start ${r.command}: ${ended.spawnError.message}` };
    }
    if (r.output === 'json') {
      const doc = parseJsonLine(stdout.trim());
      if (doc) {
        ctx.onEvent({ kind: 'result', data: doc });
        take(doc);
        if (!r.result_path) answer = stdout.trim();
      }
    } else if (r.output === 'text') {
      answer = stdout.replace(/\n$/, '');
      if (answer) ctx.onEvent({ kind: 'assistant', data: { text: answer } });
    }
    if (ended.exitCode === 0 && answer !== undefined && errors.length === 0) {
      return { ...common, status: 'succeeded', output: answer, session_id: sessionId ?? common.session_id } as UnitOutcome;
    }
    const said = [...errors, r.output === 'jsonl' ? JSON.stringify(lastEvent ?? {}) : stdout.slice(-2000), ended.stderrTail].join('\n');
    const summary = (errors.at(-1) ?? ended.stderrTail.trim().split('\n').slice(-3).join(' | ')).slice(0, 500);
    const kind = classifyAgentFailure(said);
    if (kind === 'auth_failed') return { ...common, status: 'failed', kind, error: `${r.command} is not logged in, or its key was refused (${summary}). ${r.preset?.login_help ?? ''}`.trim() };
    if (kind === 'quota_exhausted') {
      const resets = quotaResetAt(said);
      return { ...common, status: 'failed', kind, error: `usage limit reached: ${summary}`, ...(resets !== undefined ? { resets_at: resets } : {}) };
    }
    if (kind === 'rate_limited') return { ...common, status: 'failed', kind, error: `rate limited: ${summary}` };
    if (ended.exitCode === 0) {
      return { ...common, status: 'failed', kind: 'retryable', error: `${r.command} finished without an answer${r.result_path ? ` at ${r.result_path}` : ''}${summary ? `: ${summary}` : ''}` };
    }
    const how = ended.signal ? `was killed by ${ended.signal}` : `exited with code ${ended.exitCode}`;
    return { ...common, status: 'failed', kind: 'retryable', error: `${r.command} ${how}${summary ? `: ${summary}` : ''}` };
  },

  async health(cfg): Promise<WorkerHealth> {
    const r = resolveConfig(cfg);
    const env = agentEnv(cfg.env);
    const warnings = cfg.preset && cfg.dangerously_skip_permissions ? [`worker_config.dangerously_skip_permissions is true: ${PRESETS[cfg.preset].access['danger-full-access'].words}`] : [];
    const found = await which(r.command, env.PATH ?? '');
    if (!found) return { status: 'down', details: `${r.command} is not an executable file on PATH`, warnings };
    const { execa } = await import('execa');
    const version = await execa(found, ['--version'], { env, extendEnv: false, reject: false, timeout: 20_000, stdin: 'ignore' });
    const features = [`output ${r.output}`, ...(version.exitCode === 0 ? [`version ${String(version.stdout).trim().split('\n')[0]}`] : [])];
    if (r.preset?.auth_args) {
      const auth = await execa(found, r.preset.auth_args, { env, extendEnv: false, reject: false, timeout: 20_000, stdin: 'ignore' });
      const said = `${auth.stdout}\n${auth.stderr}`.trim();
      if (auth.exitCode !== 0 || classifyAgentFailure(said) === 'auth_failed') {
        return { status: 'auth_failed', features, details: `${r.command} ${r.preset.auth_args.join(' ')}: ${said.slice(0, 200) || `exit ${auth.exitCode}`}. ${r.preset.login_help}`, warnings };
      }
    }
    return { status: version.exitCode === 0 ? 'ok' : 'degraded', features, details: `${found}${version.exitCode === 0 ? '' : ' (--version failed)'}`, warnings };
  },
};
