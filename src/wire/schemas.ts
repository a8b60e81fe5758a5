import { z } from 'zod';
import { JOB_STATES, UNIT_STATES } from '../domain/states.js';

/**
 * The wire formats every front end returns (CLI --json, MCP structuredContent,
 * HTTP). Objects are loose: a reader must accept fields added later.
 */
const when = z.string().nullable().describe('ISO 8601 time, or null');

export const Counts = z.looseObject({
  pending: z.int(),
  running: z.int(),
  submitted: z.int().describe('Waiting in a provider batch (http-llm with batch: true)'),
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
    approved_by: z
      .string()
      .nullable()
      .optional()
      .describe('Who approved the test unit (or skipping it): "person (dialog)", "assistant (on the user\'s word)", "person (cli)", "api client (http)", "script (ABP_SKIP_TEST)"'),
    estimate_note: z.string().nullable().optional().describe('Why there is no estimate, when there is none (e.g. "no estimate: the test unit failed")'),
    agent_access: z
      .string()
      .nullable()
      .optional()
      .describe('What the job’s agent may do, in the worker’s words (e.g. "read only: Read, Glob, Grep, in the working directory; …"); null for workers that are not agents'),
    executors: z
      .strictObject({
        live: z.int().describe('Executors with a fresh heartbeat'),
        last_heartbeat_age_seconds: z.number().nullable(),
        warning: z.string().nullable().describe('Set when no executor is alive to run the job, with what to do'),
      })
      .nullable()
      .optional()
      .describe('For a job that needs an executor now (RUNNING with units left, or its test unit running): whether one is alive; null otherwise'),
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
  cached: z.boolean().optional().describe('Answered from the response cache (jobs with cache on)'),
  cached_from: z.int().nullable().optional().describe('The unit whose answer a cached unit took; null when not cached'),
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

/** What a client sends to record a progress checkpoint on a job (POST /jobs/{id}/checkpoints). */
export const CheckpointInput = z
  .strictObject({
    type: z.string().trim().min(1).max(100).describe('What kind of checkpoint, e.g. "phase" or "reviewed".'),
    data: z.unknown().optional().describe('Any JSON the client wants to keep with it.'),
  })
  .describe('A progress checkpoint, recorded as an event on the job');

export const EVENT_TYPES = ['hello', 'status', 'unit', 'checkpoint', 'log', 'activity', 'end'] as const;

/** One server-sent event of GET /jobs/{id}/events; `seq` is also the SSE id. */
export const EventWire = z
  .looseObject({
    seq: z.int().nullable().describe('The events-table seq (the SSE id); null for hello, activity and end, which are not stored'),
    job_id: z.int(),
    type: z.enum(EVENT_TYPES),
    kind: z.string().describe('The stored event type: status, unit, checkpoint, health, updated, ...'),
    data: z.unknown(),
    at: z.string().describe('ISO 8601 time'),
  })
  .describe('An event of a job’s event stream');
