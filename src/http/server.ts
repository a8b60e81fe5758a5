import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { App } from '../app.js';
import { errorMessage } from '../domain/errors.js';
import { McpEndpoint } from './mcp-endpoint.js';
import { defaultHosts, guard, type SecurityOptions } from './security.js';

export interface HttpOptions {
  host: string;
  port: number;
  apiKey: string;
  allowedHosts?: string[];
  allowedOrigins?: string[];
}

export interface RunningHttp {
  url: string;
  port: number;
  close(): Promise<void>;
}

const MAX_BODY = 4 * 1024 * 1024;

async function readJson(req: IncomingMessage): Promise<unknown> {
  if (req.method !== 'POST') return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw Object.assign(new Error(`request body over ${MAX_BODY} bytes`), { status: 413 });
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw Object.assign(new Error(`request body is not JSON: ${errorMessage(err)}`), { status: 400 });
  }
}

/** `abp serve`: the HTTP front end. It listens on loopback unless told otherwise. */
export async function startHttpServer(app: App, options: HttpOptions): Promise<RunningHttp> {
  const mcp = new McpEndpoint(app);
  let security: SecurityOptions | undefined;

  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://local').pathname;
    const open = path === '/health';
    if (!guard(req, res, security as SecurityOptions, { requireKey: !open })) return;
    if (path === '/health') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'ok' }));
      return;
    }
    if (path === '/mcp') {
      await mcp.handle(req, res, await readJson(req));
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'not_found', message: `no route for ${req.method} ${path}` } }));
  };

  const server: Server = createServer((req, res) => {
    handler(req, res).catch((err: Error & { status?: number }) => {
      if (!res.headersSent) {
        res.writeHead(err.status ?? 500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: err.status ? 'bad_request' : 'internal', message: errorMessage(err) } }));
      } else res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  security = {
    apiKey: options.apiKey,
    allowedHosts: defaultHosts(port, options.allowedHosts),
    allowedOrigins: options.allowedOrigins ?? [],
  };
  const shownHost = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${shownHost}:${port}`,
    port,
    async close() {
      await mcp.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
