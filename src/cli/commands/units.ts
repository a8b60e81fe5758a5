import { UNIT_STATES } from '../../domain/states.js';
import type { Command } from '../command.js';
import { enumFlag, intFlag, jobIdArg } from '../command.js';
import { table } from '../format.js';

export const units: Command = {
  usage: 'abp units JOB [--status STATE[,STATE]] [--limit N] [--offset N]',
  options: { status: { type: 'string', multiple: true }, limit: { type: 'string' }, offset: { type: 'string' } },
  async run(ctx) {
    const app = await ctx.app();
    const list = await app.orchestrator.listUnits(
      jobIdArg(ctx),
      { status: enumFlag(ctx, 'status', UNIT_STATES) },
      { limit: intFlag(ctx, 'limit', 1) ?? 100, offset: intFlag(ctx, 'offset', 0) ?? 0 },
    );
    ctx.print(list.length ? table(list, ['unit_id', 'item_id', 'status', 'attempt', 'duration_ms', 'error']) : 'no units', list);
  },
};
