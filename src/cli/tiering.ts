import { setFlagsFromString } from 'node:v8';

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
 * (test/unit/tiering.test.ts). A process started with its own choice of tiers
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

function setFlags(flags: string): boolean {
  try {
    setFlagsFromString(flags);
    return true;
  } catch {
    // A runtime without the flag compiles as it always does.
    return false;
  }
}
