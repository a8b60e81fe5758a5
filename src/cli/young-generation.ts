import { setFlagsFromString } from 'node:v8';

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
  try {
    setFlagsFromString('--semi-space-growth-factor=1');
  } catch {
    // A runtime without the flag keeps its own sizing.
  }
}
