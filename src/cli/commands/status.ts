import { batchesView, executorsView, jobStatus, waitsForExecutor } from '../../wire/views.js';
import type { Command } from '../command.js';
import { jobIdArg } from '../command.js';
import { statusBlock } from '../format.js';

export const status: Command = {
  usage: 'abp status JOB',
  options: {},
  async run(ctx) {
    const id = jobIdArg(ctx);
    const reader = await ctx.jobs();
    const job = await reader.requireJob(id);
    const s = {
      ...jobStatus(job),
      executors: executorsView(job, waitsForExecutor(job) ? await reader.executors() : [], ctx.config().executorStaleMs),
      batches: batchesView(await reader.jobBatches(id)),
    };
    ctx.print(statusBlock(s), s);
  },
};
