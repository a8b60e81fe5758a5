import { z } from 'zod';
import { AbpError } from '../domain/errors.js';
import { parseWith } from '../domain/job-spec.js';
import { JOB_STATES, UNIT_STATES } from '../domain/states.js';

/** A path parameter that must be a positive integer id. */
export function idParam(params: Record<string, string>, name: string): number {
  const raw = params[name];
  if (raw === undefined || !/^\d+$/.test(raw) || Number(raw) < 1 || !Number.isSafeInteger(Number(raw))) {
    throw new AbpError('invalid_input', `${name}: expected a positive integer, got ${JSON.stringify(raw ?? null)}`);
  }
  return Number(raw);
}

/** Query parameters through a strict zod object: an unknown parameter is a 400 that names it. */
export function parseQuery<S extends z.ZodType>(url: URL, schema: S): z.infer<S> {
  return parseWith(schema, Object.fromEntries(url.searchParams), 'query');
}

/** A comma-separated list of states, case-insensitive: `?status=failed,pending`. */
function states<T extends readonly [string, ...string[]]>(values: T) {
  return z
    .string()
    .transform((s) => s.split(',').map((v) => v.trim().toUpperCase()).filter(Boolean))
    .pipe(z.array(z.enum(values)))
    .optional();
}

export const paging = {
  limit: z.coerce.number().int().min(1).max(500).default(50),
  offset: z.coerce.number().int().min(0).default(0),
};

export const JobListQuery = z.strictObject({ status: states(JOB_STATES), ...paging });
export const UnitListQuery = z.strictObject({ status: states(UNIT_STATES), ...paging });

/** Where the next page starts, or null when this page was the last. */
export function nextOffset(offset: number, got: number, limit: number): number | null {
  return got < limit ? null : offset + got;
}

/** A control request's body: absent, or an object with exactly these fields. */
export function parseBody<S extends z.ZodType>(body: unknown, schema: S): z.infer<S> {
  return parseWith(schema, body ?? {}, 'body');
}
