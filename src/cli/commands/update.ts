import type { Command } from '../command.js';
import { jobIdArg, usage } from '../command.js';
import { readText } from './create.js';

export const update: Command = {
  name: 'update',
  summary: 'Edit the prompt template, intent or name of a CREATED job (e.g. after rejecting its test).',
  usage: 'abp update JOB [--prompt-file FILE] [--intent TEXT] [--name NAME]',
  options: { 'prompt-file': { type: 'string' }, intent: { type: 'string' }, name: { type: 'string' } },
  async run(ctx) {
    const id = jobIdArg(ctx);
    const v = ctx.values;
    const fields: { prompt_template?: string; user_intent?: string; name?: string } = {};
    if (v['prompt-file']) fields.prompt_template = readText('prompt-file', String(v['prompt-file']));
    if (v.intent !== undefined) fields.user_intent = String(v.intent);
    if (v.name !== undefined) fields.name = String(v.name);
    if (Object.keys(fields).length === 0) throw usage('nothing to update: give --prompt-file, --intent or --name');
    const app = await ctx.app();
    const job = await app.orchestrator.updateJob(id, fields);
    ctx.print(`updated job ${id}: ${Object.keys(fields).join(', ')}\nnext: abp start ${id}`, job);
  },
};
