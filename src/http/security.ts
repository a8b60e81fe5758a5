import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';

export interface SecurityOptions {
  apiKey: string;
  /** Host header values accepted (DNS-rebinding protection). */
  allowedHosts: string[];
  /** Browser origins allowed to call the API (CORS allow-list). */
  allowedOrigins: string[];
}

/** The API key: ABP_API_KEY, or one generated once into $ABP_HOME/api-key (mode 0600). */
export function loadApiKey(home: string, env: Record<string, string | undefined> = process.env): { key: string; source: string } {
  if (env.ABP_API_KEY) return { key: env.ABP_API_KEY, source: 'ABP_API_KEY' };
  const file = join(home, 'api-key');
  if (!existsSync(file)) {
    mkdirSync(home, { recursive: true });
    writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
  }
  return { key: readFileSync(file, 'utf8').trim(), source: file };
}

function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function deny(res: ServerResponse, status: number, message: string, extra: Record<string, string> = {}): false {
  res.writeHead(status, { 'content-type': 'application/json', ...extra });
  res.end(JSON.stringify({ error: { code: status === 401 ? 'unauthorized' : 'forbidden', message } }));
  return false;
}

/**
 * Host and Origin checks, CORS, and the API key, in that order. Returns false
 * when it has answered the request itself.
 */
export function guard(req: IncomingMessage, res: ServerResponse, options: SecurityOptions, { requireKey }: { requireKey: boolean }): boolean {
  const host = req.headers.host ?? '';
  if (!options.allowedHosts.includes(host.toLowerCase())) {
    return deny(res, 403, `host ${JSON.stringify(host)} is not allowed; set ABP_ALLOWED_HOSTS to add it`);
  }
  const origin = req.headers.origin;
  if (origin !== undefined) {
    if (!options.allowedOrigins.includes(origin)) {
      return deny(res, 403, `origin ${JSON.stringify(origin)} is not allowed; set ABP_CORS_ORIGINS to add it`);
    }
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('vary', 'Origin');
    res.setHeader('access-control-allow-headers', 'authorization, x-api-key, content-type, mcp-session-id, mcp-protocol-version, last-event-id');
    res.setHeader('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS');
    res.setHeader('access-control-expose-headers', 'mcp-session-id');
  }
  if (req.method === 'OPTIONS') {
    res.writeHead(204);
    res.end();
    return false;
  }
  if (!requireKey) return true;
  const auth = req.headers.authorization;
  const given = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : (req.headers['x-api-key'] as string | undefined);
  if (!given || !sameSecret(given, options.apiKey)) {
    return deny(res, 401, 'missing or wrong API key: send Authorization: Bearer <key> (the key is in ABP_API_KEY or $ABP_HOME/api-key)', {
      'www-authenticate': 'Bearer',
    });
  }
  return true;
}

export function defaultHosts(port: number, extra: string[] = []): string[] {
  return [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, ...extra.map((h) => h.toLowerCase())];
}
