import { loadApiKey } from '../../http/security.js';
import { startHttpServer } from '../../http/server.js';
import type { Command } from '../command.js';
import { intFlag } from '../command.js';

const list = (raw: string | undefined) => (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean);

export const serve: Command = {
  name: 'serve',
  summary: 'Serve the HTTP API (MCP over Streamable HTTP at /mcp), protected by an API key.',
  usage: 'abp serve [--host 127.0.0.1] [--port 7070]',
  options: { host: { type: 'string' }, port: { type: 'string' } },
  async run(ctx) {
    const app = await ctx.app();
    const env = process.env;
    const port = intFlag(ctx, 'port', 0) ?? Number(env.ABP_HTTP_PORT ?? 7070);
    const host = (ctx.values.host as string | undefined) ?? env.ABP_HTTP_HOST ?? '127.0.0.1';
    const { key, source } = loadApiKey(app.config.home);
    const http = await startHttpServer(app, {
      host,
      port,
      apiKey: key,
      allowedHosts: list(env.ABP_ALLOWED_HOSTS),
      allowedOrigins: list(env.ABP_CORS_ORIGINS),
    });
    process.stderr.write(`abp serve: listening on ${http.url} (MCP at ${http.url}/mcp; API key from ${source})\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', resolve);
      process.once('SIGINT', resolve);
    });
    process.stderr.write('abp serve: shutting down\n');
    await http.close();
  },
};
