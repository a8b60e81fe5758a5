import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { errorMessage } from '../src/domain/errors.js';
import { killGroup, newUnitMark, sweepTree, UNIT_MARK_VAR, watchAbort } from '../src/util/process-group.js';
import { resolveEnvRefs } from './secret-refs.js';

const STDERR_TAIL = 4000;

/** An agent's stdout is read line by line, never whole: a line is cut here (the rest of it is dropped and counted). */
export const MAX_LINE_CHARS = 16 * 1024 * 1024;
/** How long an agent's stdout may stay open after it exits (held by something it left running) before it is closed. */
const DRAIN_MS = 2000;
/** The same after a timeout, cancel or stop. */
const STOPPED_DRAIN_MS = 100;

/** The default for `max_output_bytes` of the agent workers: past it the process group is killed and the unit fails. */
export const AGENT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

export interface AgentProcessOptions {
  command: string;
  args: string[];
  cwd: string;
  env: Record<string, string | undefined>;
  /** Sent on stdin, then stdin is closed; undefined = no stdin. */
  input?: string | undefined;
  signal: AbortSignal;
  onProcess(pid: number): void;
  /** Called with each stdout line as it arrives (a line longer than MAX_LINE_CHARS arrives cut). */
  onLine(line: string): void;
  /** Past this many bytes of stdout the process group is killed and the result says `overflow`. */
  maxStdoutBytes: number;
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
  /** Whether stdout passed maxStdoutBytes (the group was killed). */
  overflow: boolean;
  /** How many stdout lines were cut at MAX_LINE_CHARS. */
  linesCut: number;
  /** How many stdout lines the worker's line handler threw on (they were skipped), and the first error. */
  linesUnread: number;
  unreadError?: string;
  /**
   * Whether its stdout or stderr stayed open after it exited (held by a process it
   * left running, e.g. one that escaped with setsid): the pipes were closed, and
   * everything the run started was swept (`swept` processes killed).
   */
  held: boolean;
  swept: number;
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
  const mark = newUnitMark();
  const child = spawn(o.command, o.args, {
    cwd: o.cwd,
    env: { ...o.env, [UNIT_MARK_VAR]: mark },
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
  let overflow = false;
  let linesCut = 0;
  let linesUnread = 0;
  let unreadError: string | undefined;
  if (child.stdout) {
    readLines(
      child.stdout,
      (line) => {
        if (!line.trim()) return;
        // The line is the agent's, untrusted, and it is handled inside a stream event: a line the
        // worker cannot read (a field whose String() throws, JSON nested too deep to serialise) is
        // skipped and counted. Thrown from here it would end the executor with every unit in it.
        try {
          o.onLine(line);
        } catch (err) {
          linesUnread++;
          unreadError ??= errorMessage(err);
        }
      },
      () => linesCut++,
      o.maxStdoutBytes,
      () => {
        overflow = true;
        if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
      },
    );
  }
  let held = false;
  // Once it has exited: ends the run after `ms` even if its pipes are still open.
  let cutAfter: ((ms: number) => void) | undefined;
  const hurry = () => cutAfter?.(STOPPED_DRAIN_MS);
  o.signal.addEventListener('abort', hurry, { once: true });
  const done = new Promise<AgentProcessResult>((resolve) => {
    let settled = false;
    let drain: NodeJS.Timeout | undefined;
    const finish = (exitCode: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(drain);
      o.signal.removeEventListener('abort', hurry);
      unwatch();
      let swept = 0;
      if (child.pid !== undefined) {
        // After a timeout, cancel, stop, overflow or held pipes, whatever escaped the group is found too.
        if (held || stopped || overflow || o.signal.aborted) swept = sweepTree(child.pid, mark);
        else killGroup(child.pid, 'SIGKILL');
      }
      resolve({ exitCode, signal, stderrTail: stderr, pid: child.pid, stopped, overflow, linesCut, linesUnread, ...(unreadError ? { unreadError } : {}), held, swept, ...(spawnError ? { spawnError } : {}) });
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err;
      if (child.pid === undefined) finish(null, null);
    });
    // 'close' waits for stdout to end, so every line has been handed over.
    child.on('close', (code, signal) => finish(code, signal));
    // A process it left running may hold stdout open after it exits: the run still ends.
    child.on('exit', (code, signal) => {
      const cut = () => {
        held = true;
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish(code, signal);
      };
      cutAfter = (ms) => {
        clearTimeout(drain);
        drain = setTimeout(cut, ms);
      };
      cutAfter(stopped || overflow || o.signal.aborted ? STOPPED_DRAIN_MS : DRAIN_MS);
    });
  });
  return {
    stop() {
      if (stopped || child.pid === undefined) return;
      stopped = true;
      hurry();
      killGroup(child.pid, 'SIGTERM');
      setTimeout(() => child.pid !== undefined && killGroup(child.pid, 'SIGKILL'), 2000).unref();
    },
    done,
  };
}

/**
 * Hands `stream` over as lines (without their \n or \r\n) as they arrive, holding
 * at most MAX_LINE_CHARS of one line: a longer one is handed over cut, and the rest
 * of it is skipped. Past `maxBytes` in all, `overflow` is called once and the rest
 * is ignored.
 */
export function readLines(stream: Readable, onLine: (line: string) => void, onCut: () => void, maxBytes: number, overflow: () => void): void {
  const decoder = new StringDecoder('utf8');
  let pending = '';
  let skipping = false;
  let bytes = 0;
  let over = false;
  const emit = (line: string) => onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
  const take = (text: string) => {
    let start = 0;
    for (;;) {
      const nl = text.indexOf('\n', start);
      const piece = nl < 0 ? text.slice(start) : text.slice(start, nl);
      if (skipping) {
        if (nl >= 0) skipping = false;
      } else if (pending.length + piece.length > MAX_LINE_CHARS) {
        emit((pending + piece.slice(0, MAX_LINE_CHARS - pending.length)));
        onCut();
        pending = '';
        skipping = nl < 0;
      } else if (nl >= 0) {
        emit(pending + piece);
        pending = '';
      } else {
        pending += piece;
      }
      if (nl < 0) return;
      start = nl + 1;
    }
  };
  stream.on('data', (chunk: Buffer) => {
    if (over) return;
    bytes += chunk.length;
    if (bytes > maxBytes) {
      over = true;
      overflow();
      return;
    }
    take(decoder.write(chunk));
  });
  stream.on('end', () => {
    if (over) return;
    take(decoder.end());
    if (pending !== '' && !skipping) emit(pending);
    pending = '';
  });
}

/** The config field both agent workers take for AGENT_MAX_OUTPUT_BYTES. */
export const MAX_OUTPUT_BYTES_DESCRIPTION = `A unit whose stdout grows past this many bytes fails for good (its process group is killed); one line is kept up to ${MAX_LINE_CHARS / 1024 / 1024} MiB, the rest of a longer one is cut.`;

/** What the stdout limits did to a run: the stderr tail with a note of cut lines, and past max_output_bytes the unit's failure. */
export function stdoutLimits(ended: AgentProcessResult, maxBytes: number): { stderrTail: string; overflow?: string } {
  let note = ended.linesCut > 0 ? `\n[abp: ${ended.linesCut} stdout line${ended.linesCut === 1 ? ' was' : 's were'} cut at ${MAX_LINE_CHARS} characters]` : '';
  if (ended.linesUnread > 0) note += `\n[abp: ${ended.linesUnread} stdout line${ended.linesUnread === 1 ? ' was' : 's were'} skipped, unreadable (${ended.unreadError})]`;
  if (ended.held) {
    note += `\n[abp: stdout stayed open after the agent ended, held by a process it left running; the pipes were closed${ended.swept ? ` and ${ended.swept} leftover process${ended.swept === 1 ? ' was' : 'es were'} killed` : ''}]`;
  }
  return { stderrTail: ended.stderrTail + note, ...(ended.overflow ? { overflow: `stdout exceeded max_output_bytes (${maxBytes})` } : {}) };
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
