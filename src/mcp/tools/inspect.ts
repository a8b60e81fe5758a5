import { z } from 'zod';
import type { App } from '../../app.js';
import { JOB_STATES, UNIT_STATES } from '../../domain/states.js';
import { jobStatus, readJobStatus } from '../../wire/views.js';
import { JobDetailWire, JobStatusWire, ResultLineWire, UnitDetailWire, UnitSummaryWire } from '../../wire/schemas.js';
import { EXPORT_FORMATS, exportResults } from '../../wire/exports.js';
import { cursorAfter, cursorInput, cursorOutput, cutText, cutValue, fitPage, FIELD_CHARS, offsetOf, SLICE_CHARS, UNIT_FIELDS } from '../fit.js';
import { defineReadTool, defineTool, jobId, jsonObject, page, toObject } from '../tool.js';

const read = { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false } as const;
const jobStates = z.array(z.enum(JOB_STATES)).optional().describe('Only jobs in these states.');
const unitStates = z.array(z.enum(UNIT_STATES)).optional().describe('Only units in these states.');

export const getJob = defineTool({
  name: 'get_job',
  title: 'Get a job',
  description: 'Returns a job with its full spec (intent, enumerator and worker config, prompt template) and its status. Use get_job_status for a cheaper poll.',
  input: { job_id: jobId },
  output: JobDetailWire.shape,
  annotations: read,
  handler: async ({ job_id }, { app }) => app.orchestrator.getJob(job_id),
});

export const getJobStatus = defineReadTool({
  name: 'get_job_status',
  title: 'Get a job’s status',
  description: 'Returns a job’s state, status_reason, counts by unit state, cost, rate and ETA. One row read: cheap enough to poll while a job runs.',
  input: { job_id: jobId },
  output: JobStatusWire.shape,
  annotations: read,
  reads: ({ job_id }, { reader, executorStaleMs }) => readJobStatus(reader, job_id, executorStaleMs),
});

export const listJobs = defineReadTool({
  name: 'list_jobs',
  title: 'List jobs',
  description: 'Lists jobs, newest first, optionally only those in some states. Use it to find a job id.',
  input: { status: jobStates, ...page, ...cursorInput },
  output: { jobs: z.array(JobStatusWire), cursor: cursorOutput },
  annotations: read,
  async reads({ status, limit = 50, offset, cursor }, { reader }) {
    const from = offsetOf(cursor, offset);
    const fetched = (await reader.listJobs({ status }, { limit, offset: from })).map(jobStatus);
    const jobs = fitPage(fetched);
    return { jobs, cursor: cursorAfter(from, jobs.length, fetched.length, limit) };
  },
});

/**
 * Where a unit page starts: the cursor of the previous page (a unit id to list
 * after, keyset; a cursor of the older offset form still works), or `offset`.
 */
export function unitPageStart(cursor: string | undefined, offset: number | undefined): { after: number } | { offset: number } {
  if (cursor === undefined) return { offset: offset ?? 0 };
  try {
    const a = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')).a;
    if (Number.isSafeInteger(a) && a >= 0) return { after: a };
  } catch {
    // not a keyset cursor: an offset cursor, or none this server gave out (offsetOf says so)
  }
  return { offset: offsetOf(cursor, undefined) };
}

/** The next unit page's cursor: after the last unit this page holds, or null when the job has no more. */
export function unitCursorAfter(lastUnitId: number | undefined, taken: number, fetched: number, limit: number): string | null {
  if (lastUnitId === undefined || (taken === fetched && fetched < limit)) return null;
  return Buffer.from(JSON.stringify({ a: lastUnitId })).toString('base64url');
}

export const listUnits = defineTool({
  name: 'list_units',
  title: 'List a job’s units',
  description:
    'Lists a job’s units in unit_id order with state, attempt and error, optionally only some states (e.g. FAILED). A page holds at most ~20 KB: ' +
    'to page, pass the returned `cursor` back as `cursor` until it is null (it resumes after the last unit_id, as fast deep in a 10M-unit job as at its start; ' +
    'a unit that changes state meanwhile is listed at most once). `offset` skips units one by one: for small offsets only. ' +
    'Use get_unit for one unit’s output and conversation.',
  input: { job_id: jobId, status: unitStates, ...page, ...cursorInput },
  output: { units: z.array(UnitSummaryWire), cursor: cursorOutput },
  annotations: read,
  async handler({ job_id, status, limit = 50, offset, cursor }, { app }) {
    const fetched = await app.orchestrator.listUnits(job_id, { status }, { limit, ...unitPageStart(cursor, offset) });
    const units = fitPage(fetched.map((u) => ({ ...u, error: cutText(u.error, u.unit_id, 'error', 1000) })));
    return { units, cursor: unitCursorAfter(units.at(-1)?.unit_id, units.length, fetched.length, limit) };
  },
});

export const getUnit = defineTool({
  name: 'get_unit',
  title: 'Get one unit',
  description:
    'Returns one unit: its item payload, the prompt it ran with, its output or error, its latest conversation events and its cost. ' +
    'Fields longer than 4,000 characters are cut with a marker; read_unit_field returns the rest.',
  input: { unit_id: z.coerce.number().int().positive().describe('The unit id, from list_units or a job’s test_unit_id.') },
  output: UnitDetailWire.shape,
  annotations: read,
  handler: async ({ unit_id }, { app }) => fitUnit(await app.orchestrator.unit(unit_id)),
});

type UnitDetail = Awaited<ReturnType<App['orchestrator']['unit']>>;

/** One unit cut to fit a tool result: long fields carry a marker, and the conversation keeps its latest events. */
export function fitUnit(u: UnitDetail, fieldChars = FIELD_CHARS): UnitDetail & { conversation_events?: number } {
  const id = u.unit_id;
  const conversation: UnitDetail['conversation'] = [];
  let bytes = 0;
  for (let i = u.conversation.length - 1; i >= 0; i--) {
    const event = u.conversation[i] as UnitDetail['conversation'][number];
    const fitted = { ...event, data: cutValue(event.data, id, 'conversation', 1000) };
    bytes += JSON.stringify(fitted).length;
    if (bytes > fieldChars) break;
    conversation.unshift(fitted);
  }
  return {
    ...u,
    payload: cutValue(u.payload, id, 'payload', fieldChars),
    prompt: cutText(u.prompt, id, 'prompt', fieldChars),
    output: cutText(u.output, id, 'output', fieldChars),
    error: cutText(u.error, id, 'error', fieldChars),
    structured_output: cutValue(u.structured_output, id, 'structured_output', fieldChars),
    conversation,
    ...(conversation.length < u.conversation.length ? { conversation_events: u.conversation.length } : {}),
  };
}

export const readUnitField = defineTool({
  name: 'read_unit_field',
  title: 'Read the rest of a unit’s field',
  description:
    'Returns up to 16,000 characters of one field of a unit from `offset`: what a cut marker in get_unit, get_results or list_units points to. ' +
    'payload, structured_output and conversation are read as their JSON text.',
  input: {
    unit_id: z.coerce.number().int().positive().describe('The unit id.'),
    field: z.enum(UNIT_FIELDS).describe('Which field.'),
    offset: z.coerce.number().int().min(0).optional().describe('Where to start, in characters (default 0).'),
  },
  output: {
    unit_id: z.int(),
    field: z.string(),
    length: z.int().describe('The whole field’s length in characters.'),
    offset: z.int(),
    text: z.string(),
    next_offset: z.int().nullable().describe('Pass as offset for the next slice; null at the end.'),
  },
  annotations: read,
  async handler({ unit_id, field, offset = 0 }, { app }) {
    const u = await app.orchestrator.unit(unit_id);
    const value = u[field];
    const whole = value === null ? '' : typeof value === 'string' ? value : JSON.stringify(value);
    const text = whole.slice(offset, offset + SLICE_CHARS);
    const end = offset + text.length;
    return { unit_id, field, length: whole.length, offset, text, next_offset: end < whole.length ? end : null };
  },
});

export const getResults = defineTool({
  name: 'get_results',
  title: 'Get a job’s results',
  description:
    'Returns a page of unit outcomes: payload, output (structured outputs as JSON), error and cost. A page holds at most ~20 KB of text: ' +
    'pass its `cursor` back to get the next page, until cursor is null. Fields over 4,000 characters are cut with a marker (read_unit_field returns the rest). ' +
    'With format, the page also comes rendered as JSONL, CSV (structured outputs as columns) or Markdown. To get everything at once, use write_results.',
  input: {
    job_id: jobId,
    status: unitStates,
    format: z.enum(EXPORT_FORMATS).optional().describe('Also render the page as jsonl, json, csv or markdown, in `formatted`.'),
    ...page,
    ...cursorInput,
  },
  output: {
    job_id: z.int(),
    result: z.string().nullable().describe('The synthesis step’s output, when the job has one.'),
    results: z.array(ResultLineWire),
    cursor: cursorOutput,
    formatted: z.string().optional(),
  },
  annotations: read,
  async handler({ job_id, status, format, limit = 50, offset, cursor }, { app }) {
    const fetched = await app.orchestrator.resultsPage(job_id, { status }, { limit, ...unitPageStart(cursor, offset) });
    const job = await app.orchestrator.getJob(job_id);
    const result = cutText(job.result, job.synthesis_unit_id ?? 0, 'output');
    const cut = fetched.map((r) => ({
      ...r,
      payload: cutValue(r.payload, r.unit_id, 'payload'),
      output: cutText(r.output, r.unit_id, 'output'),
      structured_output: cutValue(r.structured_output, r.unit_id, 'structured_output'),
      error: cutText(r.error, r.unit_id, 'error'),
    }));
    // A rendered copy doubles the page, so each copy gets half the budget.
    const results = fitPage(cut, (format ? 10_000 : 20_000) - (result?.length ?? 0));
    let formatted: string | undefined;
    if (format) {
      formatted = '';
      for await (const chunk of exportResults(job, { lines: async function* () {
        yield* results;
      } }, format)) formatted += chunk;
    }
    return { job_id, result, results, cursor: unitCursorAfter(results.at(-1)?.unit_id, results.length, fetched.length, limit), ...(formatted !== undefined ? { formatted } : {}) };
  },
});

export const writeResults = defineTool({
  name: 'write_results',
  title: 'Write a job’s results to a sink',
  description:
    'Writes every unit’s result to a folder (one file per unit, named from the item), a SQLite or PostgreSQL table (one row per unit, structured output fields as columns) or a JSONL file. Re-running replaces what it wrote; it never duplicates. Links inside the folder are never followed; a unit that cannot be written is listed in failures with why, and the rest are written.',
  input: {
    job_id: jobId,
    sink: jsonObject('{"type": "dir", "path": …} | {"type": "jsonl", "path": …} | {"type": "table", "connection_string": …, "table": …, "create": true}.'),
  },
  output: {
    sink: z.string(),
    target: z.string(),
    written: z.int(),
    unchanged: z.int().describe('Units whose result was already there, the same (a re-run)'),
    skipped: z.int(),
    failed: z.int().describe('Units that could not be written; each is listed in failures (up to 100) with why'),
    failures: z.array(z.object({ unit_id: z.int(), item_id: z.string(), reason: z.string() })),
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  async handler({ job_id, sink }, { app }) {
    return app.orchestrator.writeSink(job_id, toObject(sink, 'sink'));
  },
});

export const inspectTools = [getJob, getJobStatus, listJobs, listUnits, getUnit, readUnitField, getResults, writeResults];
