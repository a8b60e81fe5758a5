import type { Command } from '../command.js';
import { shutdownSignals } from '../signals.js';

export const mcp: Command = {
  usage: 'abp mcp',
  options: {},
  async run(ctx) {
    // Installed before the database opens: a signal while starting still ends in a clean exit 0.
    const signals = shutdownSignals();
    try {
      // The MCP SDK and the tools load while the app does.
      const [app, { serveStdio }] = await Promise.all([ctx.app(), import('../../mcp/stdio.js')]);
      if (!signals.first) await serveStdio(app, signals.received);
    } finally {
      signals.dispose();
    }
  },
};
