import { resolveConfig, truthy } from '../../config.js';
import { AbpError } from '../../domain/errors.js';
import { DEFAULT_MAX_BODY } from '../../http/body.js';
import { isLoopback, loadApiKey } from '../../http/security.js';
import { dashboardLink, removeServeRecord, stopServer, writeServeRecord } from '../../serve/serve-record.js';
import { startHttpServer } from '../../http/server.js';
import type { Command, CommandContext } from '../command.js';
import { intFlag, usage } from '../command.js';
import { shutdownSignals, type ShutdownSignals } from '../signals.js';

const list = (raw: string | undefined) => (raw ?? '').split(',').map((s) => s.trim()).filter(Boolean);

function envNumber(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) throw new AbpError('invalid_input', `${name}: expected a number >= ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

export const serve: Command = {
  usage: 'abp serve [--host 127.0.0.1] [--port 7070] [--force]  |  abp serve stop [--home DIR]',
  options: { host: { type: 'string' }, port: { type: 'string' }, force: { type: 'boolean' } },
  async run(ctx) {
    const [sub, ...more] = ctx.positionals;
    if (sub === 'stop' && more.length === 0) return stopServe(ctx);
    if (sub !== undefined) throw usage(`abp serve takes no argument but stop, got ${JSON.stringify(ctx.positionals.join(' '))}\nusage: ${serve.usage}`);
    const env = process.env;
    // ABP_HTTP_PORT, or the original ABP's ABP_DASHBOARD_PORT (config.ts resolves the pair).
    const port = intFlag(ctx, 'port', 0) ?? resolveConfig(env).httpPort;
    const host = (ctx.values.host as string | undefined) ?? env.ABP_HTTP_HOST ?? '127.0.0.1';
    // A generated key file is fine on loopback; beyond it, the operator must choose the key on purpose.
    if (!isLoopback(host) && !env.ABP_API_KEY && !ctx.values.force && !truthy(env.ABP_SERVE_FORCE)) {
      throw new AbpError(
        'invalid_input',
        `--host ${host}: binding beyond loopback needs ABP_API_KEY set to a key you chose; pass --force (or ABP_SERVE_FORCE=1) to use the generated key anyway`,
      );
    }
    // Installed before anything opens, so a signal while starting still ends in a clean exit 0.
    const signals = shutdownSignals();
    try {
      await serveUntilSignalled(ctx, signals, host, port);
    } finally {
      signals.dispose();
    }
  },
};

async function serveUntilSignalled(ctx: CommandContext, signals: ShutdownSignals, host: string, port: number): Promise<void> {
  const env = process.env;
  const app = await ctx.app();
  if (signals.first) return;
  const { key, source } = loadApiKey(app.config.home);
  const http = await startHttpServer(app, {
    host,
    port,
    apiKey: key,
    allowedHosts: list(env.ABP_ALLOWED_HOSTS),
    allowedOrigins: list(env.ABP_CORS_ORIGINS),
    maxBodyBytes: envNumber('ABP_MAX_BODY_BYTES', DEFAULT_MAX_BODY, 1),
    rateLimitPerMinute: envNumber('ABP_RATE_LIMIT', 600, 0),
    sseKeepAliveMs: envNumber('ABP_SSE_KEEPALIVE_SECONDS', 15, 0.05) * 1000,
  });
  writeServeRecord(app.config.home, http.url);
  process.stderr.write(`abp serve: listening on ${http.url} (MCP at ${http.url}/mcp; API key from ${source})\n`);
  const link = await dashboardLink(app.orchestrator, app.config.home, http.url);
  process.stderr.write(`abp serve: dashboard (one-time link, valid 15 minutes): ${link.url}\n`);
  const signal = await signals.received;
  process.stderr.write(`abp serve: ${signal} received; shutting down\n`);
  removeServeRecord(app.config.home);
  await http.close();
}

/** `abp serve stop`: stops the server recorded for this home (SIGTERM, then waits until it has exited). */
async function stopServe(ctx: CommandContext): Promise<void> {
  const env = { ...process.env, ...(ctx.values.home ? { ABP_HOME: String(ctx.values.home) } : {}) };
  const result = await stopServer(resolveConfig(env).home);
  ctx.print(result.message, result);
}
