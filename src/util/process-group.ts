import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';

/** Signals a whole process group; a group that is already gone is not an error. */
export function killGroup(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Whether a process exists (EPERM: it does, under another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * On abort, SIGTERM the group, then SIGKILL it after a grace period. Returns a
 * function that stops watching.
 */
export function watchAbort(signal: AbortSignal, pid: number | undefined, graceMs = 2000): () => void {
  if (pid === undefined) return () => undefined;
  let timer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    killGroup(pid, 'SIGTERM');
    timer = setTimeout(() => killGroup(pid, 'SIGKILL'), graceMs);
    timer.unref();
  };
  if (signal.aborted) onAbort();
  else signal.addEventListener('abort', onAbort, { once: true });
  return () => {
    signal.removeEventListener('abort', onAbort);
    if (timer) clearTimeout(timer);
  };
}

/**
 * The environment variable that marks every process of one unit. A child started
 * with `setsid` or a double fork leaves the unit's process group and session, and
 * may be re-parented away from it, but it keeps the environment it inherited: the
 * sweep finds it by this mark.
 */
export const UNIT_MARK_VAR = 'ABP_UNIT_MARK';

// One random part per process, then a counter: marks stay unique and unguessable
// without drawing random bytes for every unit.
let markPrefix: string | undefined;
let marks = 0;

/** A fresh mark for one process tree, e.g. `{ [UNIT_MARK_VAR]: newUnitMark() }` in its environment. */
export function newUnitMark(): string {
  markPrefix ??= `${process.pid}.${randomBytes(9).toString('base64url')}`;
  return `${markPrefix}.${(++marks).toString(36)}`;
}

interface ProcEntry {
  pid: number;
  ppid: number;
  pgrp: number;
  sid: number;
}

/** A process's parent, group and session from /proc/PID/stat (the fields after the command's closing parenthesis). */
function procEntry(pid: number): ProcEntry | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // A zombie is dead already: its parent (or init) reaps it, and signalling it does nothing.
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return { pid, ppid: Number(fields[1]), pgrp: Number(fields[2]), sid: Number(fields[3]) };
}

function carriesMark(pid: number, needle: Buffer): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`).includes(needle);
  } catch {
    return false;
  }
}

/**
 * Kills every process that belongs to the tree started as `root` with `mark` in its
 * environment: its process group and session, its descendants, and anything still
 * carrying the mark (a `setsid` escapee, a daemon that double-forked). Repeats until a
 * pass finds nothing, so a process forked during a pass is caught by the next one.
 * Linux only (it reads /proc); elsewhere only the process group is killed. Returns
 * how many processes were killed.
 */
export function sweepTree(root: number, mark: string): number {
  killGroup(root, 'SIGKILL');
  if (!existsSync('/proc/self/stat')) return 0;
  const needle = Buffer.from(`${UNIT_MARK_VAR}=${mark}\0`);
  let killed = 0;
  for (let pass = 0; pass < 10; pass++) {
    const entries: ProcEntry[] = [];
    for (const name of readdirSync('/proc')) {
      const pid = Number(name);
      if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) continue;
      const entry = procEntry(pid);
      if (entry) entries.push(entry);
    }
    // Not `root` itself by number: once reaped, its pid may belong to someone else.
    const doomed = new Set<number>();
    for (const e of entries) if (e.pgrp === root || e.sid === root || carriesMark(e.pid, needle)) doomed.add(e.pid);
    // Descendants of anything doomed, to a fixed point (a child that cleared its environment is still a child).
    for (let grew = true; grew; ) {
      grew = false;
      for (const e of entries) {
        if (!doomed.has(e.pid) && doomed.has(e.ppid)) {
          doomed.add(e.pid);
          grew = true;
        }
      }
    }
    let found = 0;
    for (const e of entries) {
      if (!doomed.has(e.pid)) continue;
      try {
        process.kill(e.pid, 'SIGKILL');
        found++;
      } catch {
        // gone already
      }
    }
    killed += found;
    if (found === 0) break;
  }
  return killed;
}
