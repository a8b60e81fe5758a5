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

/** Follows a one-time link like a browser would, and returns the session cookie it set. */
async function login(link: string): Promise<{ status: number; cookie: string | undefined; setCookie: string | undefined; location: string | undefined; text: string }> {
  const u = new URL(link);
  const r = await call(`${u.protocol}//${u.host}`, `${u.pathname}${u.search}`, { key: false });
  const setCookie = (r.headers['set-cookie'] ?? [])[0];
  return { status: r.status, cookie: setCookie?.split(';')[0], setCookie, location: r.headers.location as string | undefined, text: r.text };
}

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
    expect(first.location).toBe('/');
    expect(first.setCookie).toMatch(/^abp_session=[A-Za-z0-9_-]{20,}; HttpOnly; SameSite=Strict; Path=\//);
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
    expect((await call(srv.url, '/jobs', { key: false, headers: cookie })).status).toBe(200);

    // A cookie rides along on any request; changes are accepted only from the dashboard's own origin.
    const spec = slowJob(sb.path('rows.csv'));
    expect((await call(srv.url, '/jobs', { method: 'POST', body: spec, key: false, headers: cookie })).status).toBe(403);
    const own = { ...cookie, origin: `http://127.0.0.1:${srv.port}` };
    expect((await call(srv.url, '/jobs', { method: 'POST', body: spec, key: false, headers: own })).status).toBe(201);
    expect((await call(srv.url, '/jobs', { method: 'POST', body: spec, key: false, headers: { ...cookie, origin: 'http://evil.example' } })).status).toBe(403);
    // A made-up cookie is no session.
    expect((await call(srv.url, '/jobs', { key: false, headers: { cookie: 'abp_session=forged' } })).status).toBe(401);
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
    const { cookie } = await login(srv.login);
    expect((await call(srv.url, '/jobs', { key: false, headers: { cookie: cookie as string } })).status).toBe(200);
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
