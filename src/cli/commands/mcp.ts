import type { App } from '../../app.js';
import type { AppSource } from '../../mcp/tool.js';
import type { JobReader } from '../../open-store.js';
import type { Command } from '../command.js';
import { shutdownSignals } from '../signals.js';
import { holdOptimizingCompiler } from '../v8-tuning.js';

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
    let quick: Promise<JobReader | undefined> | undefined;
    let unusable!: () => void;
    const failed = new Promise<void>((resolve) => (unusable = resolve));
    try {
      const { serveStdio } = await import('../../mcp/stdio.js');
      const loadApp = (): Promise<App> => {
        releaseCompiler();
        process.stderr.write('abp mcp: opening the store and loading the orchestrator\n');
        return ctx.app().catch((err: unknown) => {
          // A store that cannot open ends the server, once the request that
          // found out has been answered, and the rethrow below says why.
          setImmediate(unusable);
          throw err;
        });
      };
      const source: AppSource = {
        app: () => (app ??= loadApp()),
        async rows() {
          if (app) return undefined;
          // Opened once: where it cannot serve (PostgreSQL, no database yet, another
          // schema) the app answers instead, and opens the store itself.
          quick ??= import('../../open-store.js').then(({ openQuickJobReader }) => {
            try {
              return openQuickJobReader(ctx.config());
            } catch {
              return undefined; // a configuration error: the app says what it is
            }
          });
          const reader = await quick;
          return reader && { reader, executorStaleMs: ctx.config().executorStaleMs };
        },
      };
      if (!signals.first) await serveStdio(source, Promise.race([signals.received, failed]));
      await app;
    } finally {
      signals.dispose();
      await (await quick)?.close();
    }
  },
};
