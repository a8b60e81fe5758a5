import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, Sandbox, sleep } from '../helpers/cli.js';
import { call, callError } from '../helpers/mcp.js';

/**
 * `dashboard_url` over stdio, against a real `abp mcp`: with no `abp serve`
 * running it starts one in the background, the link signs a browser-less client
 * in, a second call reuses the server, and the stop command it gives stops it.
 */

let sb: Sandbox;
let port: number;
let client: Client | undefined;
/** Every server pid a test saw, stopped in afterEach whatever happened. */
const pids = new Set<number>();
let holder: Server | undefined;
let stranger: ChildProcess | undefined;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  const { port: p } = s.address() as { port: number };
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return p;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether something accepts connections on 127.0.0.1:port. */
function open(p: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port: p });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function mcp(): Promise<Client> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp'], env: { ...process.env, ...sb.env } as Record<string, string>, stderr: 'pipe' });
  const c = new Client({ name: 'dashboard-test', version: '1.0.0' });
  await c.connect(transport);
  return c;
}

/** Follows the link as a browser would, without following the redirect. */
async function login(url: string): Promise<{ status: number; location: string | null; cookie: string | undefined }> {
  const r = await fetch(url, { redirect: 'manual' });
  await r.body?.cancel();
  return { status: r.status, location: r.headers.get('location'), cookie: r.headers.getSetCookie()[0]?.split(';')[0] };
}

beforeEach(async () => {
  port = await freePort();
  sb = new Sandbox({ ABP_HTTP_PORT: String(port) });
});

afterEach(async () => {
  await client?.close();
  client = undefined;
  for (const pid of pids) {
    if (!alive(pid)) continue;
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + 10_000;
    while (alive(pid) && Date.now() < deadline) await sleep(50);
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
  pids.clear();
  await new Promise<void>((resolve) => (holder ? holder.close(() => resolve()) : resolve()));
  holder = undefined;
  stranger?.kill('SIGKILL');
  stranger = undefined;
  await sb.cleanup();
});

describe('dashboard_url starts abp serve when none runs', () => {
  it('starts one, logs a browser-less client in, reuses it on the next call, and its stop command stops it', async () => {
    client = await mcp();
    const first = await call(client, 'dashboard_url');
    pids.add(first.pid);
    expect(first).toMatchObject({ started: true, stop: `abp serve stop --home ${sb.home}`, log: sb.path('logs', 'serve.log'), dashboard: `http://127.0.0.1:${port}/` });
    expect(first.url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${port}/login\\?token=`));
    expect(first.note).toContain(`kill ${first.pid}`);
    expect(alive(first.pid)).toBe(true);
    // Recorded as this home's server, and logging where it said.
    expect(JSON.parse(readFileSync(sb.path('serve.json'), 'utf8'))).toMatchObject({ pid: first.pid, url: `http://127.0.0.1:${port}` });
    expect(readFileSync(first.log, 'utf8')).toContain(`listening on http://127.0.0.1:${port}`);

    // The link trades its token for a session cookie and sends the browser to the dashboard.
    // The redirect's fragment carries the page key, which the page sends with each API call.
    const session = await login(first.url);
    expect(session).toMatchObject({ status: 303, location: expect.stringMatching(/^\/#session=[A-Za-z0-9_-]{20,}$/) });
    expect(session.cookie).toMatch(new RegExp(`^abp_session_${port}=[A-Za-z0-9_-]{20,}$`));
    const page = await fetch(first.dashboard, { headers: { cookie: session.cookie as string } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('/assets/app.js');
    const pageKey = (session.location as string).slice('/#session='.length);
    const jobs = await fetch(`http://127.0.0.1:${port}/jobs`, { headers: { cookie: session.cookie as string, 'x-abp-session-key': pageKey } });
    expect(jobs.status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${port}/jobs`, { headers: { cookie: session.cookie as string } })).status).toBe(401);
    // It works once.
    expect((await login(first.url)).status).toBe(401);

    // The next call finds the running server: a fresh link, nothing started.
    const second = await call(client, 'dashboard_url');
    expect(second).toMatchObject({ started: false, pid: first.pid, stop: first.stop });
    expect(second.log).toBeUndefined();
    expect(second.url).not.toBe(first.url);
    expect((await login(second.url)).status).toBe(303);

    // The stop instruction, run as given, stops it: the process is gone and the port is closed.
    const [abp, ...args] = (first.stop as string).split(' ');
    expect(abp).toBe('abp');
    const stopped = await sb.cli(args);
    expect(stopped.exitCode, stopped.stderr).toBe(0);
    expect(stopped.stdout).toContain(`stopped abp serve (pid ${first.pid}) on http://127.0.0.1:${port}`);
    expect(alive(first.pid)).toBe(false);
    expect(await open(port)).toBe(false);
    expect(existsSync(sb.path('serve.json'))).toBe(false);
    // Stopping again finds nothing to stop.
    const again = await sb.ok(args);
    expect(again).toMatchObject({ stopped: false, message: expect.stringContaining('nothing to stop') });

    // The MCP server outlived the stop; asked again, it starts a new server.
    const third = await call(client, 'dashboard_url');
    pids.add(third.pid);
    expect(third.started).toBe(true);
    expect(third.pid).not.toBe(first.pid);
  }, 90_000);

  it('says clearly when the configured port is taken by another program, and starts nothing', async () => {
    holder = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => holder!.listen(port, '127.0.0.1', () => resolve()));
    client = await mcp();
    const error = await callError(client, 'dashboard_url');
    expect(error).toContain(`port ${port} on 127.0.0.1 is taken by another program`);
    expect(error).toContain('ABP_HTTP_PORT');
    expect(existsSync(sb.path('serve.json'))).toBe(false);
  }, 60_000);

  it('abp serve stop signals only the abp serve of this home, never another process that holds the recorded pid', async () => {
    stranger = spawn('sleep', ['60'], { stdio: 'ignore' });
    const pid = stranger.pid as number;
    writeFileSync(sb.path('serve.json'), JSON.stringify({ url: `http://127.0.0.1:${port}`, pid, started_at: new Date().toISOString() }));
    const r = await sb.cli(['serve', 'stop', '--json']);
    expect(r.exitCode).toBe(1);
    expect(r.json.error.message).toContain(`names pid ${pid}, but process ${pid} is not an abp serve`);
    expect(alive(pid)).toBe(true);
  });
});
