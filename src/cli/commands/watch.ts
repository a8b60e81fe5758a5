import { isTerminalUnit } from '../../domain/states.js';
import type { JobStatus } from '../../wire/views.js';
import type { Command } from '../command.js';
import { intFlag, jobIdArg } from '../command.js';
import { formatSeconds, statusLine } from '../format.js';

const BAR = 30;

function bar(s: JobStatus): string {
  const done = s.counts.succeeded + s.counts.failed + s.counts.cancelled;
  const filled = s.total ? Math.round((done / s.total) * BAR) : 0;
  const pct = s.total ? Math.floor((done / s.total) * 100) : 0;
  const rate = s.rate_per_second ? `${s.rate_per_second}/s` : '-/s';
  const eta = s.eta_seconds !== null ? `ETA ${formatSeconds(s.eta_seconds)}` : '';
  return `[${'#'.repeat(filled)}${'-'.repeat(BAR - filled)}] ${String(pct).padStart(3)}% ${done}/${s.total} ok ${s.counts.succeeded} failed ${s.counts.failed} running ${s.counts.running}${s.counts.submitted ? ` batched ${s.counts.submitted}` : ''} | ${rate} ${eta} | ${s.status}`;
}

export const watch: Command = {
  usage: 'abp watch JOB [--interval-ms N]',
  options: { 'interval-ms': { type: 'string' } },
  async run(ctx) {
    const id = jobIdArg(ctx);
    const interval = intFlag(ctx, 'interval-ms', 50) ?? 500;
    const app = await ctx.app();
    const tty = process.stdout.isTTY === true && !ctx.json;
    let last = '';
    const show = (s: JobStatus) => {
      if (tty) {
        process.stdout.write(`\r\x1b[2K${bar(s)}`);
        return;
      }
      const line = ctx.json ? JSON.stringify(s) : statusLine(s);
      const key = JSON.stringify([s.status, s.counts]);
      if (key !== last) process.stdout.write(`${line}\n`);
      last = key;
    };
    let final: JobStatus;
    for (;;) {
      const s = await app.orchestrator.status(id);
      show(s);
      final = s;
      // Settled: ended, paused, back to CREATED, or a finished test unit waiting for a person.
      if (s.status !== 'RUNNING' && s.status !== 'TESTING') break;
      if (s.status === 'TESTING') {
        const test = s.test_unit_id === null ? null : await app.orchestrator.unit(s.test_unit_id);
        if (!test || isTerminalUnit(test.status)) break;
      }
      await new Promise((r) => setTimeout(r, interval));
    }
    if (tty) process.stdout.write(`\n${statusLine(final)}\n`);
    return final.status === 'FAILED' || final.status === 'CANCELLED' ? 1 : 0;
  },
};
