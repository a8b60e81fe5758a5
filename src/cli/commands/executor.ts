import type { Command } from '../command.js';
import { intFlag } from '../command.js';

export const executor: Command = {
  name: 'executor',
  summary: 'Run an executor in the foreground: claim and run units until idle (SIGTERM drains).',
  usage: 'abp executor [--max-workers N] [--idle-seconds N (0 = never exit)]',
  options: { 'max-workers': { type: 'string' }, 'idle-seconds': { type: 'string' } },
  async run(ctx) {
    const app = await ctx.app();
    const maxWorkers = intFlag(ctx, 'max-workers', 1);
    const idle = intFlag(ctx, 'idle-seconds', 0);
    const exec = app.createExecutor({
      ...(maxWorkers !== undefined ? { maxWorkers } : {}),
      ...(idle !== undefined ? { idleExitMs: idle * 1000 } : {}),
    });
    const stop = (signal: string) => {
      process.stderr.write(`executor: ${signal} received; draining\n`);
      void exec.stop();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    await exec.run();
  },
};
