import { dashboardLink } from '../../serve/serve-record.js';
import type { Command } from '../command.js';

export const dashboard: Command = {
  usage: 'abp dashboard [--json]',
  options: {},
  async run(ctx) {
    const app = await ctx.app();
    const link = await dashboardLink(app.orchestrator, app.config.home);
    ctx.print(`${link.url}\n(works once, until ${link.expires_at}; it signs this browser in to ${link.dashboard})`, link);
  },
};
