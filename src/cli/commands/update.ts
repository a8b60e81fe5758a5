import type { Command } from '../command.js';
import { jobIdArg, numberFlag, onOff, usage } from '../command.js';
import { readText } from './create.js';

export const update: Command = {
  usage: 'abp update JOB [--prompt-file FILE] [--intent TEXT] [--name NAME] [--max-cost USD] [--auto-resume on|off]',
  options: { 'prompt-file': { type: 'string' }, intent: { type: 'string' }, name: { type: 'string' }, 'max-cost': { type: 'string' }, 'auto-resume': { type: 'string' } },
  async run(ctx) {
    const id = jobIdArg(ctx);
    const v = ctx.values;
    const fields: { prompt_template?: string; user_intent?: string; name?: string; max_cost_usd?: number; auto_resume?: boolean } = {};
    if (v['prompt-file']) fields.prompt_template = readText('prompt-file', String(v['prompt-file']));
    if (v.intent !== undefined) fields.user_intent = String(v.intent);
    if (v.name !== undefined) fields.name = String(v.name);
    const maxCost = numberFlag(ctx, 'max-cost');
    if (maxCost !== undefined) fields.max_cost_usd = maxCost;
    if (v['auto-resume'] !== undefined) {
      fields.auto_resume = onOff(ctx, 'auto-resume');
    }
    if (Object.keys(fields).length === 0) throw usage('nothing to update: give --prompt-file, --intent, --name, --max-cost or --auto-resume');
    const app = await ctx.app();
    const job = await app.orchestrator.updateJob(id, fields);
    ctx.print(`updated job ${id}: ${Object.keys(fields).join(', ')}\nnext: abp start ${id}`, job);
  },
};
