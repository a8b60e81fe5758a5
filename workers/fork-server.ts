import { spawn, type ChildProcess } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { envBytes } from './cli-args.js';

/**
 * A small helper process that starts the shell worker's commands.
 *
 * Starting a process from Node forks the caller first, and a fork costs time in
 * proportion to the caller's memory: an executor holding a database, a job's
 * configs and hundreds of in-flight units pays several milliseconds per spawn, on
 * its main thread. The fork server is a bare Node process (no modules beyond
 * child_process), so each fork is cheap, and it runs beside the executor instead
 * of blocking it. It only starts processes and collects their output; the worker
 * still owns timeouts and cancellation and signals the process group itself.
 *
 * One server forks about as fast as one core allows, so the shell worker keeps one
 * per core and sends each unit to the least busy (see `ForkServers`).
 *
 * If the executor dies, the server sees its IPC channel close, kills every
 * process group it started and exits, so nothing it started outlives its owner.
 */
const SERVER_SOURCE = String.raw`
const { spawn } = require('node:child_process');
const groups = new Set();
// Requests whose process is running, for 'release'.
const running = new Map();
// This process's environment never changes: read it once (each read of process.env goes through the C++ environ).
const baseEnv = Object.assign({}, process.env);
const reapAll = () => {
  for (const pid of groups) { try { process.kill(-pid, 'SIGKILL'); } catch {} }
  process.exit(0);
};
// A send can fail (EPIPE) when the executor died a moment ago, before 'disconnect'
// arrives: that too means the owner is gone, and nothing it started may outlive it.
const sendNow = (m) => { if (process.connected) process.send(m, (err) => { if (err) reapAll(); }); };
// Replies leave in batches, one IPC message (one write, one wake-up of the executor) for all
// that are ready: results at the end of this turn of the loop, a pid a moment later
// (PID_DELAY_MS), so that a short command's pid and result usually travel together.
// Order is kept: a pid is always sent before its result.
const PID_DELAY_MS = 2;
let outbox = [];
let flushTimer;
let flushImmediate;
const flush = () => {
  clearTimeout(flushTimer);
  clearImmediate(flushImmediate);
  flushTimer = flushImmediate = undefined;
  const batch = outbox;
  outbox = [];
  if (batch.length > 0) sendNow(batch);
};
const send = (m) => {
  outbox.push(m);
  if (m.done) flushImmediate ??= setImmediate(flush);
  else flushTimer ??= setTimeout(flush, PID_DELAY_MS);
};
process.on('disconnect', reapAll);
process.on('message', (batch) => { for (const m of batch) handle(m); });
const handle = (m) => {
  if (m.release !== undefined) {
    const r = running.get(m.release);
    if (r) r.release();
    return;
  }
  let child;
  try {
    child = spawn(m.file, m.args, {
      cwd: m.cwd,
      env: Object.assign({}, baseEnv, m.env),
      shell: m.shell,
      detached: true,
      stdio: [m.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
  } catch (err) {
    send({ id: m.id, done: true, exitCode: null, signal: null, stdout: '', stderr: '', overflow: false, held: false, errorCode: err.code || 'ESPAWN', errorMessage: String(err.message) });
    return;
  }
  let finished = false;
  let spawnError;
  const out = [];
  let outBytes = 0;
  let overflow = false;
  let errTail = Buffer.alloc(0);
  if (child.pid !== undefined) {
    groups.add(child.pid);
    send({ id: m.id, pid: child.pid });
  }
  child.stdout.on('data', (chunk) => {
    if (overflow) return;
    outBytes += chunk.length;
    if (outBytes > m.maxStdout) {
      overflow = true;
      try { process.kill(-child.pid, 'SIGKILL'); } catch {}
      return;
    }
    out.push(chunk);
  });
  child.stderr.on('data', (chunk) => {
    errTail = Buffer.concat([errTail, chunk]);
    if (errTail.length > m.maxStderr) errTail = errTail.subarray(errTail.length - m.maxStderr);
  });
  if (child.stdin) {
    child.stdin.on('error', () => {});
    child.stdin.end(m.input);
  }
  let held = false;
  let released = false;
  let exited;
  let drain;
  const finish = (exitCode, signal) => {
    if (finished) return;
    finished = true;
    clearTimeout(drain);
    running.delete(m.id);
    if (child.pid !== undefined) groups.delete(child.pid);
    send({
      id: m.id,
      done: true,
      exitCode,
      signal,
      stdout: Buffer.concat(out).toString('utf8'),
      stderr: errTail.toString('utf8'),
      overflow,
      held,
      errorCode: spawnError ? spawnError.code || 'ESPAWN' : undefined,
      errorMessage: spawnError ? String(spawnError.message) : undefined,
    });
  };
  // The command has exited, but something it started (in the background, or escaped with
  // setsid) still holds its stdout or stderr: the pipes are closed and the run ends.
  const cutPipes = () => {
    if (finished || !exited) return;
    held = true;
    child.stdout.destroy();
    child.stderr.destroy();
    finish(exited.code, exited.signal);
  };
  // Once released (a timeout or cancel), the pipes get a moment to drain after the exit, not drainMs.
  const RELEASED_DRAIN_MS = 100;
  running.set(m.id, {
    release() {
      released = true;
      if (exited) {
        clearTimeout(drain);
        drain = setTimeout(cutPipes, RELEASED_DRAIN_MS);
      }
    },
  });
  child.on('error', (err) => {
    spawnError = err;
    if (child.pid === undefined) finish(null, null);
  });
  child.on('exit', (code, signal) => {
    exited = { code, signal };
    drain = setTimeout(cutPipes, released ? RELEASED_DRAIN_MS : m.drainMs);
  });
  child.on('close', (code, signal) => finish(code, signal));
};
sendNow([{ ready: true }]);
`;

/**
 * Each spawn forks the server, and a fork copies its page tables and then faults on every
 * page either side writes: the smaller its heap, the cheaper. A 1 MB young generation
 * (16 MB by default) and no V8 helper threads keep it small: a loop spawning `true` used
 * about 8% less CPU, spawn and command together (medians of 5, 2.48 → 2.27 s per 1,000).
 */
const SERVER_FLAGS = ['--max-semi-space-size=1', '--single-threaded'];

export interface SpawnRequest {
  file: string;
  args: string[];
  cwd: string;
  /** Added to the executor's environment. */
  env: Record<string, string>;
  /** Written to stdin, then closed; without it stdin is /dev/null. */
  input?: string;
  shell: boolean;
  /** Past this many bytes of stdout the process group is killed and `overflow` is set. */
  maxStdout: number;
  /** Only the last this many bytes of stderr are kept. */
  maxStderr: number;
  /** How long stdout and stderr may stay open after the command exits before they are closed (see `held`). */
  drainMs: number;
}

export interface SpawnResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  /** The tail of stderr. */
  stderr: string;
  overflow: boolean;
  /**
   * The command exited but its pipes stayed open (a background or escaped process
   * held them) past `drainMs`, or after `release`: they were closed, and the caller
   * should sweep what is left (see sweepTree).
   */
  held: boolean;
  /** Set when the process could not be started (e.g. ENOENT). */
  errorCode?: string;
  errorMessage?: string;
}

interface Pending {
  onPid: (pid: number) => void;
  resolve: (result: SpawnResult) => void;
}

type Reply = { ready: true } | ({ id: number } & ({ pid: number } | ({ done: true } & SpawnResult)));
type Request = ({ id: number } & SpawnRequest) | { release: number };

export class ForkServer {
  private child: ChildProcess | undefined;
  private ready: Promise<ChildProcess> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** Requests made in this turn, sent together as one IPC message (see `post`). */
  private outbox: Request[] = [];
  /** Bytes of the environment the server was started with, which every command inherits. */
  private envBytes = 0;

  /** Requests in flight. */
  get load(): number {
    return this.pending.size;
  }

  /**
   * Starts a process; `onPid` hears its pid (a process group id) as soon as it exists.
   * Once `release` aborts, the run ends as soon as the process has exited, without
   * waiting for its pipes (the caller signals the process group itself).
   */
  async run(request: SpawnRequest, onPid: (pid: number) => void, release?: AbortSignal): Promise<SpawnResult> {
    const child = await this.start();
    const id = this.nextId++;
    const onRelease = () => this.post(child, { release: id });
    return new Promise<SpawnResult>((resolve) => {
      this.pending.set(id, { onPid, resolve });
      // Only a server with work in flight keeps the process alive.
      if (this.pending.size === 1) child.channel?.ref();
      this.post(child, { id, ...request });
      if (release?.aborted) onRelease();
      else release?.addEventListener('abort', onRelease, { once: true });
    }).finally(() => release?.removeEventListener('abort', onRelease));
  }

  /** Bytes the server's environment adds to every command's (0 before it starts). */
  get inheritedEnvBytes(): number {
    return this.envBytes;
  }

  /**
   * Queues a request; those made in the same turn (a batch of units started together)
   * leave as one IPC message, one write and one wake-up of the server.
   */
  private post(child: ChildProcess, request: Request): void {
    if (this.outbox.length === 0) {
      process.nextTick(() => {
        const batch = this.outbox;
        this.outbox = [];
        if (this.child === child && child.connected) child.send(batch);
      });
    }
    this.outbox.push(request);
  }

  /** Stops the server; processes it started are killed with it. */
  async close(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    this.ready = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.ref();
    await new Promise<void>((resolve) => {
      // It exits when its channel closes; one that does not within a few seconds is killed.
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.disconnect();
    });
  }

  private start(): Promise<ChildProcess> {
    this.ready ??= new Promise<ChildProcess>((resolve, reject) => {
      const env = { ...process.env };
      this.envBytes = envBytes(env);
      const child = spawn(process.execPath, [...SERVER_FLAGS, '-e', SERVER_SOURCE], { env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      this.child = child;
      child.unref();
      const onReply = (reply: Reply) => {
        if ('ready' in reply) return resolve(child);
        const p = this.pending.get(reply.id);
        if (!p) return;
        if ('pid' in reply) return p.onPid(reply.pid);
        this.pending.delete(reply.id);
        if (this.pending.size === 0) child.channel?.unref();
        p.resolve(reply);
      };
      // Replies come in batches (see SERVER_SOURCE).
      child.on('message', (replies: Reply[]) => {
        for (const reply of replies) onReply(reply);
      });
      child.on('error', reject);
      child.on('exit', (code, signal) => {
        // Units in flight end as failed attempts (retryable); the next spawn starts a new server.
        if (this.child === child) {
          this.child = undefined;
          this.ready = undefined;
        }
        const why = `the fork server exited (${signal ?? `code ${code}`})`;
        for (const p of this.pending.values()) p.resolve({ exitCode: null, signal: null, stdout: '', stderr: '', overflow: false, held: false, errorCode: 'ESERVER', errorMessage: why });
        this.pending.clear();
        reject(new Error(why));
      });
    });
    return this.ready;
  }
}

/** A few fork servers, one per core up to four; each request goes to the least busy. Each starts on first use. */
export class ForkServers {
  private readonly servers: ForkServer[];

  constructor(count = Math.max(1, Math.min(4, availableParallelism()))) {
    this.servers = Array.from({ length: count }, () => new ForkServer());
  }

  run(request: SpawnRequest, onPid: (pid: number) => void, release?: AbortSignal): Promise<SpawnResult> {
    const idle = this.servers.reduce((best, s) => (s.load < best.load ? s : best));
    return idle.run(request, onPid, release);
  }

  /**
   * Bytes the environment adds to every command's: that of the servers, read when they
   * started (the executor's own before any has).
   */
  inheritedEnvBytes(): number {
    const started = Math.max(...this.servers.map((s) => s.inheritedEnvBytes));
    return started > 0 ? started : envBytes(process.env);
  }

  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.close()));
  }
}
