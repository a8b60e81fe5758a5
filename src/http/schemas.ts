import { z } from 'zod';
import { AbpError } from '../domain/errors.js';
import { JobSpec } from '../domain/job-spec.js';
import { CheckpointInput, EventWire, JobDetailWire, JobStatusWire, ResultLineWire, UnitDetailWire, UnitSummaryWire } from '../wire/schemas.js';
import { sendJson } from './errors.js';
import type { Router } from './router.js';

/**
 * The wire formats as JSON Schema, generated from the zod schemas. The JobSpec is
 * what clients send, so it is described as input (defaulted fields optional);
 * the rest is what the server returns.
 */
const SOURCES: Record<string, { schema: z.ZodType; io: 'input' | 'output'; title: string }> = {
  'job-spec': { schema: JobSpec, io: 'input', title: 'JobSpec' },
  job: { schema: JobDetailWire, io: 'output', title: 'Job' },
  'job-status': { schema: JobStatusWire, io: 'output', title: 'JobStatus' },
  unit: { schema: UnitDetailWire, io: 'output', title: 'Unit' },
  'unit-summary': { schema: UnitSummaryWire, io: 'output', title: 'UnitSummary' },
  'result-line': { schema: ResultLineWire, io: 'output', title: 'ResultLine' },
  checkpoint: { schema: CheckpointInput, io: 'input', title: 'Checkpoint' },
  event: { schema: EventWire, io: 'output', title: 'Event' },
};

/** Every schema document by file name (`job-spec.json`, ...), as committed under schemas/. */
export function schemaDocuments(): Record<string, Record<string, unknown>> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [name, { schema, io, title }] of Object.entries(SOURCES)) {
    const generated = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
    out[`${name}.json`] = { $id: `https://abp.local/schemas/${name}.json`, title, ...generated };
  }
  return out;
}

/** The text of one committed file: stable key order, two-space indent, final newline. */
export function schemaText(doc: Record<string, unknown>): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}

export function schemaRoutes(router: Router): void {
  const docs = schemaDocuments();
  router.add('GET', '/schemas', async (ctx) => {
    sendJson(ctx.res, 200, { schemas: Object.keys(docs).map((name) => ({ name, url: `/schemas/${name}` })) });
  });
  router.add('GET', '/schemas/:name', async (ctx) => {
    const name = ctx.params.name as string;
    const doc = docs[name] ?? docs[`${name}.json`];
    if (!doc) throw new AbpError('not_found', `schema ${JSON.stringify(name)} does not exist; GET /schemas lists them`);
    sendJson(ctx.res, 200, doc, { 'content-type': 'application/schema+json; charset=utf-8' });
  });
}
