import { z } from 'zod';
import { JobSpec } from '../../domain/job-spec.js';
import { JobDetailWire, JobStatusWire, UnitDetailWire } from '../../domain/wire.js';
import type { StartResult } from '../../orchestrator/orchestrator.js';
import { canElicit, defineTool, flag, jobId, jsonObject, toObject, truthy, type Extra, type ToolContext } from '../tool.js';
import { askPersonToApproveCode } from './approval.js';

const field = JobSpec.shape;
const count = (d: string) => z.coerce.number().int().optional().describe(d);

/** The JobSpec as tool input: shared by create_job and preview_job. */
export const specInput = {
  name: field.name,
  user_intent: field.user_intent,
  // Optional so that a sync job (job type sync: the `sync` section) can leave it out; a batch job still needs it.
  enumerator_type: field.enumerator_type.optional(),
  enumerator_config: jsonObject("The enumerator's settings, e.g. {\"base_directory\": \"docs\", \"pattern\": \"**/*.md\"} for file; see list_enumerators.").optional(),
  worker_type: field.worker_type.optional(),
  worker_config: jsonObject("The worker's settings, e.g. {\"command\": \"wc\", \"args\": [\"{{item.file_path}}\"]} for shell.").optional(),
  max_workers: count('Units of this job that may run at once (default 4).'),
  max_retries: count('Retries of a failed unit before it is FAILED (default 3).'),
  timeout_seconds: z.coerce.number().positive().optional().describe('Time limit for one attempt of one unit (default 600).'),
  output_schema: jsonObject('A JSON Schema each unit’s answer should follow.').optional(),
  max_cost_usd: z.coerce.number().positive().optional().describe(field.max_cost_usd.description ?? ''),
  post_processing_prompt: field.post_processing_prompt,
  allow_partial: flag('Run the synthesis step even when some units failed.'),
  auto_resume: flag('Resume by itself when a worker’s quota resets.'),
  prompt_template: field.prompt_template,
  sync: jsonObject(
    'Makes this a sync job (job type sync): {source, target, mode: one-way|two-way, options, transform?}. Providers: ' +
      '{type: dir, path} | {type: jsonl|json, path, id_field} | {type: csv, path, id_column} | {type: sqlite, path, table} | {type: postgres, url, table}. ' +
      'enumerator_type and worker_type are then left out; preview_job shows the plan (a dry run); the first chunk of writes is the test unit.',
  ).optional(),
};

/** Tool arguments back into a JobSpec: drops absent fields, parses JSON strings. */
export function toSpec(args: Record<string, unknown>): Record<string, unknown> {
  const spec: Record<string, unknown> = Object.fromEntries(Object.entries(args).filter(([, v]) => v !== undefined));
  for (const key of ['enumerator_config', 'worker_config', 'output_schema', 'sync'] as const) {
    if (spec[key] !== undefined) spec[key] = toObject(spec[key], key);
  }
  for (const key of ['allow_partial', 'auto_resume'] as const) {
    if (spec[key] !== undefined) spec[key] = truthy(spec[key] as boolean | 'true' | 'false');
  }
  return spec;
}

export const createJob = defineTool({
  name: 'create_job',
  title: 'Create a batch job',
  description:
    'Creates a job that applies one instruction (user_intent) to every item an enumerator yields, e.g. every file matching a glob or every CSV row. ' +
    'Use preview_job first when unsure of the config. The job starts in CREATED; call start_job next to run one test unit. ' +
    'A dynamic enumerator returns approval.status pending_approval: its code runs only after a person approves its hash (approve_code). ' +
    'With a `sync` section instead of an enumerator, it creates a sync job that keeps a target inventory in step with a source (the plan is made now; its units are the writes).',
  input: specInput,
  output: { ...JobDetailWire.shape, approval: z.looseObject({ status: z.string() }).optional() },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  async handler(args, ctx) {
    const job = (await ctx.app.orchestrator.createJob(toSpec(args))) as Awaited<ReturnType<typeof ctx.app.orchestrator.createJob>> & {
      approval?: { code?: string; code_sha256?: string };
    };
    const approval = job.approval;
    if (approval?.code_sha256 && (await askPersonToApproveCode(ctx, job.job_id, approval.code ?? '', approval.code_sha256))) {
      await ctx.app.orchestrator.approveCode(job.job_id, approval.code_sha256, 'person via MCP elicitation');
      return ctx.app.orchestrator.getJob(job.job_id);
    }
    return job;
  },
});

const StartOutput = {
  job: JobStatusWire,
  test_unit: UnitDetailWire.nullable().describe('The test unit, with its output, while the job is TESTING.'),
  next: z.string().describe('What to do next.'),
  approval: z.enum(['approved_by_person', 'rejected_by_person', 'not_asked', 'declined']).describe('How the person answered, if they were asked directly.'),
};

const MAX_WAIT = 50;

export const startJob = defineTool({
  name: 'start_job',
  title: 'Start, test, approve or reject a job',
  description:
    'Starts a CREATED job by running ONE test unit in the background executor, and returns its result (or TESTING, if it is still running: call again to poll). ' +
    'Show the test output to the user and let THEM decide: pass approve=true only after the user approved, or reject=true to go back to CREATED and edit the prompt. ' +
    'skip_test runs every unit at once, without a test. Never blocks longer than wait_seconds.',
  input: {
    job_id: jobId,
    approve: flag('Approve the finished test unit and run every other unit. Only when the user said so.'),
    reject: flag('Reject the finished test unit: the job returns to CREATED so the prompt can be edited with update_job.'),
    skip_test: flag('Skip the test unit and run every unit now.'),
    wait_seconds: z.coerce.number().min(0).max(MAX_WAIT).optional().describe(`How long to wait for the test unit (default 5, at most ${MAX_WAIT}).`),
  },
  output: StartOutput,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler(args, ctx, extra) {
    const { orchestrator } = ctx.app;
    const wait = args.wait_seconds ?? 5;
    const approve = truthy(args.approve);
    if (approve && canElicit(ctx)) {
      const current = await orchestrator.startState(args.job_id);
      if (current.job.status === 'TESTING') {
        const answer = await askPerson(ctx, current);
        if (answer === 'reject') return decided(await orchestrator.start(args.job_id, { reject: true }), answer);
        if (answer === 'wait') return decided(current, answer);
      }
    }
    let result = await orchestrator.start(args.job_id, {
      approve,
      reject: truthy(args.reject),
      skipTest: truthy(args.skip_test),
    });
    result = await waitWithProgress(ctx, extra, args.job_id, wait, result);
    const testDone = result.job.status === 'TESTING' && result.test_unit && !['PENDING', 'RUNNING'].includes(result.test_unit.status);
    if (testDone && !approve && canElicit(ctx)) {
      const answer = await askPerson(ctx, result);
      if (answer === 'approve' || answer === 'reject') {
        const after = await orchestrator.start(args.job_id, answer === 'approve' ? { approve: true } : { reject: true });
        return decided(after, answer);
      }
      return decided(result, answer);
    }
    return {
      ...result,
      approval: approve ? 'approved_by_person' : 'not_asked',
      next: testDone
        ? `${result.next} Do not approve on your own: show the test output to the user and wait for their answer.`
        : result.next,
    } as never;
  },
});

type Answer = 'approve' | 'reject' | 'wait';

function decided(result: StartResult, answer: Answer) {
  return {
    ...result,
    approval: answer === 'approve' ? 'approved_by_person' : answer === 'reject' ? 'rejected_by_person' : 'declined',
    next: answer === 'wait' ? `The person did not approve yet; the job stays ${result.job.status}. ${result.next}` : result.next,
  } as never;
}

/** Approval belongs to the person: ask them directly, with the test output in front of them. */
async function askPerson(ctx: ToolContext, result: StartResult): Promise<Answer> {
  const t = result.test_unit;
  const shown = t ? `${t.status}${t.output ? `\n\n${t.output.slice(0, 2000)}` : ''}${t.error ? `\n\nerror: ${t.error}` : ''}` : 'no test unit';
  try {
    const reply = await ctx.server.server.elicitInput({
      message: `Job ${result.job.job_id} "${result.job.name}" ran its test unit on item ${t?.item_id ?? '?'}:\n\n${shown}\n\nRun the remaining ${result.job.total - 1} units?`,
      requestedSchema: {
        type: 'object',
        properties: {
          decision: {
            type: 'string',
            title: 'Decision',
            enum: ['approve', 'reject', 'wait'],
            description: 'approve: run every unit; reject: back to CREATED to edit the prompt; wait: decide later',
          },
        },
        required: ['decision'],
      },
    });
    if (reply.action !== 'accept') return 'wait';
    const decision = reply.content?.decision;
    return decision === 'approve' || decision === 'reject' ? decision : 'wait';
  } catch {
    return 'wait';
  }
}

/** Polls until the job settles or the wait ends, sending progress notifications if the client asked for them. */
async function waitWithProgress(ctx: ToolContext, extra: Extra, id: number, seconds: number, initial: StartResult): Promise<StartResult> {
  if (seconds <= 0) return initial;
  const token = extra._meta?.progressToken;
  let step = 0;
  await ctx.app.orchestrator.waitUntilSettled(id, seconds * 1000, (job) => {
    if (token === undefined) return;
    const done = job.succeeded + job.failed + job.cancelled;
    void extra
      .sendNotification({
        method: 'notifications/progress',
        params: { progressToken: token, progress: ++step, message: `job ${id} is ${job.status}: ${done}/${job.total} done` },
      })
      .catch(() => undefined);
  });
  return { ...(await ctx.app.orchestrator.startState(id)), executor: initial.executor };
}

export const updateJob = defineTool({
  name: 'update_job',
  title: 'Edit a CREATED job',
  description:
    'Changes the prompt template, intent or name of a job that is CREATED (new, or after its test unit was rejected), then call start_job to test again; or raises the budget of any job that has not ended.',
  input: {
    job_id: jobId,
    prompt_template: z.string().min(1).optional().describe('The new prompt template; placeholders {{intent}}, {{item.FIELD}}, {{item_data}}, {{job.name}}.'),
    user_intent: z.string().min(1).optional().describe('The new instruction applied to every item.'),
    name: z.string().min(1).optional().describe('A new name.'),
    max_cost_usd: z.coerce.number().positive().optional().describe('A new budget, on any job that has not ended; then resume_job a job paused for budget_exhausted.'),
    auto_resume: flag('Resume by itself when a worker’s quota resets.'),
  },
  output: JobDetailWire.shape,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
  async handler(args, { app }) {
    const { job_id, auto_resume, ...fields } = args;
    return app.orchestrator.updateJob(job_id, {
      ...Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)),
      ...(auto_resume !== undefined ? { auto_resume: truthy(auto_resume) } : {}),
    });
  },
});

export const jobTools = [createJob, startJob, updateJob];
