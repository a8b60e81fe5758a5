import type { Command } from '../command.js';
import { shutdownSignals } from '../signals.js';

export const mcp: Command = {
  steadyYoungGeneration: true,
  usage: 'abp mcp',
  options: {},
  async run(ctx) {
    // Installed before the database opens: a signal while starting still ends in a clean exit 0.
    const signals = shutdownSignals();
    try {
      // `initialize` needs only the MCP SDK and the tool schemas: they load first, and
      // the server answers it while the store and the orchestrator load (one thread:
      // loading both at once would delay the answer); requests that need them wait.
      const { serveStdio } = await import('../../mcp/stdio.js');
      const app = ctx.app();
      // A store that cannot open ends the server, and the rethrow below says why.
      const failed = app.then(() => new Promise<never>(() => undefined), () => undefined);
      if (!signals.first) await serveStdio(app, Promise.race([signals.received, failed]));
      await app;
    } finally {
      signals.dispose();
    }
  },
};
