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
