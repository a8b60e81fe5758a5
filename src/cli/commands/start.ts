import type { Command } from '../command.js';
import { intFlag, jobIdArg, usage } from '../command.js';
import { statusLine } from '../format.js';
import { cliHint } from '../hints.js';

export const start: Command = {
  usage: 'abp start JOB [--approve | --reject | --skip-test] [--wait] [--wait-seconds N]',
  options: {
    approve: { type: 'boolean' },
    reject: { type: 'boolean' },
    'skip-test': { type: 'boolean' },
    wait: { type: 'boolean' },
    'wait-seconds': { type: 'string' },
  },
  async run(ctx) {
    const id = jobIdArg(ctx);
    const v = ctx.values;
    if (v.approve && v.reject) throw usage('--approve and --reject: choose one');
    if (v['skip-test'] && (v.approve || v.reject)) throw usage('--skip-test cannot be combined with --approve or --reject');
    const waitSeconds = intFlag(ctx, 'wait-seconds', 0) ?? (v.wait ? 365 * 24 * 3600 : 0);
    const app = await ctx.app();
    const o = app.orchestrator;
    const how = { waitSeconds, approvedBy: 'person (cli)' };
    const result = v.reject ? await o.reject(id) : v.approve ? await o.approve(id, how) : v['skip-test'] ? await o.skipTest(id, how) : await o.startTest(id, how);
    const lines = [statusLine(result.job)];
    if (result.executor?.started) lines.push(`started an executor (pid ${result.executor.pid}, log ${result.executor.log})`);
    // Which live executor lacked which variable the job needs, and what was done about it.
    if (result.executor?.note) lines.push(result.executor.note);
    const t = result.test_unit;
    if (t) {
      lines.push(`test unit ${t.unit_id} (item ${t.item_id}): ${t.status}, attempt ${t.attempt}`);
      if (t.output !== null) lines.push('--- output ---', t.output, '--------------');
      if (t.error) lines.push(`error: ${t.error}`);
    }
    const next = cliHint(result.next_step);
    lines.push(`next: ${next}`);
    ctx.print(lines.join('\n'), { ...result, next });
    return result.job.status === 'FAILED' ? 1 : 0;
  },
};
