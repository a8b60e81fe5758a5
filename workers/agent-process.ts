import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { killGroup, watchAbort } from '../src/util/process-group.js';
import { resolveEnvRefs } from './secret-refs.js';

const STDERR_TAIL = 4000;

export interface AgentProcessOptions {
  command: string;
  args: string[];
  cwd: string;
  env: Record<string, string | undefined>;
  /** Sent on stdin, then stdin is closed; undefined = no stdin. */
  input?: string | undefined;
  signal: AbortSignal;
  onProcess(pid: number): void;
  /** Called with each stdout line as it arrives. */
  onLine(line: string): void;
}

export interface AgentProcessResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stderrTail: string;
  /** Set when the program could not be started at all (e.g. ENOENT). */
  spawnError?: NodeJS.ErrnoException;
  pid: number | undefined;
  /** Whether stop() ended it. */
  stopped: boolean;
}

export interface AgentProcess {
  /** Kills the whole process group now, e.g. once the stream says the run is doomed. */
  stop(): void;
  done: Promise<AgentProcessResult>;
}

/**
 * Runs an agent CLI in its own process group and hands its stdout over line by
 * line as it arrives, so a stream can be parsed live. Timeout, cancel and stop()
 * kill the whole group, and anything left in the group is reaped at the end.
 */
export function runAgentProcess(o: AgentProcessOptions): AgentProcess {
  const child = spawn(o.command, o.args, {
    cwd: o.cwd,
    env: o.env,
    detached: true, // its own process group, so timeout and cancel reach every descendant
    stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  let stopped = false;
  let stderr = '';
  let spawnError: NodeJS.ErrnoException | undefined;
  if (child.pid !== undefined) o.onProcess(child.pid);
  const unwatch = watchAbort(o.signal, child.pid);
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_TAIL);
  });
  if (o.input !== undefined && child.stdin) {
    child.stdin.on('error', () => undefined); // a CLI that exits without reading stdin is not our failure
    child.stdin.end(o.input);
  }
  const lines = child.stdout ? createInterface({ input: child.stdout, crlfDelay: Infinity }) : undefined;
  lines?.on('line', (line) => {
    if (line.trim()) o.onLine(line);
  });
  const done = new Promise<AgentProcessResult>((resolve) => {
    let settled = false;
    const finish = (exitCode: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      unwatch();
      if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
      resolve({ exitCode, signal, stderrTail: stderr, pid: child.pid, stopped, ...(spawnError ? { spawnError } : {}) });
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err;
      if (child.pid === undefined) finish(null, null);
    });
    // 'close' waits for stdout to end, so every line has been handed over.
    child.on('close', (code, signal) => finish(code, signal));
  });
  return {
    stop() {
      if (stopped || child.pid === undefined) return;
      stopped = true;
      killGroup(child.pid, 'SIGTERM');
      setTimeout(() => child.pid !== undefined && killGroup(child.pid, 'SIGKILL'), 2000).unref();
    },
    done,
  };
}

/** Parses one stream line as a JSON object; anything else is undefined. */
export function parseJsonLine(line: string): Record<string, any> | undefined {
  try {
    const value = JSON.parse(line);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The environment for an agent CLI: ours, plus the job's `env`, where an empty
 * value removes a variable and {{env.NAME}} reads ours. abp's own HTTP key is
 * never handed to an agent.
 */
export function agentEnv(extra: Record<string, string>): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env };
  delete env.ABP_API_KEY;
  for (const [k, v] of Object.entries(extra)) {
    if (v === '') delete env[k];
    else env[k] = resolveEnvRefs(v);
  }
  return env;
}
