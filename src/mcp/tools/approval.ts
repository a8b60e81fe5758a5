import { z } from 'zod';
import { JobStatusWire } from '../../wire/schemas.js';
import { mcpHint } from '../hints.js';
import { canElicit, defineTool, jobId, type ToolContext } from '../tool.js';

const Approval = z.looseObject({
  status: z.string(),
  code: z.string().optional(),
  context: z.record(z.string(), z.unknown()).optional(),
  limits: z.record(z.string(), z.unknown()).optional(),
  code_sha256: z.string().optional(),
  next: z.string().optional(),
});

/** What a pending job's code is shown with. */
export interface CodeForApproval {
  code: string;
  code_sha256: string;
  context?: Record<string, unknown>;
  limits?: Record<string, unknown>;
}

/** The person's answer: approve, refuse (they said no: final), or none (no dialog, or it was cancelled). */
export type CodeDecision = 'approve' | 'refuse' | 'no_answer' | 'not_asked';

/** Who decided, as recorded with the approval or the refusal. */
export const BY_PERSON_DIALOG = 'person via MCP elicitation';

/**
 * Dynamic enumerator code runs only after a person approved its exact hash. Where
 * the client supports elicitation, the person is asked directly, with the code,
 * its context and its limits (all three under the hash) in front of them.
 * `decline`, or an accept without the box ticked, is their no.
 */
export async function askPersonToApproveCode(ctx: ToolContext, jobId: number, approval: CodeForApproval): Promise<CodeDecision> {
  if (!canElicit(ctx)) return 'not_asked';
  const given = approval.context === undefined ? '' : `\n\nwith this context (ctx.context):\n${JSON.stringify(approval.context, null, 2).slice(0, 8000)}`;
  const limits = approval.limits === undefined ? '' : `\n\nlimits: ${limitsText(approval.limits)}`;
  try {
    const reply = await ctx.server.server.elicitInput({
      message: `Job ${jobId} wants to run this enumerator code:\n\n${approval.code.slice(0, 8000)}${given}${limits}\n\nsha256 ${approval.code_sha256} (of the code, its context and its limits)\n\nRun it? Saying no is final for this job.`,
      requestedSchema: {
        type: 'object',
        properties: { approve: { type: 'boolean', title: 'Run this code', description: 'Only if you have read it and trust it.' } },
        required: ['approve'],
      },
    });
    if (reply.action === 'accept') return reply.content?.approve === true ? 'approve' : 'refuse';
    return reply.action === 'decline' ? 'refuse' : 'no_answer';
  } catch {
    return 'no_answer';
  }
}

/** timeout_seconds 60, max_memory_mb 256, limit none. */
export function limitsText(limits: Record<string, unknown>): string {
  return Object.entries(limits)
    .map(([k, v]) => `${k} ${v === null || v === undefined ? 'none' : String(v)}`)
    .join(', ');
}

/** What the assistant is told once a person refused a job's code. */
export function refusedHint(jobId: number): string {
  return `The person refused this code in the dialog: job ${jobId} is cancelled, and no approval of it will be accepted. Do not try to run this code; ask the user what they want instead (a new job asks them again).`;
}

export const approveCode = defineTool({
  name: 'approve_code',
  title: 'Approve a job’s dynamic code',
  description:
    'Runs the enumeration of a dynamic job whose code waits for approval. The code runs only with the sha256 a PERSON reviewed, which covers the code, its context and its limits: ' +
    'show them and the hash to the user and pass code_sha256 only after they confirmed it. Where the client supports it, the person is asked directly (with or without code_sha256); ' +
    'if they say no, the job is cancelled and can never be approved. Without code_sha256 (and no dialog), returns the code, its context, its limits and the hash to show.',
  input: {
    job_id: jobId,
    code_sha256: z
      .string()
      .optional()
      .describe('The sha256 the person confirmed, 64 hex digits. Changed code, context or limits have a different hash and need a new approval.'),
  },
  output: { ...JobStatusWire.shape, approval: Approval.optional() },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler({ job_id, code_sha256 }, ctx) {
    const { orchestrator } = ctx.app;
    const given = code_sha256?.trim().toLowerCase();
    // A malformed hash, or one that is not this job's, is refused (by approveCode, with its message) before anyone is asked.
    if (code_sha256 !== undefined && !/^[0-9a-f]{64}$/.test(given ?? '')) return orchestrator.approveCode(job_id, code_sha256, 'mcp') as never;
    const pending = await orchestrator.pendingApproval(job_id);
    if (code_sha256 && given !== pending.approval.code_sha256) return orchestrator.approveCode(job_id, code_sha256, 'mcp') as never;
    const decision = await askPersonToApproveCode(ctx, job_id, { ...pending.approval, code: pending.approval.code ?? '' });
    if (decision === 'approve') return orchestrator.approveCode(job_id, pending.approval.code_sha256, BY_PERSON_DIALOG) as never;
    if (decision === 'refuse') {
      const refused = await orchestrator.refuseCode(job_id, BY_PERSON_DIALOG);
      return { ...refused, approval: { ...refused.approval, next: refusedHint(job_id) } } as never;
    }
    // No dialog, or no answer in it: the assistant's hash stands, on the user's word.
    if (code_sha256) return orchestrator.approveCode(job_id, code_sha256, 'mcp') as never;
    return { ...pending, approval: { ...pending.approval, next: mcpHint(pending.approval.next_step) } } as never;
  },
});

export const approvalTools = [approveCode];
