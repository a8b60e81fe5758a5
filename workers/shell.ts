import { z } from 'zod';
import type { UnitInput, UnitOutcome, Worker } from '../src/contracts/worker.js';
import { renderWithEnv, secretFreeRecord } from './secret-refs.js';
import { fillFor, unitValues } from './unit-values.js';
import { killGroup, newUnitMark, sweepTree, UNIT_MARK_VAR, watchAbort } from '../src/util/process-group.js';
import { ForkServers } from './fork-server.js';
import { which } from './which.js';
import { envFields, refusedArguments } from './cli-args.js';

const config = z.strictObject({
  command: z.string().min(1).describe('The program to run, looked up on PATH unless absolute.'),
  args: z
    .array(z.string())
    .default([])
    .describe('Arguments; {{item.FIELD}}, {{prompt}}, {{item_json}}, {{unit.id}} and {{job.id}} are filled in per unit.'),
  cwd: z.string().optional().describe('Working directory (placeholders allowed); default: a scratch folder per unit.'),
  env: secretFreeRecord()
    .default({})
    .describe('Extra environment variables (placeholders allowed). A secret is named, not stored: "TOKEN": "{{env.TOKEN}}" reads the executor\'s environment.'),
  stdin: z.string().optional().describe('Text sent on stdin, e.g. "{{prompt}}"; default: nothing.'),
  shell: z.boolean().default(false).describe('Run through /bin/sh. Off by default: arguments are never shell-parsed.'),
  max_output_bytes: z.int().positive().default(10 * 1024 * 1024).describe('A unit whose stdout grows past this fails.'),
});
type ShellConfig = z.infer<typeof config>;

const STDERR_TAIL = 2000;
/** How long a command's pipes may stay open after it exits (held by something it left running) before they are closed. */
export const DRAIN_MS = 2000;

const fill = (template: string, unit: UnitInput) => fillFor(unit)(template);

/** Every shell unit of this process starts through these (see fork-server.ts for why). */
const forkServer = new ForkServers();

export const shellWorker: Worker<ShellConfig> = {
  type: 'shell',
  healthProbes: [{ label: 'shell (sh)', config: { command: 'sh' } }],
  description: 'Runs a command per unit in its own process group; stdout is the output, a non-zero exit fails the attempt.',
  configSchema: config,

  async run(unit, cfg, ctx): Promise<UnitOutcome> {
    const started = Date.now();
    let pid: number | undefined;
    let unwatch = () => undefined as void;
    const args = cfg.args.map((a) => fill(a, unit));
    const env = Object.fromEntries(Object.entries(cfg.env).map(([k, v]) => [k, renderWithEnv(v, unitValues(unit))]));
    const cwd = cfg.cwd === undefined ? unit.work_dir : fill(cfg.cwd, unit);
    const refused = refusedArguments([
      { field: 'worker_config.cwd', value: cwd },
      ...args.map((value, i) => ({ field: `worker_config.args[${i}]`, value })),
      ...envFields(env),
    ], forkServer.inheritedEnvBytes());
    if (refused) return { status: 'failed', kind: 'permanent', error: refused, duration_ms: Date.now() - started };
    const mark = newUnitMark();
    const result = await forkServer.run(
      {
        file: cfg.command,
        args,
        cwd,
        env: { ...env, [UNIT_MARK_VAR]: mark },
        ...(cfg.stdin === undefined ? {} : { input: fill(cfg.stdin, unit) }),
        shell: cfg.shell,
        maxStdout: cfg.max_output_bytes,
        maxStderr: STDERR_TAIL,
        drainMs: DRAIN_MS,
      },
      (started) => {
        // Its own process group, so timeout and cancel reach every descendant.
        pid = started;
        ctx.onProcess(started);
        unwatch = watchAbort(ctx.signal, started);
      },
      // Timeout and cancel end the unit once the command is dead, whoever still holds its pipes.
      ctx.signal,
    );
    unwatch();
    // Reap anything the command left running: its group, and after a timeout, a cancel or
    // pipes held open, whatever escaped the group too (setsid, double fork).
    let swept = 0;
    if (pid !== undefined) {
      if (ctx.signal.aborted || result.held) swept = sweepTree(pid, mark);
      else killGroup(pid, 'SIGKILL');
    }
    const heldNote = result.held
      ? `\n[abp: stdout stayed open after the command ended, held by a process it left running; the pipes were closed${swept ? ` and ${swept} leftover process${swept === 1 ? ' was' : 'es were'} killed` : ''}]`
      : '';
    const common = {
      exit_code: result.exitCode,
      stderr_tail: result.stderr + heldNote,
      duration_ms: Date.now() - started,
    };
    const stdout = result.stdout.replace(/\r?\n$/, '');
    if (ctx.signal.aborted) {
      const reason = String(ctx.signal.reason);
      if (reason === 'timeout') return { ...common, status: 'timed_out', error: `timed out; killed process group ${pid}`, output: stdout };
      return { ...common, status: 'cancelled', error: `stopped (${reason}); killed process group ${pid}` };
    }
    if (result.errorCode === 'ENOENT') {
      return { ...common, status: 'failed', kind: 'permanent', error: `command not found: ${cfg.command}` };
    }
    if (result.errorCode) {
      // E2BIG: the system's limit on arguments and environment together, which refusedArguments only estimates.
      const kind = result.errorCode === 'E2BIG' ? 'permanent' : 'retryable';
      return { ...common, status: 'failed', kind, error: `could not start ${cfg.command}: ${result.errorMessage}` };
    }
    if (result.overflow) {
      return { ...common, status: 'failed', kind: 'permanent', error: `stdout exceeded max_output_bytes (${cfg.max_output_bytes})` };
    }
    if (result.exitCode === 0) return { ...common, status: 'succeeded', output: stdout };
    const why = result.signal ? `killed by ${result.signal}` : `exit code ${result.exitCode}`;
    const tail = common.stderr_tail.trim().split('\n').slice(-3).join(' | ');
    return { ...common, status: 'failed', kind: 'retryable', error: tail ? `${why}: ${tail}` : why, output: stdout };
  },

  close: () => forkServer.close(),

  async health(cfg) {
    const found = await which(cfg.command);
    return found
      ? { status: 'ok', details: `${cfg.command} resolves to ${found}` }
      : { status: 'down', details: `${cfg.command} is not an executable file on PATH` };
  },
};
