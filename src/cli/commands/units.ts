import { UNIT_STATES } from '../../domain/states.js';
import type { Command } from '../command.js';
import { enumFlag, intFlag, jobIdArg } from '../command.js';
import { table } from '../format.js';

export const units: Command = {
  usage: 'abp units JOB [--status STATE[,STATE]] [--limit N] [--after UNIT_ID | --offset N]',
  options: { status: { type: 'string', multiple: true }, limit: { type: 'string' }, offset: { type: 'string' }, after: { type: 'string' } },
  async run(ctx) {
    const app = await ctx.app();
    const id = jobIdArg(ctx);
    const limit = intFlag(ctx, 'limit', 1) ?? 100;
    const after = intFlag(ctx, 'after', 0);
    const status = enumFlag(ctx, 'status', UNIT_STATES);
    const list = await app.orchestrator.listUnits(id, { status }, { limit, offset: intFlag(ctx, 'offset', 0) ?? 0, ...(after === undefined ? {} : { after }) });
    const last = list.length === limit ? list.at(-1)?.unit_id : undefined;
    // The next page starts after the last unit listed (--after pages by unit id: as fast deep in a job as at its start).
    const more = last === undefined ? '' : `\nnext page: abp units ${id}${status?.length ? ` --status ${status.join(',')}` : ''} --limit ${limit} --after ${last}`;
    ctx.print(list.length ? table(list, ['unit_id', 'item_id', 'status', 'attempt', 'duration_ms', 'error']) + more : 'no units', list);
  },
};
