import { setFlagsFromString } from 'node:v8';

/*
 * V8 settings a command makes for its own process, at run time: the one home
 * of abp's memory tuning of whole processes. Each is measured where it is used;
 * a runtime without a flag keeps its own behaviour.
 */

/**
 * Holds V8's young generation at its start-up size (1 MB semi-spaces) for the
 * rest of the process. V8 grows the young generation by what survives each
 * scavenge, up to 16 MB semi-spaces: RSS that a process keeps for objects that
 * live microseconds. Commands opt in (Command.steadyYoungGeneration) where it was
 * measured to pay:
 * - `abp create`, one streamed insert: a million-row job peaked ~35 MB higher
 *   with V8's sizing; scavenges come more often and cost about the same in all;
 * - `abp executor` and `abp mcp`, long-lived and mostly idle, one per host or per
 *   assistant session: start-up alone grew them to 2 and 4 MB semi-spaces
 *   (idle peak RSS 1.5 and 3.7 MB higher); a launched executor ran 20,000
 *   function units no slower (4 interleaved pairs against V8's sizing).
 * Set at run time, once the command's arguments parse and before it opens the
 * app: a runtime without the flag keeps its own sizing.
 */
export function steadyYoungGeneration(): void {
  setFlags('--semi-space-growth-factor=1');
}

/**
 * Holds back V8's optimizing compiler (TurboFan) until the returned `release`
 * is called. Start-up code runs once, but some of it runs often enough to be
 * optimized: the MCP SDK's and abp's zod schemas build hundreds of objects
 * through the same few constructors. Optimizing them pages in the compiler's
 * own code (about 3.5 MB of the node binary) and fills its zones, in a process
 * that then mostly idles. The two long-lived commands hold it:
 * - `abp mcp` until a request first needs the app (creating a job enumerates
 *   its items in this process, where optimized code pays); status polls
 *   answered from job rows alone never release it;
 * - `abp executor` until a pass first finds work.
 * Peak RSS, whole process, 3 runs each: idle `abp mcp` after initialize,
 * tools/list and get_job_status 62.2 → 57.5 MB; an idle executor 61.6 → 57.7 MB.
 * Functions that ran meanwhile are optimized as usual once it is released
 * (test/unit/v8-tuning.test.ts). A process started with its own choice of tiers
 * (`--no-opt`, `--jitless`, ... in its flags or NODE_OPTIONS) is left as it is.
 * (`--max-opt` would also hold Maglev on Node 22, but set at run time it holds
 * for good.)
 */
export function holdOptimizingCompiler(): () => void {
  const chosen = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((f) => /--(no-)?(opt|turbofan|maglev|max-opt|jitless)\b/.test(f));
  if (chosen || !setFlags('--no-turbofan')) return () => undefined;
  let held = true;
  return () => {
    if (held) setFlags('--turbofan');
    held = false;
  };
}

/** Sets V8 flags; false when this runtime does not know them. */
function setFlags(flags: string): boolean {
  try {
    setFlagsFromString(flags);
    return true;
  } catch {
    return false;
  }
}
