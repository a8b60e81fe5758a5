import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { HttpError } from './errors.js';

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

/**
 * Constant-time comparison: the time taken says nothing about how much of the key
 * matched, nor how long it is (both sides are hashed to 32 bytes first).
 */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b) && given === expected;
}

/** The key a request carries, as `Authorization: Bearer` or `x-api-key`. */
export function presentedKey(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ')) return auth.slice(7).trim();
  const header = req.headers['x-api-key'];
  return typeof header === 'string' ? header : undefined;
}

/**
 * Host and Origin checks, and CORS. The Host must name the bind address (or an
 * ABP_ALLOWED_HOSTS entry), so a DNS-rebound name is refused. An Origin is
 * accepted when it is this server itself (the dashboard) or listed in
 * ABP_CORS_ORIGINS; only the listed ones get CORS headers. Returns whether the
 * request came from the server's own origin.
 */
export function checkHostAndOrigin(req: IncomingMessage, res: ServerResponse, options: SecurityOptions): { origin: 'none' | 'self' | 'cors' } {
  const host = (req.headers.host ?? '').toLowerCase();
  if (!options.allowedHosts.includes(host)) {
    throw new HttpError(403, 'forbidden_host', `host ${JSON.stringify(req.headers.host ?? '')} is not allowed; set ABP_ALLOWED_HOSTS to add it`, { host: req.headers.host ?? null });
  }
  const origin = req.headers.origin;
  if (origin === undefined) return { origin: 'none' };
  if (origin.toLowerCase() === `http://${host}`) return { origin: 'self' };
  if (!options.allowedOrigins.includes(origin)) {
    throw new HttpError(403, 'forbidden_origin', `origin ${JSON.stringify(origin)} is not allowed; set ABP_CORS_ORIGINS to add it`, { origin });
  }
  res.setHeader('access-control-allow-origin', origin);
  res.setHeader('vary', 'Origin');
  res.setHeader('access-control-allow-headers', 'authorization, x-api-key, content-type, mcp-session-id, mcp-protocol-version, last-event-id');
  res.setHeader('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS');
  res.setHeader('access-control-expose-headers', 'mcp-session-id, retry-after, location');
  return { origin: 'cors' };
}

export function defaultHosts(port: number, extra: string[] = []): string[] {
  return [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, ...extra.map((h) => h.toLowerCase())];
}

/** Loopback binds are reachable from this machine only; anything else needs a deliberate key. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
