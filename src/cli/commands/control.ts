import type { Command, CommandContext } from '../command.js';
import { jobIdArg, positiveInt, usage } from '../command.js';
import { statusLine } from '../format.js';
import type { JobStatus } from '../../wire/views.js';
import type { Orchestrator } from '../../orchestrator/orchestrator.js';

/** pause, resume, cancel and retry share one shape: a job id in, the job's status out. */
function control(name: string, act: (o: Orchestrator, id: number) => Promise<JobStatus & { retried?: number }>): Command {
  return {
    usage: `abp ${name} JOB`,
    options: {},
    async run(ctx: CommandContext) {
      const app = await ctx.app();
      const s = await act(app.orchestrator, jobIdArg(ctx));
      ctx.print(`${s.retried !== undefined ? `retrying ${s.retried} failed units\n` : ''}${statusLine(s)}`, s);
    },
  };
}

export const pause = control('pause', (o, id) => o.pause(id));
export const resume = control('resume', (o, id) => o.resume(id));
export const cancel = control('cancel', (o, id) => o.cancel(id));
export const retry = control('retry', (o, id) => o.retryFailed(id));

function unitIdArg(ctx: CommandContext): number {
  const raw = ctx.positionals[0];
  if (raw === undefined) throw usage('missing argument UNIT (a unit id, as `abp units JOB` lists them)');
  return positiveInt(raw, 'UNIT');
}

/** One unit runs again with fresh retries: a failed one, or a succeeded one to re-do it. */
export const retryUnit: Command = {
  usage: 'abp retry-unit UNIT',
  options: {},
  async run(ctx) {
    const app = await ctx.app();
    const r = await app.orchestrator.retryUnit(unitIdArg(ctx));
    ctx.print(`unit ${r.unit.unit_id} is ${r.unit.status} again\n${statusLine(r.job)}`, r);
  },
};

/** Stops one running unit: its processes are killed; it ends FAILED, or goes back to PENDING with --then pending. */
export const stopUnit: Command = {
  usage: 'abp stop-unit UNIT [--then failed|pending]',
  options: { then: { type: 'string' } },
  async run(ctx) {
    const then = ctx.values.then ?? 'failed';
    if (then !== 'failed' && then !== 'pending') throw usage(`--then: expected failed or pending, got ${JSON.stringify(then)}`);
    const app = await ctx.app();
    const r = await app.orchestrator.stopUnit(unitIdArg(ctx), then);
    const next = r.unit.status === 'FAILED' ? `\nnext: abp retry-unit ${r.unit.unit_id}   (runs it again when you want)` : '';
    ctx.print(`unit ${r.unit.unit_id} stopped: now ${r.unit.status}\n${statusLine(r.job)}${next}`, r);
  },
};
