import { z } from 'zod';
import { JOB_STATES, UNIT_STATES } from './states.js';

/**
 * The wire formats every front end returns (CLI --json, MCP structuredContent,
 * HTTP). Objects are loose: a reader must accept fields added later.
 */
const when = z.string().nullable().describe('ISO 8601 time, or null');

export const Counts = z.looseObject({
  pending: z.int(),
  running: z.int(),
  succeeded: z.int(),
  failed: z.int(),
  cancelled: z.int(),
});

export const JobStatusWire = z
  .looseObject({
    job_id: z.int(),
    name: z.string(),
    type: z.string(),
    status: z.enum(JOB_STATES),
    status_reason: z.string().nullable().describe('Why the job is paused, failed or cancelled'),
    total: z.int(),
    counts: Counts,
    progress: z.number().describe('Finished units ÷ total, 0 to 1'),
    rate_per_second: z.number().nullable(),
    eta_seconds: z.number().nullable(),
    cost_usd: z.number(),
    test_unit_id: z.int().nullable(),
    created_at: when,
    started_at: when,
    finished_at: when,
  })
  .describe('A job’s status');

export const JobDetailWire = JobStatusWire.extend({
  user_intent: z.string(),
  enumerator_config: z.unknown(),
  worker_config: z.unknown(),
  prompt_template: z.string(),
}).describe('A job with its full spec');

export const UnitSummaryWire = z.looseObject({
  unit_id: z.int(),
  job_id: z.int(),
  item_id: z.string(),
  status: z.enum(UNIT_STATES),
  attempt: z.int(),
  error: z.string().nullable(),
  cost_usd: z.number().nullable(),
});

export const UnitDetailWire = UnitSummaryWire.extend({
  payload: z.unknown(),
  prompt: z.string().nullable(),
  output: z.string().nullable(),
  structured_output: z.unknown(),
  conversation: z.array(z.looseObject({ kind: z.string(), data: z.unknown() })),
});

export const ResultLineWire = z.looseObject({
  unit_id: z.int(),
  item_id: z.string(),
  status: z.enum(UNIT_STATES),
  attempt: z.int(),
  payload: z.unknown(),
  output: z.string().nullable(),
  structured_output: z.unknown(),
  error: z.string().nullable(),
  cost_usd: z.number().nullable(),
});
