import { z } from 'zod';
import { dashboardLink } from '../../http/serve-record.js';
import { defineTool } from '../tool.js';

export const dashboardUrl = defineTool({
  name: 'dashboard_url',
  title: 'Get a dashboard link',
  description:
    'Returns a one-time link to the live dashboard of the running `abp serve` (job list, live progress, units, controls). ' +
    'Give the link to the person; it works once, within 15 minutes. Fails when no `abp serve` runs for this abp home.',
  input: {},
  output: {
    url: z.string().describe('The one-time login link: opening it signs the browser in.'),
    dashboard: z.string().describe('The dashboard address, for later visits in the same browser.'),
    expires_at: z.string(),
    note: z.string(),
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  handler: async (_args, { app }) => dashboardLink(app.orchestrator, app.config.home),
});
