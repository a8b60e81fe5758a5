/**
 * A config value that becomes one argument of an agent CLI must not look like a
 * flag: `--allowedTools Read --dangerously-skip-permissions` would turn every
 * permission check off, and `--model --yolo` would approve every tool call.
 * A leading dash is never part of a tool name, a model, a directory or a file
 * that needs one (`./-x` names the same path).
 */
export const notAFlag = (value: string) => !value.trimStart().startsWith('-');

export const NOT_A_FLAG = 'may not start with "-": the CLI would read it as a flag of its own';

/**
 * Linux refuses to start a program when one of its arguments or environment
 * strings is longer than 131,072 bytes (MAX_ARG_STRLEN) or holds a NUL byte
 * (Node refuses that before the system does), and when all of them together
 * pass ARG_MAX (2 MiB here, a quarter of the stack limit; the environment we
 * inherit counts too). Filled in from an item, any of these is the item's
 * problem, not a passing fault: the unit fails for good, naming the field.
 */
export const MAX_ARG_BYTES = 131_072;
const MAX_TOTAL_BYTES = 2 * 1024 * 1024;

/** One string handed to the system: what to call it in a message, and its value. */
export interface ArgField {
  field: string;
  value: string;
}

/** What an environment counts toward ARG_MAX (an estimate, as in refusedArguments). */
export function envBytes(env: NodeJS.ProcessEnv): number {
  let total = 0;
  for (const [k, v] of Object.entries(env)) total += Buffer.byteLength(k) + Buffer.byteLength(v ?? '') + 10;
  return total;
}

/**
 * Why the system would refuse these strings, naming the first field at fault; undefined if it would not.
 * `inherited` is the environment the program inherits, or its size from envBytes.
 */
export function refusedArguments(fields: readonly ArgField[], inherited: NodeJS.ProcessEnv | number = process.env): string | undefined {
  let total = 0;
  for (const { field, value } of fields) {
    if (value.includes('\u0000')) return `${field} holds a NUL byte once filled in: no program can be given one; pass such data on stdin`;
    const bytes = Buffer.byteLength(value) + 1;
    if (bytes > MAX_ARG_BYTES) return `${field} is ${(bytes - 1).toLocaleString('en')} bytes once filled in, over the system's ${MAX_ARG_BYTES.toLocaleString('en')} per argument: pass long values on stdin`;
    total += bytes + 8;
  }
  total += typeof inherited === 'number' ? inherited : envBytes(inherited);
  if (total > MAX_TOTAL_BYTES) return `the arguments and environment are ${total.toLocaleString('en')} bytes together once filled in, over the system's ${MAX_TOTAL_BYTES.toLocaleString('en')}: pass long values on stdin`;
  return undefined;
}

/** A unit's environment additions as ArgFields, each named worker_config.env.NAME. */
export function envFields(env: Record<string, string>): ArgField[] {
  return Object.entries(env).map(([k, v]) => ({ field: `worker_config.env.${k}`, value: `${k}=${v}` }));
}
