import { z } from 'zod';
import { JOB_STATES, UNIT_STATES } from '../../domain/states.js';
import { JobDetailWire, JobStatusWire, ResultLineWire, UnitDetailWire, UnitSummaryWire } from '../../domain/wire.js';
import { EXPORT_FORMATS, exportResults } from '../../orchestrator/exports.js';
import { defineTool, jobId, jsonObject, page, toObject } from '../tool.js';

const read = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false } as const;
const jobStates = z.array(z.enum(JOB_STATES)).optional().describe('Only jobs in these states.');
const unitStates = z.array(z.enum(UNIT_STATES)).optional().describe('Only units in these states.');

function nextOffset(offset: number, got: number, limit: number): number | null {
  return got < limit ? null : offset + got;
}

export const getJob = defineTool({
  name: 'get_job',
  title: 'Get a job',
  description: 'Returns a job with its full spec (intent, enumerator and worker config, prompt template) and its status. Use get_job_status for a cheaper poll.',
  input: { job_id: jobId },
  output: JobDetailWire.shape,
  annotations: read,
  handler: async ({ job_id }, { app }) => app.orchestrator.getJob(job_id),
});

export const getJobStatus = defineTool({
  name: 'get_job_status',
  title: 'Get a job’s status',
  description: 'Returns a job’s state, status_reason, counts by unit state, cost, rate and ETA. One row read: cheap enough to poll while a job runs.',
  input: { job_id: jobId },
  output: JobStatusWire.shape,
  annotations: read,
  handler: async ({ job_id }, { app }) => app.orchestrator.status(job_id),
});

export const listJobs = defineTool({
  name: 'list_jobs',
  title: 'List jobs',
  description: 'Lists jobs, newest first, optionally only those in some states. Use it to find a job id.',
  input: { status: jobStates, ...page },
  output: { jobs: z.array(JobStatusWire), next_offset: z.int().nullable().describe('Pass as offset for the next page; null at the end.') },
  annotations: read,
  async handler({ status, limit = 50, offset = 0 }, { app }) {
    const jobs = await app.orchestrator.listJobs({ status }, { limit, offset });
    return { jobs, next_offset: nextOffset(offset, jobs.length, limit) };
  },
});

export const listUnits = defineTool({
  name: 'list_units',
  title: 'List a job’s units',
  description: 'Lists a job’s units with state, attempt and error, optionally only some states (e.g. FAILED). Use get_unit for one unit’s output and conversation.',
  input: { job_id: jobId, status: unitStates, ...page },
  output: { units: z.array(UnitSummaryWire), next_offset: z.int().nullable() },
  annotations: read,
  async handler({ job_id, status, limit = 50, offset = 0 }, { app }) {
    const units = await app.orchestrator.listUnits(job_id, { status }, { limit, offset });
    return { units, next_offset: nextOffset(offset, units.length, limit) };
  },
});

export const getUnit = defineTool({
  name: 'get_unit',
  title: 'Get one unit',
  description: 'Returns one unit: its item payload, the prompt it ran with, its output or error, its conversation events and its cost.',
  input: { unit_id: z.coerce.number().int().positive().describe('The unit id, from list_units or a job’s test_unit_id.') },
  output: UnitDetailWire.shape,
  annotations: read,
  handler: async ({ unit_id }, { app }) => app.orchestrator.unit(unit_id),
});

export const getResults = defineTool({
  name: 'get_results',
  title: 'Get a job’s results',
  description:
    'Returns a page of unit outcomes: payload, output (structured outputs as JSON), error and cost. Page through large jobs with offset. ' +
    'With format, the page also comes rendered as JSONL, CSV (structured outputs as columns) or Markdown.',
  input: {
    job_id: jobId,
    status: unitStates,
    format: z.enum(EXPORT_FORMATS).optional().describe('Also render the page as jsonl, json, csv or markdown, in `formatted`.'),
    ...page,
  },
  output: {
    job_id: z.int(),
    result: z.string().nullable().describe('The synthesis step’s output, when the job has one.'),
    results: z.array(ResultLineWire),
    next_offset: z.int().nullable(),
    formatted: z.string().optional(),
  },
  annotations: read,
  async handler({ job_id, status, format, limit = 50, offset = 0 }, { app }) {
    const results = await app.orchestrator.resultsPage(job_id, { status }, { limit, offset });
    const job = await app.orchestrator.getJob(job_id);
    let formatted: string | undefined;
    if (format) {
      formatted = '';
      for await (const chunk of exportResults(job, async function* () {
        yield* results;
      }, format)) formatted += chunk;
    }
    return { job_id, result: job.result, results, next_offset: nextOffset(offset, results.length, limit), ...(formatted !== undefined ? { formatted } : {}) };
  },
});

export const writeResults = defineTool({
  name: 'write_results',
  title: 'Write a job’s results to a sink',
  description:
    'Writes every unit’s result to a folder (one file per unit, named from the item), a SQLite or PostgreSQL table (one row per unit, structured output fields as columns) or a JSONL file. Re-running replaces what it wrote; it never duplicates.',
  input: {
    job_id: jobId,
    sink: jsonObject('{"type": "dir", "path": …} | {"type": "jsonl", "path": …} | {"type": "table", "connection_string": …, "table": …, "create": true}.'),
  },
  output: { sink: z.string(), target: z.string(), written: z.int(), skipped: z.int() },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  async handler({ job_id, sink }, { app }) {
    return app.orchestrator.writeSink(job_id, toObject(sink, 'sink'));
  },
});

export const inspectTools = [getJob, getJobStatus, listJobs, listUnits, getUnit, getResults, writeResults];
