import type { ExecutorApp } from '../../app.js';
import type { Command } from '../command.js';
import { intFlag } from '../command.js';
import { LAUNCH_SLOT_ENV } from '../../executor/launcher.js';
import { logLine } from '../../util/log-line.js';
import { shutdownSignals } from '../signals.js';
import { holdOptimizingCompiler } from '../v8-tuning.js';

export const executor: Command = {
  steadyYoungGeneration: true,
  usage: 'abp executor [--max-workers N] [--idle-seconds N (0 = never exit)]',
  options: { 'max-workers': { type: 'string' }, 'idle-seconds': { type: 'string' } },
  async run(ctx) {
    // The launch slot a launcher claimed for this process, if one did: taken out of the environment
    // first, so that neither the names this executor registers nor its workers see it.
    const launchSlot = process.env[LAUNCH_SLOT_ENV] || undefined;
    delete process.env[LAUNCH_SLOT_ENV];
    const maxWorkers = intFlag(ctx, 'max-workers', 1);
    const idle = intFlag(ctx, 'idle-seconds', 0);
    // The first signal drains: no new claims, running units get the grace period
    // (ABP_SHUTDOWN_GRACE_SECONDS), then they are stopped and given back. Another
    // signal stops them at once. Either way the leases are released and it exits 0.
    let stopNow: (() => Promise<void>) | undefined;
    const signals = shutdownSignals((signal) => {
      logLine(`executor: ${signal} received again; stopping the running units now`);
      void stopNow?.();
    });
    // An executor waiting for work never needs optimized code (v8-tuning.ts): the compiler is released at the first pass that finds some.
    const releaseCompiler = holdOptimizingCompiler();
    let app: ExecutorApp | undefined;
    try {
      // Its own opener, not ctx.app(): an executor never loads the orchestrator, enumerators or job specs.
      app = await (await import('../../app.js')).createExecutorApp(ctx.config());
      if (signals.first) {
        logLine(`executor: ${signals.first} received while starting; exiting`);
        // The slot stood for this process, which will not serve: it goes now rather than when stale.
        if (launchSlot) await app.repo.unregisterExecutor(launchSlot).catch(() => undefined);
        return;
      }
      const graceSeconds = app.config.shutdownGraceMs / 1000;
      const exec = app.createExecutor(
        {
          ...(maxWorkers !== undefined ? { maxWorkers } : {}),
          ...(idle !== undefined ? { idleExitMs: idle * 1000 } : {}),
        },
        { launchSlot, onWork: releaseCompiler },
      );
      stopNow = () => exec.stopNow();
      void signals.received.then((signal) => {
        logLine(`executor: ${signal} received; draining (up to ${graceSeconds} s; send it again to stop the running units now)`);
        return exec.stop();
      });
      await exec.run();
    } finally {
      signals.dispose();
      await app?.close();
    }
  },
};
