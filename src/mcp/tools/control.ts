import { z } from 'zod';
import { JobStatusWire, UnitSummaryWire } from '../../wire/schemas.js';
import { defineTool, jobId } from '../tool.js';

const unitId = z.int().positive().describe('The unit id, as list_units gives it.');

const write = { readOnlyHint: false, destructiveHint: false, openWorldHint: false } as const;

export const pauseJob = defineTool({
  name: 'pause_job',
  title: 'Pause a job',
  description: 'Stops a RUNNING job from claiming new units; units already running finish. Resume it later with resume_job.',
  input: { job_id: jobId },
  output: JobStatusWire.shape,
  annotations: { ...write, idempotentHint: false },
  handler: async ({ job_id }, { app }) => app.orchestrator.pause(job_id),
});

export const resumeJob = defineTool({
  name: 'resume_job',
  title: 'Resume a job',
  description: 'Resumes a PAUSED job, starting an executor if none is alive.',
  input: { job_id: jobId },
  output: JobStatusWire.shape,
  annotations: { ...write, idempotentHint: false },
  handler: async ({ job_id }, { app }) => app.orchestrator.resume(job_id),
});

export const cancelJob = defineTool({
  name: 'cancel_job',
  title: 'Cancel a job',
  description: 'Cancels a job for good: pending units are dropped and running units’ processes are killed. Results so far are kept. Cannot be undone.',
  input: { job_id: jobId },
  output: JobStatusWire.shape,
  annotations: { ...write, destructiveHint: true, idempotentHint: false },
  handler: async ({ job_id }, { app }) => app.orchestrator.cancel(job_id),
});

export const retryFailed = defineTool({
  name: 'retry_failed',
  title: 'Retry failed units',
  description: 'Gives every FAILED unit of a job a fresh set of retries; a FAILED job runs again. Check the errors with list_units first.',
  input: { job_id: jobId },
  output: { ...JobStatusWire.shape, retried: z.int().describe('How many failed units were queued again.') },
  annotations: { ...write, idempotentHint: false },
  handler: async ({ job_id }, { app }) => app.orchestrator.retryFailed(job_id),
});

export const retryUnit = defineTool({
  name: 'retry_unit',
  title: 'Run one unit again',
  description:
    'Runs one unit again with fresh retries: a FAILED or CANCELLED one, or a SUCCEEDED one to re-do it (its output is replaced). ' +
    'A COMPLETED or FAILED job runs again for it. A RUNNING unit must be stopped first (stop_unit).',
  input: { unit_id: unitId },
  output: { job: JobStatusWire, unit: UnitSummaryWire },
  annotations: { ...write, idempotentHint: false },
  handler: async ({ unit_id }, { app }) => {
    const { job, unit } = await app.orchestrator.retryUnit(unit_id);
    return { job, unit };
  },
});

export const stopUnit = defineTool({
  name: 'stop_unit',
  title: 'Stop one running unit',
  description:
    'Stops one RUNNING unit: its processes are killed. then="failed" (the default) marks it FAILED; then="pending" puts it back in the queue ' +
    'without spending a retry, to run again. The rest of the job carries on.',
  input: {
    unit_id: unitId,
    then: z.enum(['failed', 'pending']).optional().describe('What becomes of the unit: failed (default) or pending (runs again).'),
  },
  output: { job: JobStatusWire, unit: UnitSummaryWire },
  annotations: { ...write, destructiveHint: true, idempotentHint: false },
  handler: async ({ unit_id, then }, { app }) => app.orchestrator.stopUnit(unit_id, then ?? 'failed'),
});

export const controlTools = [pauseJob, resumeJob, cancelJob, retryFailed, retryUnit, stopUnit];
