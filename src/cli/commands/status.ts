import { readJobStatus } from '../../wire/views.js';
import type { Command } from '../command.js';
import { jobIdArg } from '../command.js';
import { statusBlock } from '../format.js';

export const status: Command = {
  usage: 'abp status JOB',
  options: {},
  async run(ctx) {
    const id = jobIdArg(ctx);
    const s = await readJobStatus(await ctx.jobs(), id, ctx.config().executorStaleMs);
    ctx.print(statusBlock(s), s);
  },
};
