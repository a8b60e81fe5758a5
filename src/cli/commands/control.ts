import type { Command, CommandContext } from '../command.js';
import { jobIdArg } from '../command.js';
import { statusLine } from '../format.js';
import type { JobStatus } from '../../orchestrator/views.js';
import type { Orchestrator } from '../../orchestrator/orchestrator.js';

/** pause, resume, cancel and retry share one shape: a job id in, the job's status out. */
function control(name: string, act: (o: Orchestrator, id: number) => Promise<JobStatus & { retried?: number }>): Command {
  return {
    usage: `abp ${name} JOB`,
    options: {},
    async run(ctx: CommandContext) {
      const app = await ctx.app();
      const s = await act(app.orchestrator, jobIdArg(ctx));
      ctx.print(`${s.retried !== undefined ? `retrying ${s.retried} failed units\n` : ''}${statusLine(s)}`, s);
    },
  };
}

export const pause = control('pause', (o, id) => o.pause(id));
export const resume = control('resume', (o, id) => o.resume(id));
export const cancel = control('cancel', (o, id) => o.cancel(id));
export const retry = control('retry', (o, id) => o.retryFailed(id));
