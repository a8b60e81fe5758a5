import { z } from 'zod';
import { JobStatusWire } from '../../wire/schemas.js';
import { mcpHint } from '../hints.js';
import { canElicit, defineTool, jobId, type ToolContext } from '../tool.js';

const Approval = z.looseObject({
  status: z.string(),
  code: z.string().optional(),
  context: z.record(z.string(), z.unknown()).optional(),
  code_sha256: z.string().optional(),
  next: z.string().optional(),
});

/**
 * Dynamic enumerator code runs only after a person approved its exact hash. Where
 * the client supports elicitation, the person is asked directly, with the code
 * in front of them.
 */
export async function askPersonToApproveCode(ctx: ToolContext, jobId: number, code: string, sha256: string, context?: Record<string, unknown>): Promise<boolean> {
  if (!canElicit(ctx)) return false;
  // The hash covers the code only, so the person sees the values it will be given beside it.
  const given = context === undefined ? '' : `\n\nwith this context (ctx.context; not part of the sha256):\n${JSON.stringify(context, null, 2).slice(0, 8000)}`;
  try {
    const reply = await ctx.server.server.elicitInput({
      message: `Job ${jobId} wants to run this enumerator code (sha256 ${sha256}):\n\n${code.slice(0, 8000)}${given}\n\nRun it?`,
      requestedSchema: {
        type: 'object',
        properties: { approve: { type: 'boolean', title: 'Run this code', description: 'Only if you have read it and trust it.' } },
        required: ['approve'],
      },
    });
    return reply.action === 'accept' && reply.content?.approve === true;
  } catch {
    return false;
  }
}

export const approveCode = defineTool({
  name: 'approve_code',
  title: 'Approve a job’s dynamic code',
  description:
    'Runs the enumeration of a dynamic job whose code waits for approval. The code runs only with the sha256 of the exact code a PERSON reviewed: ' +
    'show the code and its hash to the user and pass code_sha256 only after they confirmed it. Without code_sha256, returns the code, the context it is given (not part of the hash) and the hash to show (or asks the person directly where the client supports it).',
  input: {
    job_id: jobId,
    code_sha256: z.string().optional().describe('The sha256 the person confirmed, 64 hex digits. Changed code has a different hash and needs a new approval.'),
  },
  output: { ...JobStatusWire.shape, approval: Approval.optional() },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
  async handler({ job_id, code_sha256 }, ctx) {
    const { orchestrator } = ctx.app;
    if (code_sha256) return orchestrator.approveCode(job_id, code_sha256, 'mcp') as never;
    const pending = await orchestrator.pendingApproval(job_id);
    const code = pending.approval.code ?? '';
    if (await askPersonToApproveCode(ctx, job_id, code, pending.approval.code_sha256, pending.approval.context)) {
      return orchestrator.approveCode(job_id, pending.approval.code_sha256, 'person via MCP elicitation') as never;
    }
    return { ...pending, approval: { ...pending.approval, next: mcpHint(pending.approval.next_step) } } as never;
  },
});

export const approvalTools = [approveCode];
