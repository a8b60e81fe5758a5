import { z } from 'zod';
import { JobSpec } from '../../domain/job-spec.js';
import { JobDetailWire, JobStatusWire, UnitDetailWire } from '../../wire/schemas.js';
import type { StartResult } from '../../orchestrator/job-start.js';
import { AbpError } from '../../domain/errors.js';
import type { NextStep } from '../../domain/next-step.js';
import { isTerminalUnit } from '../../domain/states.js';
import { mcpHint } from '../hints.js';
import { canElicit, defineTool, flag, jobId, jsonObject, toObject, truthy, type Extra, type ToolContext } from '../tool.js';
import { fitUnit } from './inspect.js';
import { askPersonToApproveCode, BY_PERSON_DIALOG, refusedHint } from './approval.js';

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
  max_cost_per_unit_usd: z.coerce.number().positive().optional().describe(field.max_cost_per_unit_usd.description ?? ''),
  cache: flag(field.cache.description ?? ''),
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
  for (const key of ['allow_partial', 'auto_resume', 'cache'] as const) {
    if (spec[key] !== undefined) spec[key] = truthy(spec[key] as boolean | 'true' | 'false');
  }
  return spec;
}

export const createJob = defineTool({
  name: 'create_job',
  title: 'Create a batch job',
  description:
    'Creates a job that applies one instruction (user_intent) to every item an enumerator yields, e.g. every file matching a glob or every CSV row. ' +
    'With no worker_type, Claude Code does the work and may only read files in its working directory (the item’s folder for file items) unless worker_config.allowed_tools grants more. ' +
    'Use preview_job first when unsure of the config. The job starts in CREATED; call start_job next to run one test unit. ' +
    'A dynamic enumerator returns approval.status pending_approval: its code runs only after a person approves its hash, of the code with its context and limits (approve_code); ' +
    'where the client can show a dialog the person is asked at once, and if they say no the job is cancelled for good (approval.status code_refused). ' +
    'With a `sync` section instead of an enumerator, it creates a sync job that keeps a target inventory in step with a source (the plan is made now; its units are the writes).',
  input: specInput,
  output: { ...JobDetailWire.shape, approval: z.looseObject({ status: z.string() }).optional(), next: z.string().describe('What to do next, naming the tools to call.') },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  async handler(args, ctx) {
    const job = (await ctx.app.orchestrator.createJob(toSpec(args))) as Awaited<ReturnType<typeof ctx.app.orchestrator.createJob>> & {
      approval?: { code?: string; context?: Record<string, unknown>; limits?: Record<string, unknown>; code_sha256?: string; next_step?: NextStep };
    };
    const approval = job.approval;
    const decision = approval?.code_sha256 ? await askPersonToApproveCode(ctx, job.job_id, { ...approval, code: approval.code ?? '', code_sha256: approval.code_sha256 }) : 'not_asked';
    if (approval?.code_sha256 && decision === 'approve') {
      await ctx.app.orchestrator.approveCode(job.job_id, approval.code_sha256, BY_PERSON_DIALOG);
      return { ...(await ctx.app.orchestrator.getJob(job.job_id)), next: mcpHint({ action: 'start', job_id: job.job_id }) };
    }
    if (decision === 'refuse') {
      // The person said no: final for this job, whatever is called next.
      const refused = await ctx.app.orchestrator.refuseCode(job.job_id, BY_PERSON_DIALOG);
      return { ...(await ctx.app.orchestrator.getJob(job.job_id)), approval: { ...refused.approval, next: refusedHint(job.job_id) }, next: refusedHint(job.job_id) } as never;
    }
    if (approval?.next_step) return { ...job, approval: { ...approval, next: mcpHint(approval.next_step) }, next: mcpHint(approval.next_step) } as never;
    return { ...job, next: mcpHint({ action: 'start', job_id: job.job_id }) } as never;
  },
});

const DECISIONS = ['approved_by_person', 'approved_by_assistant', 'rejected_by_person', 'declined_by_person', 'no_answer', 'not_asked'] as const;
type Decision = (typeof DECISIONS)[number];

const StartOutput = {
  job: JobStatusWire,
  test_unit: UnitDetailWire.nullable().describe('The test unit with its output (long fields cut to fit), while the job is TESTING or right after it was approved.'),
  decision: z
    .enum(DECISIONS)
    .describe(
      'What happened to the approval in this call: approved_by_person (in the host’s dialog), approved_by_assistant (approve=true, the host gave no answer), ' +
        'rejected_by_person, declined_by_person (the person said no in the dialog), no_answer (the host did not show the dialog), not_asked.',
    ),
  next: z.string().describe('What to do next, naming the tools to call.'),
  next_step: z.looseObject({ action: z.string() }).describe('The same, as data.'),
  executor_note: z
    .string()
    .optional()
    .describe('Which live executor lacked an environment variable the job needs (e.g. started before ANTHROPIC_API_KEY was set), and what was done: a fresh executor runs the job. Tell the user.'),
};

const MAX_WAIT = 50;
/** Who approved, as recorded on the job and shown in its status, events and dashboard. */
export const BY_PERSON = 'person (dialog)';
export const BY_ASSISTANT = "assistant (on the user's word)";

export const startJob = defineTool({
  name: 'start_job',
  title: 'Start, test, approve or reject a job',
  description:
    'Starts a CREATED job by running ONE test unit in the background executor, and returns its result (or TESTING while it runs: call again to wait). ' +
    'When the test unit has finished, the person is asked directly where the host can show a dialog. Otherwise show the test output to the user and let THEM decide: ' +
    'pass approve=true only after the user approved, or reject=true to go back to CREATED and edit the prompt with update_job. ' +
    'skip_test=true runs every unit without a test; it needs the same approval as a test unit (the person is asked, or the user must have said so). ' +
    'Never blocks longer than wait_seconds. The job records who approved.',
  input: {
    job_id: jobId,
    approve: flag('Approve the finished test unit and run every other unit. Only when the user said so.'),
    reject: flag('Reject the finished test unit: the job returns to CREATED so the prompt can be edited with update_job.'),
    skip_test: flag('Skip the test unit and run every unit now. Only when the user said so.'),
    wait_seconds: z.coerce.number().min(0).max(MAX_WAIT).optional().describe(`How long to wait for the test unit (default 5, at most ${MAX_WAIT}).`),
  },
  output: StartOutput,
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler(args, ctx, extra) {
    const { orchestrator } = ctx.app;
    const id = args.job_id;
    const wait = args.wait_seconds ?? 5;
    const [approve, reject, skipTest] = [truthy(args.approve), truthy(args.reject), truthy(args.skip_test)];
    if (Number(approve) + Number(reject) + Number(skipTest) > 1) throw new AbpError('invalid_input', 'approve, reject and skip_test: choose one');

    if (reject) return answer(await orchestrator.reject(id), 'not_asked');

    if (skipTest) {
      const current = await orchestrator.startState(id);
      let decision: Decision = 'approved_by_assistant';
      if (current.job.status === 'CREATED') {
        const asked = await askPerson(ctx, current, 'skip');
        if (asked === 'reject' || asked === 'wait' || asked === 'declined') return answer(current, asked === 'declined' ? 'declined_by_person' : 'not_asked');
        if (asked === 'approve') decision = 'approved_by_person';
      }
      const started = await orchestrator.skipTest(id, { approvedBy: decision === 'approved_by_person' ? BY_PERSON : BY_ASSISTANT });
      return answer(await waitWithProgress(ctx, extra, id, wait, started), decision);
    }

    // A plain start (or a start on a job that is not waiting for approval) runs the test unit or makes sure an executor runs.
    let result = await orchestrator.startState(id);
    if (!approve || result.job.status !== 'TESTING') result = approve ? await orchestrator.approve(id) : await orchestrator.startTest(id);
    result = await waitWithProgress(ctx, extra, id, wait, result);
    const test = result.test_unit;
    if (result.job.status !== 'TESTING' || !test || !isTerminalUnit(test.status)) return answer(result, 'not_asked');

    // The test unit has finished: the decision belongs to the person. Ask them once, where the host can.
    const asked = (await alreadyAsked(ctx, result)) ? 'not_asked' : await askPerson(ctx, result, 'approve');
    if (asked === 'approve') return answer(await approveWithTest(ctx, id, BY_PERSON, result), 'approved_by_person');
    if (asked === 'reject') return answer(await orchestrator.reject(id), 'rejected_by_person');
    if (asked === 'declined' || asked === 'wait') return answer(result, 'declined_by_person');
    // No answer from the host (it cancelled the dialog, or has none): the assistant's approve=true stands, on the user's word.
    if (approve) return answer(await approveWithTest(ctx, id, BY_ASSISTANT, result), 'approved_by_assistant');
    return answer(result, asked === 'no_answer' ? 'no_answer' : 'not_asked');
  },
});

/** Approves, and keeps the test unit in the answer: the assistant is told to show it whichever way it was approved. */
async function approveWithTest(ctx: ToolContext, id: number, approvedBy: string, tested: StartResult): Promise<StartResult> {
  const after = await ctx.app.orchestrator.approve(id, { approvedBy });
  return { ...after, test_unit: tested.test_unit };
}

function answer(result: StartResult, decision: Decision) {
  const { executor, ...rest } = result;
  return {
    ...rest,
    ...(executor?.note ? { executor_note: executor.note } : {}),
    test_unit: result.test_unit ? fitUnit(result.test_unit) : null,
    decision,
    next: mcpHint(result.next_step),
    next_step: result.next_step,
  } as never;
}

type Asked = 'approve' | 'reject' | 'wait' | 'declined' | 'no_answer' | 'not_asked';

/** Whether the person was already asked about this attempt of the test unit (one decision, one question). */
async function alreadyAsked(ctx: ToolContext, result: StartResult): Promise<boolean> {
  const t = result.test_unit;
  const job = await ctx.app.repo.requireJob(result.job.job_id);
  if (!t || !job.approval_asked) return false;
  const asked = JSON.parse(job.approval_asked) as { unit_id?: number; attempt?: number };
  return asked.unit_id === t.unit_id && asked.attempt === t.attempt;
}

/**
 * Asks the person directly, with the test output in front of them. `accept`
 * carries their answer; `decline` is their no; `cancel`, an error or a host
 * without dialogs is no answer. The question is recorded, so it is never asked twice.
 */
async function askPerson(ctx: ToolContext, result: StartResult, what: 'approve' | 'skip'): Promise<Asked> {
  if (!canElicit(ctx)) return 'not_asked';
  const t = result.test_unit;
  const job = result.job;
  const shown = t ? `${t.status}${t.output ? `\n\n${t.output.slice(0, 2000)}` : ''}${t.error ? `\n\nerror: ${t.error.slice(0, 1000)}` : ''}` : '';
  const message =
    what === 'skip'
      ? `Job ${job.job_id} "${job.name}": run all ${job.total} units now, without a test unit first?`
      : `Job ${job.job_id} "${job.name}" ran its test unit on item ${t?.item_id ?? '?'}:\n\n${shown}\n\n${t?.status === 'FAILED' ? `Run all ${job.total} units anyway (the test unit again among them)?` : `Run the remaining ${job.total - 1} units?`}`;
  let asked: Asked;
  try {
    const reply = await ctx.server.server.elicitInput({
      message,
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
    const decision = reply.content?.decision;
    if (reply.action === 'accept') asked = decision === 'approve' || decision === 'reject' ? decision : 'wait';
    else asked = reply.action === 'decline' ? 'declined' : 'no_answer';
  } catch {
    asked = 'no_answer';
  }
  if (t && what === 'approve') {
    await ctx.app.repo.updateJobFields(job.job_id, ['TESTING'], { approval_asked: JSON.stringify({ unit_id: t.unit_id, attempt: t.attempt, answer: asked }) });
  }
  await ctx.app.repo.appendEvent(job.job_id, 'approval', { asked: what, answer: asked, unit_id: t?.unit_id ?? null });
  return asked;
}

/**
 * Polls until the job settles or the wait ends. Progress goes to clients that
 * asked for it, only when something changed and at most once a second.
 */
async function waitWithProgress(ctx: ToolContext, extra: Extra, id: number, seconds: number, initial: StartResult): Promise<StartResult> {
  if (seconds <= 0) return initial;
  const token = extra._meta?.progressToken;
  let sent = '';
  let sentAt = 0;
  await ctx.app.orchestrator.waitUntilSettled(id, seconds * 1000, (job) => {
    if (token === undefined) return;
    const done = job.succeeded + job.failed + job.cancelled;
    const message = `job ${id} is ${job.status}: ${done}/${job.total} done`;
    if (message === sent || Date.now() - sentAt < 1000) return;
    [sent, sentAt] = [message, Date.now()];
    void extra
      .sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress: done, total: job.total, message } })
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
