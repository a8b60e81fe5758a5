import type { App } from '../../app.js';
import type { JobReader } from '../../open-store.js';
import type { Command } from '../command.js';
import { shutdownSignals } from '../signals.js';
import { holdOptimizingCompiler } from '../tiering.js';

export const mcp: Command = {
  steadyYoungGeneration: true,
  usage: 'abp mcp',
  options: {},
  async run(ctx) {
    // Installed before the database opens: a signal while starting still ends in a clean exit 0.
    const signals = shutdownSignals();
    // The app (the store, the orchestrator, the workers) loads at the first request
    // that needs it: an assistant session that never calls abp, or only polls a
    // job's status, never pays for it. Until then get_job_status and list_jobs read
    // job rows in plain SQL (src/store/quick-read.ts), as `abp status` does.
    const releaseCompiler = holdOptimizingCompiler();
    let app: Promise<App> | undefined;
    let reader: JobReader | undefined;
    let unusable!: () => void;
    const failed = new Promise<void>((resolve) => (unusable = resolve));
    try {
      const { serveStdio } = await import('../../mcp/stdio.js');
      const source = {
        app: () =>
          (app ??= (releaseCompiler(), process.stderr.write('abp mcp: opening the store and loading the orchestrator\n'), ctx.app()).catch((err: unknown) => {
            // A store that cannot open ends the server, once the request that
            // found out has been answered, and the rethrow below says why.
            setImmediate(unusable);
            throw err;
          })),
        async rows() {
          if (app) return undefined;
          try {
            reader ??= (await import('../../open-store.js')).openQuickJobReader(ctx.config());
          } catch {
            // A configuration error: the app says what it is.
          }
          return reader && { reader, executorStaleMs: ctx.config().executorStaleMs };
        },
      };
      if (!signals.first) await serveStdio(source, Promise.race([signals.received, failed]));
      await app;
    } finally {
      signals.dispose();
      await reader?.close();
    }
  },
};
