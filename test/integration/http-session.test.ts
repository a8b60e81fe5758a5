import { writeFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, Sandbox } from '../helpers/cli.js';
import { call as mcpCall } from '../helpers/mcp.js';
import { call, KEY, slowJob, startServe, type Served } from '../helpers/serve.js';

let sb: Sandbox;
let srv: Served | undefined;

beforeEach(() => {
  sb = new Sandbox();
  writeFileSync(sb.path('rows.csv'), 'id,text\na,alpha\n');
});
afterEach(async () => {
  await srv?.stop();
  srv = undefined;
  await sb.cleanup();
});

/** Follows a one-time link like a browser would, and returns the session cookie it set and the page key the redirect carries. */
async function login(
  link: string,
  host?: string,
): Promise<{ status: number; cookie: string | undefined; setCookie: string | undefined; location: string | undefined; key: string | undefined; text: string }> {
  const u = new URL(link);
  const r = await call(`${u.protocol}//${u.host}`, `${u.pathname}${u.search}`, { key: false, headers: host ? { host } : {} });
  const setCookie = (r.headers['set-cookie'] ?? [])[0];
  const location = r.headers.location as string | undefined;
  const key = location?.startsWith('/#session=') ? location.slice('/#session='.length) : undefined;
  return { status: r.status, cookie: setCookie?.split(';')[0], setCookie, location, key, text: r.text };
}

/** What a signed-in dashboard page sends: its server's cookie and its page key. */
const asPage = (session: { cookie?: string; key?: string }) => ({ cookie: session.cookie as string, 'x-abp-session-key': session.key as string });

describe('dashboard sessions', () => {
  it('trades a one-time link for an HttpOnly SameSite=Strict session; the link works once', async () => {
    srv = await startServe(sb);
    const anonymous = await call(srv.url, '/', { key: false });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['content-type']).toContain('text/html');
    expect(anonymous.text).toContain('abp dashboard');
    expect((await call(srv.url, '/assets/app.js', { key: false })).status).toBe(401);

    const first = await login(srv.login);
    expect(first.status).toBe(303);
    expect(first.location).toMatch(/^\/#session=[A-Za-z0-9_-]{40,}$/);
    expect(first.setCookie).toMatch(new RegExp(`^abp_session_${srv.port}=[A-Za-z0-9_-]{20,}; HttpOnly; SameSite=Strict; Path=/;`));
    // The page key is not the cookie.
    expect(first.cookie).not.toContain(first.key as string);
    const again = await login(srv.login);
    expect(again.status).toBe(401);
    expect(again.cookie).toBeUndefined();
    expect(again.text).toContain('used already');
    expect((await call(srv.url, '/login?token=not-a-real-token-at-all', { key: false })).status).toBe(401);

    const cookie = { cookie: first.cookie as string };
    const page = await call(srv.url, '/', { key: false, headers: cookie });
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.text).toContain('/assets/app.js');
    const script = await call(srv.url, '/assets/app.js', { key: false, headers: cookie });
    expect(script.headers['content-type']).toContain('text/javascript');
    expect((await call(srv.url, '/assets/../package.json', { key: false, headers: cookie })).status).not.toBe(200);
    // The cookie alone loads the page, never data: the API needs the page key too.
    const cookieOnly = await call(srv.url, '/jobs', { key: false, headers: cookie });
    expect(cookieOnly.status).toBe(401);
    expect(cookieOnly.json.error.message).toContain('cookie alone opens no API');
    const signedIn = asPage(first);
    expect((await call(srv.url, '/jobs', { key: false, headers: signedIn })).status).toBe(200);

    // A cookie rides along on any request; changes are accepted only from the dashboard's own origin.
    const spec = slowJob(sb.path('rows.csv'));
    expect((await call(srv.url, '/jobs', { method: 'POST', body: spec, key: false, headers: signedIn })).status).toBe(403);
    const own = { ...signedIn, origin: `http://127.0.0.1:${srv.port}` };
    expect((await call(srv.url, '/jobs', { method: 'POST', body: spec, key: false, headers: own })).status).toBe(201);
    expect((await call(srv.url, '/jobs', { method: 'POST', body: spec, key: false, headers: { ...signedIn, origin: 'http://evil.example' } })).status).toBe(403);
    // The key as a query parameter serves a GET (EventSource, download links), never a change.
    const query = `session_key=${first.key}`;
    expect((await call(srv.url, `/jobs?limit=5&${query}`, { key: false, headers: cookie })).status).toBe(200);
    expect((await call(srv.url, `/jobs?${query}`, { method: 'POST', body: spec, key: false, headers: { ...cookie, origin: `http://127.0.0.1:${srv.port}` } })).status).toBe(401);
    // A made-up cookie, a wrong key, the key without the cookie, the old cookie name: no session.
    expect((await call(srv.url, '/jobs', { key: false, headers: { ...signedIn, cookie: `abp_session_${srv.port}=forged` } })).status).toBe(401);
    expect((await call(srv.url, '/jobs', { key: false, headers: { ...signedIn, 'x-abp-session-key': 'wrong' } })).status).toBe(401);
    expect((await call(srv.url, '/jobs', { key: false, headers: { 'x-abp-session-key': first.key as string } })).status).toBe(401);
    expect((await call(srv.url, '/jobs', { key: false, headers: { ...signedIn, cookie: `abp_session=${(first.cookie as string).split('=')[1]}` } })).status).toBe(401);
    // Through another of this server's names (localhost for 127.0.0.1), the session is not accepted.
    expect((await call(srv.url, '/jobs', { key: false, headers: { ...signedIn, host: `localhost:${srv.port}` } })).status).toBe(401);
    expect((await call(srv.url, '/', { key: false, headers: { ...cookie, host: `localhost:${srv.port}` } })).status).toBe(401);
  });

  it('`abp dashboard` prints a fresh one-time link for the running server, and says so when none runs', async () => {
    const none = await sb.cli(['dashboard', '--json']);
    expect(none.exitCode).toBe(1);
    expect(none.stderr).toContain('no abp serve is running');

    srv = await startServe(sb);
    const out = await sb.ok(['dashboard']);
    expect(out.url).toMatch(new RegExp(`^${srv.url}/login\\?token=`));
    expect(out.dashboard).toBe(`${srv.url}/`);
    expect((await login(out.url)).status).toBe(303);
    expect((await login(out.url)).status).toBe(401);
    // The printed serve link is a different token, still unused.
    expect((await login(srv.login)).status).toBe(303);

    await srv.stop();
    srv = undefined;
    const stopped = await sb.cli(['dashboard']);
    expect(stopped.exitCode).toBe(1);
  });

  it('the MCP dashboard_url tool returns a working one-time link', async () => {
    const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp'], env: { ...process.env, ...sb.env } as Record<string, string>, stderr: 'pipe' });
    const client = new Client({ name: 'dashboard-test', version: '1.0.0' });
    await client.connect(transport);
    try {
      // With none running, the tool starts one itself: test/integration/mcp-dashboard.test.ts.
      srv = await startServe(sb);
      const link = await mcpCall(client, 'dashboard_url');
      expect(link.url).toMatch(new RegExp(`^${srv.url}/login\\?token=`));
      expect((await login(link.url)).status).toBe(303);
    } finally {
      await client.close();
    }
  });
});

describe('a dashboard session is bound to the server that issued it', () => {
  it('two servers on one database and one home: neither accepts the other’s session or link, and their cookies coexist', async () => {
    srv = await startServe(sb);
    const b = await startServe(sb);
    try {
      await twoServers(srv, b);
    } finally {
      await b.stop();
    }
  });

  async function twoServers(a: Served, b: Served): Promise<void> {
    expect(a.port).not.toBe(b.port);

    const onA = await login(a.login);
    expect(onA.cookie).toMatch(new RegExp(`^abp_session_${a.port}=`));
    expect((await call(a.url, '/jobs', { key: false, headers: asPage(onA) })).status).toBe(200);
    // A's cookie and key, replayed to B as they are, under B's cookie name, or with B's Host: nothing.
    const idA = (onA.cookie as string).split('=')[1] as string;
    for (const headers of [asPage(onA), { ...asPage(onA), cookie: `abp_session_${b.port}=${idA}` }, { ...asPage(onA), cookie: `abp_session=${idA}` }]) {
      expect((await call(b.url, '/jobs', { key: false, headers })).status, JSON.stringify(headers)).toBe(401);
      expect((await call(b.url, '/', { key: false, headers })).status).toBe(401);
      expect((await call(b.url, '/mcp', { method: 'POST', key: false, body: {}, headers: { ...headers, origin: `http://127.0.0.1:${b.port}` } })).status).toBe(401);
    }

    // A's one-time link, taken to B: refused there, and not spent by the attempt.
    const aLinkOnB = new URL(b.login);
    aLinkOnB.search = new URL(a.login).search;
    const refused = await login(aLinkOnB.href);
    expect(refused.status).toBe(401);
    expect(refused.cookie).toBeUndefined();
    expect(refused.text).toContain('is for another server');
    // B's own link works on B; A's own link was spent on A already.
    const onB = await login(b.login);
    expect(onB.status).toBe(303);
    expect(onB.cookie).toMatch(new RegExp(`^abp_session_${b.port}=`));
    expect((await login(a.login)).status).toBe(401);

    // A browser holds both cookies for the host and sends both to each server: each takes its own.
    const jar = `${onA.cookie}; ${onB.cookie}`;
    expect((await call(a.url, '/jobs', { key: false, headers: { cookie: jar, 'x-abp-session-key': onA.key as string } })).status).toBe(200);
    expect((await call(b.url, '/jobs', { key: false, headers: { cookie: jar, 'x-abp-session-key': onB.key as string } })).status).toBe(200);
    // Keys do not cross over either.
    expect((await call(a.url, '/jobs', { key: false, headers: { cookie: jar, 'x-abp-session-key': onB.key as string } })).status).toBe(401);
    expect((await call(b.url, '/jobs', { key: false, headers: { cookie: jar, 'x-abp-session-key': onA.key as string } })).status).toBe(401);

    // A link from `abp dashboard` names the server recorded for the home (B, the last to start) and works there alone.
    const fresh = await sb.ok(['dashboard']);
    expect(fresh.url.startsWith(`${b.url}/login?token=`)).toBe(true);
    const freshOnA = new URL(a.login);
    freshOnA.search = new URL(fresh.url).search;
    expect((await login(freshOnA.href)).status).toBe(401);
    expect((await login(fresh.url)).status).toBe(303);
  }

  it('a program on another port of the same host sees the cookie, but the cookie alone reads and changes nothing', async () => {
    srv = await startServe(sb);
    const session = await login(srv.login);
    // What a browser sends to any other port of 127.0.0.1: the cookie, never the page key (kept in the page's own origin).
    const stolen = { cookie: session.cookie as string };
    const own = `http://127.0.0.1:${srv.port}`;
    const id = (await call(srv.url, '/jobs', { method: 'POST', body: slowJob(sb.path('rows.csv')) })).json.job_id;
    const reads = ['/jobs', `/jobs/${id}`, `/jobs/${id}/units`, `/jobs/${id}/results`, `/jobs/${id}/events`, '/metrics', `/jobs/${id}/timeline`];
    for (const path of reads) expect((await call(srv.url, path, { key: false, headers: stolen })).status, path).toBe(401);
    for (const [method, path] of [['POST', `/jobs/${id}/start`], ['DELETE', `/jobs/${id}`], ['POST', '/jobs'], ['POST', '/mcp']] as const) {
      const r = await call(srv.url, path, { method, body: {}, key: false, headers: { ...stolen, origin: own } });
      expect(r.status, `${method} ${path}`).toBe(401);
    }
    expect((await sb.status(id)).status).toBe('CREATED');
    // The page itself (no data in it) loads with the cookie alone, as a browser's navigation needs.
    expect((await call(srv.url, '/', { key: false, headers: stolen })).status).toBe(200);
    expect((await call(srv.url, '/assets/app.js', { key: false, headers: stolen })).status).toBe(200);
    // With the key, as the page sends it, the same calls work.
    expect((await call(srv.url, `/jobs/${id}`, { key: false, headers: asPage(session) })).status).toBe(200);
  });
});

describe('limits and binding', () => {
  it('rate-limits each caller with 429 and Retry-After; probes are not limited', async () => {
    srv = await startServe(sb, { ABP_RATE_LIMIT: '5' });
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await call(srv.url, '/jobs')).status);
    expect(statuses.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
    expect(statuses.slice(5)).toEqual([429, 429]);
    const limited = await call(srv.url, '/jobs');
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(limited.json.error).toMatchObject({ code: 'rate_limited', details: { retry_after_seconds: Number(limited.headers['retry-after']) } });
    expect((await call(srv.url, '/health', { key: false })).status).toBe(200);
    // A dashboard session is another caller, with its own budget.
    expect((await call(srv.url, '/jobs', { key: false, headers: asPage(await login(srv.login)) })).status).toBe(200);
  });

  it('refuses to bind beyond loopback without ABP_API_KEY unless forced', async () => {
    const refused = await sb.cli(['serve', '--host', '0.0.0.0', '--port', '0'], { ABP_API_KEY: '' });
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain('ABP_API_KEY');
    expect(refused.stderr).toContain('--force');
    srv = await startServe(sb, { ABP_API_KEY: '' }, ['--host', '0.0.0.0', '--force']);
    expect(srv.url).toMatch(/^http:\/\/0\.0\.0\.0:\d+$/);
    // The generated key (in $ABP_HOME/api-key) protects it; the test's key does not work.
    expect((await call(`http://127.0.0.1:${srv.port}`, '/jobs', { key: KEY })).status).toBe(401);
  });
});
