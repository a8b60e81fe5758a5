import type { Command } from '../command.js';
import { jobIdArg } from '../command.js';
import { statusBlock } from '../format.js';

export const status: Command = {
  name: 'status',
  summary: 'Show a job’s state, counts, cost, rate and ETA.',
  usage: 'abp status JOB',
  options: {},
  async run(ctx) {
    const app = await ctx.app();
    const s = await app.orchestrator.status(jobIdArg(ctx));
    ctx.print(statusBlock(s), s);
  },
};
