import { request } from 'node:http';
import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sameSecret } from '../../src/http/security.js';
import { Sandbox } from '../helpers/cli.js';
import { TEST_BACKEND } from '../helpers/postgres.js';
import { call, KEY, slowJob, startServe, type Served } from '../helpers/serve.js';

/**
 * Security point 6 (docs/security.md): the HTTP API refuses a missing or wrong
 * key, a foreign Host or Origin and an oversize body, on every route family,
 * against a real `abp serve`. The checks sit in front of the store, so one
 * project runs them.
 */

const ALLOWED = 'http://allowed.example';
const MAX_BODY = 4096;

let sb: Sandbox;
let srv: Served;
let jobId: number;
let unitId: number;

/** One request of each route family, with a body where the route takes one. */
const routes = (): [string, string, unknown?][] => [
  ['GET', '/'],
  ['GET', '/assets/app.js'],
  ['GET', '/jobs'],
  ['POST', '/jobs', { name: 'x' }],
  ['GET', `/jobs/${jobId}`],
  ['DELETE', `/jobs/${jobId + 1000}`],
  ['GET', `/jobs/${jobId}/units`],
  ['GET', `/jobs/${jobId}/units/${unitId}`],
  ['GET', `/jobs/${jobId}/results`],
  ['GET', `/jobs/${jobId}/results?format=csv`],
  ['GET', `/jobs/${jobId}/timeline`],
  ['GET', `/jobs/${jobId}/events`],
  ['POST', `/jobs/${jobId}/start`, {}],
  ['POST', `/jobs/${jobId}/pause`],
  ['POST', `/jobs/${jobId}/resume`],
  ['POST', `/jobs/${jobId}/retry`],
  ['POST', `/jobs/${jobId}/checkpoints`, { type: 'probe' }],
  ['GET', '/overview'],
  ['GET', '/metrics'],
  ['GET', '/schemas'],
  ['GET', '/schemas/job.json'],
  ['POST', '/mcp', { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }],
  ['GET', '/mcp'],
  ['DELETE', '/mcp'],
];

describe.skipIf(TEST_BACKEND === 'postgres')('6. the HTTP API refuses what it must, on every route family', () => {
  beforeAll(async () => {
    sb = new Sandbox();
    const csv = sb.path('rows.csv');
    writeFileSync(csv, 'id,text\na,alpha\n');
    writeFileSync(sb.path('spec.json'), JSON.stringify(slowJob(csv)));
    const job = await sb.ok(['create', '--spec', sb.path('spec.json')]);
    jobId = job.job_id;
    unitId = (await sb.query<{ id: number }>('select id from work_units where job_id = ?', jobId))[0]!.id;
    srv = await startServe(sb, { ABP_MAX_BODY_BYTES: String(MAX_BODY), ABP_CORS_ORIGINS: ALLOWED, ABP_RATE_LIMIT: '0' });
  });
  afterAll(async () => {
    await srv?.stop();
    await sb?.cleanup();
  });

  /** Calls a route and closes at once: an event stream (SSE or MCP GET) would otherwise stay open. */
  function hit(method: string, path: string, body: unknown, headers: Record<string, string>, key: string | false) {
    const u = new URL(path, srv.url);
    const text = body === undefined ? undefined : JSON.stringify(body);
    const all: Record<string, string> = { host: u.host, accept: 'application/json, text/event-stream', ...headers };
    if (key !== false) all.authorization = `Bearer ${key}`;
    if (text !== undefined) {
      all['content-type'] = 'application/json';
      all['content-length'] = String(Buffer.byteLength(text));
    }
    return new Promise<{ status: number; headers: Record<string, unknown> }>((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: all }, (res) => {
        resolve({ status: res.statusCode ?? 0, headers: res.headers });
        res.destroy();
      });
      req.on('error', reject);
      req.end(text);
    });
  }

  it('no key, a wrong key of any length, a prefix or an extension of the key: 401 everywhere but /health and /ready', async () => {
    const wrong = ['', 'wrong', KEY.slice(0, -1), `${KEY}x`, KEY.toUpperCase(), `${KEY.slice(0, -1)}${KEY.at(-1) === 'f' ? 'e' : 'f'}`, 'x'.repeat(KEY.length)];
    const seen: string[] = [];
    for (const [method, path, body] of routes()) {
      seen.push(`${method} ${path} no key → ${(await hit(method, path, body, {}, false)).status}`);
      for (const key of wrong) seen.push(`${method} ${path} key ${JSON.stringify(key)} → ${(await hit(method, path, body, {}, key)).status}`);
      // x-api-key is checked the same way.
      seen.push(`${method} ${path} x-api-key wrong → ${(await hit(method, path, body, { 'x-api-key': `${KEY}!` }, false)).status}`);
    }
    expect(seen.filter((s) => !s.endsWith('→ 401'))).toEqual([]);
    for (const path of ['/health', '/ready']) expect((await hit('GET', path, undefined, {}, false)).status).toBe(200);
    // /login takes no key, only a one-time token: a guessed one gets no session.
    const guess = await hit('GET', '/login?token=guessed-token', undefined, {}, false);
    expect(guess.status).toBe(401);
    expect(guess.headers['set-cookie']).toBeUndefined();
  });

  it('the right key opens every route (the control for the 401s above)', async () => {
    for (const [method, path, body] of routes()) {
      const { status } = await hit(method, path, body, {}, KEY);
      expect([401, 403, 413], `${method} ${path}`).not.toContain(status);
    }
  });

  it('a foreign Host (DNS rebinding) gets 403 on every route, even with the right key, /health and /ready included', async () => {
    const foreign = ['evil.example', `evil.example:${srv.port}`, `127.0.0.1.evil.example:${srv.port}`, `localhost:${srv.port + 1}`, `127.0.0.1`];
    const seen: string[] = [];
    for (const [method, path, body] of [...routes(), ['GET', '/health'], ['GET', '/ready'], ['GET', '/login?token=x']] as [string, string, unknown?][]) {
      for (const host of foreign) seen.push(`${method} ${path} host ${host} → ${(await hit(method, path, body, { host }, KEY)).status}`);
    }
    expect(seen.filter((s) => !s.endsWith('→ 403'))).toEqual([]);
  });

  it('a foreign Origin gets 403 and no CORS headers; a listed one gets exactly its own origin back, never *', async () => {
    for (const [method, path, body] of routes()) {
      for (const origin of ['http://evil.example', `http://evil.example:${srv.port}`, 'null', `${ALLOWED}.evil.example`, `https://127.0.0.1:${srv.port}`]) {
        const r = await hit(method, path, body, { origin }, KEY);
        expect(r.status, `${method} ${path} from ${origin}`).toBe(403);
        expect(r.headers['access-control-allow-origin']).toBeUndefined();
      }
    }
    const listed = await hit('GET', '/jobs', undefined, { origin: ALLOWED }, KEY);
    expect(listed.status).toBe(200);
    expect(listed.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect(listed.headers['access-control-allow-credentials']).toBeUndefined();
    // Preflights: the listed origin gets the methods, a foreign one nothing.
    const preflight = await hit('OPTIONS', '/jobs', undefined, { origin: ALLOWED, 'access-control-request-method': 'POST' }, false);
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe(ALLOWED);
    const foreignPreflight = await hit('OPTIONS', '/mcp', undefined, { origin: 'http://evil.example', 'access-control-request-method': 'POST' }, false);
    expect(foreignPreflight.status).toBe(403);
    expect(foreignPreflight.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('an oversize body gets 413 on every route that reads one, declared or chunked; without a key it is refused before it is read', async () => {
    const big = { name: 'x', padding: 'p'.repeat(MAX_BODY) };
    for (const path of ['/jobs', `/jobs/${jobId}/start`, `/jobs/${jobId}/checkpoints`, '/mcp']) {
      const declared = await call(srv.url, path, { method: 'POST', body: big });
      expect(declared.status, path).toBe(413);
      // /mcp answers in JSON-RPC, as its clients read it: Invalid Request, id null.
      if (path === '/mcp') expect(declared.json).toMatchObject({ jsonrpc: '2.0', id: null, error: { code: -32600, data: { max_bytes: MAX_BODY } } });
      else expect(declared.json.error.code).toBe('payload_too_large');
      expect((await call(srv.url, path, { method: 'POST', body: big, key: false })).status).toBe(401);
      // No Content-Length: the body grows past the cap while it is read.
      const chunked = await new Promise<number>((resolve, reject) => {
        const u = new URL(path, srv.url);
        const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { host: u.host, authorization: `Bearer ${KEY}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked', accept: 'application/json, text/event-stream' } }, (res) => {
          resolve(res.statusCode ?? 0);
          res.resume();
        });
        req.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'EPIPE' || (err as NodeJS.ErrnoException).code === 'ECONNRESET' ? undefined : reject(err)));
        for (let i = 0; i < 8; i++) req.write('{"padding": "' + 'q'.repeat(1024) + '", ');
        req.end('"x": 1}');
      });
      expect(chunked, path).toBe(413);
    }
    // Just under the cap is read (the control): a bad spec, not a too-large one.
    const under = await call(srv.url, '/jobs', { method: 'POST', body: { name: 'x', padding: 'p'.repeat(MAX_BODY - 100) } });
    expect(under.status).toBe(400);
  });

  it('the key comparison: equal keys only, whatever their length, through a constant-time compare of fixed-size digests', () => {
    expect(sameSecret(KEY, KEY)).toBe(true);
    for (const other of ['', KEY.slice(0, -1), `${KEY}x`, KEY.toUpperCase(), `${KEY}\0`, 'x'.repeat(10_000)]) expect(sameSecret(other, KEY)).toBe(false);
  });
});
