import { createInterface } from 'node:readline/promises';
import type { Command, CommandContext } from '../command.js';
import { jobIdArg } from '../command.js';
import type { NextStep } from '../../domain/next-step.js';
import { cliHint } from '../hints.js';

interface Approval {
  code: string;
  context?: Record<string, unknown>;
  limits?: Record<string, number | null>;
  code_sha256: string;
  next_step: NextStep;
}

/** The code to review, with the context it will be given and the limits it runs under: its hash covers all three. */
export function codeForReview(approval: { code: string; context?: Record<string, unknown>; limits?: Record<string, number | null> }): string {
  const context = approval.context === undefined ? '' : `\n\nwith this context (ctx.context):\n${JSON.stringify(approval.context, null, 2)}`;
  const limits = approval.limits === undefined ? '' : `\n\nlimits: ${limitsText(approval.limits)}`;
  return `${approval.code}${context}${limits}`;
}

/** timeout_seconds 60, max_memory_mb 256, limit none. */
function limitsText(limits: Record<string, number | null>): string {
  return Object.entries(limits)
    .map(([k, v]) => `${k} ${v === null ? 'none' : String(v)}`)
    .join(', ');
}

/** Whether a person is at the terminal to answer a question. */
function interactive(ctx: CommandContext): boolean {
  return !ctx.json && Boolean(process.stdin.isTTY) && Boolean(process.stderr.isTTY);
}

/** Shows the code and asks the person at the terminal; the question goes to stderr, stdout stays clean. */
async function ask(approval: Approval): Promise<boolean> {
  process.stderr.write(`\nThis job runs the following code to enumerate its items:\n\n${codeForReview(approval)}\n\nsha256 ${approval.code_sha256} (of the code, its context and its limits)\n`);
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question('Run this code? Type "yes" to approve: ');
    return answer.trim().toLowerCase() === 'yes';
  } finally {
    rl.close();
  }
}

/**
 * After `abp create` made a job whose code waits for approval: ask on a terminal,
 * otherwise print the hash and the command that approves it.
 */
export async function handlePendingApproval(ctx: CommandContext, job: { job_id: number; approval: Approval }): Promise<void> {
  if (interactive(ctx) && (await ask(job.approval))) {
    const app = await ctx.app();
    const approved = await app.orchestrator.approveCode(job.job_id, job.approval.code_sha256, 'cli-prompt');
    ctx.print(`approved; job ${approved.job_id} has ${approved.total} units\nnext: abp start ${approved.job_id}`, approved);
    return;
  }
  ctx.print(
    [
      `created job ${job.job_id}, pending approval: its code runs only after a person approves it.`,
      `code sha256: ${job.approval.code_sha256}`,
      `review the code (abp approve ${job.job_id}), then: abp approve ${job.job_id} --code-sha256 ${job.approval.code_sha256}`,
    ].join('\n'),
    job,
  );
}

export const approve: Command = {
  usage: 'abp approve JOB [--code-sha256 HASH]   (without the hash: show the code and its hash)',
  options: { 'code-sha256': { type: 'string' } },
  async run(ctx) {
    const id = jobIdArg(ctx);
    const app = await ctx.app();
    const given = ctx.values['code-sha256'];
    if (typeof given === 'string') {
      const job = await app.orchestrator.approveCode(id, given, 'cli');
      ctx.print(`approved code sha256 ${given.trim().toLowerCase()}; job ${job.job_id} has ${job.total} units\nnext: abp start ${job.job_id}`, job);
      return;
    }
    const pending = await app.orchestrator.pendingApproval(id);
    if (interactive(ctx)) {
      if (await ask(pending.approval)) {
        const job = await app.orchestrator.approveCode(id, pending.approval.code_sha256, 'cli-prompt');
        ctx.print(`approved; job ${job.job_id} has ${job.total} units\nnext: abp start ${job.job_id}`, job);
      } else {
        ctx.print('not approved; the job stays pending', pending);
      }
      return;
    }
    ctx.print([`job ${id} waits for approval of this code:`, '', codeForReview(pending.approval), '', `sha256 ${pending.approval.code_sha256}`, cliHint(pending.approval.next_step)].join('\n'), pending);
  },
};
