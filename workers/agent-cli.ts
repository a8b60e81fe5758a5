import { z } from 'zod';
import type { TokenUsage, UnitOutcome, Worker, WorkerHealth } from '../src/contracts/worker.js';
import { lookup } from '../src/domain/template.js';
import { classifyAgentFailure, quotaResetAt } from './agent-failures.js';
import { agentEnv, parseJsonLine, runAgentProcess } from './agent-process.js';
import { NOT_A_FLAG, notAFlag } from './cli-args.js';
import { secretFreeRecord } from './secret-refs.js';
import { agentCwd, fillFor } from './unit-values.js';
import { which } from './which.js';

const OUTPUTS = ['text', 'json', 'jsonl'] as const;
type OutputMode = (typeof OUTPUTS)[number];

/** A known agent CLI: how to call it, where its answer is, and how to ask whether it is logged in. */
interface Preset {
  command: string;
  args: (model: string | undefined) => string[];
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
export const PRESETS: Readonly<Record<'codex' | 'gemini', Preset>> = {
  // codex exec --json emits JSONL: thread.started, turn.started, item.started/completed, turn.completed (usage), turn.failed, error.
  // "-" reads the prompt from stdin; --skip-git-repo-check lets it run in the per-job work dir.
  codex: {
    command: 'codex',
    args: (model) => ['exec', '--json', '--skip-git-repo-check', ...(model ? ['--model', model] : []), '-'],
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
  gemini: {
    command: 'gemini',
    args: (model) => ['--output-format', 'json', ...(model ? ['--model', model] : []), '-p', 'Follow the instructions above.'],
    stdin: '{{prompt}}',
    output: 'json',
    result_path: 'response',
    session_path: 'session_id',
    error_paths: ['error.message'],
    login_help: 'Log in by running `gemini` once interactively, or set GEMINI_API_KEY (or GOOGLE_API_KEY with GOOGLE_GENAI_USE_VERTEXAI=true).',
  },
};

const config = z
  .strictObject({
    preset: z.enum(['codex', 'gemini']).optional().describe('A known CLI: fills command, args, output and result_path.'),
    command: z.string().min(1).optional().describe('The program (required without a preset).'),
    args: z.array(z.string()).optional().describe('Arguments with {{placeholders}}; replaces the preset arguments.'),
    extra_args: z.array(z.string()).default([]).describe('Appended after the (preset) arguments, e.g. ["--sandbox", "read-only"].'),
    model: z.string().min(1).refine(notAFlag, NOT_A_FLAG).optional().describe('Passed as --model by the presets.'),
    stdin: z.string().nullable().optional().describe('Text on stdin (placeholders allowed); default "{{prompt}}"; null = none.'),
    output: z.enum(OUTPUTS).optional().describe('text: stdout is the answer; json: one JSON document; jsonl: one JSON event per line.'),
    result_path: z.string().min(1).optional().describe('json/jsonl: dot path of the answer; for jsonl the last event that has it wins. Unset: the whole document / last event.'),
    result_when: z.record(z.string(), z.string()).optional().describe('jsonl: only events whose fields equal these values carry the answer.'),
    session_path: z.string().min(1).optional().describe('json/jsonl: dot path of a session id.'),
    env: secretFreeRecord().default({}).describe('Extra environment variables; an empty value removes one, and a secret is named, not stored: "{{env.NAME}}".'),
    cwd: z.string().optional().describe("Working directory; default: the item's folder for file items, else a work dir per job."),
  })
  .refine((c) => c.preset !== undefined || c.command !== undefined, { path: ['command'], message: 'required when no preset is given' });
type AgentCliConfig = z.infer<typeof config>;

interface Resolved {
  command: string;
  args: string[];
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
    args: [...(cfg.args ?? preset?.args(cfg.model) ?? []), ...cfg.extra_args],
    stdin: cfg.stdin === undefined ? (preset?.stdin ?? '{{prompt}}') : cfg.stdin,
    output: cfg.output ?? preset?.output ?? 'text',
    result_path: cfg.result_path ?? preset?.result_path,
    result_when: cfg.result_when ?? preset?.result_when,
    session_path: cfg.session_path ?? preset?.session_path,
    preset,
  };
}

const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
const matches = (event: Record<string, unknown>, when: Record<string, string> | undefined) =>
  !when || Object.entries(when).every(([path, value]) => lookup(event, path) === value);

export const agentCliWorker: Worker<AgentCliConfig> = {
  type: 'agent-cli',
  description: 'Runs another agent CLI per unit from a command template (presets: codex, gemini); the answer is the last message or JSON.',
  configSchema: config as unknown as z.ZodType<AgentCliConfig>,
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
    const proc = runAgentProcess({
      command: r.command,
      args: r.args.map(fill),
      cwd: agentCwd(unit, cfg.cwd),
      env: agentEnv(Object.fromEntries(Object.entries(cfg.env).map(([k, v]) => [k, fill(v)]))),
      input: r.stdin === null ? undefined : fill(r.stdin),
      signal: ctx.signal,
      onProcess: ctx.onProcess,
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
    const common = {
      exit_code: ended.exitCode,
      stderr_tail: ended.stderrTail,
      duration_ms: Date.now() - started,
      ...(sessionId ? { session_id: sessionId } : {}),
      ...(usage ? { usage } : {}),
    };
    if (ctx.signal.aborted) {
      const reason = String(ctx.signal.reason);
      if (reason === 'timeout') return { ...common, status: 'timed_out', error: `timed out; killed process group ${ended.pid}` };
      return { ...common, status: 'cancelled', error: `stopped (${reason}); killed process group ${ended.pid}` };
    }
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
    const found = await which(r.command, env.PATH ?? '');
    if (!found) return { status: 'down', details: `${r.command} is not an executable file on PATH` };
    const { execa } = await import('execa');
    const version = await execa(found, ['--version'], { env, extendEnv: false, reject: false, timeout: 20_000, stdin: 'ignore' });
    const features = [`output ${r.output}`, ...(version.exitCode === 0 ? [`version ${String(version.stdout).trim().split('\n')[0]}`] : [])];
    if (r.preset?.auth_args) {
      const auth = await execa(found, r.preset.auth_args, { env, extendEnv: false, reject: false, timeout: 20_000, stdin: 'ignore' });
      const said = `${auth.stdout}\n${auth.stderr}`.trim();
      if (auth.exitCode !== 0 || classifyAgentFailure(said) === 'auth_failed') {
        return { status: 'auth_failed', features, details: `${r.command} ${r.preset.auth_args.join(' ')}: ${said.slice(0, 200) || `exit ${auth.exitCode}`}. ${r.preset.login_help}` };
      }
    }
    return { status: version.exitCode === 0 ? 'ok' : 'degraded', features, details: `${found}${version.exitCode === 0 ? '' : ' (--version failed)'}` };
  },
};
