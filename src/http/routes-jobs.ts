import { once } from 'node:events';
import { z } from 'zod';
import { AbpError } from '../domain/errors.js';
import { CheckpointInput } from '../wire/schemas.js';
import type { UnitState } from '../domain/states.js';
import { EXPORT_FORMATS, type ExportFormat } from '../wire/exports.js';
import { sendJson } from './errors.js';
import { withHttpHint } from './hints.js';
import { idParam, JobListQuery, nextOffset, paging, parseBody, parseQuery, UnitListQuery } from './params.js';
import type { RouteContext, Router } from './router.js';

const CreateQuery = z.strictObject({
  mode: z.enum(['plan', 'create']).default('create').describe('plan: preview only, nothing is created'),
  sample: z.coerce.number().int().min(0).max(100).optional(),
});

const StartBody = z.strictObject({
  approve: z.boolean().optional(),
  reject: z.boolean().optional(),
  skip_test: z.boolean().optional(),
  wait_seconds: z.number().min(0).max(50).optional(),
});

const Empty = z.strictObject({});

const StopBody = z.strictObject({
  then: z.enum(['failed', 'pending']).optional().describe('failed (default): the unit ends FAILED; pending: it goes back to the queue'),
});

/** How each export format goes over the wire. */
const EXPORT_WIRE: Record<ExportFormat, { type: string; ext: string }> = {
  jsonl: { type: 'application/x-ndjson; charset=utf-8', ext: 'jsonl' },
  json: { type: 'application/json; charset=utf-8', ext: 'json' },
  csv: { type: 'text/csv; charset=utf-8', ext: 'csv' },
  markdown: { type: 'text/markdown; charset=utf-8', ext: 'md' },
};

/**
 * Without `format`, a page of results in the JSON envelope. With `format` (one of
 * the export formats the CLI's `abp results --format` writes), the whole job's
 * results as a download, streamed with backpressure, so memory stays flat.
 */
async function sendResults(ctx: RouteContext, jobId: number, query: z.infer<typeof ResultsQuery>): Promise<void> {
  const filter = query.status ? { status: query.status as UnitState[] } : {};
  if (query.format === undefined) {
    const results = await ctx.app.orchestrator.resultsPage(jobId, filter, unitPage(query));
    sendJson(ctx.res, 200, { job_id: jobId, results, ...nextPage(query, results) });
    return;
  }
  const format = query.format;
  const chunks = ctx.app.orchestrator.exportResults(jobId, format, filter)[Symbol.asyncIterator]();
  // The first chunk is read before the headers go out, so a missing job is still a 404.
  let next = await chunks.next();
  ctx.res.writeHead(200, {
    'content-type': EXPORT_WIRE[format].type,
    'content-disposition': `attachment; filename="job-${jobId}-results.${EXPORT_WIRE[format].ext}"`,
    'cache-control': 'no-store',
  });
  while (!next.done) {
    if (!ctx.res.write(next.value)) await once(ctx.res, 'drain');
    next = await chunks.next();
  }
  ctx.res.end();
}

/** `after`: a unit id; the page holds the units past it (keyset paging, as cheap deep in a job as at its start). */
const after = z.coerce.number().int().min(0).optional();
const UnitPageQuery = UnitListQuery.extend({ after });

const ResultsQuery = z.strictObject({
  status: UnitListQuery.shape.status,
  ...paging,
  after,
  format: z.enum(EXPORT_FORMATS).optional(),
});

function unitPage(query: { limit: number; offset: number; after?: number | undefined }) {
  return query.after === undefined ? { limit: query.limit, offset: query.offset } : { limit: query.limit, offset: query.offset, after: query.after };
}

/** Where the next unit page starts: `next_after` (the last unit id, for `after`) and, when paging by offset, `next_offset`; null at the end. */
function nextPage(query: { limit: number; offset: number; after?: number | undefined }, got: { unit_id: number }[]) {
  const last = got.length < query.limit ? null : (got.at(-1)?.unit_id ?? null);
  return { next_offset: query.after === undefined ? nextOffset(query.offset, got.length, query.limit) : null, next_after: last };
}

/** Jobs, units, results and job control. Every handler goes through the Orchestrator. */
export function jobRoutes(router: Router): void {
  /** The unit under the job's path, or a 404: a unit id under another job's path is not this job's unit. */
  const unitOfJob = async (ctx: RouteContext): Promise<number> => {
    const id = idParam(ctx.params, 'id');
    const unitId = idParam(ctx.params, 'unit_id');
    const unit = await ctx.app.orchestrator.unit(unitId);
    if (unit.job_id !== id) throw new AbpError('not_found', `unit ${unitId} does not belong to job ${id}`);
    return unitId;
  };

  router.add('POST', '/jobs', async (ctx) => {
    const query = parseQuery(ctx.url, CreateQuery);
    const spec = await ctx.body();
    const orchestrator = ctx.app.orchestrator;
    if (query.mode === 'plan') {
      sendJson(ctx.res, 200, await orchestrator.preview(spec, query.sample === undefined ? {} : { sample: query.sample }));
      return;
    }
    const job = await orchestrator.createJob(spec);
    sendJson(ctx.res, 201, job, { location: `/jobs/${job.job_id}` });
  });

  router.add('GET', '/jobs', async (ctx) => {
    const { status, limit, offset } = parseQuery(ctx.url, JobListQuery);
    const jobs = await ctx.app.orchestrator.listJobs(status ? { status } : {}, { limit, offset });
    sendJson(ctx.res, 200, { jobs, next_offset: nextOffset(offset, jobs.length, limit) });
  });

  router.add('GET', '/jobs/:id', async (ctx) => {
    parseQuery(ctx.url, Empty);
    sendJson(ctx.res, 200, await ctx.app.orchestrator.getJob(idParam(ctx.params, 'id')));
  });

  router.add('DELETE', '/jobs/:id', async (ctx) => {
    sendJson(ctx.res, 200, await ctx.app.orchestrator.cancel(idParam(ctx.params, 'id')));
  });

  router.add('GET', '/jobs/:id/units', async (ctx) => {
    const id = idParam(ctx.params, 'id');
    const query = parseQuery(ctx.url, UnitPageQuery);
    const units = await ctx.app.orchestrator.listUnits(id, query.status ? { status: query.status } : {}, unitPage(query));
    sendJson(ctx.res, 200, { job_id: id, units, ...nextPage(query, units) });
  });

  router.add('GET', '/jobs/:id/units/:unit_id', async (ctx) => {
    sendJson(ctx.res, 200, await ctx.app.orchestrator.unit(await unitOfJob(ctx)));
  });

  router.add('POST', '/jobs/:id/units/:unit_id/retry', async (ctx) => {
    const unitId = await unitOfJob(ctx);
    parseBody(await ctx.body(), Empty);
    await ctx.app.orchestrator.retryUnit(unitId);
    sendJson(ctx.res, 200, await ctx.app.orchestrator.unit(unitId));
  });

  router.add('POST', '/jobs/:id/units/:unit_id/stop', async (ctx) => {
    const unitId = await unitOfJob(ctx);
    const { then } = parseBody(await ctx.body(), StopBody);
    await ctx.app.orchestrator.stopUnit(unitId, then ?? 'failed');
    sendJson(ctx.res, 200, await ctx.app.orchestrator.unit(unitId));
  });

  router.add('GET', '/jobs/:id/results', async (ctx) => {
    const id = idParam(ctx.params, 'id');
    await sendResults(ctx, id, parseQuery(ctx.url, ResultsQuery));
  });

  router.add('GET', '/jobs/:id/timeline', async (ctx) => {
    const { buckets } = parseQuery(ctx.url, z.strictObject({ buckets: z.coerce.number().int().min(1).max(500).default(60) }));
    sendJson(ctx.res, 200, await ctx.app.orchestrator.monitor.timeline(idParam(ctx.params, 'id'), buckets));
  });

  router.add('POST', '/jobs/:id/start', async (ctx) => {
    const id = idParam(ctx.params, 'id');
    const body = parseBody(await ctx.body(), StartBody);
    if (Number(Boolean(body.approve)) + Number(Boolean(body.reject)) + Number(Boolean(body.skip_test)) > 1) throw new AbpError('invalid_input', 'approve, reject and skip_test: choose one');
    const o = ctx.app.orchestrator;
    const how = {
      ...(body.wait_seconds === undefined ? {} : { waitSeconds: body.wait_seconds }),
      approvedBy: ctx.caller.startsWith('session:') ? 'person (dashboard)' : 'api client (http)',
    };
    const result = body.reject ? await o.reject(id) : body.approve ? await o.approve(id, how) : body.skip_test ? await o.skipTest(id, how) : await o.startTest(id, how);
    sendJson(ctx.res, 200, withHttpHint(result));
  });

  const control = (move: 'pause' | 'resume' | 'retry') =>
    router.add('POST', `/jobs/:id/${move}`, async (ctx) => {
      const id = idParam(ctx.params, 'id');
      parseBody(await ctx.body(), Empty);
      const o = ctx.app.orchestrator;
      sendJson(ctx.res, 200, move === 'pause' ? await o.pause(id) : move === 'resume' ? await o.resume(id) : await o.retryFailed(id));
    });
  control('pause');
  control('resume');
  control('retry');

  router.add('POST', '/jobs/:id/checkpoints', async (ctx) => {
    const id = idParam(ctx.params, 'id');
    const { type, data } = parseBody(await ctx.body(), CheckpointInput);
    const event = await ctx.app.orchestrator.monitor.checkpoint(id, type, data ?? null);
    sendJson(ctx.res, 201, event);
  });

  router.add('GET', '/overview', async (ctx) => {
    sendJson(ctx.res, 200, await ctx.app.orchestrator.monitor.overview());
  });
}
