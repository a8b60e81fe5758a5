import { z } from 'zod';
import { dashboardLink, ensureServer, stopCommand } from '../../serve/serve-record.js';
import { defineTool } from '../tool.js';

export const dashboardUrl = defineTool({
  name: 'dashboard_url',
  title: 'Get a dashboard link',
  description:
    'Returns a one-time link to the live dashboard (job list, live progress, units, controls). ' +
    'When no `abp serve` runs for this abp home, it first starts one in the background, on 127.0.0.1 at the configured port (ABP_HTTP_PORT, default 7070), ' +
    'and says so (`started: true`, its `pid`); the server keeps running after this conversation until someone stops it. ' +
    'Give the person the link (it works once, within 15 minutes) and, when this call started the server, the `stop` command, which they run in a terminal to stop it. ' +
    'Fails when the port is taken by another program.',
  input: {},
  output: {
    url: z.string().describe('The one-time login link: opening it signs the browser in.'),
    dashboard: z.string().describe('The dashboard address, for later visits in the same browser.'),
    expires_at: z.string(),
    started: z.boolean().describe('true: this call started the server (it was not running); false: it was running already.'),
    pid: z.number().int().describe('The process id of the abp serve behind the link.'),
    stop: z.string().describe('The command that stops that server (run in a terminal); `kill PID` works too.'),
    log: z.string().optional().describe("The server's log file, when this call started it."),
    note: z.string(),
  },
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  handler: async (_args, { app }) => {
    const server = await ensureServer(app.config);
    const link = await dashboardLink(app.orchestrator, app.config.home, server.record.url);
    const stop = stopCommand(app.config.home);
    const note = server.started
      ? `${link.note} abp serve was not running, so this call started it in the background (pid ${server.record.pid}, log ${server.log}); it runs until stopped with \`${stop}\` (or \`kill ${server.record.pid}\`).`
      : `${link.note} abp serve was already running (pid ${server.record.pid}); \`${stop}\` stops it.`;
    return { ...link, started: server.started, pid: server.record.pid, stop, ...(server.log ? { log: server.log } : {}), note };
  },
});
