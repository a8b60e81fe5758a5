import { batchesView, executorsView, jobStatus, mayHaveBatches, waitsForExecutor } from '../../wire/views.js';
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
      batches: mayHaveBatches(job) ? batchesView(await reader.jobBatches(id)) : null,
    };
    ctx.print(statusBlock(s), s);
  },
};
