/**
 * SIGTERM and SIGINT for the long-running commands (executor, mcp, serve). The
 * handlers go in before the command opens the database, so a signal that comes
 * while it is still starting stops it cleanly (exit 0) instead of killing it with
 * the default action. `received` resolves on the first signal; every later one
 * calls `again` (the executor then stops its running units at once).
 */
export interface ShutdownSignals {
  /** The first signal, once it came. */
  readonly received: Promise<NodeJS.Signals>;
  /** The first signal, or undefined while none came. */
  readonly first: NodeJS.Signals | undefined;
  dispose(): void;
}

export function shutdownSignals(again: (signal: NodeJS.Signals) => void = () => undefined): ShutdownSignals {
  let first: NodeJS.Signals | undefined;
  let resolve: (signal: NodeJS.Signals) => void = () => undefined;
  const received = new Promise<NodeJS.Signals>((r) => (resolve = r));
  const on = (signal: NodeJS.Signals) => () => {
    if (first === undefined) {
      first = signal;
      resolve(signal);
    } else {
      again(signal);
    }
  };
  const onTerm = on('SIGTERM');
  const onInt = on('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  return {
    received,
    get first() {
      return first;
    },
    dispose() {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
    },
  };
}
