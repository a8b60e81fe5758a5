import { writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { execa, type ResultPromise } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CLI, ROOT, Sandbox } from '../helpers/cli.js';
import { call, driveCsvJob } from '../helpers/mcp.js';
import { call as httpCall } from '../helpers/serve.js';

let sb: Sandbox;
beforeEach(() => {
  sb = new Sandbox();
  writeFileSync(sb.path('abc.csv'), 'id,text\na,alpha\nb,beta\nc,gamma\n');
});
afterEach(async () => {
  await sb.cleanup();
});

describe('abp mcp over stdio', () => {
  it('drives a whole job with the SDK’s StdioClientTransport, and exits on stdin EOF', async () => {
    const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp'], env: { ...process.env, ...sb.env } as Record<string, string>, stderr: 'pipe' });
    const client = new Client({ name: 'stdio-test', version: '1.0.0' });
    await client.connect(transport);
    const pid = transport.pid;
    expect(pid).toBeGreaterThan(0);
    await driveCsvJob(client, sb.path('abc.csv'));
    await client.close();
    // Closing stdin ends the server process; the executor it launched keeps its own life.
    const deadline = Date.now() + 5000;
    let alive = true;
    while (alive && Date.now() < deadline) {
      try {
        process.kill(pid as number, 0);
        await new Promise((r) => setTimeout(r, 50));
      } catch {
        alive = false;
      }
    }
    expect(alive).toBe(false);
  });

  it('answers get_job_status and list_jobs from job rows until a request needs the app, as the app does after', async () => {
    const id = (await sb.ok(['create', '--name', 'rows', '--intent', 'echo', '--enumerator', 'csv', '-e', `file_path=${sb.path('abc.csv')}`, '-e', 'id_column=id', '--worker', 'shell', '-w', 'command=echo'])).job_id;
    const transport = new StdioClientTransport({ command: process.execPath, args: [CLI, 'mcp'], env: { ...process.env, ...sb.env } as Record<string, string>, stderr: 'pipe' });
    let log = '';
    transport.stderr?.on('data', (chunk: Buffer) => (log += chunk.toString()));
    const client = new Client({ name: 'rows-test', version: '1.0.0' });
    await client.connect(transport);
    const loads = 'abp mcp: opening the store and loading the orchestrator';
    const reads = async () => ({
      status: await call(client, 'get_job_status', { job_id: id }),
      jobs: await call(client, 'list_jobs', { status: ['CREATED'] }),
      missing: (await client.callTool({ name: 'get_job_status', arguments: { job_id: id + 1 } })).content,
    });
    const fromRows = await reads();
    expect(fromRows.status).toMatchObject({ job_id: id, name: 'rows', status: 'CREATED', total: 3, counts: { pending: 3 } });
    expect(fromRows.jobs.jobs.map((j: { job_id: number }) => j.job_id)).toEqual([id]);
    expect(JSON.stringify(fromRows.missing)).toContain(`job ${id + 1} does not exist`);
    // The quick reader answered and the app never loaded (this file runs on SQLite alone; PostgreSQL has no quick reader).
    expect(log).not.toContain(loads);

    await call(client, 'list_workers');
    await expect.poll(() => log).toContain(loads);
    expect(await reads()).toEqual(fromRows);
    await client.close();
  });

  it('answers the first request that needs the store with why it cannot open, then exits 1 saying why', async () => {
    // A folder where the database file should be: SQLite cannot open it.
    const child = execa(process.execPath, [CLI, 'mcp'], { env: { ...sb.env, ABP_DB: sb.home }, reject: false, timeout: 60_000 });
    const send = (message: object) => child.stdin?.write(`${JSON.stringify({ jsonrpc: '2.0', ...message })}\n`);
    send({ id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '0' } } });
    send({ method: 'notifications/initialized' });
    // The app loads at the first request that needs it; get_job_status falls back to it, as the quick reader cannot open a folder either.
    send({ id: 2, method: 'tools/call', params: { name: 'get_job_status', arguments: { job_id: 1 } } });
    // stdin stays open: the failed store, not EOF, ends the server.
    const r = await child;
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr)).toContain(`abp: cannot open the database ${sb.home}`);
    const answers = String(r.stdout).trim().split('\n').map((line) => JSON.parse(line));
    expect(answers.map((a) => a.id)).toEqual([1, 2]);
    expect(answers[1].result.isError).toBe(true);
    expect(answers[1].result.content[0].text).toContain(`cannot open the database ${sb.home}`);
  });

  it('works with the MCP Inspector CLI as an external client', async () => {
    const inspector = join(ROOT, 'node_modules', '.bin', 'mcp-inspector');
    const run = (args: string[]) =>
      execa(inspector, ['--cli', process.execPath, CLI, 'mcp', '-e', `ABP_HOME=${sb.home}`, '-e', `ABP_DB=${sb.env.ABP_DB}`, ...args], { reject: false, timeout: 60_000 });
    const listed = await run(['--method', 'tools/list']);
    expect(listed.exitCode, String(listed.stderr)).toBe(0);
    const names = JSON.parse(String(listed.stdout)).tools.map((t: { name: string }) => t.name);
    expect(names).toEqual(expect.arrayContaining(['list_enumerators', 'create_job', 'start_job', 'get_results']));

    const enumerators = await run(['--method', 'tools/call', '--tool-name', 'list_enumerators']);
    expect(JSON.parse(String(enumerators.stdout)).structuredContent.enumerators.map((e: { type: string }) => e.type)).toContain('csv');

    const created = await run([
      '--method', 'tools/call', '--tool-name', 'create_job',
      '--tool-arg', 'name=from inspector', '--tool-arg', 'user_intent=echo', '--tool-arg', 'enumerator_type=csv',
      '--tool-arg', `enumerator_config={"file_path": "${sb.path('abc.csv')}"}`,
      '--tool-arg', 'worker_type=shell', '--tool-arg', 'worker_config={"command": "echo", "args": ["{{item.text}}"]}',
      '--tool-arg', 'max_workers=2',
    ]);
    expect(created.exitCode, String(created.stdout)).toBe(0);
    expect(JSON.parse(String(created.stdout)).structuredContent).toMatchObject({ status: 'CREATED', total: 3, max_workers: 2, name: 'from inspector' });
    expect((await sb.ok(['list'])).map((j: { name: string }) => j.name)).toEqual(['from inspector']);
  });
});
const INITIALIZE = { jsonrpc: '2.0', id: 'init', method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } };

describe('abp serve: MCP over Streamable HTTP', () => {
  let server: ResultPromise;
  let url: string;
  const KEY = 'test-key-0123456789';

  beforeEach(async () => {
    server = execa(process.execPath, [CLI, 'serve', '--port', '0'], { env: { ...sb.env, ABP_API_KEY: KEY, ABP_CORS_ORIGINS: 'http://allowed.example', ABP_MAX_BODY_BYTES: String(256 * 1024) }, reject: false });
    url = await new Promise<string>((resolve, reject) => {
      let seen = '';
      server.stderr?.on('data', (chunk: Buffer) => {
        seen += chunk.toString();
        const m = /listening on (http:\/\/[^\s]+)/.exec(seen);
        if (m) resolve(m[1] as string);
      });
      setTimeout(() => reject(new Error(`abp serve did not start: ${seen}`)), 20_000);
    });
  });
  afterEach(async () => {
    server.kill('SIGTERM');
    await server;
  });

  function raw(path: string, headers: Record<string, string>, method = 'GET'): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
    const u = new URL(path, url);
    return new Promise((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path: u.pathname, method, headers }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('drives a whole job with the SDK’s Streamable HTTP client', async () => {
    const transport = new StreamableHTTPClientTransport(new URL('/mcp', url), { requestInit: { headers: { authorization: `Bearer ${KEY}` } } });
    const client = new Client({ name: 'http-test', version: '1.0.0' });
    await client.connect(transport);
    expect((await call(client, 'list_enumerators')).enumerators.length).toBeGreaterThan(1);
    await driveCsvJob(client, sb.path('abc.csv'));
    await client.close();
  });

  it('answers malformed JSON, an oversized body, a batch and a non-message with a JSON-RPC error and an HTTP status, and serves on', async () => {
    const headers = { accept: 'application/json, text/event-stream' };
    const post = (body: string | Buffer, extra: Record<string, string> = {}) =>
      httpCall(url, '/mcp', { method: 'POST', key: KEY, body: typeof body === 'string' ? body : body.toString('latin1'), headers: { ...headers, ...extra } });
    const expectError = (r: { status: number; json: any; headers: Record<string, unknown> }, status: number, id: unknown, code: number) => {
      expect(r.status).toBe(status);
      expect(r.headers['content-type']).toContain('application/json');
      expect(r.json).toEqual({ jsonrpc: '2.0', id, error: expect.objectContaining({ code, message: expect.any(String) }) });
    };
    const runs = async (session: Record<string, string>) => {
      expectError(await post('{"jsonrpc":"2.0","id":1,"method":"tools/list"', session), 400, null, -32700);
      expectError(await post('not json', session), 400, null, -32700);
      expectError(await post('', session), 400, null, -32600);
      for (const body of ['[]', '[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]', JSON.stringify([{ ...INITIALIZE, id: 1 }])]) {
        const r = await post(body, session);
        expectError(r, 400, null, -32600);
        expect(r.json.error.message).toContain('MCP 2025-06-18 removed batching');
      }
      expectError(await post('{}', session), 400, null, -32600);
      expectError(await post('42', session), 400, null, -32600);
      expectError(await post('{"jsonrpc":"2.0","id":9,"method":7}', session), 400, 9, -32600);
      expectError(await post('{"jsonrpc":"2.0","id":"x","method":"ping","extra":1}', session), 400, 'x', -32600);
      // 256 KiB is this server's ABP_MAX_BODY_BYTES: refused before it is read whole, and the connection closes.
      const big = await post(`{"jsonrpc":"2.0","id":3,"method":"ping","params":{"pad":"${'A'.repeat(300 * 1024)}"}}`, session);
      expectError(big, 413, null, -32600);
      expect(big.json.error.data).toEqual({ max_bytes: 256 * 1024 });
      expect(big.headers.connection).toBe('close');
    };
    // Before a session exists, and within one.
    await runs({});
    const init = await post(JSON.stringify(INITIALIZE));
    expect(init.status).toBe(200);
    const session = { 'mcp-session-id': init.headers['mcp-session-id'] as string, 'mcp-protocol-version': '2025-06-18' };
    expect(session['mcp-session-id']).toBeTruthy();
    await runs(session);
    // The session still works.
    expect((await post(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), session)).status).toBe(202);
    const list = await post(JSON.stringify({ jsonrpc: '2.0', id: 'list', method: 'tools/list' }), session);
    expect(list.status).toBe(200);
    expect(list.text).toContain('"id":"list"');
    expect(list.text).toContain('create_job');
    const unknown = await post(JSON.stringify({ jsonrpc: '2.0', id: 'nope', method: 'no/such/method' }), session);
    expect(unknown.text).toContain('-32601');
  });

  it('refuses a missing or wrong key, a foreign Host and a foreign Origin', async () => {
    const port = new URL(url).port;
    expect((await raw('/health', { host: `127.0.0.1:${port}` })).status).toBe(200);
    const noKey = await raw('/mcp', { host: `127.0.0.1:${port}` }, 'POST');
    expect(noKey.status).toBe(401);
    expect(noKey.body).toContain('missing or wrong API key');
    expect((await raw('/mcp', { host: `127.0.0.1:${port}`, authorization: 'Bearer nope' }, 'POST')).status).toBe(401);
    const rebinding = await raw('/mcp', { host: `evil.example:${port}`, authorization: `Bearer ${KEY}` }, 'POST');
    expect(rebinding.status).toBe(403);
    expect(JSON.parse(rebinding.body).error.message).toContain('host "evil.example');
    const origin = await raw('/mcp', { host: `localhost:${port}`, origin: 'http://evil.example', authorization: `Bearer ${KEY}` }, 'POST');
    expect(origin.status).toBe(403);
    const preflight = await raw('/mcp', { host: `localhost:${port}`, origin: 'http://allowed.example' }, 'OPTIONS');
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe('http://allowed.example');
  });
});
