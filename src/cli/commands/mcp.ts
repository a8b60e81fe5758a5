import { serveStdio } from '../../mcp/stdio.js';
import type { Command } from '../command.js';
import { shutdownSignals } from '../signals.js';

export const mcp: Command = {
  name: 'mcp',
  summary: 'Serve the MCP tools on stdio, for Claude Code, Claude Desktop and other MCP clients.',
  usage: 'abp mcp',
  options: {},
  async run(ctx) {
    // Installed before the database opens: a signal while starting still ends in a clean exit 0.
    const signals = shutdownSignals();
    try {
      const app = await ctx.app();
      if (!signals.first) await serveStdio(app, signals.received);
    } finally {
      signals.dispose();
    }
  },
};
