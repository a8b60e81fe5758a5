import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { App } from '../app.js';
import { readJson, DEFAULT_MAX_BODY } from './body.js';
import { dashboardRoutes, NEEDS_LOGIN, sendPage } from './dashboard.js';
import { HttpError, sendError, sendJson } from './errors.js';
import { eventRoutes } from './events-stream.js';
import { McpEndpoint } from './mcp-endpoint.js';
import { Metrics } from './metrics.js';
import { RateLimiter } from './rate-limit.js';
import { Router } from './router.js';
import { jobRoutes } from './routes-jobs.js';
import { schemaRoutes } from './schemas.js';
import { checkHostAndOrigin, defaultHosts, presentedKey, sameSecret, type SecurityOptions } from './security.js';
import { SESSION_KEY_PARAM, SessionStore } from './sessions.js';

export interface HttpOptions {
  host: string;
  port: number;
  apiKey: string;
  allowedHosts?: string[];
  allowedOrigins?: string[];
  /** Request bodies over this many bytes get 413. */
  maxBodyBytes?: number;
  /** Requests per minute per caller (API key or dashboard session); 0 turns the limit off. */
  rateLimitPerMinute?: number;
  /** How often event streams poll the events table. */
  ssePollMs?: number;
  /** How often an idle event stream sends a keep-alive comment. */
  sseKeepAliveMs?: number;
}

export interface RunningHttp {
  url: string;
  port: number;
  close(): Promise<void>;
}

const SAFE_METHODS = ['GET', 'HEAD', 'OPTIONS'];

/** `abp serve`: REST, server-sent events, metrics, schemas, the dashboard and MCP. It listens on loopback unless told otherwise. */
export async function startHttpServer(app: App, options: HttpOptions): Promise<RunningHttp> {
  const mcp = new McpEndpoint(app);
  const metrics = new Metrics(app);
  const sessions = new SessionStore();
  const limiter = new RateLimiter(options.rateLimitPerMinute ?? 600);
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const router = new Router();
  jobRoutes(router);
  eventRoutes(router, { pollMs: options.ssePollMs ?? 250, keepAliveMs: options.sseKeepAliveMs ?? 15_000 });
  schemaRoutes(router);
  // The server's own address, known once it listens: one-time links are bound to it.
  let self = '';
  dashboardRoutes(router, sessions, () => self);
  let security: SecurityOptions | undefined;

  /**
   * Who is calling: the API key holder, or a dashboard session. Throws 401/403 otherwise.
   * A session's cookie alone loads the dashboard's page and files; everything else
   * needs its page key too (sessions.ts). An EventSource cannot send a header: a GET
   * may carry the key as ?session_key=, which is taken off the URL here.
   */
  const authenticate = (req: IncomingMessage, url: URL, origin: 'none' | 'self' | 'cors'): string | undefined => {
    const key = presentedKey(req);
    if (key !== undefined) {
      if (!sameSecret(key, (security as SecurityOptions).apiKey)) throw unauthorized();
      return 'api-key';
    }
    const keyParam = req.method === 'GET' ? url.searchParams.get(SESSION_KEY_PARAM) : null;
    url.searchParams.delete(SESSION_KEY_PARAM);
    const session = sessions.from(req, keyParam);
    if (session === undefined) return undefined;
    if (!session.api) {
      if (isPage(req.method ?? 'GET', url.pathname)) return `session:${session.id}`;
      throw new HttpError(
        401,
        'unauthorized',
        'a dashboard session cookie alone opens no API: the dashboard page sends its session key with each call (reload the dashboard, or open a fresh link from `abp dashboard`)',
        {},
        { 'www-authenticate': 'Bearer' },
      );
    }
    // A cookie rides along on any request the browser makes; a change must come from the dashboard's own page.
    if (!SAFE_METHODS.includes(req.method ?? 'GET') && origin !== 'self') {
      throw new HttpError(403, 'forbidden_origin', 'a dashboard session may change things only from the dashboard itself (same Origin)');
    }
    return `session:${session.id}`;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, label: { route: string }) => {
    const url = new URL(req.url ?? '/', 'http://local');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    const { origin } = checkHostAndOrigin(req, res, security as SecurityOptions);
    if (method === 'OPTIONS') {
      label.route = 'preflight';
      res.writeHead(204);
      res.end();
      return;
    }
    if (path === '/health') {
      label.route = '/health';
      sendJson(res, 200, { status: 'ok' });
      return;
    }
    if (path === '/ready') {
      label.route = '/ready';
      const ready = await app.orchestrator.monitor.readiness();
      sendJson(res, ready.ready ? 200 : 503, { status: ready.ready ? 'ready' : 'not_ready', ...ready });
      return;
    }
    const caller = authenticate(req, url, origin);
    if (caller === undefined && path !== '/login') {
      if (path === '/' && method === 'GET') {
        label.route = '/';
        sendPage(res, 401, 'abp dashboard: sign in', NEEDS_LOGIN);
        return;
      }
      throw unauthorized();
    }
    // Login attempts are limited per client address: guessing tokens is as limited as anything else.
    const allowed = limiter.take(caller ?? `login:${req.socket.remoteAddress}`);
    if (!allowed.ok) {
      throw new HttpError(429, 'rate_limited', `too many requests; retry in ${allowed.retryAfterSeconds} s (the limit is ABP_RATE_LIMIT per minute)`, { retry_after_seconds: allowed.retryAfterSeconds }, {
        'retry-after': String(allowed.retryAfterSeconds),
      });
    }
    if (path === '/mcp') {
      label.route = '/mcp';
      await mcp.handle(req, res, maxBody);
      return;
    }
    if (path === '/metrics' && method === 'GET') {
      label.route = '/metrics';
      const text = await metrics.scrape();
      res.writeHead(200, { 'content-type': metrics.registry.contentType, 'cache-control': 'no-store' });
      res.end(text);
      return;
    }
    const match = router.match(method, path);
    if (!match) throw new HttpError(404, 'not_found', `no route for ${method} ${path}`);
    label.route = match.route.pattern;
    let body: Promise<unknown> | undefined;
    await match.route.handler({ req, res, url, params: match.params, app, caller: caller ?? 'anonymous', body: () => (body ??= readJson(req, maxBody)) });
  };

  const server: Server = createServer((req, res) => {
    const stop = metrics.http.startTimer();
    const label = { route: 'unmatched' };
    res.once('close', () => stop({ method: req.method ?? 'GET', route: label.route, status: String(res.statusCode) }));
    handle(req, res, label).catch((err) => sendError(res, err));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  sessions.bind(port);
  const shownHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  security = {
    apiKey: options.apiKey,
    // The bind address itself is always a valid Host, e.g. when bound to a LAN address.
    allowedHosts: [...new Set([...defaultHosts(port, options.allowedHosts), `${shownHost.toLowerCase()}:${port}`])],
    allowedOrigins: options.allowedOrigins ?? [],
  };
  self = `http://${shownHost}:${port}`;
  return {
    url: self,
    port,
    async close() {
      await mcp.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The dashboard's page and files: what a session cookie alone may load. */
function isPage(method: string, path: string): boolean {
  return (method === 'GET' || method === 'HEAD') && (path === '/' || path.startsWith('/assets/'));
}

function unauthorized(): HttpError {
  return new HttpError(
    401,
    'unauthorized',
    'missing or wrong API key: send Authorization: Bearer <key> or x-api-key (the key is in ABP_API_KEY or $ABP_HOME/api-key)',
    {},
    { 'www-authenticate': 'Bearer' },
  );
}
