import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { extname, join } from 'node:path';
import { z } from 'zod';
import { PACKAGE_ROOT } from '../package-root.js';
import { parseQuery } from './params.js';
import type { Router } from './router.js';
import type { SessionStore } from './sessions.js';

export const DASHBOARD_DIR = join(PACKAGE_ROOT, 'dashboard');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/**
 * No inline script or style, no framing, nothing loaded from elsewhere: even if
 * agent output reached the DOM as markup, the browser would not run it.
 */
export const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/** A short HTML page for people (a link that is used up, a missing session). */
export function sendPage(res: ServerResponse, status: number, title: string, text: string): void {
  const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1><p>${escape(text)}</p></body></html>`;
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8' });
  res.end(body);
}

function loadAssets(): Map<string, { type: string; body: Buffer }> {
  const assets = new Map<string, { type: string; body: Buffer }>();
  if (!existsSync(DASHBOARD_DIR)) return assets;
  for (const name of readdirSync(DASHBOARD_DIR)) {
    const type = TYPES[extname(name)];
    if (type) assets.set(name, { type, body: readFileSync(join(DASHBOARD_DIR, name)) });
  }
  return assets;
}

export const NEEDS_LOGIN =
  'Open the one-time link that `abp serve` or `abp dashboard` prints (the MCP tool dashboard_url gives one too). Each link works once.';

/** The dashboard's files, and /login, which trades a one-time token for a session cookie. */
export function dashboardRoutes(router: Router, sessions: SessionStore, self: () => string): void {
  const assets = loadAssets();
  const send = (res: ServerResponse, name: string) => {
    const asset = assets.get(name);
    if (!asset) {
      sendPage(res, 404, 'Not found', `no dashboard file ${name}`);
      return;
    }
    res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': asset.type, 'content-length': String(asset.body.length) });
    res.end(asset.body);
  };

  router.add('GET', '/', async (ctx) => send(ctx.res, 'index.html'));
  router.add('GET', '/assets/:file', async (ctx) => send(ctx.res, ctx.params.file as string));

  router.add('GET', '/login', async (ctx) => {
    const { token } = parseQuery(ctx.url, z.strictObject({ token: z.string().max(200) }));
    // A link works only on the server it was made for (its token is bound to that server's address).
    if (!(await ctx.app.orchestrator.monitor.consumeDashboardToken(token, self()))) {
      sendPage(ctx.res, 401, 'This link does not work', `The link was used already, has expired, is for another server, or is wrong. ${NEEDS_LOGIN}`);
      return;
    }
    const session = sessions.create(ctx.req.headers.host ?? '');
    // Redirecting drops the spent token from the address bar and history. The page key rides in the
    // fragment, which the browser keeps to itself: the page stores it and takes it off the address.
    ctx.res.writeHead(303, { ...SECURITY_HEADERS, 'set-cookie': session.cookie, location: `/#session=${session.key}` });
    ctx.res.end();
  });
}
