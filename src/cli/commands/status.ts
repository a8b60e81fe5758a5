import { jobStatus } from '../../wire/views.js';
import type { Command } from '../command.js';
import { jobIdArg } from '../command.js';
import { statusBlock } from '../format.js';

export const status: Command = {
  usage: 'abp status JOB',
  options: {},
  async run(ctx) {
    const id = jobIdArg(ctx);
    const s = jobStatus(await (await ctx.jobs()).requireJob(id));
    ctx.print(statusBlock(s), s);
  },
};
