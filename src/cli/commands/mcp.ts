import { serveStdio } from '../../mcp/stdio.js';
import type { Command } from '../command.js';

export const mcp: Command = {
  name: 'mcp',
  summary: 'Serve the MCP tools on stdio, for Claude Code, Claude Desktop and other MCP clients.',
  usage: 'abp mcp',
  options: {},
  async run(ctx) {
    await serveStdio(await ctx.app());
  },
};
