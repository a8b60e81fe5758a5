import { z } from 'zod';
import { defineTool } from '../tool.js';
import { specInput, toSpec } from './jobs.js';

export const listEnumerators = defineTool({
  name: 'list_enumerators',
  title: 'List enumerators',
  description: 'Lists the enumerator types (where a job’s items come from) with a description and the JSON Schema of each one’s config. Call it before create_job.',
  input: {},
  output: {
    enumerators: z.array(z.looseObject({ type: z.string(), description: z.string(), config_schema: z.unknown() })),
  },
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  handler: async (_args, { app }) => ({ enumerators: app.orchestrator.listEnumerators() as never }),
});

export const listWorkers = defineTool({
  name: 'list_workers',
  title: 'List workers',
  description:
    'Lists the worker types (what runs each unit: claude, agent-cli, http-llm, shell, function) with a description, the JSON Schema of each one’s worker_config, ' +
    'and its health (CLI installed, logged in, API key set). Call it before create_job to choose worker_type and worker_config.',
  input: {},
  output: {
    workers: z.array(z.looseObject({ type: z.string(), description: z.string(), config_schema: z.unknown(), health: z.array(z.looseObject({ status: z.string() })) })),
  },
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  handler: async (_args, { app }) => ({ workers: (await app.orchestrator.listWorkers()) as never }),
});

export const previewJob = defineTool({
  name: 'preview_job',
  title: 'Preview a job without creating it',
  description:
    'Runs the enumeration of a would-be job and returns the item count, the first items and the first unit’s rendered prompt, creating nothing. ' +
    'Use it to check an enumerator config and the prompt before create_job.',
  input: { ...specInput, sample: z.coerce.number().int().min(0).max(50).optional().describe('How many items to show (default 5).') },
  output: {
    count: z.int().nullable().describe('How many units the job would have; null while dynamic code waits for approval.'),
    items: z.array(z.unknown()),
    first_prompt: z.string().nullable(),
  },
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async handler({ sample, ...args }, { app }) {
    return app.orchestrator.preview(toSpec(args), { sample: (sample as number | undefined) ?? 5 }) as never;
  },
});

export const doctor = defineTool({
  name: 'doctor',
  title: 'Check the workers’ health',
  description: 'Checks every worker type (CLI installed, logged in, API key set, endpoint reachable) and says how to fix what is not. Use it when a job will not start.',
  input: {},
  output: {
    workers: z.array(z.looseObject({ worker_type: z.string(), label: z.string(), health: z.looseObject({ status: z.string(), details: z.string() }) })),
  },
  annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  async handler(_args, { app }) {
    return { workers: (await app.orchestrator.doctor()) as never };
  },
});

export const discoverTools = [listEnumerators, listWorkers, previewJob, doctor];
