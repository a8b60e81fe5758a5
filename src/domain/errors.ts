/**
 * One error class for the whole project. `code` is data that callers branch on
 * (exit codes, HTTP status, retry decisions); the message is for people.
 */
export const ERROR_CODES = [
  'invalid_input', // a spec, flag or config field is wrong: names the field
  'not_found', // a job, unit or file does not exist
  'illegal_transition', // a state move that the state table forbids
  'conflict', // the operation does not fit the current state (e.g. test unit still running)
  'enumeration_failed', // the enumerator could not produce the items
  'store_error', // the database refused or is unreachable
  'internal', // a bug
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export class AbpError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AbpError';
    this.code = code;
    this.details = options.details;
  }
}

export function assertNever(value: never, what = 'value'): never {
  throw new AbpError('internal', `unexpected ${what}: ${String(value)}`);
}

export function jobNotFound(id: number): AbpError {
  return new AbpError('not_found', `job ${id} does not exist`);
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
