import { JOB_STATES } from '../../domain/states.js';
import { jobStatus } from '../../wire/views.js';
import type { Command } from '../command.js';
import { enumFlag, intFlag } from '../command.js';
import { table } from '../format.js';

export const list: Command = {
  usage: 'abp list [--status STATE[,STATE]] [--limit N] [--offset N]',
  options: { status: { type: 'string', multiple: true }, limit: { type: 'string' }, offset: { type: 'string' } },
  async run(ctx) {
    const filter = { status: enumFlag(ctx, 'status', JOB_STATES) };
    const page = { limit: intFlag(ctx, 'limit', 1) ?? 50, offset: intFlag(ctx, 'offset', 0) ?? 0 };
    const jobs = (await (await ctx.jobs()).listJobs(filter, page)).map(jobStatus);
    const rows = jobs.map((j) => ({
      id: j.job_id,
      name: j.name,
      status: j.status,
      done: `${j.counts.succeeded + j.counts.failed + j.counts.cancelled}/${j.total}`,
      failed: j.counts.failed,
      worker: j.worker_type,
      created: j.created_at,
    }));
    ctx.print(jobs.length ? table(rows, ['id', 'name', 'status', 'done', 'failed', 'worker', 'created']) : 'no jobs', jobs);
  },
};
