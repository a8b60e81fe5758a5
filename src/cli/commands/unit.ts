import type { Command } from '../command.js';
import { positiveInt, usage } from '../command.js';

export const unit: Command = {
  usage: 'abp unit UNIT_ID',
  options: {},
  async run(ctx) {
    const raw = ctx.positionals[0];
    if (raw === undefined) throw usage('missing argument UNIT_ID');
    const app = await ctx.app();
    const u = await app.orchestrator.unit(positiveInt(raw, 'UNIT_ID'));
    const human = [
      `unit ${u.unit_id} of job ${u.job_id} (item ${u.item_id}): ${u.status}, attempt ${u.attempt}`,
      `payload: ${JSON.stringify(u.payload)}`,
      ...(u.prompt ? ['--- prompt ---', u.prompt] : []),
      ...(u.output !== null ? ['--- output ---', u.output] : []),
      ...(u.error ? [`error: ${u.error}`] : []),
      ...(u.stderr_tail ? ['--- stderr (tail) ---', u.stderr_tail] : []),
    ].join('\n');
    ctx.print(human, u);
  },
};
